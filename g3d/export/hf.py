"""``g3d export --format hf``: a folder that ``datasets.load_dataset(OUT)`` opens as it is.

Layout: ``data/{split}-{k:05d}.parquet`` (one file per split and source shard, streamed: memory holds
one source shard), ``README.md`` (the dataset card: YAML front matter with ``configs`` / ``data_files``
per split and ``dataset_info`` features, then the camera convention, counts, provenance and citation),
``export.json`` (what was exported from where; an export is only ever replaced by an export of the same
dataset). Written under a hidden temporary name beside OUT and renamed when whole.

Rows: kept rows only (``keep`` true or null) unless ``all_rows``. Columns: ``sample_id``, ``view_id``,
``image`` and ``mask`` (PNG, decoded as PIL images; the mask is 0/255: ``filter_mask`` where the filter
chose one, else ``mask == 255``), ``K``, ``R``, ``t`` (``cameras.parquet`` where it exists, else the
row's own), ``camera_source``, and the row's ``keypoints_2d`` / ``keypoints_visible`` where present.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from g3d.errors import DatasetError, UsageError

CITATION = """@inproceedings{zhang2021image,
  title={Image GANs meet Differentiable Rendering for Inverse Graphics and Interpretable 3D Neural Rendering},
  author={Zhang, Yuxuan and Chen, Wenzheng and Ling, Huan and Gao, Jun and Zhang, Yinan and Torralba, Antonio and Fidler, Sanja},
  booktitle={International Conference on Learning Representations},
  year={2021}
}"""


@dataclass
class ExportConfig:
    """Arguments of ``g3d export``."""

    folder: Path  # dataset folder
    out: Path  # export folder (created; an earlier export of the same dataset is replaced only with overwrite)
    split: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    seed: int = 0  # split seed
    all_rows: bool = False  # also rows the filter rejected
    overwrite: bool = False


@dataclass
class ExportReport:
    out: Path
    rows: dict[str, int]  # split -> rows
    objects: dict[str, int]  # split -> objects
    files: int


def _cameras(folder: Path):
    """view id -> (K, R, t, source) from cameras.parquet, or None."""
    import pyarrow.parquet as pq

    from g3d.datasets import folder as dsf

    path = folder / dsf.CAMERAS
    if not path.is_file():
        return None
    df = pq.read_table(path).to_pandas()
    usable = df.usable if "usable" in df else [True] * len(df)
    return {int(v): (list(k), list(r), list(t), str(s)) for v, k, r, t, s, u in zip(df.view_id, df.K, df.R, df.t, df.source, usable) if u}


def _binary_mask(row: dict) -> bytes | None:
    from g3d.datasets.schema import decode_png, encode_png

    for col, test in (("filter_mask", lambda m: m > 127), ("mask", lambda m: m == 255)):
        cell = row.get(col)
        if cell and cell.get("bytes"):
            return encode_png((test(decode_png(cell["bytes"], grey=True)) * 255).astype(np.uint8))
    return None


def _prepare_out(cfg: ExportConfig, dataset_id: str) -> Path:
    out = Path(cfg.out)
    if out.exists():
        record = out / "export.json"
        same = record.is_file() and json.loads(record.read_text()).get("dataset_id") == dataset_id
        if any(out.iterdir()) and not (same and cfg.overwrite):
            why = "an earlier export of this dataset" if same else "not an export of this dataset"
            raise UsageError(f"--out {out} is not empty ({why}): choose another --out" + (", or add --overwrite to replace it" if same else ""))
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "data").mkdir(parents=True)
    return tmp


def export_hf(cfg: ExportConfig, progress: Callable[[str, int], Callable[[int], None]] | None = None) -> ExportReport:
    """Write the Hugging Face export of ``cfg.folder`` to ``cfg.out`` (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from g3d.datasets import folder as dsf
    from g3d.datasets.schema import huggingface_metadata, image_type
    from g3d.export.splits import assign_splits

    folder = Path(cfg.folder)
    manifest = dsf.read_manifest(folder)
    shards = dsf.shard_paths(folder)
    if not shards:
        raise DatasetError(f"{folder} has no image shards: run `g3d synth --out {folder}` first")
    keep_cols = ["sample_id", "keep"]
    ids, kept = [], []
    for p in shards:
        t = pq.read_table(p, columns=keep_cols)
        k = t.column("keep").to_numpy(zero_copy_only=False)
        ok = np.ones(len(k), bool) if cfg.all_rows else np.array([x is None or bool(x) for x in k])
        ids.append(t.column("sample_id").to_numpy()[ok])
        kept.append(int(ok.sum()))
    all_ids = np.concatenate(ids)
    if len(all_ids) == 0:
        raise DatasetError(f"{folder} has no kept rows: loosen the filter (g3d filter) or pass --all-rows")
    split_of = assign_splits(all_ids, cfg.split, cfg.seed)
    cams = _cameras(folder)
    dataset_id = str(manifest.get("fingerprint", {}).get("run_id") or dsf.manifest_run_id(manifest) or "")
    tmp = _prepare_out(cfg, dataset_id)
    kp = manifest.get("ground_truth", False)
    schema = pa.schema(
        [pa.field("sample_id", pa.int64()), pa.field("view_id", pa.int32()), pa.field("image", image_type()), pa.field("mask", image_type()),
         pa.field("K", pa.list_(pa.float64(), 9)), pa.field("R", pa.list_(pa.float64(), 9)), pa.field("t", pa.list_(pa.float64(), 3)),
         pa.field("camera_source", pa.string())]
        + ([pa.field("keypoints_2d", pa.list_(pa.float64())), pa.field("keypoints_visible", pa.list_(pa.bool_()))] if kp else [])
    ).with_metadata(huggingface_metadata(("image", "mask")))
    rows = {s: 0 for s in cfg.split}
    per_view = {s: {} for s in cfg.split}
    files = 0
    advance = progress("exporting (hf)", sum(kept)) if progress else None
    try:
        for k, p in enumerate(shards):
            cols = [c for c in ("sample_id", "view_id", "keep", "image", "mask", "filter_mask", "K", "R", "t", "keypoints_2d", "keypoints_visible")
                    if c in pq.read_schema(p).names]
            buckets: dict[str, list[dict]] = {s: [] for s in cfg.split}
            for r in pq.read_table(p, columns=cols).to_pylist():
                if not cfg.all_rows and r.get("keep") is False:
                    continue
                v = int(r["view_id"])
                if cams is not None:
                    if v not in cams:
                        continue  # no usable camera for this view
                    K, R, t, source = cams[v]
                else:
                    K, R, t, source = r.get("K"), r.get("R"), r.get("t"), "generator" if r.get("K") is not None else None
                if K is None:
                    raise DatasetError(f"{folder} has no cameras: run `g3d sfm-init {folder}` first (the hf export carries K, R, t)")
                split = split_of[int(r["sample_id"])]
                out = {"sample_id": int(r["sample_id"]), "view_id": v,
                       "image": {"bytes": r["image"]["bytes"], "path": f"{r['sample_id']:06d}_{v:03d}.png"},
                       "mask": {"bytes": _binary_mask(r), "path": f"{r['sample_id']:06d}_{v:03d}_mask.png"},
                       "K": list(K), "R": list(R), "t": list(t), "camera_source": source}
                if kp:
                    out["keypoints_2d"] = r.get("keypoints_2d")
                    out["keypoints_visible"] = r.get("keypoints_visible")
                buckets[split].append(out)
                per_view[split][v] = per_view[split].get(v, 0) + 1
            for split, items in buckets.items():
                if items:
                    pq.write_table(pa.Table.from_pylist(items, schema=schema), tmp / "data" / f"{split}-{k:05d}.parquet")
                    rows[split] += len(items)
                    files += 1
            if advance:
                advance(kept[k])
        objects = {s: sum(1 for x in split_of.values() if x == s) for s in cfg.split}
        (tmp / "README.md").write_text(card(manifest, cfg, rows, objects, per_view, cams is not None))
        (tmp / "export.json").write_text(json.dumps({"format": "hf", "dataset_id": dataset_id, "source": str(folder.resolve()),
                                                     "split": cfg.split, "seed": cfg.seed, "all_rows": cfg.all_rows,
                                                     "rows": rows, "objects": objects}, indent=2, sort_keys=True))
        out = Path(cfg.out)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportReport(Path(cfg.out), rows, objects, files)


def card(manifest: dict, cfg: ExportConfig, rows: dict[str, int], objects: dict[str, int], per_view: dict, from_sfm: bool) -> str:
    """The dataset card: YAML front matter that ``load_dataset`` reads, then what a user needs to know."""
    splits = [s for s in cfg.split if rows[s]]
    gen = manifest.get("generator", {})
    yaml = ["---", "license: other", "tags:", "- multi-view", "- 3d", "- gan", "- g3d", "configs:", "- config_name: default", "  data_files:"]
    for s in splits:
        yaml += [f"  - split: {s}", f"    path: data/{s}-*.parquet"]
    yaml += ["dataset_info:", "  features:", "  - name: sample_id", "    dtype: int64", "  - name: view_id", "    dtype: int32",
             "  - name: image", "    dtype: image", "  - name: mask", "    dtype: image",
             "  - name: K", "    sequence: float64", "  - name: R", "    sequence: float64", "  - name: t", "    sequence: float64",
             "  - name: camera_source", "    dtype: string"]
    if manifest.get("ground_truth"):
        yaml += ["  - name: keypoints_2d", "    sequence: float64", "  - name: keypoints_visible", "    sequence: bool"]
    yaml += ["---", ""]
    body = [
        f"# g3d multi-view dataset: {manifest['class']}",
        "",
        f"{sum(rows.values())} images ({manifest['width']}x{manifest['height']} px) of {sum(objects.values())} objects seen from "
        f"{manifest['views']} fixed viewpoints, made by g3d {manifest.get('g3d_version')} with the `{gen.get('format')}` generator"
        + (f" ({gen.get('checkpoint')}, SHA-256 {gen.get('sha256')})" if gen.get("sha256") else "")
        + f", seed {manifest.get('seed')}, truncation {manifest.get('truncation_psi')}.",
        "",
        "```python",
        "from datasets import load_dataset",
        "ds = load_dataset('PATH/TO/THIS/FOLDER')   # " + ", ".join(splits) + "; image and mask are PIL images",
        "```",
        "",
        "(`datasets` may answer from its cache of an earlier export at the same path: after exporting again, pass",
        "`download_mode='force_redownload'`.)",
        "",
        "## Splits (by object: an object's views are all in one split)",
        "",
        "| split | objects | images |",
        "| --- | --- | --- |",
        *[f"| {s} | {objects[s]} | {rows[s]} |" for s in splits],
        "",
        f"Seed {cfg.seed}; {'all rows' if cfg.all_rows else 'rows the filter kept'}.",
        "",
        "## Cameras",
        "",
        "`K` (3x3), `R` (3x3) and `t` (3), row-major, OpenCV convention: a point X in the object frame maps to",
        "the camera as `x_cam = R @ X + t` and to pixels as `K @ x_cam` (x right, y down, z forward; pixel",
        "(i, j) covers [i, i+1) x [j, j+1), so its centre is (i + 0.5, j + 0.5), as in COLMAP; the camera",
        "centre is `-R.T @ t`). Object frame: origin at the object's centre, y up, front along +z, the",
        "object's own left along +x. Azimuth 0 sees the front, 90 its left side.",
        f"Source: {'g3d sfm-init (`camera_source` per row: sfm, sfm_bin_corrected, sfm_labels_swapped, pose_bin, sfm_flagged); views marked unusable are left out' if from_sfm else 'the generator (`camera_source` = generator)'}.",
        "",
        "## Images per view",
        "",
        "| split | " + " | ".join(f"v{v}" for v in range(manifest["views"])) + " |",
        "| --- |" + " --- |" * manifest["views"],
        *[f"| {s} | " + " | ".join(str(per_view[s].get(v, 0)) for v in range(manifest["views"])) + " |" for s in splits],
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(yaml + body)
