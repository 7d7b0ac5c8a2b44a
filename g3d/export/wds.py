"""``g3d export --format wds``: WebDataset tar shards ``{split}-NNNNNN.tar`` of at most ``shard_bytes`` each.

Every row is three members sharing a key ``{sample_id:06d}_{view_id:03d}``: ``.png`` (the image),
``.mask.png`` (0/255) and ``.json`` (sample and view ids, K, R, t, camera source, keypoints). A
shard holds whole objects, in sample then view order, so a loader streams an object's views together.
Members have fixed owners and times, so the same input gives the same bytes.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np

from g3d.export.rows import ExportConfig, ExportReport, commit, plan, shard_rows, staging


class _Writer:
    def __init__(self, folder: Path, split: str, limit: int) -> None:
        self.folder, self.split, self.limit = folder, split, limit
        self.index, self.size, self.tar, self.files = -1, 0, None, 0
        self.sample = None

    def _open(self) -> None:
        if self.tar is not None:
            self.tar.close()
        self.index += 1
        self.tar = tarfile.open(self.folder / f"{self.split}-{self.index:06d}.tar", "w", format=tarfile.USTAR_FORMAT)
        self.size, self.files = 0, self.files + 1

    def add(self, sample_id: int, members: list[tuple[str, bytes]]) -> None:
        new_object = sample_id != self.sample
        if self.tar is None or (new_object and self.size >= self.limit):
            self._open()  # a new shard only between objects
        self.sample = sample_id
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "g3d", "g3d"
            self.tar.addfile(info, io.BytesIO(data))
            self.size += 512 + (len(data) + 511) // 512 * 512

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def export_wds(cfg: ExportConfig, progress: Callable[[str, int], Callable[[int], None]] | None = None) -> ExportReport:
    from g3d.datasets.schema import encode_png

    p = plan(cfg)
    tmp = staging(cfg, p)
    writers = {s: _Writer(tmp, s, cfg.shard_bytes) for s in cfg.split}
    rows = {s: 0 for s in cfg.split}
    advance = progress("exporting (wds)", p.total) if progress else None
    try:
        for k in range(len(p.shards)):
            for r in shard_rows(p, k, cfg):
                key = f"{r['sample_id']:06d}_{r['view_id']:03d}"
                meta = {"sample_id": r["sample_id"], "view_id": r["view_id"], "K": r["K"], "R": r["R"], "t": r["t"],
                        "camera_source": r["camera_source"], "keypoints_2d": r["keypoints_2d"], "keypoints_visible": r["keypoints_visible"],
                        "width": r["width"], "height": r["height"]}
                members = [(f"{key}.png", r["image"]), (f"{key}.json", json.dumps(meta, sort_keys=True).encode())]
                if r["mask"] is not None:
                    members.insert(1, (f"{key}.mask.png", encode_png(r["mask"].astype(np.uint8) * 255)))
                writers[r["split"]].add(r["sample_id"], members)
                rows[r["split"]] += 1
            if advance:
                advance(p.kept[k])
        for w in writers.values():
            w.close()
        objects = commit(tmp, cfg, p, "wds", rows)
    finally:
        for w in writers.values():
            w.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportReport(Path(cfg.out), "wds", rows, objects, sum(w.files for w in writers.values()))
