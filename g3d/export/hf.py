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
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from g3d.export.rows import ExportConfig, ExportReport, commit, plan, shard_rows, staging

CITATION = """@inproceedings{zhang2021image,
  title={Image GANs meet Differentiable Rendering for Inverse Graphics and Interpretable 3D Neural Rendering},
  author={Zhang, Yuxuan and Chen, Wenzheng and Ling, Huan and Gao, Jun and Zhang, Yinan and Torralba, Antonio and Fidler, Sanja},
  booktitle={International Conference on Learning Representations},
  year={2021}
}"""


def export_hf(cfg: ExportConfig, progress: Callable[[str, int], Callable[[int], None]] | None = None) -> ExportReport:
    """Write the Hugging Face export of ``cfg.folder`` to ``cfg.out`` (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from g3d.datasets.schema import encode_png, huggingface_metadata, image_type

    p = plan(cfg)
    kp = bool(p.manifest.ground_truth)
    schema = pa.schema(
        [pa.field("sample_id", pa.int64()), pa.field("view_id", pa.int32()), pa.field("image", image_type()), pa.field("mask", image_type()),
         pa.field("K", pa.list_(pa.float64(), 9)), pa.field("R", pa.list_(pa.float64(), 9)), pa.field("t", pa.list_(pa.float64(), 3)),
         pa.field("camera_source", pa.string())]
        + ([pa.field("keypoints_2d", pa.list_(pa.float64())), pa.field("keypoints_visible", pa.list_(pa.bool_()))] if kp else [])
    ).with_metadata(huggingface_metadata(("image", "mask")))
    tmp = staging(cfg, p)
    (tmp / "data").mkdir()
    rows = {s: 0 for s in cfg.split}
    per_view: dict[str, dict[int, int]] = {s: {} for s in cfg.split}
    files = 0
    advance = progress("exporting (hf)", p.total) if progress else None
    try:
        for k in range(len(p.shards)):
            buckets: dict[str, list[dict]] = {s: [] for s in cfg.split}
            for r in shard_rows(p, k, cfg):
                name = f"{r['sample_id']:06d}_{r['view_id']:03d}"
                m = r["mask"]
                out = {"sample_id": r["sample_id"], "view_id": r["view_id"], "image": {"bytes": r["image"], "path": f"{name}.png"},
                       "mask": {"bytes": None if m is None else encode_png(m.astype(np.uint8) * 255), "path": f"{name}_mask.png"},
                       "K": r["K"], "R": r["R"], "t": r["t"], "camera_source": r["camera_source"]}
                if kp:
                    out["keypoints_2d"], out["keypoints_visible"] = r["keypoints_2d"], r["keypoints_visible"]
                buckets[r["split"]].append(out)
                per_view[r["split"]][r["view_id"]] = per_view[r["split"]].get(r["view_id"], 0) + 1
            for split, items in buckets.items():
                if items:
                    pq.write_table(pa.Table.from_pylist(items, schema=schema), tmp / "data" / f"{split}-{k:05d}.parquet")
                    rows[split] += len(items)
                    files += 1
            if advance:
                advance(p.kept[k])
        objects = p.objects(cfg.split)
        (tmp / "README.md").write_text(card(p.manifest, cfg, rows, objects, per_view, p.cameras is not None))
        commit(tmp, cfg, p, "hf", rows)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportReport(Path(cfg.out), "hf", rows, objects, files)


def made_with(manifest: dict, cfg: ExportConfig) -> list[str]:
    """The commands that made the dataset and this export, rebuilt from the manifest, and the filter's rules and keep rate."""
    gen = manifest.generator
    g = "builtin" if gen.get("format") == "builtin" else (gen.get("file") or gen.get("checkpoint") or gen.get("format"))
    synth = (f"g3d synth --class {manifest.class_name} --views {manifest.views} --samples {manifest.samples} --generator {g} "
             f"--seed {manifest.seed} --truncation {manifest.truncation_psi}"
             + (f" --resolution {manifest.width}" if gen.get("format") == "builtin" else "")
             + (f" --distractors {gen.get('distractors'):g}" if gen.get("distractors") else ""))
    lines = ["```", synth]
    filt = manifest.filter
    if filt:
        lines.append("g3d filter DIR")
    lines += [f"g3d export DIR --format hf --split {','.join(f'{k}={v:g}' for k, v in cfg.split.items())} --seed {cfg.seed}"
              + (" --all-rows" if cfg.all_rows else ""), "```"]
    if gen.get("sha256"):
        lines.append(f"Generator checkpoint: {g} (SHA-256 {gen.get('sha256')}).")
    if filt:
        rate = filt["kept"] / max(1, filt["rows"])
        lines.append(f"Filter: segmenter {json.dumps(filt.get('segmenter'), sort_keys=True)}; rules {json.dumps(filt.get('rules'), sort_keys=True)}; "
                     f"kept {filt['kept']} of {filt['rows']} images ({rate:.1%}).")
    else:
        lines.append("Filter: not run (every row kept).")
    return lines


def card(manifest: dict, cfg: ExportConfig, rows: dict[str, int], objects: dict[str, int], per_view: dict, from_sfm: bool) -> str:
    """The dataset card: YAML front matter that ``load_dataset`` reads, then what a user needs to know."""
    splits = [s for s in cfg.split if rows[s]]
    gen = manifest.generator
    yaml = ["---", "license: other", "tags:", "- multi-view", "- 3d", "- gan", "- g3d", "configs:", "- config_name: default", "  data_files:"]
    for s in splits:
        yaml += [f"  - split: {s}", f"    path: data/{s}-*.parquet"]
    yaml += ["dataset_info:", "  features:", "  - name: sample_id", "    dtype: int64", "  - name: view_id", "    dtype: int32",
             "  - name: image", "    dtype: image", "  - name: mask", "    dtype: image",
             "  - name: K", "    sequence: float64", "  - name: R", "    sequence: float64", "  - name: t", "    sequence: float64",
             "  - name: camera_source", "    dtype: string"]
    if manifest.ground_truth:
        yaml += ["  - name: keypoints_2d", "    sequence: float64", "  - name: keypoints_visible", "    sequence: bool"]
    yaml += ["---", ""]
    body = [
        f"# g3d multi-view dataset: {manifest.class_name}",
        "",
        f"{sum(rows.values())} images ({manifest.width}x{manifest.height} px) of {sum(objects.values())} objects seen from "
        f"{manifest.views} fixed viewpoints, made by g3d {manifest.g3d_version} with the `{gen.get('format')}` generator"
        + (f" ({gen.get('checkpoint')}, SHA-256 {gen.get('sha256')})" if gen.get("sha256") else "")
        + f", seed {manifest.seed}, truncation {manifest.truncation_psi}.",
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
        "| split | " + " | ".join(f"v{v}" for v in range(manifest.views)) + " |",
        "| --- |" + " --- |" * manifest.views,
        *[f"| {s} | " + " | ".join(str(per_view[s].get(v, 0)) for v in range(manifest.views)) + " |" for s in splits],
        "",
        "## How it was made",
        "",
        *made_with(manifest, cfg),
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(yaml + body)
