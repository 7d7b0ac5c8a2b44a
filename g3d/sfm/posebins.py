"""Pose-bin cameras: one camera per view from its annotated azimuth bin, in the :mod:`g3d.cameras` convention.

Azimuth = the bin's centre, elevation = the bin's elevation (the annotator's elevation choice;
the preset's 12 bins are at 0), distance = the preset's, focal from the preset's field of view
(or a given guess), principal point at the image centre, roll 0, looking at the object's centre.
These cameras exist for every view that has a bin, whatever the keypoints say: they are the
fallback of every other route.
"""

from __future__ import annotations

import numpy as np

from g3d import cameras
from g3d.classes import ClassPreset


def focal_guess(preset: ClassPreset, width: int, focal_px: float | None = None) -> float:
    """Focal length in pixels: ``focal_px`` when given, else from the preset's horizontal field of view."""
    if focal_px is not None:
        return float(focal_px)
    return float(width / 2.0 / np.tan(np.deg2rad(preset.fov_deg) / 2.0))


def bin_width_deg(preset: ClassPreset) -> float:
    """Width of one azimuth bin of the preset (30 deg for 12 bins)."""
    return 360.0 / max(1, len(preset.pose_bins))


def pose_bin_cameras(
    azimuth_deg: np.ndarray,  # float64 [V] bin centres (NaN: no bin)
    elevation_deg: np.ndarray,  # float64 [V]
    distance: float,
) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``(R [V, 3, 3], t [V, 3])`` looking at the origin; NaN rows where a view has no bin."""
    az = np.asarray(azimuth_deg, np.float64)
    el = np.asarray(elevation_deg, np.float64)
    ok = np.isfinite(az) & np.isfinite(el)
    R = np.full((len(az), 3, 3), np.nan)
    t = np.full((len(az), 3), np.nan)
    if ok.any():
        el_c = np.clip(el[ok], -89.0, 89.0)  # look_at needs a defined image up direction
        R[ok], t[ok] = cameras.from_azimuth_elevation(az[ok], el_c, float(distance))
    return R, t
