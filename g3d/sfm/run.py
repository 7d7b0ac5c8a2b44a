"""``g3d sfm-init``: one camera per view from pose bins and keypoints, in the object's frame.

:func:`run_sfm_init` reads a dataset folder's annotations and mask boxes, makes the pose-bin cameras
(each view at the distance its masks give, :class:`BinCameras`), refines them
from the keypoints through COLMAP (both routes of :mod:`g3d.sfm.colmap`, the better kept), brings
the result into the object frame (:mod:`g3d.sfm.align`), checks every view
(:mod:`g3d.sfm.checks`), falls back to the pose-bin camera where a check fails, and writes
``cameras.parquet`` and ``previews/sfm_cameras.png``. :func:`solve` is the same in memory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from g3d import cameras
from g3d.errors import DatasetError, UsageError
from g3d.datasets.cameras import SOURCES, TRUSTED, write_cameras
from g3d.sfm import checks as chk
from g3d.sfm.align import AlignmentError, Similarity, angle_difference_deg, rotation_angle_deg, to_object_frame, umeyama
from g3d.datasets.annotations import Annotations, read_annotations
from g3d.sfm.solution import METHODS, ROUTES, RouteSummary, SfmConfig, SfmReport, Solution  # noqa: F401 (METHODS, ROUTES: the CLI's choices)
from g3d.sfm.report import write_preview
from g3d.sfm.posebins import ViewDistances, bin_width_deg, estimate_distances, focal_guess, pose_bin_cameras

log = logging.getLogger(__name__)

BIN_FLAGS = ("bin_azimuth", "bin_elevation")
PREVIEW = "sfm_cameras.png"
SINGLE_ELEVATION_TOLERANCE_DEG = 45.0  # bins that all share one elevation say nothing finer about it


class BinCameras:
    """The pose-bin cameras of one solve, at any focal length (:meth:`at`).

    Each view's distance: ``cfg.distance`` when given (the user knows it), else estimated from the
    view's masks (:func:`g3d.sfm.posebins.estimate_distances`, ``masks`` from
    :func:`g3d.datasets.cameras.read_mask_boxes`) at that focal length (the distance that frames a
    mask grows with it), else the preset's (no masks given: an in-memory solve)."""

    def __init__(self, ann: Annotations, cfg: SfmConfig, masks=None):
        self.ann, self.cfg, self.masks = ann, cfg, masks
        self.azimuth_deg = np.where(ann.has_bin, ann.bin_azimuth_deg, np.nan)
        self._cache: dict[float, tuple] = {}

    def at(self, focal: float) -> tuple[np.ndarray, np.ndarray, object, ViewDistances | None]:
        """``(R [V, 3, 3], t [V, 3], target, distances)``: NaN rows where a view has no bin; ``target``
        the scale of a keypoint solution (:func:`to_object_frame`'s ``distance``: a float, float64 [V]
        with NaN where not estimated, or None for the preset's); ``distances`` None unless estimated."""
        key = float(focal)
        if key not in self._cache:
            ann, cfg, preset = self.ann, self.cfg, self.ann.preset
            dists = None
            if cfg.distance is not None:
                d, target = float(cfg.distance), float(cfg.distance)
            elif self.masks is None:
                d, target = preset.distance, None
            else:
                K = np.array([[key, 0.0, ann.width / 2.0], [0.0, key, ann.height / 2.0], [0.0, 0.0, 1.0]])
                dists = estimate_distances(self.azimuth_deg, ann.bin_elevation_deg, self.masks.boxes, K, preset.reference_size,
                                           preset.distance, bin_width_deg(preset) / 2.0, self.masks.why)
                d, target = dists.distance, np.where(dists.estimated, dists.distance, np.nan)
            R, t = pose_bin_cameras(self.azimuth_deg, ann.bin_elevation_deg, d)
            self._cache[key] = (R, t, target, dists)
        return self._cache[key]


