"""What every export format reads: the dataset's rows to export, their split, camera and 0/255 mask.

:func:`plan` reads the folder's manifest, which rows are kept (``keep`` true or null; all with
``all_rows``), the object split (:mod:`g3d.export.splits`) and the cameras (:func:`g3d.datasets.cameras.read_cameras`:
``cameras.parquet`` or the generator's truth; rows without a usable camera are left out). :func:`shard_rows` yields one source shard's rows at a time, so an
export holds one shard in memory. :func:`staging` and :func:`commit` make an export atomic: it is
written under a hidden name beside OUT and renamed when whole; a non-empty OUT that is not an earlier
export of the same dataset is refused, and an earlier one is replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from g3d.datasets import io as dsio
from g3d.datasets.shards import read_shard
from g3d.errors import DatasetError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from g3d.datasets.cameras import DatasetCameras
    from g3d.datasets.manifest import Manifest

RECORD = "export.json"


@dataclass
class ExportConfig:
    """Arguments of ``g3d export`` (one format)."""

    folder: Path  # dataset folder
    out: Path  # export folder
    split: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    seed: int = 0  # split seed
    all_rows: bool = False  # also rows the filter rejected
    overwrite: bool = False  # replace an earlier export of the same dataset
    shard_bytes: int = 1 << 30  # WebDataset: start a new tar shard past this size


@dataclass
class ExportReport:
    out: Path
    format: str
    rows: dict[str, int]  # split -> rows
    objects: dict[str, int]  # split -> objects
    files: int


@dataclass
class Plan:
    folder: Path
    manifest: Manifest
    shards: list[Path]
    kept: list[int]  # rows exported per source shard
    split_of: dict[int, str]  # sample id -> split
    cameras: DatasetCameras | None  # from cameras.parquet; None: each row's own (the generator's truth)
    dataset_id: str

    @property
    def total(self) -> int:
        return sum(self.kept)

    def objects(self, splits) -> dict[str, int]:
        """Objects per split, for the split names ``splits``."""
        return {s: sum(1 for x in self.split_of.values() if x == s) for s in splits}


def plan(cfg: ExportConfig) -> Plan:
    from g3d.datasets import cameras as dscam
    from g3d.datasets import folder as dsf
    from g3d.datasets.manifest import read_manifest
    from g3d.export.splits import assign_splits

    folder = Path(cfg.folder)
    manifest = read_manifest(folder)
    shards = dsf.shard_paths(folder)
    if not shards:
        raise DatasetError(f"{folder} has no image shards: run `g3d synth --out {folder}` first")
    ids, kept = [], []
    for p in shards:
        t = read_shard(p, ["sample_id", "keep"])
        k = t.column("keep").to_pylist()
        ok = np.ones(len(k), bool) if cfg.all_rows else np.array([x is None or bool(x) for x in k])
        ids.append(t.column("sample_id").to_numpy()[ok])
        kept.append(int(ok.sum()))
    all_ids = np.concatenate(ids)
    if len(all_ids) == 0:
        raise DatasetError(f"{folder} has no kept rows: loosen the filter (g3d filter) or pass --all-rows")
    try:
        cams = dscam.read_cameras(folder, manifest, fallbacks=(dscam.FROM_TRUTH,))
    except DatasetError as exc:
        raise DatasetError(f"{exc} (every export format carries the cameras)") from None
    cams = None if cams.origin == dscam.FROM_TRUTH else cams  # the truth: each row carries its own
    dataset_id = str(manifest.run_id or "")
    return Plan(folder, manifest, shards, kept, assign_splits(all_ids, cfg.split, cfg.seed), cams, dataset_id)


def binary_mask(row: dict[str, Any]) -> np.ndarray | None:
    """bool [H, W]: the filter's chosen mask where it chose one, else the object's label (255) of ``mask``."""
    from g3d.datasets.schema import decode_png

    for col, test in (("filter_mask", lambda m: m > 127), ("mask", lambda m: m == 255)):
        cell = row.get(col)
        if cell and cell.get("bytes"):
            return test(decode_png(cell["bytes"], grey=True))
    return None


def shard_rows(p: Plan, k: int, cfg: ExportConfig) -> Iterator[dict[str, Any]]:
    """The exported rows of source shard ``k``, in its order: sample_id, view_id, split, image (PNG bytes),
    mask (bool [H, W] or None), K, R (9 floats, row-major), t (3), camera_source, keypoints_2d /
    keypoints_visible (or None), width, height."""

    path = p.shards[k]
    cols = [c for c in ("sample_id", "view_id", "keep", "image", "mask", "filter_mask", "K", "R", "t", "keypoints_2d", "keypoints_visible")
            if c in read_shard(path, schema_only=True).names]
    for r in read_shard(path, cols).to_pylist():
        if not cfg.all_rows and r.get("keep") is False:
            continue
        v = int(r["view_id"])
        if p.cameras is not None:
            c = int(p.cameras.index([r["sample_id"]], [v])[0])
            if c < 0:
                continue  # no usable camera for this image
            K, R, t, source = p.cameras.K[c].reshape(9).tolist(), p.cameras.R[c].reshape(9).tolist(), p.cameras.t[c].tolist(), p.cameras.sources[c]
        else:
            K, R, t, source = r["K"], r["R"], r["t"], "generator"
        yield {
            "sample_id": int(r["sample_id"]), "view_id": v, "split": p.split_of[int(r["sample_id"])],
            "image": r["image"]["bytes"], "mask": binary_mask(r), "K": list(K), "R": list(R), "t": list(t), "camera_source": source,
            "keypoints_2d": r.get("keypoints_2d"), "keypoints_visible": r.get("keypoints_visible"),
            "width": int(p.manifest.width), "height": int(p.manifest.height),
        }


def staging(cfg: ExportConfig, p: Plan) -> Path:
    """A fresh hidden folder beside ``cfg.out`` to write into (checks ``cfg.out`` first)."""
    out = Path(cfg.out)
    if out.exists():
        record = out / RECORD
        if record.is_file():
            old = dsio.read_json(record, f"it is not an export g3d can replace; delete {out} (or choose another --out) and export again")
            same = isinstance(old, dict) and old.get("dataset_id") == p.dataset_id
        else:
            same = False
        if any(out.iterdir()) and not (same and cfg.overwrite):
            why = "an earlier export of this dataset" if same else "not an export of this dataset"
            raise UsageError(f"--out {out} is not empty ({why}): choose another --out" + (", or add --overwrite to replace it" if same else ""))
    return dsio.fresh_dir(out)


def commit(tmp: Path, cfg: ExportConfig, p: Plan, fmt: str, rows: dict[str, int]) -> dict[str, int]:
    """Write the export record and rename ``tmp`` to ``cfg.out``; returns objects per split."""
    objects = p.objects(cfg.split)
    (tmp / RECORD).write_text(json.dumps({"format": fmt, "dataset_id": p.dataset_id, "source": str(Path(cfg.folder).resolve()),
                                          "split": cfg.split, "seed": cfg.seed, "all_rows": cfg.all_rows,
                                          "rows": rows, "objects": objects}, indent=2, sort_keys=True))
    dsio.replace_dir(tmp, Path(cfg.out))
    return objects
