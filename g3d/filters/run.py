"""``g3d filter``: segment every image, apply the rules, rewrite the shards, report.

Two passes over the shards. Pass 1 segments each shard and caches its measurements (chosen mask as
PNG, instance count, score, area, border pixels) in ``.g3d-filter/`` — written atomically, so an
interrupted run resumes without segmenting again. Pass 2 knows every view's median mask area, applies
the rules and rewrites each shard atomically with these columns added or replaced:

``keep``, ``reject_reason`` (first failed rule), ``filter_failed`` (all failed rules),
``filter_instances``, ``filter_score``, ``filter_area``, ``filter_mask`` (the chosen mask as PNG).
``mask`` / ``mask_area`` / ``bbox`` are filled from the chosen mask only where the row had no mask, or
everywhere with ``replace_masks``.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from g3d.classes import get_preset
from g3d.datasets import folder as dsf
from g3d.datasets import io as dsio
from g3d.datasets.manifest import read_manifest, write_manifest
from g3d.datasets.schema import decode_png, encode_png, huggingface_metadata, image_struct, image_type, mask_stats
from g3d.datasets.shards import read_shard
from g3d.errors import DatasetError, UsageError
from g3d.filters.rules import REASONS, FilterConfig, Measurement, measure, verdict
from g3d.filters.segmenters import COCO80, make_segmenter

CACHE = ".g3d-filter"
REPORT = "filter_report.json"
FILTER_COLUMNS = ("filter_failed", "filter_instances", "filter_score", "filter_area", "filter_mask")


@dataclass
class FilterRun:
    """Arguments of one ``g3d filter`` run."""

    folder: Path
    segmenter: str | None = None  # None: ground-truth for generators with truth, else torchvision
    weights: str | None = None  # torchvision: "coco" | "random" | PATH; detectron2: PATH
    config_file: str | None = None  # detectron2 config
    device: str = "cpu"
    batch_size: int = 8
    accept: tuple[str, ...] = ()  # extra COCO classes that count as the object (car: "truck")
    replace_masks: bool = False  # overwrite existing masks with the segmenter's
    rules: FilterConfig = field(default_factory=FilterConfig)
    examples: int = 8  # rejected examples per reason in the previews


@dataclass
class FilterReport:
    folder: Path
    segmenter: str
    rows: int
    kept: int
    first_reason: dict[str, int]  # images per reject_reason
    failed_rule: dict[str, int]  # images failing each rule (an image can fail several)
    per_view: list[dict[str, Any]]  # view_id, rows, kept, kept_fraction, median_area, reasons
    corrupt_rows: list[str]  # "part-00000.parquet sample 3 view 5"
    previews: list[Path]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["folder"] = str(self.folder)
        d["previews"] = [str(p) for p in self.previews]
        return d


def _decode(row: dict[str, Any]) -> np.ndarray | None:
    try:
        return decode_png(row["image"]["bytes"])
    except (ValueError, TypeError, KeyError):
        return None


def _cache_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("corrupt", pa.bool_()),
            ("instances", pa.int32()),
            ("score", pa.float32()),
            ("area", pa.float32()),
            ("border_pixels", pa.int32()),
            ("mask_png", pa.binary()),
        ]
    )


def _segment_shard(path: Path, seg, cfg: FilterConfig, batch: int, advance, corrupt: list[str]):
    """Pass 1 for one shard: a pyarrow table of measurements, one row per image row."""
    import pyarrow as pa

    table = read_shard(path)
    rows = table.to_pylist()
    H = rows[0]["height"] if rows else 0
    W = rows[0]["width"] if rows else 0
    out: list[dict[str, Any]] = []
    for lo in range(0, len(rows), batch):
        chunk = rows[lo : lo + batch]
        decoded = [_decode(r) for r in chunk]
        ok = [i for i, d in enumerate(decoded) if d is not None]
        results: dict[int, Measurement] = {}
        if ok:
            insts = seg.segment(np.stack([decoded[i] for i in ok]), [chunk[i] for i in ok])
            for i, inst in zip(ok, insts):
                results[i] = measure(inst, (H, W), cfg)
        for i, r in enumerate(chunk):
            m = results.get(i)
            if m is None:
                corrupt.append(f"{path.name} sample {r['sample_id']} view {r['view_id']}")
                m = Measurement(True, 0, None, 0.0, 0.0, 0)
            out.append(
                {
                    "corrupt": m.corrupt,
                    "instances": m.instances,
                    "score": m.score,
                    "area": m.area,
                    "border_pixels": m.border_pixels,
                    "mask_png": encode_png(m.mask.astype(np.uint8) * 255) if m.mask is not None else None,
                }
            )
        if advance:
            advance(len(chunk))
    return pa.Table.from_pylist(out, schema=_cache_schema())


def _with_filter_columns(table, meas, verdicts, replace_masks: bool):
    """The shard table with the filter's columns added or replaced."""
    import pyarrow as pa

    n = table.num_rows
    keep = [v[1] is None for v in verdicts]
    reason = [v[1] for v in verdicts]
    failed = [v[0] for v in verdicts]
    mrows = meas.to_pylist()
    stems = [f"{s:07d}_{v:03d}_filter_mask.png" for s, v in zip(table.column("sample_id").to_pylist(), table.column("view_id").to_pylist())]
    fmask = [image_struct(m["mask_png"], stem) if m["mask_png"] is not None else None for m, stem in zip(mrows, stems)]
    cols = {
        "keep": pa.array(keep, pa.bool_()),
        "reject_reason": pa.array(reason, pa.string()),
        "filter_failed": pa.array(failed, pa.list_(pa.string())),
        "filter_instances": meas.column("instances"),
        "filter_score": meas.column("score"),
        "filter_area": meas.column("area"),
        "filter_mask": pa.array(fmask, image_type()),
    }
    old_mask = table.column("mask").to_pylist()
    new_mask, new_area, new_bbox = [], [], []
    areas = table.column("mask_area").to_pylist()
    boxes = table.column("bbox").to_pylist()
    for i in range(n):
        if (old_mask[i] is None or replace_masks) and mrows[i]["mask_png"] is not None:
            new_mask.append(image_struct(mrows[i]["mask_png"], stems[i].replace("_filter", "")))
            a, b = mask_stats(decode_png(mrows[i]["mask_png"], grey=True) > 127)
            new_area.append(a)
            new_bbox.append(b)
        else:
            new_mask.append(old_mask[i])
            new_area.append(areas[i])
            new_bbox.append(boxes[i])
    cols["mask"] = pa.array(new_mask, image_type())
    cols["mask_area"] = pa.array(new_area, pa.float32())
    cols["bbox"] = pa.array(new_bbox, pa.list_(pa.int32(), 4))
    for name, arr in cols.items():
        idx = table.schema.get_field_index(name)
        table = table.set_column(idx, name, arr) if idx >= 0 else table.append_column(name, arr)
    meta = dict(table.schema.metadata or {})
    meta.update(huggingface_metadata(("image", "mask", "filter_mask")))
    return table.replace_schema_metadata(meta)