def _align(route, ann_preset, bins: BinCameras, cfg: SfmConfig) -> tuple[Similarity | None, str]:
    """Object-frame similarity of a route's result: from keypoint semantics, else fitted to the bin cameras
    (both at the pose-bin distances of the route's focal length, so the routes share one scale)."""
    bins_R, bins_t, target, _ = bins.at(route.focal)
    try:
        sim = to_object_frame(route.points, route.R, route.t, ann_preset, scale=cfg.scale, distance=target)
        return sim, sim.method
    except AlignmentError as exc:
        reason = str(exc)
        if exc.degenerate:  # the names are there but the model is flat or flipped: no frame to trust
            return None, f"none, the model is degenerate ({reason})"
    both = route.registered & np.isfinite(bins_R).all(axis=(1, 2))
    if both.sum() >= 3:
        c_est = cameras.center_of(route.R[both], route.t[both])
        c_bin = cameras.center_of(bins_R[both], bins_t[both])
        sim = umeyama(c_est, c_bin)
        return sim, f"fitted to the pose-bin cameras ({reason})"
    return None, f"none ({reason}, and fewer than 3 views have a bin to fit it to)"


def _evaluate(route, ann: Annotations, bins: BinCameras, f0: float, cfg: SfmConfig):
    """Align a route's result and check every view: (R, t, points, flags, frame text, model flag)."""
    V = len(ann.view_ids)
    sim, frame = _align(route, ann.preset, bins, cfg)
    if sim is None:  # checks without the bins (no frame to compare them in), and the model rejected
        R, t, pts = route.R, route.t, route.points
        has_bin = np.zeros(V, bool)
    else:
        R, t = sim.cameras(route.R, route.t)
        pts = sim.points(route.points)
        has_bin = ann.has_bin
    K = np.array([[route.focal, 0, ann.width / 2], [0, route.focal, ann.height / 2], [0, 0, 1.0]])
    tol = cfg.bin_tolerance_deg if cfg.bin_tolerance_deg is not None else bin_width_deg(ann.preset)
    elevations = np.unique(ann.bin_elevation_deg[ann.has_bin])
    el_tol = tol if len(elevations) > 1 else max(tol, SINGLE_ELEVATION_TOLERANCE_DEG)
    from g3d.sfm.colmap import absolute_pose, reprojection_errors

    swaps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # view -> (R, t, errors) with left/right exchanged

    def swap_test(v: int):
        swapped = chk.swap_left_right(ann.xy[v], ann.preset)
        res = absolute_pose(swapped, pts, K, max(cfg.max_reproj_px, 4.0), cfg.seed)
        if res is None:
            return None
        az, _, _ = cameras.to_azimuth_elevation(res[0], res[1])
        e = reprojection_errors(swapped[None], K, res[0][None], res[1][None], pts)[0]
        e = np.where(np.isfinite(e), e, np.inf)[np.isfinite(swapped[:, 0]) & np.isfinite(pts[:, 0])]
        swaps[v] = (res[0], res[1], e)
        return float(az), e

    err_all = reprojection_errors(ann.xy, K, R, t, pts)

    flags = []
    for v in range(V):
        flags.append(
            chk.view_flags(
                v, int(ann.view_ids[v]), ann.xy[v], route.used[v], bool(route.registered[v]), float(route.reproj_px[v]),
                R[v], t[v], float(ann.bin_azimuth_deg[v]) if has_bin[v] else np.nan, float(ann.bin_elevation_deg[v]),
                tol, cfg.max_reproj_px, cfg.min_keypoints, swap_test if route.registered[v] else None,
                np.where(np.isfinite(err_all[v]), err_all[v], np.inf)[np.isfinite(ann.xy[v, :, 0]) & np.isfinite(pts[:, 0])],
                el_tol,
            )
        )
    if sim is None:
        return R, t, pts, flags, frame, chk.Flag("frame", f"no object frame: {frame}"), swaps
    model_flag = chk.focal_flag(route.focal, f0) or chk.model_flag(flags, route.registered)
    return R, t, pts, flags, frame, model_flag, swaps


def _trusted_score(sol: Solution) -> tuple[int, float]:
    """(views whose camera came from the keypoints, their mean reprojection error px) of one solution."""
    trusted = [v for v, s in enumerate(sol.source) if s in TRUSTED]
    err = float(np.nanmean(sol.reproj_px[trusted])) if trusted else float("inf")
    return len(trusted), err


