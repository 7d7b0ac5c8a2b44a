"""Checks that catch what a low reprojection error hides.

A refined camera is kept only when it passes every check; otherwise its view falls back to the
pose-bin camera (``source = "sfm_flagged"``) and the report names the check and the likely cause.

===============  ==============================================================================
flag             fires when, and why it matters
===============  ==============================================================================
few_keypoints    fewer than 5 keypoints fit the model: with 2-4 points a pose fits any noise
collinear        the view's keypoints lie on one line: the pose about that line is undetermined
focal            the shared focal is outside 1/3 - 3x the guess: a depth-reversed (flipped) model
model            more than half of the well-observed views fail a consistency check: the model is
                 wrong as a whole (flipped, mirrored labels), no view of it is kept
bin_azimuth      the refined azimuth is more than a bin width from the annotated bin: a wrong bin
                 (front/back confusion) or left/right labels swapped in that view
bin_elevation    the same for elevation (when every bin has one elevation, the annotator chose
                 none: only a difference over 45 deg is flagged)
unregistered     the route could not place the view (too few keypoints shared with the others)
swapped          with its left/right labels exchanged the view fits the others better (more keypoints
                 within --max-reproj-px, or half the error): the annotator mirrored the labels
outliers         more than a quarter (and 2+) of the view's keypoints do not fit the others
reprojection     the view's mean reprojection error stays above --max-reproj-px: mislabelled points
===============  ==============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from g3d import cameras
from g3d.classes import ClassPreset
from g3d.sfm.align import angle_difference_deg

MIN_KEYPOINTS = 5


@dataclass(frozen=True)
class Flag:
    """One failed check of one view."""

    code: str  # few_keypoints | collinear | focal | model | frame | bin_azimuth | bin_elevation | unregistered | swapped | outliers | reprojection
    message: str  # what was measured and the likely cause, one line

    def __str__(self) -> str:
        return self.message


def collinear(xy: np.ndarray, tolerance: float = 0.03) -> bool:
    """True when the finite points of ``xy`` [P, 2] (3 or more) lie close to one line.

    Closeness: the smaller spread (singular value) is under ``tolerance`` times the larger one.
    """
    pts = xy[np.isfinite(xy[:, 0])]
    if len(pts) < 3:
        return False
    s = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False)
    return bool(s[0] <= 1e-9 or s[1] < tolerance * s[0])


def swap_left_right(xy: np.ndarray, preset: ClassPreset) -> np.ndarray:
    """One view's keypoints [P, 2] (or [S * P, 2], S objects side by side) with every left/right label pair exchanged."""
    perm = np.asarray(preset.flip_permutation())
    P = len(perm)
    return xy[np.concatenate([perm + k * P for k in range(len(xy) // P)])]


def focal_flag(focal: float, guess: float, low: float = 1.0 / 3.0, high: float = 3.0) -> Flag | None:
    """The model-wide focal check."""
    if not np.isfinite(focal) or not low * guess <= focal <= high * guess:
        return Flag(
            "focal",
            f"focal {focal:.0f} px is outside {low * guess:.0f}-{high * guess:.0f} px (1/3-3x the guess {guess:.0f}): "
            "the model is probably flipped in depth, or --focal-guess is wrong",
        )
    return None


def view_flags(
    v: int,  # view index
    view_id: int,
    xy: np.ndarray,  # float64 [P, 2] the view's keypoints
    used: np.ndarray,  # bool [P] keypoints the model fits
    registered: bool,
    reproj_px: float,
    R: np.ndarray,  # float64 [3, 3] refined camera, object frame
    t: np.ndarray,  # float64 [3]
    bin_az: float,  # NaN: no bin
    bin_el: float,
    bin_tol_deg: float,  # allowed azimuth difference (one bin width)
    max_reproj_px: float,
    min_keypoints: int = MIN_KEYPOINTS,
    swap_test=None,  # callable(v) -> (azimuth deg, errors [k]) of the camera re-estimated with left/right exchanged, or None
    errors: np.ndarray | None = None,  # float64 [k] errors of the view's keypoints that have a 3D point, with the refined camera
    el_tol_deg: float | None = None,  # allowed elevation difference; None = bin_tol_deg
) -> list[Flag]:
    """Every failed check of one view (empty: the refined camera is kept)."""
    flags: list[Flag] = []
    n_annot = int(np.isfinite(xy[:, 0]).sum())
    if not registered:
        if n_annot == 0:
            cause = "no keypoints clicked"
        elif n_annot < 3:
            cause = f"only {n_annot} keypoint{'s' if n_annot > 1 else ''}; a view needs 3 or more, better 5"
        else:
            cause = f"its {n_annot} keypoints share too few names with the views already placed, or contradict them"
        flags.append(Flag("unregistered", f"view {view_id}: not registered ({cause})"))
        return flags
    n_used = int(used.sum())
    if n_used < min_keypoints:
        extra = f" ({n_annot - n_used} more ignored as outliers)" if n_annot > n_used else ""
        flags.append(Flag("few_keypoints", f"view {view_id}: only {n_used} keypoints fit{extra}, fewer than {min_keypoints}: the pose rests on too few points; click more keypoints in this view"))
    if collinear(np.where(used[:, None], xy, np.nan)):
        flags.append(Flag("collinear", f"view {view_id}: its keypoints lie on one line, the pose is undetermined; click keypoints off that line"))
    n_out = n_annot - n_used
    swapped = swap_test(v) if swap_test is not None and n_annot >= 4 else None
    if swapped is not None and errors is not None:
        # Labels as clicked against labels exchanged, each with its own best pose, same threshold.
        e_sw = swapped[1]
        good, good_sw = errors < max_reproj_px, e_sw < max_reproj_px
        n, n_sw = int(good.sum()), int(good_sw.sum())
        m = float(errors[good].mean()) if n else np.inf
        m_sw = float(e_sw[good_sw].mean()) if n_sw else np.inf
        if n_sw > n or (n_sw == n and m > 1.0 and m_sw < 0.5 * m):
            flags.append(Flag(
                "swapped",
                f"view {view_id}: left/right labels look swapped: exchanged, {n_sw} of {n_annot} keypoints fit at {m_sw:.1f} px "
                f"(as clicked: {n} at {m:.1f} px)",
            ))
    if n_out >= 2 and n_out > 0.25 * n_annot:
        flags.append(Flag("outliers", f"view {view_id}: {n_out} of its {n_annot} keypoints do not fit the other views: keypoints mislabelled or misplaced"))
    if np.isfinite(reproj_px) and reproj_px > max_reproj_px:
        flags.append(Flag("reprojection", f"view {view_id}: mean reprojection error {reproj_px:.1f} px > {max_reproj_px:g} px: keypoints mislabelled or misplaced"))
    if np.isfinite(bin_az):
        az, el, _ = cameras.to_azimuth_elevation(R, t)
        d_az = float(angle_difference_deg(az, bin_az))
        d_el = float(el - bin_el)
        if abs(d_az) > bin_tol_deg:
            cause = _bin_cause(float(az), float(bin_az), d_az, swapped[0] if swapped else None, bin_tol_deg)
            flags.append(Flag("bin_azimuth", f"view {view_id}: refined azimuth {float(az):.0f} deg is {abs(d_az):.0f} deg from its bin ({bin_az:.0f} deg): {cause}"))
        if abs(d_el) > (bin_tol_deg if el_tol_deg is None else el_tol_deg):
            flags.append(Flag("bin_elevation", f"view {view_id}: refined elevation {float(el):.0f} deg is {abs(d_el):.0f} deg from its bin ({bin_el:.0f} deg): wrong elevation bin or mislabelled keypoints"))
    return flags


def _bin_cause(az: float, bin_az: float, d_az: float, swapped_az: float | None, tol: float) -> str:
    swap_agrees = swapped_az is not None and abs(float(angle_difference_deg(swapped_az, bin_az))) <= tol
    near_180 = abs(d_az) > 180.0 - tol
    if swap_agrees and near_180:
        return ("left/right labels swapped in this view, or its bin is 180 deg off "
                "(for a side view of a mirror-symmetric object the two look alike)")
    if swap_agrees:
        return "left/right labels look swapped in this view (with them exchanged the camera agrees with its bin)"
    if near_180:
        return "its pose bin is probably 180 deg off (front/back confusion)"
    return "wrong pose bin or mislabelled keypoints"


def global_problems(flags: list[list[Flag]], registered: np.ndarray) -> list[str]:
    """Patterns over all views that point at one cause."""
    out = []
    n = int(registered.sum())
    # Views whose only contradiction is their bin (the keypoints themselves fit together).
    n_bin = sum(any(f.code == "bin_azimuth" for f in fl) and not any(f.code in ("outliers", "collinear", "reprojection", "swapped") for f in fl) for fl in flags)
    if n >= 4 and n_bin > n / 2:
        out.append(
            f"{n_bin} of {n} refined views disagree with their pose bins: the keypoints' left/right names may follow the "
            "viewer's left instead of the object's (g3d uses the object's own left), or the bins are mirrored"
        )
    return out


INCONSISTENT = ("bin_azimuth", "bin_elevation", "swapped", "outliers", "reprojection", "collinear")


def model_flag(flags: list[list[Flag]], registered: np.ndarray) -> Flag | None:
    """The model-wide verdict: most well-observed views contradicting their bins or the others.

    Such a model is wrong as a whole (flipped, mirrored, collapsed), and none of its views is
    trusted, not even the few that happen to agree. Views flagged only for few keypoints do not
    count either way.
    """
    judged = [v for v in range(len(flags)) if registered[v] and not any(f.code == "few_keypoints" for f in flags[v])]
    bad = [v for v in judged if any(f.code in INCONSISTENT for f in flags[v])]
    if len(judged) >= 3 and len(bad) > 0.5 * len(judged):
        return Flag("model", f"{len(bad)} of {len(judged)} well-observed views contradict their pose bins or the other views: the model is wrong as a whole")
    return None
