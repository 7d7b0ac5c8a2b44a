"""Bring a reconstruction into the object frame of :mod:`g3d.cameras`, and compare camera sets.

A reconstruction comes out in an arbitrary frame (COLMAP's, or one pinned to two guessed bin
cameras). The object frame is recovered from the keypoints' meaning:

- lateral axis (+x, the object's left): the mean of ``left - right`` over the preset's mirror
  pairs;
- forward axis (+z, the object's front): the mean of ``front - back`` over names that exist in both
  a front and a back version of one part (car: the wheels; horse: the hooves), or the class's own
  rear-to-front pair (bird: tail to beak); made orthogonal to the lateral axis;
- up (+y): forward x lateral;
- origin: the centre of the keypoints' bounding box in those axes;
- scale: the median camera distance set to the preset's pose-bin distance (``"distance"``, so
  azimuth, elevation and distance mean what the pose bins mean; with per-view pose-bin distances,
  the median ratio of those to the reconstruction's, so a view's keypoint camera and another view's
  pose-bin camera share one scale), or the keypoints' longest
  bounding-box side set to 1 (``"unit_box"``), or a given object length along +z (a float).

Using all front versus all rear points instead of matching parts tilts the frame (the front lights
sit lower than the rear trunk corners): the part-matched pairs keep it level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from g3d import cameras
from g3d.classes import ClassPreset

# Classes whose front/back cannot be read from "front"/"back" twin names: (rear names, front names).
REAR_FRONT = {
    "bird": (("tail",), ("beak",)),
}


class AlignmentError(ValueError):
    """The keypoints do not define the object frame: names missing, or (``degenerate``) a flat or flipped model."""

    def __init__(self, message: str, degenerate: bool = False):
        super().__init__(message)
        self.degenerate = degenerate


@dataclass
class Similarity:
    """``p_new = scale * rotation @ (p_old - origin)``, and the matching camera transform."""

    rotation: np.ndarray  # float64 [3, 3], rows are the new axes in old coordinates
    origin: np.ndarray  # float64 [3], old coordinates
    scale: float
    method: str = ""  # how it was found, for the report

    def points(self, p: np.ndarray) -> np.ndarray:
        """Old points [..., 3] -> new points [..., 3]."""
        return self.scale * np.einsum("ij,...j->...i", self.rotation, np.asarray(p, np.float64) - self.origin)

    def cameras(self, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World-to-camera ``(R [..., 3, 3], t [..., 3])`` of the old frame -> of the new frame."""
        R = np.asarray(R, np.float64)
        t = np.asarray(t, np.float64)
        R_new = R @ self.rotation.T
        t_new = self.scale * (np.einsum("...ij,j->...i", R, self.origin) + t)
        return R_new, t_new


def _mean_difference(points: np.ndarray, index: dict[str, int], pairs: list[tuple[str, str]]) -> tuple[np.ndarray | None, int]:
    """Mean of ``a - b`` over the name pairs of every object; ``points`` float64 [S, P, 3]."""
    diffs = []
    for obj in points:
        for a, b in pairs:
            if a in index and b in index:
                pa, pb = obj[index[a]], obj[index[b]]
                if np.isfinite(pa).all() and np.isfinite(pb).all():
                    diffs.append(pa - pb)
    if not diffs:
        return None, 0
    return np.mean(diffs, axis=0), len(diffs)


def forward_pairs(preset: ClassPreset) -> list[tuple[str, str]]:
    """(front name, back name) twins of one part, e.g. ("left_front_wheel", "left_back_wheel")."""
    names = set(preset.keypoints)
    out = []
    for n in preset.keypoints:
        if "front" in n:
            for rear in ("back", "rear"):
                twin = n.replace("front", rear)
                if twin in names:
                    out.append((n, twin))
    if not out and preset.name in REAR_FRONT:
        rears, fronts = REAR_FRONT[preset.name]
        out = [(f, r) for f in fronts for r in rears if f in names and r in names]
    return out


def object_axes(points: np.ndarray, preset: ClassPreset) -> tuple[np.ndarray, str]:
    """Rotation whose rows are the object's x (left), y (up), z (front) axes in the points' frame.

    ``points`` float64 [P, 3] in the preset's keypoint order (NaN rows: not triangulated), or
    [S * P, 3]: S objects' keypoints one after the other (sfm-init's joint solve), whose pairs all count.
    Raises :class:`AlignmentError` when the names needed are missing or degenerate.
    """
    index = preset.keypoint_index
    P = len(preset.keypoints)
    if len(points) % P:
        raise ValueError(f"{len(points)} points are not whole sets of the {preset.name} preset's {P} keypoints")
    points = np.asarray(points, np.float64).reshape(-1, P, 3)
    lateral, n_lat = _mean_difference(points, index, list(preset.keypoint_pairs))
    if lateral is None:
        raise AlignmentError("no left/right keypoint pair was triangulated")
    if np.linalg.norm(lateral) < 1e-9:
        raise AlignmentError("the left and right keypoints coincide", degenerate=True)
    fwd_pairs = forward_pairs(preset)
    forward, n_fwd = _mean_difference(points, index, fwd_pairs)
    if forward is None:
        raise AlignmentError(f"no front/back keypoint pair was triangulated (needs {fwd_pairs[:2] or 'front/back names'})")
    x = lateral / np.linalg.norm(lateral)
    z = forward - (forward @ x) * x
    if np.linalg.norm(z) < 0.2 * np.linalg.norm(forward):
        raise AlignmentError("the front-to-back direction is parallel to the left-to-right one", degenerate=True)
    z = z / np.linalg.norm(z)
    y = np.cross(z, x)
    return np.stack([x, y, z]), f"keypoint names (lateral from {n_lat} left/right pairs, forward from {n_fwd} front/back pairs)"