def solve(ann: Annotations, cfg: SfmConfig, log_fn: Callable[[str], None] | None = None, masks=None) -> Solution:
    """Cameras for every view of ``ann`` (see the module docstring); never raises for bad keypoints.

    ``masks``: the views' mask boxes (:func:`g3d.datasets.cameras.read_mask_boxes`), from which each
    pose-bin camera's distance is estimated (:class:`BinCameras`); None: the preset's distance.

    When keypoints were clicked on several objects (``ann.by_object``), the views share one camera and
    each object's keypoints are points of their own: the joint solve (:meth:`Annotations.stacked`, one
    3D point per object and name) puts every click to use. A view seen on two cars has twice the
    points: on the built-in cars with two objects clicked (1 px noise), the median camera error drops
    from 1.66 (the better object alone) to 1.31 deg, that of a bundle adjustment started at the true
    cameras. Each object alone and the per-view mix (the object annotated in most views, per view)
    are solved too, as fallbacks: the joint solve is kept when it places as many views from the
    keypoints as the best of them (within one view, or 5%): a mislabelled object it cannot absorb
    costs it views. Otherwise the one placing the most views (same tolerance) and, among those,
    fitting them best is kept.
    """
    _check_config(cfg)
    bins = BinCameras(ann, cfg, masks)  # one for every solve below: the bins and masks are the same
    dists = bins.at(focal_guess(ann.preset, ann.width, cfg.focal_guess))[3]
    if dists is not None and dists.estimated.any():
        e = dists.distance[dists.estimated]
        (log_fn or log.info)(f"pose-bin distances from the masks of {int(dists.estimated.sum())} views: {e.min():.2f}-{e.max():.2f} (median {np.median(e):.2f})")
    if len(ann.by_object) < 2 or cfg.method == "bins":
        return _solve_one(ann, cfg, log_fn, bins)
    from dataclasses import replace

    tried = [(f"all {len(ann.by_object)} objects jointly", _solve_one(ann.stacked(), cfg, log_fn, bins)),
             ("the object annotated in most views, per view", _solve_one(ann, cfg, log_fn, bins))]
    for s, xy in ann.by_object.items():
        if (np.isfinite(xy[..., 0]).sum(1) >= 3).sum() >= 2:
            tried.append((f"object {s} alone", _solve_one(replace(ann, xy=xy, sample_ids=[s] * len(ann.view_ids), problems=list(ann.problems)), cfg, log_fn, bins)))
    scores = [_trusted_score(sol) for _, sol in tried]
    most = max(n for n, _ in scores)
    near = [i for i, (n, _) in enumerate(scores) if n >= most - max(1, int(0.05 * most))]
    best = 0 if 0 in near else min(near, key=lambda i: scores[i][1])
    name, sol = tried[best]
    sol.problems.append(
        f"keypoints of {len(ann.by_object)} objects: solved "
        + "; ".join(f"{n}: {k} views from the keypoints at {e:.2f} px" for (n, _), (k, e) in zip(tried, scores))
        + f"; kept {name}"
    )
    return sol


def _check_config(cfg: SfmConfig) -> None:
    """One-line :class:`UsageError` for a bad option."""
    if cfg.method not in METHODS:
        raise UsageError(f"--method {cfg.method!r} is not one of {', '.join(METHODS)}")
    if cfg.route not in ROUTES:
        raise UsageError(f"route {cfg.route!r} is not one of {', '.join(ROUTES)}")
    if cfg.focal_guess is not None and not cfg.focal_guess > 0:
        raise UsageError(f"--focal-guess {cfg.focal_guess} must be a positive number of pixels")
    if not cfg.max_reproj_px > 0:
        raise UsageError(f"--max-reproj-px {cfg.max_reproj_px} must be positive")
    if cfg.distance is not None and not (np.isfinite(cfg.distance) and cfg.distance > 0):
        raise UsageError(f"distance {cfg.distance} must be a positive number of object units")


