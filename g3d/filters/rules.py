"""Mask-quality rules: each has a name and a threshold; an image's verdict names the first rule it fails.

Order (the reject_reason is the first that fails):

==================== ===========================================================================
reason               fails when
==================== ===========================================================================
corrupt_image        the stored PNG does not decode
no_instance          no instance of the class scores >= ``min_score`` (paper rule 1)
multiple_instances   more than one does (paper rule 1)
small_mask           the chosen mask covers < ``min_area`` of the image (paper rule 2: 10%)
cut_by_border        the chosen mask has >= ``border_px`` pixels on the image's outermost rows/columns
low_score            the chosen instance's score < ``min_mask_score``
area_outlier         the mask area differs from the median of its view column by more than
                     a factor ``area_ratio`` (a wrong object size for that viewpoint)
==================== ===========================================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from g3d.filters.segmenters import Instance

REASONS = ("corrupt_image", "no_instance", "multiple_instances", "small_mask", "cut_by_border", "low_score", "area_outlier")


@dataclass
class FilterConfig:
    """Thresholds of the rules (see the module docstring) and which classes count."""

    labels: tuple[str, ...] = ("car",)  # COCO class names that count as the object
    min_score: float = 0.5  # an instance counts when its score is at least this
    min_instance_area: float = 0.005  # instances smaller than this fraction of the image are ignored
    min_area: float = 0.10  # paper: masks under 10% of the image are dropped
    border_px: int = 3  # mask pixels on the outermost image rows/columns that mean "cut by the border"
    min_mask_score: float = 0.7  # the chosen instance's score must reach this
    area_ratio: float = 2.5  # area_outlier: allowed factor between an area and its view's median
    rules: tuple[str, ...] = field(default_factory=lambda: REASONS)  # which rules apply

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["rules"] = list(self.rules)
        return d


@dataclass
class Measurement:
    """What the rules need from one image's segmentation."""

    corrupt: bool
    instances: int  # counted instances of the class
    mask: np.ndarray | None  # bool [H, W]: the chosen (highest-scoring) instance
    score: float  # its score (0 when none)
    area: float  # its area fraction (0 when none)
    border_pixels: int  # its pixels on the image's outermost rows/columns


def border_pixels(mask: np.ndarray) -> int:
    """Pixels of a bool mask [H, W] on the image's outermost rows and columns (each counted once)."""
    m = np.asarray(mask, bool)
    return int(m[0].sum() + m[-1].sum() + m[1:-1, 0].sum() + m[1:-1, -1].sum())


def measure(instances: Sequence[Instance], shape: tuple[int, int], cfg: FilterConfig) -> Measurement:
    """Count the class's instances and pick the best one. ``shape`` is (H, W)."""
    H, W = shape
    keep = [i for i in instances if i.label in cfg.labels and i.score >= cfg.min_score and i.mask.mean() >= cfg.min_instance_area]
    if not keep:
        return Measurement(False, 0, None, 0.0, 0.0, 0)
    best = max(keep, key=lambda i: (i.score, i.mask.sum()))
    m = best.mask
    return Measurement(False, len(keep), m, float(best.score), float(m.mean()), border_pixels(m))


def verdict(m: Measurement, view_median_area: float | None, cfg: FilterConfig) -> tuple[list[str], str | None]:
    """All rules ``m`` fails, in order, and the first of them (None: keep)."""
    failed = []
    on = set(cfg.rules)
    if m.corrupt:
        failed.append("corrupt_image")
    else:
        if "no_instance" in on and m.instances == 0:
            failed.append("no_instance")
        if "multiple_instances" in on and m.instances > 1:
            failed.append("multiple_instances")
        if m.instances > 0:
            if "small_mask" in on and m.area < cfg.min_area:
                failed.append("small_mask")
            if "cut_by_border" in on and m.border_pixels >= cfg.border_px:
                failed.append("cut_by_border")
            if "low_score" in on and m.score < cfg.min_mask_score:
                failed.append("low_score")
            if "area_outlier" in on and view_median_area and view_median_area > 0:
                if abs(np.log(max(m.area, 1e-9) / view_median_area)) > np.log(cfg.area_ratio):
                    failed.append("area_outlier")
    return failed, (failed[0] if failed else None)