def to_object_frame(
    points: np.ndarray,  # float64 [P, 3] reconstruction's keypoints (NaN rows allowed), or [S * P, 3] for S objects
    R: np.ndarray,  # float64 [V, 3, 3] reconstruction's cameras (NaN rows: unregistered)
    t: np.ndarray,  # float64 [V, 3]
    preset: ClassPreset,
    scale: str | float = "distance",  # "distance", "unit_box" or an object length along +z
    distance=None,  # "distance": the target median camera distance (float; None = preset's), or float64 [V]
    # per-view target distances (NaN: none; no registered view with one: the preset's median)
) -> Similarity:
    """The similarity that puts a reconstruction into the object frame (see the module docstring)."""
    rot, how = object_axes(points, preset)
    ok = np.isfinite(points).all(axis=1)
    local = (points[ok] - 0.0) @ rot.T  # rotated, not yet centred
    lo, hi = local.min(axis=0), local.max(axis=0)
    origin = rot.T @ ((lo + hi) / 2.0)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        extent = hi[2] - lo[2]
        s = float(scale) / extent if extent > 1e-12 else 1.0
    elif scale == "unit_box":
        extent = float((hi - lo).max())
        s = 1.0 / extent if extent > 1e-12 else 1.0
    elif scale == "distance":
        reg = np.isfinite(R).all(axis=(1, 2)) & np.isfinite(t).all(axis=1)
        d_all = np.full(len(reg), np.nan)
        d_all[reg] = np.linalg.norm(cameras.center_of(R[reg], t[reg]) - origin, axis=1)
        per_view = distance is not None and np.ndim(distance) == 1
        both = reg & np.isfinite(distance) & (d_all > 1e-12) if per_view else np.zeros(len(reg), bool)
        if both.any():  # the reconstruction's distances onto the per-view ones
            s = float(np.median(np.asarray(distance, np.float64)[both] / d_all[both]))
        else:
            target = float(distance) if distance is not None and not per_view else preset.distance
            med = float(np.median(d_all[reg])) if reg.any() else 0.0
            s = target / med if med > 1e-12 else 1.0
    else:
        raise ValueError(f"scale must be 'distance', 'unit_box' or a length, got {scale!r}")
    return Similarity(rotation=rot, origin=origin, scale=s, method=how)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity mapping points ``src`` [N, 3] onto ``dst`` [N, 3] (N >= 3).

    Returned as a :class:`Similarity` whose ``points(src) ~ dst``; its rotation is the proper
    rotation of Umeyama (1991), its origin chosen so the translation fits.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt)) or 1.0
    rot = U @ D @ Vt
    var = (a**2).sum() / len(src)
    s = float((S * np.diag(D)).sum() / var) if with_scale and var > 1e-18 else 1.0
    # p_new = s rot p + (mu_d - s rot mu_s) = s rot (p - o)  with  o = mu_s - rot^T mu_d / s
    origin = mu_s - rot.T @ mu_d / s
    return Similarity(rotation=rot, origin=origin, scale=s, method="similarity fit")


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle in degrees of ``Ra Rb^T`` for rotations [..., 3, 3]."""
    d = np.einsum("...ij,...kj->...ik", Ra, Rb)
    c = (np.trace(d, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0)))


def angle_difference_deg(a, b) -> np.ndarray:
    """Signed smallest difference ``a - b`` of angles in degrees, in [-180, 180)."""
    return (np.asarray(a, np.float64) - np.asarray(b, np.float64) + 180.0) % 360.0 - 180.0


@dataclass
class CameraErrors:
    """Errors of estimated cameras against true ones after a similarity alignment on camera centres."""

    rotation_deg: np.ndarray  # float64 [N] per compared view
    centre: np.ndarray  # float64 [N] centre distance, in the true frame's units
    focal_rel: float  # |f - f_true| / f_true
    views: np.ndarray  # int [N] indices compared

    @property
    def median_rotation_deg(self) -> float:
        return float(np.median(self.rotation_deg)) if len(self.rotation_deg) else float("nan")

    @property
    def worst_rotation_deg(self) -> float:
        return float(np.max(self.rotation_deg)) if len(self.rotation_deg) else float("nan")


def compare_cameras(R: np.ndarray, t: np.ndarray, focal: float, R_true: np.ndarray, t_true: np.ndarray, focal_true: float) -> CameraErrors:
    """Align estimated cameras (NaN rows skipped) to the truth by a similarity on their centres, then compare."""
    ok = np.isfinite(R).all(axis=(1, 2)) & np.isfinite(t).all(axis=1)
    idx = np.flatnonzero(ok)
    if len(idx) < 3:
        return CameraErrors(np.full(len(idx), np.nan), np.full(len(idx), np.nan), float("nan"), idx)
    c_est = cameras.center_of(R[idx], t[idx])
    c_true = cameras.center_of(R_true[idx], t_true[idx])
    sim = umeyama(c_est, c_true)
    R_al, _ = sim.cameras(R[idx], t[idx])
    rot = rotation_angle_deg(R_al, R_true[idx])
    cen = np.linalg.norm(sim.points(c_est) - c_true, axis=1)
    return CameraErrors(rot, cen, abs(focal / focal_true - 1.0), idx)