def _solve_one(ann: Annotations, cfg: SfmConfig, log_fn: Callable[[str], None] | None = None, bins: BinCameras | None = None) -> Solution:
    """:func:`solve` for one set of keypoints (``ann.xy``); ``bins``: its pose-bin cameras (None: at the preset's distance)."""
    say = log_fn or (lambda m: log.info(m))
    _check_config(cfg)
    preset = ann.preset
    V, P = ann.xy.shape[:2]
    W, H = ann.width, ann.height
    f0 = focal_guess(preset, W, cfg.focal_guess)
    bins = bins if bins is not None else BinCameras(ann, cfg)
    az = bins.azimuth_deg
    bins_R, bins_t, _, dists = bins.at(f0)
    problems = list(ann.problems)
    if dists is not None:
        problems.extend(dists.notes(ann.view_ids))
    if cfg.method == "bins" and not ann.has_pose_bins:
        raise UsageError(f"--method bins needs {ann.folder}/annotations/pose_bins.parquet: annotate pose bins, or use --method auto")
    if cfg.method == "sfm" and not ann.has_keypoints:
        raise UsageError(f"--method sfm needs {ann.folder}/annotations/keypoints.parquet: click keypoints, or use --method auto")

    routes: list[RouteSummary] = []
    results: dict = {}
    candidates = []  # (key, route, R, t, pts, flags, model_flag)
    npts = ann.num_keypoints
    want_refine = cfg.method != "bins" and ann.has_keypoints
    if want_refine and (npts >= 3).sum() < 2:
        problems.append(f"keypoint refinement skipped: only {(npts >= 3).sum()} views have 3 or more keypoints")
        want_refine = False
    if want_refine:
        from g3d.errors import MissingDependencyError
        from g3d.sfm import colmap

        try:
            colmap.require_pycolmap()
        except MissingDependencyError as exc:
            if cfg.method == "sfm":
                raise
            problems.append(f"keypoints unused: {exc}")
            want_refine = False
    if want_refine:
        _quiet_colmap()
        opts = colmap.RefineOptions(max_reproj_px=cfg.max_reproj_px, seed=cfg.seed)
        runs = []
        if cfg.route in ("best", "bins_ba"):
            if ann.has_bin.sum() >= 2:
                runs.append(("bins_ba", lambda: colmap.refine_from_bins(ann.xy, bins_R, bins_t, f0, W, H, opts)))
            else:
                problems.append("bins+BA route skipped: fewer than two views have a pose bin")
        if cfg.route in ("best", "mapping"):
            runs.append(("mapping", lambda: colmap.map_keypoints(ann.xy, f0, W, H, opts)))
        for name, run in runs:
            say(f"refining cameras: route {name}")
            t0 = time.perf_counter()
            try:
                res = run()
            except Exception as exc:  # COLMAP's estimators throw on degenerate input; never crash the run
                res = colmap.failed(name, V, P, f"COLMAP failed ({type(exc).__name__}: {exc})", time.perf_counter() - t0)
            results[name] = res
            if not res.ok:
                routes.append(RouteSummary(name, 0, 0, float("nan"), float("nan"), res.seconds, "-", res.messages))
                continue
            R, t, pts, flags, frame, model_flag, swaps = _evaluate(res, ann, bins, f0, cfg)
            # Views that contradict the others (mirrored labels, a wrong bin pulling them) bend the
            # model a little: solve once more without them; they stay flagged.
            excl = [v for v in range(V) if res.registered[v] and any(f.code in chk.INCONSISTENT for f in flags[v])]
            if excl and model_flag is None and len(excl) < 0.5 * res.registered.sum():
                xy2 = ann.xy.copy()
                xy2[excl] = np.nan
                note = f"solved again without the flagged views {', '.join(str(int(ann.view_ids[v])) for v in excl)}"
                try:
                    res2 = colmap.refine_from_cameras(name, xy2, res.R, res.t, res.focal, W, H, opts, res.messages + [note])
                except Exception as exc:  # keep the first solution
                    res2 = None
                    problems.append(f"route {name}: solving again without the flagged views failed ({type(exc).__name__}: {exc})")
                if res2 is not None and res2.ok:
                    for v in excl:  # they keep their first-pass camera and verdict
                        res2.registered[v] = True
                        res2.R[v], res2.t[v] = res.R[v], res.t[v]
                        res2.used[v], res2.reproj_px[v] = res.used[v], res.reproj_px[v]
                    res2.seconds += res.seconds
                    res2.reestimated = sorted(set(res.reestimated) | set(res2.reestimated))
                    first_flags = flags
                    R2, t2, pts2, flags2, frame2, model_flag2, swaps2 = _evaluate(res2, ann, bins, f0, cfg)
                    if model_flag2 is None:
                        for v in excl:
                            flags2[v] = flags2[v] or first_flags[v]
                            if v in swaps and v not in swaps2:
                                swaps2[v] = swaps[v]
                        res, R, t, pts, flags, frame, model_flag, swaps = res2, R2, t2, pts2, flags2, frame2, model_flag2, swaps2
                        results[f"{name}/again"] = res
            kept = np.array([res.registered[v] and not flags[v] for v in range(V)]) & (model_flag is None)
            routes.append(RouteSummary(name, int(res.registered.sum()), int(kept.sum()), res.focal, res.mean_reproj_px, res.seconds, frame, list(res.messages)))
            key = (int(kept.sum()), int(res.registered.sum()), -round(float(np.nan_to_num(res.mean_reproj_px, nan=1e9)), 2))
            candidates.append((key, res, R, t, pts, flags, model_flag, swaps))

    source: list[str | None] = [None] * V
    R_out = np.full((V, 3, 3), np.nan)
    t_out = np.full((V, 3), np.nan)
    reproj = np.full(V, np.nan)
    flags_out: list[list[chk.Flag]] = [[] for _ in range(V)]
    points = np.full((P, 3), np.nan)
    focal = f0
    chosen = None
    outliers: list[str] = []
    comparison = None
    refined_R = np.full((V, 3, 3), np.nan)
    refined_t = np.full((V, 3), np.nan)
    model_flag = None
    if len(candidates) == 2:
        a, b = candidates
        d = route_disagreement_deg(np.where(a[1].registered[:, None, None], a[2], np.nan), np.where(b[1].registered[:, None, None], b[2], np.nan))
        if np.isfinite(d).any():
            comparison = (
                f"{a[1].route} vs {b[1].route}: cameras {np.nanmedian(d):.2f} deg apart (median), {np.nanmax(d):.1f} deg at most, "
                f"over {int(np.isfinite(d).sum())} views both placed"
            )
    if candidates:
        key, res, R, t, pts, flags, model_flag, swaps = max(candidates, key=lambda c: c[0])
        refined_R = np.where(res.registered[:, None, None], R, np.nan)
        refined_t = np.where(res.registered[:, None], t, np.nan)
        chosen = res.route
        points = pts
        n_kept = sum(1 for v in range(V) if res.registered[v] and not flags[v])
        if model_flag is not None:
            problems.append(f"route {res.route}: {model_flag.message}; every view keeps its pose-bin camera")
            why = {"focal": "implausible focal", "frame": "no object frame"}.get(model_flag.code, "most views contradict it")
            flags = [
                [chk.Flag(model_flag.code, f"view {int(ann.view_ids[v])}: the whole model was rejected ({why}, see the note below)")] + fl
                if res.registered[v] else fl
                for v, fl in enumerate(flags)
            ]
        elif n_kept >= max(3, 0.5 * int(res.registered.sum())):
            focal = res.focal
        else:
            problems.append(f"route {res.route}: only {n_kept} of {int(res.registered.sum())} placed views passed the checks: kept the focal guess {f0:.1f} px")
        flags_out = flags
        for v in range(V):
            if res.registered[v]:
                reproj[v] = res.reproj_px[v]
                for p in np.flatnonzero(np.isfinite(ann.xy[v, :, 0]) & ~res.used[v] & np.isfinite(res.points[:, 0])):
                    outliers.append(f"view {int(ann.view_ids[v])} {ann.keypoint_label(p)}")
            if res.registered[v] and not flags[v] and model_flag is None:
                R_out[v], t_out[v], source[v] = R[v], t[v], "sfm"
        if model_flag is None:
            tol = cfg.bin_tolerance_deg if cfg.bin_tolerance_deg is not None else bin_width_deg(preset)
            for v in range(V):
                if res.registered[v] and flags[v]:
                    fix = _correction(v, flags[v], R[v], t[v], swaps.get(v), az[v], tol, cfg)
                    if fix is not None:
                        source[v], R_out[v], t_out[v], err = fix
                        if err is not None:
                            reproj[v] = err
        problems.extend(chk.global_problems(flags, res.registered))
    bins_R, bins_t, _, _ = bins.at(focal)  # the pose-bin cameras written, at the focal written
    if want_refine and (npts == 0).any():
        empty = [int(ann.view_ids[v]) for v in range(V) if npts[v] == 0 and not ann.rejected[v]]
        if empty:
            problems.append(f"no keypoints clicked in views {', '.join(str(v) for v in empty[:20])}{' ...' if len(empty) > 20 else ''}: they keep their pose-bin camera")
        for v in range(V):
            if npts[v] == 0:
                flags_out[v] = []
    for v in range(V):
        if source[v] is not None or ann.rejected[v]:
            continue
        attempted = want_refine and npts[v] > 0
        if ann.has_bin[v]:
            R_out[v], t_out[v] = bins_R[v], bins_t[v]
            source[v] = "sfm_flagged" if attempted else "pose_bin"
        elif attempted and model_flag is None and np.isfinite(refined_R[v]).all():
            R_out[v], t_out[v], source[v] = refined_R[v], refined_t[v], "sfm_flagged"  # flagged, and no bin to fall back to
        if attempted and not flags_out[v]:
            flags_out[v] = [chk.Flag("unregistered", f"view {int(ann.view_ids[v])}: no keypoint route placed it")]
    K = np.array([[focal, 0.0, W / 2.0], [0.0, focal, H / 2.0], [0.0, 0.0, 1.0]])
    return Solution(
        view_ids=ann.view_ids.copy(),
        has_camera=np.array([s is not None for s in source]),
        K=K,
        R=R_out,
        t=t_out,
        source=source,
        reproj_px=reproj,
        num_keypoints=npts,
        flags=flags_out,
        points=points,
        routes=routes,
        chosen=chosen,
        focal_guess=f0,
        problems=problems,
        outliers=outliers,
        bin_R=bins_R,
        bin_t=bins_t,
        refined_R=refined_R,
        refined_t=refined_t,
        usable=usable_views(source, flags_out),
        comparison=comparison,
        results=results,
    )


