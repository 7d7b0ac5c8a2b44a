"""What push and pull read from a dataset folder, and the record of pushed projects.

``annotate/projects.json`` (written by push, read by pull) holds, per task kind, the server URL,
project id and title, how images reach the server, and the pushed task count. Task images live
under ``annotate/<kind>/`` so Label Studio's local-files storage can serve them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from g3d.classes import ClassPreset, get_preset
from g3d.datasets import folder as dsf
from g3d.datasets import io as dsio
from g3d.datasets.manifest import Manifest, read_manifest
from g3d.datasets.shards import read_shard
from g3d.errors import DatasetError

ANNOTATE = "annotate"  # task images and projects.json, inside the dataset folder
RECORD = "projects.json"


@dataclass
class DatasetInfo:
    """The parts of a dataset folder annotation needs (no image bytes)."""

    folder: Path
    manifest: Manifest
    preset: ClassPreset
    dataset_id: str  # 12 hex digits of the run's fingerprint: ties projects to this dataset
    views: list[int]  # view ids of viewpoints.parquet, ascending
    gt_azimuth: dict[int, float]  # view id -> generator's azimuth (built-in generator; else empty)
    gt_elevation: dict[int, float]  # view id -> generator's elevation (built-in generator; else empty)
    sample_ids: np.ndarray  # int64 [N]: one entry per image row
    view_ids: np.ndarray  # int64 [N]
    keep: np.ndarray  # bool [N]: row passed the filters
    sizes: dict[tuple[int, int], tuple[int, int]]  # (view, sample) -> (width, height)
    has_truth: bool  # rows carry keypoints_2d / keypoints_visible

    def kept_samples(self, view: int) -> list[int]:
        """Sample ids of the kept images of ``view``, ascending."""
        sel = (self.view_ids == view) & self.keep
        return sorted(int(s) for s in self.sample_ids[sel])


def dataset_id(manifest: Manifest) -> str:
    blob = json.dumps(manifest.fingerprint if manifest.fingerprint is not None else manifest.to_json(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def read_dataset_info(folder: Path) -> DatasetInfo:
    """Read the manifest, views and image index of ``folder``; a bad folder is a DatasetError."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    manifest = read_manifest(folder)
    manifest.require_frozen_views(folder, "Label Studio's pose-bin and keypoint tasks (one per view)")
    preset = get_preset(manifest.class_name)
    vp_path = folder / dsf.VIEWPOINTS
    if not vp_path.is_file():
        raise DatasetError(f"{folder} has no {dsf.VIEWPOINTS}: rerun `g3d synth --out {folder}`")
    vp = pq.read_table(vp_path)
    views = sorted(int(v) for v in vp.column("view_id").to_pylist())
    if not views:
        raise DatasetError(f"{folder} has no views ({dsf.VIEWPOINTS} is empty): rerun `g3d synth --out {folder}` with --views")
    gt_az: dict[int, float] = {}
    gt_el: dict[int, float] = {}
    if "gt_azimuth_deg" in vp.column_names:
        for v, az, el in zip(vp.column("view_id").to_pylist(), vp.column("gt_azimuth_deg").to_pylist(), vp.column("gt_elevation_deg").to_pylist()):
            if az is not None:
                gt_az[int(v)] = float(az)
                gt_el[int(v)] = float(el) if el is not None else 0.0
    shards = dsf.shard_paths(folder)
    if not shards:
        raise DatasetError(f"{folder} has no image shards: run or resume `g3d synth --out {folder}`")
    cols = ["sample_id", "view_id", "keep", "width", "height"]
    parts = [read_shard(p, cols) for p in shards]
    s = np.concatenate([t.column("sample_id").to_numpy() for t in parts]).astype(np.int64)
    v = np.concatenate([t.column("view_id").to_numpy() for t in parts]).astype(np.int64)
    keep = np.concatenate([np.asarray(t.column("keep").fill_null(True).to_numpy(zero_copy_only=False), dtype=bool) for t in parts])
    w = np.concatenate([t.column("width").to_numpy() for t in parts])
    h = np.concatenate([t.column("height").to_numpy() for t in parts])
    sizes = {(int(a), int(b)): (int(c), int(d)) for a, b, c, d in zip(v, s, w, h)}
    names = pq.ParquetFile(shards[0]).schema_arrow.names
    return DatasetInfo(
        folder=folder,
        manifest=manifest,
        preset=preset,
        dataset_id=dataset_id(manifest),
        views=views,
        gt_azimuth=gt_az,
        gt_elevation=gt_el,
        sample_ids=s,
        view_ids=v,
        keep=keep,
        sizes=sizes,
        has_truth="keypoints_2d" in names,
    )


def read_rows(folder: Path, pairs: set[tuple[int, int]], columns: list[str]) -> dict[tuple[int, int], dict[str, Any]]:
    """(view, sample) -> {column: value} for the requested image rows (a column at a time)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[tuple[int, int], dict[str, Any]] = {}
    if not pairs:
        return out
    wanted_samples = pa.array(sorted({s for _, s in pairs}), type=pa.int64())
    for p in dsf.shard_paths(folder):
        t = read_shard(p, ["sample_id", "view_id", *columns])
        t = t.filter(pc.is_in(t.column("sample_id"), value_set=wanted_samples))
        if t.num_rows == 0:
            continue
        ss, vv = t.column("sample_id").to_pylist(), t.column("view_id").to_pylist()
        idx = [i for i, (s, v) in enumerate(zip(ss, vv)) if (int(v), int(s)) in pairs]
        if not idx:
            continue
        t = t.take(pa.array(idx, type=pa.int64()))
        data = {c: t.column(c).to_pylist() for c in columns}
        for j, (s, v) in enumerate(zip(t.column("sample_id").to_pylist(), t.column("view_id").to_pylist())):
            out[(int(v), int(s))] = {c: data[c][j] for c in columns}
    return out


def annotate_dir(folder: Path, kind: str | None = None) -> Path:
    d = Path(folder) / ANNOTATE
    return d / kind if kind else d


def load_record(folder: Path) -> dict[str, Any]:
    path = annotate_dir(folder) / RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise DatasetError(f"{path} is not valid JSON: delete it and push again") from None


def save_record(folder: Path, kind: str, entry: dict[str, Any]) -> None:
    record = load_record(folder)
    record[kind] = entry
    annotate_dir(folder).mkdir(parents=True, exist_ok=True)
    dsio.write_json(annotate_dir(folder) / RECORD, record)


def default_title(info: DatasetInfo, kind: str) -> str:
    """``<folder name> <kind> <dataset id>``, at most Label Studio's 50 characters."""
    tail = f" {kind} {info.dataset_id[:6]}"
    return info.folder.resolve().name[: 50 - len(tail)] + tail
