"""``g3d export --format nerfstudio``: one folder per object, as nerfstudio and instant-ngp open them.

``OUT/obj_{sample_id:06d}/``: ``images/{view:03d}.png``, ``masks/{view:03d}.png`` (0/255) and
``transforms.json`` (``camera_model`` OPENCV, ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``,
``camera_angle_x``; per frame ``file_path``, ``mask_path`` and ``transform_matrix``: camera-to-world in
OpenGL axes, :func:`g3d.cameras.c2w_opengl`). ``OUT/splits.json`` lists the objects of each split.
``ns-train splatfacto --data OUT/obj_000042`` or instant-ngp's ``--scene`` opens one object. The views
of an object share one intrinsics matrix (g3d's views do: one K per dataset).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from g3d.export.rows import ExportConfig, ExportReport, commit, plan, shard_rows, staging


def _write_object(tmp: Path, sample_id: int, rows: list[dict]) -> None:
    from g3d import cameras
    from g3d.datasets.schema import encode_png

    folder = tmp / f"obj_{sample_id:06d}"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    names = []
    for r in rows:
        name = f"{r['view_id']:03d}.png"
        (folder / "images" / name).write_bytes(r["image"])
        if r["mask"] is not None:
            (folder / "masks" / name).write_bytes(encode_png(r["mask"].astype(np.uint8) * 255))
        names.append(name)
    K = np.reshape(rows[0]["K"], (3, 3))
    doc = cameras.to_transforms_json(K, np.stack([np.reshape(r["R"], (3, 3)) for r in rows]), np.stack([np.reshape(r["t"], 3) for r in rows]),
                                     rows[0]["width"], rows[0]["height"], [f"images/{n}" for n in names])
    doc["camera_angle_x"] = 2.0 * math.atan(rows[0]["width"] / (2.0 * float(K[0, 0])))
    for frame, r, n in zip(doc["frames"], rows, names):
        if r["mask"] is not None:
            frame["mask_path"] = f"masks/{n}"
        frame["g3d_view_id"] = r["view_id"]
        frame["g3d_camera_source"] = r["camera_source"]
    (folder / "transforms.json").write_text(json.dumps(doc, indent=1))


def export_nerfstudio(cfg: ExportConfig, progress: Callable[[str, int], Callable[[int], None]] | None = None) -> ExportReport:
    p = plan(cfg)
    tmp = staging(cfg, p)
    rows = {s: 0 for s in cfg.split}
    files = 0
    advance = progress("exporting (nerfstudio)", p.total) if progress else None
    try:
        for k in range(len(p.shards)):
            groups: dict[int, list[dict]] = {}
            for r in shard_rows(p, k, cfg):  # an object's rows are all in one source shard
                groups.setdefault(r["sample_id"], []).append(r)
                rows[r["split"]] += 1
            for sid, items in groups.items():
                _write_object(tmp, sid, items)
                files += 1
            if advance:
                advance(p.kept[k])
        splits = {s: sorted(f"obj_{sid:06d}" for sid, x in p.split_of.items() if x == s) for s in cfg.split}
        (tmp / "splits.json").write_text(json.dumps(splits, indent=1))
        objects = commit(tmp, cfg, p, "nerfstudio", rows)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportReport(Path(cfg.out), "nerfstudio", rows, objects, files)