def _correction(v: int, flags: list[chk.Flag], R: np.ndarray, t: np.ndarray, swap, bin_az: float, tol: float, cfg: SfmConfig):
    """The camera a flagged view should have instead of its pose-bin one, when the keypoints settle it.

    * The bin is the only thing contradicted (the keypoints fit the model) and the left/right-exchanged
      solution does not agree with the bin: the bin is wrong (a front/back confusion), the keypoint
      camera is right: ``sfm_bin_corrected``.
    * The labels look swapped, the exchanged labels fit (``cfg.min_keypoints`` and three quarters or
      more of them within ``cfg.max_reproj_px``; the misfit of the labels as clicked is what the exchange
      explains) and their camera agrees with the bin (or there is none): ``sfm_labels_swapped``.

    Returns ``(source, R [3, 3], t [3], mean error px or None)`` or None (the view stays flagged).
    """
    codes = {f.code for f in flags}
    swap_az = None
    if swap is not None:
        swap_az = float(cameras.to_azimuth_elevation(swap[0], swap[1])[0])
    swap_agrees = swap_az is not None and np.isfinite(bin_az) and abs(float(angle_difference_deg(swap_az, bin_az))) <= tol
    if codes <= set(BIN_FLAGS) and not swap_agrees:
        return "sfm_bin_corrected", R, t, None
    # Mirrored labels also make the view's points misfit (outliers, reprojection): the exchange explains those.
    if "swapped" in codes and codes <= {"swapped", "outliers", "reprojection", *BIN_FLAGS} and swap is not None:
        e = swap[2]
        good = e < cfg.max_reproj_px
        if good.sum() >= max(cfg.min_keypoints, 0.75 * len(e)) and (swap_agrees or not np.isfinite(bin_az)):
            return "sfm_labels_swapped", swap[0], swap[1], float(e[good].mean())
    return None