def _overlay(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    out = image.astype(np.float32)
    if mask is not None:
        out[mask] = out[mask] * 0.5 + np.array([255, 40, 40], np.float32) * 0.5
    return out.clip(0, 255).astype(np.uint8)


def _write_previews(folder: Path, examples: dict[str, list[tuple[np.ndarray, np.ndarray | None, str]]], thumb: int = 128) -> list[Path]:
    """One contact sheet per reject reason: rejected images with the chosen mask overlaid in red."""
    import cv2

    from g3d.datasets.previews import grid

    paths = []
    for reason, items in examples.items():
        if not items:
            continue
        cells = []
        for img, mask, _ in items:
            h, w = img.shape[:2]
            th = max(1, round(thumb * h / w))
            cells.append(cv2.resize(_overlay(img, mask), (thumb, th), interpolation=cv2.INTER_AREA))
        sheet = grid(np.stack(cells)[None], [label for _, _, label in items])
        p = folder / dsf.PREVIEWS / f"filter_{reason}.png"
        p.parent.mkdir(exist_ok=True)
        dsio.write_bytes(p, cv2.imencode(".png", sheet[..., ::-1])[1].tobytes())
        paths.append(p)
    return paths


def _cached(path: Path, rows: int, log: Callable[[str], None]) -> bool:
    """Whether the cache entry ``path`` holds a whole shard's measurements; a damaged one is dropped (and said so)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return False
    try:
        if pq.read_metadata(path).num_rows == rows:
            return True
    except Exception:  # any pyarrow error: the entry is unreadable
        pass
    log(f"{path} is damaged: dropped, its shard is segmented again")
    path.unlink()
    return False


def check_options(cfg: FilterRun) -> None:
    """The ranges of the options that need no dataset (g3d filter and g3d pipeline, before any stage runs)."""
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if not 0.0 <= cfg.rules.min_area < 1.0:
        raise UsageError(f"--min-area {cfg.rules.min_area} is a fraction of the image: give 0 to 1 (the paper's 0.1 = 10%)")
    if not 0.0 <= cfg.rules.min_score <= 1.0:
        raise UsageError(f"--min-score {cfg.rules.min_score} is a segmenter score: give 0 to 1 (default 0.5)")
    from g3d.devices import check_device

    check_device(cfg.device)


def run_filter(cfg: FilterRun, progress: Callable[[str, int], Callable[[int], None]] | None = None,
               log: Callable[[str], None] | None = None) -> FilterReport:
    """Filter the dataset folder ``cfg.folder`` in place. See the module docstring."""
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    log = log or (lambda m: None)
    folder = Path(cfg.folder)
    manifest = read_manifest(folder)
    preset = get_preset(manifest.class_name)
    for extra in cfg.accept:
        if extra not in COCO80:
            raise UsageError(f"--accept {extra!r} is not a COCO class the segmenters know: use names like {', '.join(preset.extra_coco_categories or ('truck',))}")
    check_options(cfg)
    rules = replace(cfg.rules, labels=(preset.coco_category, *cfg.accept))  # the caller's config stays as given
    name = cfg.segmenter or ("ground-truth" if manifest.ground_truth else "torchvision")
    if name == "ground-truth" and not manifest.ground_truth:
        raise UsageError(f"{folder} was made by a generator without ground truth: use --segmenter torchvision or detectron2")
    seg = make_segmenter(name, label=preset.coco_category, weights=cfg.weights, config_file=cfg.config_file,
                         device=cfg.device, min_score=min(0.05, rules.min_score))
    plan = manifest.shard_plan()
    done = dsf.completed_shards(folder, plan, manifest.run_id)
    missing = [k for k, ok in done.items() if not ok]
    if missing:
        raise UsageError(f"{folder} is incomplete ({len(missing)} of {plan.num_shards} shards missing): finish it with the same g3d synth command first")

    # Pass 1: segment (or reuse the cache of an interrupted run with the same segmenter).
    cache = folder / CACHE
    key = {"segmenter": seg.describe(), "labels": list(rules.labels), "min_score": rules.min_score,
           "min_instance_area": rules.min_instance_area, "g3d_schema": manifest.schema_version}
    key_path = cache / "key.json"
    try:
        same = key_path.is_file() and dsio.read_json(key_path, "") == key
    except DatasetError:
        log(f"{key_path} is damaged: the segmentation cache is dropped and recomputed")
        same = False
    if cache.is_dir() and not same:
        shutil.rmtree(cache)
    cache.mkdir(exist_ok=True)
    dsio.write_json(key_path, key)
    dsio.remove_stale_temporaries(cache)
    corrupt: list[str] = []
    todo = [k for k in range(plan.num_shards) if not _cached(cache / dsf.shard_name(k), plan.rows(k), log)]
    advance = progress(f"segmenting ({name})", sum(plan.rows(k) for k in todo)) if progress else None
    for k in todo:
        meas = _segment_shard(folder / dsf.IMAGES / dsf.shard_name(k), seg, rules, cfg.batch_size, advance, corrupt)
        dsio.write_table(cache / dsf.shard_name(k), meas)

    # View medians of the mask area over images with an instance.
    by_view: dict[int, list[float]] = defaultdict(list)
    for k in range(plan.num_shards):
        ids = read_shard(folder / dsf.IMAGES / dsf.shard_name(k), ["view_id"]).column("view_id").to_pylist()
        m = pq.read_table(cache / dsf.shard_name(k), columns=["instances", "area"])
        for v, n, a in zip(ids, m.column("instances").to_pylist(), m.column("area").to_pylist()):
            if n > 0:
                by_view[v].append(a)
    medians = {v: float(np.median(a)) for v, a in by_view.items()}

    # Pass 2: verdicts, rewrite shards, gather the report.
    first, failed_any = Counter(), Counter()
    view_rows, view_kept, view_reasons = Counter(), Counter(), defaultdict(Counter)
    examples: dict[str, list] = {r: [] for r in REASONS}
    corrupt = []
    advance = progress("applying rules", plan.samples * plan.views) if progress else None
    for k in range(plan.num_shards):
        path = folder / dsf.IMAGES / dsf.shard_name(k)
        table = read_shard(path)
        meas = pq.read_table(cache / dsf.shard_name(k))
        mrows = meas.to_pylist()
        views = table.column("view_id").to_pylist()
        samples = table.column("sample_id").to_pylist()
        verdicts = []
        for i, (v, m) in enumerate(zip(views, mrows)):
            mm = Measurement(m["corrupt"], m["instances"], None, m["score"], m["area"], m["border_pixels"])
            fails, reason = verdict(mm, medians.get(v), rules)
            verdicts.append((fails, reason))
            view_rows[v] += 1
            failed_any.update(fails)
            if reason is None:
                view_kept[v] += 1
            else:
                first[reason] += 1
                view_reasons[v][reason] += 1
                if m["corrupt"]:
                    corrupt.append(f"{path.name} sample {samples[i]} view {v}")
                if len(examples[reason]) < cfg.examples and not m["corrupt"]:
                    img = decode_png(table.column("image")[i].as_py()["bytes"])
                    mask = decode_png(m["mask_png"], grey=True) > 127 if m["mask_png"] is not None else None
                    examples[reason].append((img, mask, f"s{samples[i]} v{v}"))
        new = _with_filter_columns(table, meas, verdicts, cfg.replace_masks)
        dsio.write_table(path, new, compression="none", row_group_size=64)
        dsio.record_checksum(path)
        if advance:
            advance(table.num_rows)
    for c in corrupt:
        log(f"{c}: image PNG does not decode; marked rejected (corrupt_image)")
    previews = _write_previews(folder, examples)
    per_view = [
        {
            "view_id": v,
            "rows": view_rows[v],
            "kept": view_kept[v],
            "kept_fraction": view_kept[v] / view_rows[v],
            "median_area": medians.get(v),
            "reasons": dict(view_reasons[v]),
        }
        for v in sorted(view_rows)
    ]
    report = FilterReport(
        folder=folder,
        segmenter=name,
        rows=sum(view_rows.values()),
        kept=sum(view_kept.values()),
        first_reason=dict(first),
        failed_rule=dict(failed_any),
        per_view=per_view,
        corrupt_rows=corrupt,
        previews=previews,
        seconds=time.perf_counter() - t0,
    )
    dsio.write_json(folder / REPORT, {"config": {**rules.as_dict(), "segmenter": seg.describe()}, **report.as_dict()})
    write_manifest(folder, manifest.with_filter({"segmenter": seg.describe(), "rules": rules.as_dict(), "kept": report.kept, "rows": report.rows}))
    return report


def truly_bad(rows, rules: FilterConfig | None = None):
    """Which rows the built-in generator knows are bad (needs ``g3d synth --distractors``): a pandas bool Series.

    Bad = not exactly one visible instance, a true mask under ``min_area``, the object cut by the frame,
    or a shrunken object: what the rules are meant to catch, from ``gt_*`` columns the filter never reads.
    """
    rules = rules or FilterConfig()
    return (rows.gt_instances != 1) | (rows.gt_area < rules.min_area) | (rows.gt_cut == 1) | (rows.gt_distractor == 2)


def score_against_truth(folder: Path, rules: FilterConfig | None = None) -> dict[str, float]:
    """Precision and recall of the folder's ``keep`` column against :func:`truly_bad`."""
    import pandas as pd
    import pyarrow.parquet as pq

    rows = pd.concat([pq.read_table(p, columns=["keep", "gt_instances", "gt_area", "gt_cut", "gt_distractor"]).to_pandas()
                      for p in dsf.shard_paths(folder)], ignore_index=True)
    bad, rejected = truly_bad(rows, rules), ~rows.keep
    tp = int((bad & rejected).sum())
    return {"images": len(rows), "bad": int(bad.sum()), "rejected": int(rejected.sum()),
            "precision": tp / max(1, int(rejected.sum())), "recall": tp / max(1, int(bad.sum()))}
