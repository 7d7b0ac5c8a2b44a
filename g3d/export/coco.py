"""``g3d export --format coco``: ``annotations/{split}.json`` and ``images/{split}/*.png``, as pycocotools reads them.

One image per exported row, one annotation per image (the object): ``segmentation`` as uncompressed
RLE (column-major run lengths, starting with background; ``iscrowd`` 0), ``bbox`` [x, y, w, h] and
``area`` from the mask, and where the rows carry keypoints, ``keypoints`` [x, y, v] per preset
keypoint (v 2 visible, 1 occluded but inside the image, 0 outside or unknown) and ``num_keypoints``.
The category is the class with COCO's own id (car 3, horse 19, bird 16), its keypoint names and a
skeleton of its left/right pairs. Each image also carries its camera (``g3d_K``, ``g3d_R``, ``g3d_t``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from g3d.export.rows import ExportConfig, ExportReport, commit, plan, shard_rows, staging

# COCO's category id (the 91-id list of instances_*.json) and supercategory of each class g3d has a preset for.
COCO_CATEGORIES = {"car": (3, "vehicle"), "horse": (19, "animal"), "bird": (16, "animal")}


def rle(mask: np.ndarray) -> dict:
    """bool [H, W] -> COCO uncompressed RLE {"counts": [...], "size": [H, W]} (column-major, background first)."""
    flat = np.asarray(mask, bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def export_coco(cfg: ExportConfig, progress: Callable[[str, int], Callable[[int], None]] | None = None) -> ExportReport:
    from g3d.classes import get_preset

    p = plan(cfg)
    V = int(p.manifest.views)
    preset = get_preset(p.manifest.class_name)
    idx = preset.keypoint_index
    coco_id, supercategory = COCO_CATEGORIES[preset.coco_category]
    cat = {"id": coco_id, "name": preset.coco_category, "supercategory": supercategory,
           "keypoints": list(preset.keypoints), "skeleton": [[idx[a] + 1, idx[b] + 1] for a, b in preset.keypoint_pairs]}
    docs = {s: {"info": {"description": f"g3d {preset.name} dataset, exported from {Path(cfg.folder).name}"}, "licenses": [],
                "images": [], "annotations": [], "categories": [cat]} for s in cfg.split}
    tmp = staging(cfg, p)
    rows = {s: 0 for s in cfg.split}
    advance = progress("exporting (coco)", p.total) if progress else None
    try:
        for s in cfg.split:
            (tmp / "images" / s).mkdir(parents=True)
        (tmp / "annotations").mkdir()
        for k in range(len(p.shards)):
            for r in shard_rows(p, k, cfg):
                s = r["split"]
                image_id = r["sample_id"] * V + r["view_id"] + 1  # unique; COCO ids start at 1 (COCOeval reads id 0 as "unmatched")
                name = f"{r['sample_id']:06d}_{r['view_id']:03d}.png"
                (tmp / "images" / s / name).write_bytes(r["image"])
                docs[s]["images"].append({"id": image_id, "file_name": f"{s}/{name}", "width": r["width"], "height": r["height"],
                                          "g3d_sample_id": r["sample_id"], "g3d_view_id": r["view_id"],
                                          "g3d_K": r["K"], "g3d_R": r["R"], "g3d_t": r["t"], "g3d_camera_source": r["camera_source"]})
                m = r["mask"]
                if m is not None and m.any():
                    ys, xs = np.nonzero(m)
                    ann = {"id": image_id, "image_id": image_id, "category_id": cat["id"], "iscrowd": 0, "segmentation": rle(m),
                           "area": float(m.sum()), "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]}
                    if r["keypoints_2d"] is not None:
                        xy = np.reshape(r["keypoints_2d"], (-1, 2))
                        vis = np.asarray(r["keypoints_visible"], bool)
                        inside = (xy[:, 0] >= 0) & (xy[:, 0] < r["width"]) & (xy[:, 1] >= 0) & (xy[:, 1] < r["height"])
                        v = np.where(inside, np.where(vis, 2, 1), 0)
                        kps = np.stack([np.where(v > 0, xy[:, 0], 0.0), np.where(v > 0, xy[:, 1], 0.0), v], 1)
                        ann["keypoints"] = [float(x) if i % 3 < 2 else int(x) for i, x in enumerate(kps.reshape(-1))]
                        ann["num_keypoints"] = int((v > 0).sum())
                    docs[s]["annotations"].append(ann)
                rows[s] += 1
            if advance:
                advance(p.kept[k])
        for s, doc in docs.items():
            (tmp / "annotations" / f"{s}.json").write_text(json.dumps(doc, sort_keys=True))
        objects = commit(tmp, cfg, p, "coco", rows)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportReport(Path(cfg.out), "coco", rows, objects, sum(rows.values()) + len(docs))