def usable_views(source: list[str | None], flags: list[list[chk.Flag]]) -> np.ndarray:
    """bool [V]: views whose written camera nothing contradicts.

    A ``sfm_flagged`` view whose keypoints contradict its pose bin (a bin check or the left/right test
    failed, and no correction settled it) is not usable: its bin camera may be 180 deg off. Views
    flagged only for their keypoints (too few, outliers, on one line) keep a usable, rough bin camera.
    Views without a camera are not usable.
    """
    out = np.zeros(len(source), bool)
    for v, s in enumerate(source):
        if s is None:
            continue
        codes = {f.code for f in flags[v]}
        model_rejected = bool(codes & {"model", "focal", "frame"})  # a wrong model contradicts nothing
        out[v] = s != "sfm_flagged" or model_rejected or not codes & {*BIN_FLAGS, "swapped"}
    return out


def _quiet_colmap() -> None:
    """COLMAP logs every step (and Ceres every failed step) through glog; keep errors only."""
    import pycolmap

    try:
        pycolmap.logging.minloglevel = 2
    except AttributeError:  # pragma: no cover - other pycolmap builds
        pass


def camera_columns(sol: Solution, width: int) -> dict[str, list]:
    """The ``cameras.parquet`` columns (:mod:`g3d.datasets.cameras` documents each): one row per view that has a camera."""
    rows = np.flatnonzero(sol.has_camera)
    az, el, d = cameras.to_azimuth_elevation(sol.R[rows], sol.t[rows]) if len(rows) else (np.zeros(0),) * 3
    fov = cameras.fov_of(sol.K, width)
    reproj = [None if sol.source[v] == "pose_bin" or not np.isfinite(sol.reproj_px[v]) else float(sol.reproj_px[v]) for v in rows]
    return {
        "view_id": sol.view_ids[rows].tolist(),
        "K": [sol.K.reshape(9).tolist()] * len(rows),
        "R": [sol.R[v].reshape(9).tolist() for v in rows],
        "t": [sol.t[v].tolist() for v in rows],
        "azimuth_deg": np.asarray(az, np.float64).tolist(),
        "elevation_deg": np.asarray(el, np.float64).tolist(),
        "distance": np.asarray(d, np.float64).tolist(),
        "fov_deg": [fov] * len(rows),
        "source": [sol.source[v] for v in rows],
        "reprojection_error": reproj,
        "num_keypoints": sol.num_keypoints[rows].tolist(),
        "usable": [bool(sol.usable[v]) for v in rows],
        "failed_checks": [",".join(f.code for f in sol.flags[v]) for v in rows],
    }


def run_sfm_init(cfg: SfmConfig, log_fn: Callable[[str], None] | None = None) -> SfmReport:
    """Read ``cfg.folder``'s annotations, make one camera per view, write ``cameras.parquet`` and the preview.

    Raises :class:`DatasetError` when no camera at all can be made (no annotation usable, no bin
    and no refined view); every other problem is named in the report.
    """
    from g3d.datasets import folder as dsf

    start = time.perf_counter()
    folder = Path(cfg.folder)
    ann = read_annotations(folder)
    masks = None
    if cfg.distance is None:  # a given distance needs no masks
        from g3d.datasets.cameras import read_mask_boxes
        from g3d.datasets.manifest import read_manifest

        masks = read_mask_boxes(folder, read_manifest(folder))
    sol = solve(ann, cfg, log_fn, masks)
    if not sol.has_camera.any():
        causes = "; ".join((sol.problems + [r.messages[-1] for r in sol.routes if r.messages])[:4]) or "no view has a pose bin or enough keypoints"
        raise DatasetError(f"no camera could be made for any of the {len(ann.view_ids)} views of {folder} ({causes}): annotate pose bins for the views (g3d annotate push poses)")
    out = write_cameras(folder, camera_columns(sol, ann.width))
    preview = None
    if cfg.preview:
        preview = write_preview(folder / dsf.PREVIEWS / PREVIEW, sol, ann)
    sources = {s: int(sum(1 for x in sol.source if x == s)) for s in SOURCES}
    flagged = {int(sol.view_ids[v]): [f.message for f in sol.flags[v]] for v in range(len(sol.view_ids)) if sol.flags[v]}
    return SfmReport(
        cameras=out,
        preview=preview,
        method=cfg.method,
        views=len(ann.view_ids),
        written=int(sol.has_camera.sum()),
        sources=sources,
        focal=float(sol.K[0, 0]),
        focal_guess=sol.focal_guess,
        chosen_route=sol.chosen,
        routes=sol.routes,
        comparison=sol.comparison,
        flagged=flagged,
        corrected={int(v): s for v, s in zip(sol.view_ids, sol.source) if s in ("sfm_bin_corrected", "sfm_labels_swapped")},
        unusable=[int(v) for v, s, u in zip(sol.view_ids, sol.source, sol.usable) if s is not None and not u],
        no_camera=[int(v) for v, s in zip(sol.view_ids, sol.source) if s is None],
        problems=sol.problems,
        outliers=sol.outliers,
        seconds=time.perf_counter() - start,
    )


def route_disagreement_deg(a_R: np.ndarray, b_R: np.ndarray) -> np.ndarray:
    """Per-view rotation angle between two camera sets in the same frame (NaN where either is missing)."""
    ok = np.isfinite(a_R).all(axis=(1, 2)) & np.isfinite(b_R).all(axis=(1, 2))
    out = np.full(len(a_R), np.nan)
    if ok.any():
        out[ok] = rotation_angle_deg(a_R[ok], b_R[ok])
    return out
