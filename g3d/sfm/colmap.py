"""Keypoint refinement of the per-view cameras through COLMAP (pycolmap), two routes.

Input: the annotated keypoints of one object in every view, ``xy`` float64 [V, P, 2] in pixels
(origin top-left, pixel centres at +0.5, NaN where a keypoint was not clicked), one shared
SIMPLE_PINHOLE camera (focal refined, principal point fixed at the image centre), tracks by
keypoint name (keypoint p in every view is one 3D point).

``refine_from_bins``
    Starts from the pose-bin cameras: triangulates each name robustly (LO-RANSAC over the views
    that see it), then rounds of bundle adjustment (Cauchy loss, then plain) with
    re-triangulation; views that do not fit (a front/back-confused bin, mislabelled points) are
    re-estimated with absolute pose from the points of the others and put back.

``map_keypoints``
    Needs no bins: COLMAP's incremental mapper on a database of the keypoints and the
    name-matched two-view geometries, started from a pair g3d chooses (the stock start-pair
    search wants 15 inliers, more than a handful of keypoints can give), several start pairs
    tried, the model that registers the most views with a plausible focal kept.

``bundle_adjust_from``
    One plain bundle adjustment from given cameras (the benchmark's "true start", the best the
    noise allows).

Both routes end with the same polish (re-triangulation by name and a plain bundle adjustment) and
return a :class:`RouteResult` in the arbitrary frame of the reconstruction; :mod:`g3d.sfm.align`
brings it into the object frame.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from g3d.errors import MissingDependencyError

FEATURE = "g3d sfm-init keypoint refinement"


def require_pycolmap():
    """The pycolmap module, or :class:`MissingDependencyError` naming the ``sfm`` extra."""
    try:
        import pycolmap
    except ImportError:
        raise MissingDependencyError("pycolmap", "sfm", FEATURE) from None
    return pycolmap


@dataclass
class RefineOptions:
    """Knobs of both routes (defaults fit ~5-10 keypoints per view and 0-3 px click noise)."""

    max_reproj_px: float = 8.0  # a view whose mean reprojection error stays above this is re-estimated, then flagged
    cauchy_scale_px: float = 2.0  # scale of the Cauchy loss in the robust rounds
    robust_rounds: int = 3  # re-triangulate + Cauchy BA rounds before the plain ones
    first_triangulation_deg: float = 12.0  # angular inlier threshold of the first triangulation from pose bins
    min_view_points: int = 3  # views with fewer usable keypoints take no part in the adjustment
    start_pairs: int = 8  # start pairs the mapping route tries at most
    min_pair_angle_deg: float = 16.0  # smallest triangulation angle of a start pair
    mapper_filter_px: float = 10.0  # reprojection filters of COLMAP's mapper (4 px stock is too tight at 3 px noise)
    max_runtime_s: float = 60.0  # per start pair of the mapping route
    seed: int = 0  # RANSAC seed (runs are repeatable)


@dataclass
class RouteResult:
    """Cameras of one route, in the route's own frame. V views, P keypoints."""

    route: str  # "bins_ba", "mapping" or "true_start"
    R: np.ndarray  # float64 [V, 3, 3] world-to-camera; NaN for unregistered views
    t: np.ndarray  # float64 [V, 3]; NaN for unregistered views
    focal: float  # shared focal length in pixels (NaN when the route failed)
    points: np.ndarray  # float64 [P, 3] one point per keypoint name; NaN where not triangulated
    registered: np.ndarray  # bool [V]
    used: np.ndarray  # bool [V, P] observations kept as inliers
    reproj_px: np.ndarray  # float64 [V] mean reprojection error of each view's inliers (NaN unregistered)
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)  # what happened, for the report
    reestimated: list[int] = field(default_factory=list)  # view indices re-estimated with absolute pose

    @property
    def ok(self) -> bool:
        return bool(self.registered.any()) and bool(np.isfinite(self.focal))

    @property
    def mean_reproj_px(self) -> float:
        r = self.reproj_px[self.registered & np.isfinite(self.reproj_px)]
        return float(r.mean()) if len(r) else float("nan")


def failed(route: str, V: int, P: int, message: str, seconds: float = 0.0) -> RouteResult:
    """A route that produced nothing."""
    return RouteResult(
        route=route,
        R=np.full((V, 3, 3), np.nan),
        t=np.full((V, 3), np.nan),
        focal=float("nan"),
        points=np.full((P, 3), np.nan),
        registered=np.zeros(V, bool),
        used=np.zeros((V, P), bool),
        reproj_px=np.full(V, np.nan),
        seconds=seconds,
        messages=[message],
    )


# ------------------------------------------------------------------ plain geometry (numpy)


def intrinsics(focal: float, width: int, height: int) -> np.ndarray:
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def reprojection_errors(xy: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixel distance of every observation to its point's projection, float64 [V, P] (NaN: no data; inf: behind)."""
    cam = np.einsum("vij,pj->vpi", R, points) + t[:, None, :]
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.einsum("ij,vpj->vpi", K, cam)
        uv = uv[..., :2] / uv[..., 2:3]
        err = np.linalg.norm(uv - xy, axis=-1)
    err = np.where(z > 1e-9, err, np.inf)
    return np.where(np.isfinite(xy[..., 0]) & np.isfinite(points[None, :, 0]) & np.isfinite(t[:, None, 0]), err, np.nan)


def view_errors(err: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Mean of each view's used errors, float64 [V] (NaN where a view uses none)."""
    e = np.where(used & np.isfinite(err), err, 0.0)
    n = (used & np.isfinite(err)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, e.sum(axis=1) / np.maximum(n, 1), np.nan)


def inlier_threshold_px(err: np.ndarray, used: np.ndarray, n_params: int = 0, floor_px: float = 4.0, ceiling_px: float = 16.0) -> float:
    """Largest residual still taken as click noise: 5 sigma, within [floor_px, ceiling_px].

    sigma is the per-axis noise of a least-squares fit, sum(e^2) / (2 n - n_params) for n used
    observations and n_params free parameters (the fit absorbs part of the noise).
    """
    e = err[used & np.isfinite(err)]
    dof = 2 * len(e) - n_params
    if dof <= 0:
        return ceiling_px
    sigma = float(np.sqrt(np.sum(e**2) / dof))
    return float(np.clip(5.0 * sigma, floor_px, ceiling_px))


def _camera(pc, focal: float, width: int, height: int):
    return pc.Camera(model="SIMPLE_PINHOLE", width=int(width), height=int(height), params=[float(focal), width / 2.0, height / 2.0], camera_id=1)


def _pose(pc, R: np.ndarray, t: np.ndarray):
    return pc.Rigid3d(pc.Rotation3d(np.asarray(R, np.float64)), np.asarray(t, np.float64))


def triangulate(
    xy: np.ndarray,  # float64 [V, P, 2]
    K: np.ndarray,  # float64 [3, 3]
    R: np.ndarray,  # float64 [V, 3, 3]
    t: np.ndarray,  # float64 [V, 3]
    views: np.ndarray,  # bool [V] cameras to use
    max_error_deg: float,  # angular inlier threshold
    seed: int = 0,
    names: np.ndarray | None = None,  # bool [P] names to triangulate; None = all
) -> tuple[np.ndarray, np.ndarray]:
    """Robust multi-view triangulation of every name: ``(points [P, 3] (NaN: failed), inliers bool [V, P])``."""
    pc = require_pycolmap()
    V, P = xy.shape[:2]
    cam = _camera(pc, K[0, 0], 2 * K[0, 2], 2 * K[1, 2])
    opts = pc.EstimateTriangulationOptions()
    opts.ransac.max_error = float(np.deg2rad(max_error_deg))
    opts.ransac.random_seed = int(seed)
    opts.ransac.min_num_trials = 50
    opts.ransac.max_num_trials = 2000
    opts.min_tri_angle = float(np.deg2rad(1.0))
    points = np.full((P, 3), np.nan)
    inliers = np.zeros((V, P), bool)
    poses = {v: _pose(pc, R[v], t[v]) for v in np.flatnonzero(views)}
    for p in range(P) if names is None else np.flatnonzero(names):
        vs = [v for v in np.flatnonzero(views) if np.isfinite(xy[v, p, 0])]
        if len(vs) < 2:
            continue
        res = pc.estimate_triangulation(xy[vs, p].astype(np.float64), [poses[v] for v in vs], [cam] * len(vs), opts)
        if res is None:
            continue
        X = np.asarray(res["xyz"], np.float64).reshape(3)
        mask = np.asarray(res["inliers"], bool)
        depth_ok = np.array([(R[v] @ X + t[v])[2] > 0 for v in vs])
        mask &= depth_ok
        if mask.sum() < 2:
            continue
        points[p] = X
        inliers[np.array(vs)[mask], p] = True
    return points, inliers


def absolute_pose(
    xy: np.ndarray,  # float64 [P, 2] one view's keypoints (NaN: none)
    points: np.ndarray,  # float64 [P, 3] (NaN: none)
    K: np.ndarray,
    max_error_px: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One view's pose from named 3D points (P3P LO-RANSAC + refinement): ``(R, t, inliers bool [P])`` or None."""
    pc = require_pycolmap()
    ok = np.isfinite(xy[:, 0]) & np.isfinite(points[:, 0])
    if ok.sum() < 4:
        return None
    cam = _camera(pc, K[0, 0], 2 * K[0, 2], 2 * K[1, 2])
    est = pc.AbsolutePoseEstimationOptions()
    est.ransac.max_error = float(max_error_px)
    est.ransac.random_seed = int(seed)
    est.ransac.min_inlier_ratio = 0.5
    res = pc.estimate_and_refine_absolute_pose(xy[ok].astype(np.float64), points[ok].astype(np.float64), cam, est)
    if res is None or int(res["num_inliers"]) < 4:
        return None
    T = res["cam_from_world"]
    inl = np.zeros(len(xy), bool)
    inl[np.flatnonzero(ok)[np.asarray(res["inlier_mask"], bool)]] = True
    return np.asarray(T.rotation.matrix()), np.asarray(T.translation).reshape(3), inl


def bundle_adjust(
    xy: np.ndarray,  # float64 [V, P, 2]
    used: np.ndarray,  # bool [V, P] observations to use
    R: np.ndarray,  # float64 [V, 3, 3] start
    t: np.ndarray,  # float64 [V, 3]
    focal: float,
    width: int,
    height: int,
    points: np.ndarray,  # float64 [P, 3] start (NaN rows are left out)
    views: np.ndarray,  # bool [V] cameras to adjust
    loss: str = "plain",  # "plain" or "cauchy"
    loss_scale: float = 1.0,  # Cauchy scale in pixels
    refine_focal: bool = True,
    max_iterations: int = 100,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Bundle adjustment of poses, points and (optionally) the shared focal: ``(R, t, focal, points)``.

    Points seen by fewer than two adjusted views stay where they are; the gauge is fixed by the
    first two views (COLMAP's TWO_CAMS_FROM_WORLD).
    """
    pc = require_pycolmap()
    R, t, points = R.copy(), t.copy(), points.copy()
    use = used & views[:, None] & np.isfinite(points[None, :, 0]) & np.isfinite(xy[..., 0])
    good_points = use.sum(axis=0) >= 2
    use &= good_points[None, :]
    active = views & (use.sum(axis=1) >= 2)
    if active.sum() < 2 or not good_points.any():
        return R, t, focal, points
    rec = pc.Reconstruction()
    rec.add_camera_with_trivial_rig(_camera(pc, focal, width, height))
    index: dict[tuple[int, int], int] = {}
    for v in np.flatnonzero(active):
        ps = np.flatnonzero(use[v])
        img = pc.Image(name=f"view{v:05d}", keypoints=xy[v, ps].astype(np.float64), camera_id=1, image_id=int(v) + 1)
        rec.add_image_with_trivial_frame(img, _pose(pc, R[v], t[v]))
        for k, p in enumerate(ps):
            index[(int(v), int(p))] = k
    pid: dict[int, int] = {}
    for p in np.flatnonzero(good_points):
        els = [pc.TrackElement(int(v) + 1, index[(int(v), int(p))]) for v in np.flatnonzero(use[:, p] & active)]
        if len(els) >= 2:
            pid[int(p)] = rec.add_point3D(points[p].astype(np.float64), pc.Track(els))
    opts = pc.BundleAdjustmentOptions()
    opts.refine_focal_length = bool(refine_focal)
    opts.refine_principal_point = False
    opts.refine_extra_params = False
    opts.print_summary = False
    if loss == "cauchy":
        opts.ceres.loss_function_type = pc.LossFunctionType.CAUCHY
        opts.ceres.loss_function_scale = float(loss_scale)
    opts.ceres.solver_options.max_num_iterations = int(max_iterations)
    opts.ceres.solver_options.num_threads = 1
    config = pc.BundleAdjustmentConfig()
    for v in np.flatnonzero(active):
        config.add_image(int(v) + 1)
    config.fix_gauge(pc.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    pc.create_default_bundle_adjuster(opts, config, rec).solve()
    for v in np.flatnonzero(active):
        T = rec.images[int(v) + 1].cam_from_world()
        R[v] = T.rotation.matrix()
        t[v] = np.asarray(T.translation).reshape(3)
    for p, i in pid.items():
        points[p] = np.asarray(rec.points3D[i].xyz).reshape(3)
    focal = float(rec.cameras[1].params[0])
    return R, t, focal, points


# ------------------------------------------------------------------ shared polish


def _polish(
    route: str,
    xy: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    focal: float,
    width: int,
    height: int,
    registered: np.ndarray,
    opts: RefineOptions,
    messages: list[str],
    t0: float,
    robust_rounds: int,
    first_deg: float,
) -> RouteResult:
    """Rounds of BA (robust first, then plain) with re-triangulation and re-estimation of views that do not fit.

    Robust rounds keep every observation within 3 x ``max_reproj_px`` and let the Cauchy loss
    weigh them; plain rounds keep those within 5 sigma of the click noise (sigma from the
    residuals of the last fit, corrected for the parameters it absorbed). A name that loses its
    inliers is triangulated again from the current cameras; a view whose observations mostly
    disagree, or whose mean error stays above ``max_reproj_px``, is re-estimated with absolute
    pose from the other views' points (in the plain rounds every view gets this second opinion,
    kept only when it fits clearly better). A last plain adjustment settles the final inliers.
    """
    V, P = xy.shape[:2]
    npts = np.isfinite(xy[..., 0]).sum(axis=1)
    candidates = npts >= opts.min_view_points
    registered = registered & candidates
    reestimated: list[int] = []
    added: list[int] = []
    K = intrinsics(focal, width, height)
    points, used = triangulate(xy, K, R, t, registered, first_deg, opts.seed)
    for rnd in range(robust_rounds + 2):
        # Views the start left out (no bin, not registered by the mapper): absolute pose from the points.
        for v in np.flatnonzero(candidates & ~registered):
            res = absolute_pose(xy[v], points, K, opts.max_reproj_px, opts.seed)
            if res is None:
                continue
            Rv, tv, inl = res
            e_new = reprojection_errors(xy[v : v + 1], K, Rv[None], tv[None], points)[0]
            if inl.sum() >= 4 and np.nanmean(np.where(inl, e_new, np.nan)) <= opts.max_reproj_px:
                R[v], t[v] = Rv, tv
                registered[v] = True
                used[v] = inl
                added.append(int(v))
        n_obs = (np.isfinite(xy[..., 0]) & np.isfinite(points[None, :, 0])).sum(axis=1)
        outcast = registered & (used.sum(axis=1) < np.maximum(2, 0.5 * n_obs))
        views = registered & ~outcast
        R, t, focal, points = bundle_adjust(
            xy, used, R, t, focal, width, height, points, views,
            loss="cauchy" if rnd < robust_rounds else "plain", loss_scale=opts.cauchy_scale_px,
        )
        K = intrinsics(focal, width, height)
        err = reprojection_errors(xy, K, R, t, points)
        if rnd < robust_rounds:  # robust rounds: drop only gross errors, the Cauchy loss handles the rest
            thr = 3.0 * opts.max_reproj_px
        else:
            thr = inlier_threshold_px(err, used & views[:, None], n_params=6 * int(views.sum()) + 3 * int(np.isfinite(points[:, 0]).sum()) - 6,
                                      ceiling_px=2.0 * opts.max_reproj_px)
        vmean = view_errors(err, np.isfinite(err))
        bad = registered & (outcast | ~(vmean <= max(thr, opts.max_reproj_px)))
        if rnd >= robust_rounds:
            # Second opinion for every view in the plain rounds: a view held by few points can sit
            # in a wrong local minimum that absolute pose from the others' points escapes.
            bad = registered.copy()
        for v in np.flatnonzero(bad):
            res = absolute_pose(xy[v], points, K, max(thr, 4.0), opts.seed)
            if res is None:
                continue
            Rv, tv, inl = res
            e_new = reprojection_errors(xy[v : v + 1], K, Rv[None], tv[None], points)[0]
            n_old = int((err[v] < thr).sum())
            n_new = int((e_new < thr).sum())
            old_cost = np.nanmean(np.where(err[v] < thr, err[v] ** 2, np.nan)) if n_old else np.inf
            new_cost = np.nanmean(np.where(e_new < thr, e_new**2, np.nan)) if n_new else np.inf
            if n_new > n_old or (n_new == n_old and new_cost < 0.9 * old_cost and old_cost - new_cost > 0.25):
                R[v], t[v] = Rv, tv
                err[v] = e_new
                if int(v) not in reestimated:
                    reestimated.append(int(v))
        used = registered[:, None] & np.isfinite(err) & (err < thr)
        lost = (used.sum(axis=0) < 2) & ((np.isfinite(xy[..., 0]) & registered[:, None]).sum(axis=0) >= 2)
        if lost.any():
            angle = float(np.rad2deg(np.arctan(thr / focal)))
            p2, u2 = triangulate(xy, K, R, t, registered, angle, opts.seed, names=lost)
            points[lost] = p2[lost]
            used[:, lost] = u2[:, lost]
    R, t, focal, points = bundle_adjust(xy, used, R, t, focal, width, height, points, registered)
    K = intrinsics(focal, width, height)
    err = reprojection_errors(xy, K, R, t, points)
    reproj = view_errors(err, used)
    R = np.where(registered[:, None, None], R, np.nan)
    t = np.where(registered[:, None], t, np.nan)
    if added:
        messages.append(f"registered afterwards with absolute pose: views {', '.join(str(v) for v in sorted(added))}")
    if reestimated:
        messages.append(f"re-estimated with absolute pose: views {', '.join(str(v) for v in sorted(reestimated))}")
    return RouteResult(
        route=route,
        R=R,
        t=t,
        focal=float(focal),
        points=points,
        registered=registered.copy(),
        used=used,
        reproj_px=np.where(registered, reproj, np.nan),
        seconds=time.perf_counter() - t0,
        messages=messages,
        reestimated=reestimated,
    )


def refine_from_cameras(
    route: str,
    xy: np.ndarray,  # float64 [V, P, 2] keypoints, NaN where not annotated (or left out)
    R: np.ndarray,  # float64 [V, 3, 3] start cameras, NaN rows for views left out
    t: np.ndarray,  # float64 [V, 3]
    focal: float,
    width: int,
    height: int,
    opts: RefineOptions | None = None,
    messages: list[str] | None = None,
) -> RouteResult:
    """Warm restart of the polish from given cameras (used to re-solve without flagged views)."""
    opts = opts or RefineOptions()
    start = time.perf_counter()
    ok = np.isfinite(R).all(axis=(1, 2)) & np.isfinite(t).all(axis=1)
    R0 = np.where(ok[:, None, None], R, np.eye(3))
    t0 = np.where(ok[:, None], t, 0.0)
    first = float(np.rad2deg(np.arctan(2.0 * opts.max_reproj_px / focal)))
    return _polish(route, xy, R0, t0, float(focal), width, height, ok, opts, list(messages or []), start, 1, first)


# ------------------------------------------------------------------ route 1: from pose bins


def refine_from_bins(
    xy: np.ndarray,  # float64 [V, P, 2] keypoints, NaN where not annotated
    R0: np.ndarray,  # float64 [V, 3, 3] pose-bin cameras (NaN rows: no bin)
    t0: np.ndarray,  # float64 [V, 3]
    focal: float,  # focal guess in pixels
    width: int,
    height: int,
    opts: RefineOptions | None = None,
) -> RouteResult:
    """Bins + bundle adjustment: triangulate from the bin cameras, then robust and plain BA rounds."""
    opts = opts or RefineOptions()
    start = time.perf_counter()
    V, P = xy.shape[:2]
    require_pycolmap()
    has_bin = np.isfinite(R0).all(axis=(1, 2)) & np.isfinite(t0).all(axis=1)
    if has_bin.sum() < 2:
        return failed("bins_ba", V, P, "fewer than two views have a pose bin", time.perf_counter() - start)
    R = np.where(has_bin[:, None, None], R0, np.eye(3))
    t = np.where(has_bin[:, None], t0, 0.0)
    return _polish("bins_ba", xy, R, t, float(focal), width, height, has_bin, opts, [], start, opts.robust_rounds, opts.first_triangulation_deg)


def bundle_adjust_from(
    xy: np.ndarray,  # float64 [V, P, 2]
    R: np.ndarray,  # float64 [V, 3, 3] start cameras (e.g. the truth)
    t: np.ndarray,
    focal: float,
    width: int,
    height: int,
    opts: RefineOptions | None = None,
) -> RouteResult:
    """Triangulate from the given cameras and run plain BA to convergence (the benchmark's reference)."""
    opts = opts or RefineOptions()
    start = time.perf_counter()
    V, P = xy.shape[:2]
    K = intrinsics(focal, width, height)
    views = np.isfinite(xy[..., 0]).sum(axis=1) >= opts.min_view_points
    points, used = triangulate(xy, K, R, t, views, 3.0, opts.seed)
    R2, t2, f2, pts = bundle_adjust(xy, used, R, t, focal, width, height, points, views)
    K2 = intrinsics(f2, width, height)
    err = reprojection_errors(xy, K2, R2, t2, pts)
    return RouteResult(
        route="true_start",
        R=np.where(views[:, None, None], R2, np.nan),
        t=np.where(views[:, None], t2, np.nan),
        focal=f2,
        points=pts,
        registered=views,
        used=used,
        reproj_px=np.where(views, view_errors(err, used), np.nan),
        seconds=time.perf_counter() - start,
    )


# ------------------------------------------------------------------ route 2: keypoints only (COLMAP mapping)


def _pairs(xy: np.ndarray, min_shared: int) -> list[tuple[int, int, np.ndarray]]:
    """(view a, view b, shared keypoint indices) for every pair sharing at least ``min_shared`` names."""
    ok = np.isfinite(xy[..., 0])
    out = []
    V = len(xy)
    for a in range(V):
        for b in range(a + 1, V):
            shared = np.flatnonzero(ok[a] & ok[b])
            if len(shared) >= min_shared:
                out.append((a, b, shared))
    return out


def _start_pairs(pc, xy, cam, opts: RefineOptions) -> list[tuple[float, int, int, Any]]:
    """Candidate start pairs, best first: (score, a, b, cam2_from_cam1) with enough inliers and angle."""
    tvo = pc.TwoViewGeometryOptions()
    tvo.min_num_inliers = 5
    tvo.ransac.max_error = float(max(4.0, opts.mapper_filter_px / 2))
    tvo.ransac.random_seed = int(opts.seed)
    tvo.compute_relative_pose = True
    tvo.detect_watermark = False
    tvo.ransac.max_num_trials = 500
    tvo.ransac.num_threads = 1
    cands = []
    pairs = sorted(_pairs(xy, 5), key=lambda ab: -len(ab[2]))  # most shared names first
    for tried, (a, b, shared) in enumerate(pairs):
        if len(cands) >= 3 * opts.start_pairs or tried >= 40 * opts.start_pairs:
            break
        p1 = xy[a, shared].astype(np.float64)
        p2 = xy[b, shared].astype(np.float64)
        m = np.stack([np.arange(len(shared)), np.arange(len(shared))], axis=1).astype(np.uint32)
        try:
            g = pc.estimate_two_view_geometry(cam, p1, cam, p2, m, tvo)
        except Exception:  # degenerate input inside COLMAP's estimators
            continue
        n_in = len(g.inlier_matches)
        if n_in < 5:
            continue
        if g.config not in (pc.TwoViewGeometryConfiguration.CALIBRATED, pc.TwoViewGeometryConfiguration.UNCALIBRATED):
            continue
        if not pc.estimate_two_view_geometry_pose(cam, p1, cam, p2, g):
            continue
        angle = float(np.rad2deg(g.tri_angle))
        if angle < opts.min_pair_angle_deg or angle > 90.0:
            continue
        score = n_in + 0.05 * min(angle, 40.0)
        cands.append((score, a, b, g.cam2_from_cam1))
    cands.sort(key=lambda c: -c[0])
    return cands


def map_keypoints(
    xy: np.ndarray,  # float64 [V, P, 2] keypoints, NaN where not annotated
    focal: float,  # focal guess in pixels
    width: int,
    height: int,
    opts: RefineOptions | None = None,
) -> RouteResult:
    """Keypoints only: COLMAP incremental mapping from start pairs chosen by g3d; the best model is polished."""
    opts = opts or RefineOptions()
    pc = require_pycolmap()
    start = time.perf_counter()
    V, P = xy.shape[:2]
    ok = np.isfinite(xy[..., 0])
    cam = _camera(pc, focal, width, height)
    cam.has_prior_focal_length = True
    cands = _start_pairs(pc, xy, cam, opts)
    if not cands:
        return failed("mapping", V, P, "no start pair: no two views share 5+ keypoints with a wide enough baseline", time.perf_counter() - start)
    messages: list[str] = []
    best = None  # (key, R, t, focal, registered, pair)
    with tempfile.TemporaryDirectory(prefix="g3d-sfm-") as tmp:
        db_path = Path(tmp) / "database.db"
        with pc.Database.open(db_path) as db:
            db.write_camera(cam, use_camera_id=True)
            rig = pc.Rig(rig_id=1)
            rig.add_ref_sensor(pc.sensor_t(pc.SensorType.CAMERA, 1))
            db.write_rig(rig, use_rig_id=True)
            kp_index = {}
            for v in range(V):
                ps = np.flatnonzero(ok[v])
                img = pc.Image(name=f"view{v:05d}", camera_id=1, image_id=v + 1)
                db.write_image(img, use_image_id=True)
                frame = pc.Frame(frame_id=v + 1, rig_id=1)
                frame.add_data_id(pc.data_t(pc.sensor_t(pc.SensorType.CAMERA, 1), v + 1))
                db.write_frame(frame, use_frame_id=True)
                db.write_keypoints(v + 1, xy[v, ps].astype(np.float32) if len(ps) else np.zeros((0, 2), np.float32))
                kp_index[v] = {int(p): k for k, p in enumerate(ps)}
            for a, b, shared in _pairs(xy, 2):
                m = np.array([[kp_index[a][int(p)], kp_index[b][int(p)]] for p in shared], np.uint32)
                db.write_matches(a + 1, b + 1, m)
                g = pc.TwoViewGeometry()
                g.config = pc.TwoViewGeometryConfiguration.UNCALIBRATED
                g.inlier_matches = m
                db.write_two_view_geometry(a + 1, b + 1, g)
        popts = pc.IncrementalPipelineOptions()
        popts.min_num_matches = 2
        popts.extract_colors = False
        popts.structure_less_registration_fallback = False  # slow (seconds per view) and g3d registers leftovers itself
        popts.multiple_models = False
        popts.min_model_size = 2
        popts.ba_refine_focal_length = True
        popts.ba_refine_principal_point = False
        popts.ba_refine_extra_params = False
        popts.random_seed = int(opts.seed)
        popts.num_threads = 1
        popts.max_runtime_seconds = int(max(1, round(opts.max_runtime_s)))
        m = popts.mapper
        m.abs_pose_min_num_inliers = 4
        m.abs_pose_min_inlier_ratio = 0.5
        m.abs_pose_max_error = float(opts.mapper_filter_px * 1.5)
        m.init_min_num_inliers = 5
        m.init_max_error = float(opts.mapper_filter_px)
        m.filter_max_reproj_error = float(opts.mapper_filter_px)
        m.filter_min_tri_angle = 1.0
        m.ba_local_min_tri_angle = 1.0
        m.max_reg_trials = 5
        m.abs_pose_refine_extra_params = False
        m.random_seed = int(opts.seed)
        m.num_threads = 1
        popts.mapper = m
        tr = popts.triangulation
        tr.ignore_two_view_tracks = False
        tr.create_max_angle_error = 4.0
        tr.continue_max_angle_error = 4.0
        tr.complete_max_reproj_error = float(opts.mapper_filter_px)
        tr.merge_max_reproj_error = float(opts.mapper_filter_px)
        tr.min_angle = 1.0
        tr.random_seed = int(opts.seed)
        popts.triangulation = tr
        with pc.Database.open(db_path) as db:
            cache = pc.DatabaseCache.create(db, pc.DatabaseCacheOptions(min_num_matches=2))
            for score, a, b, rel in cands[: opts.start_pairs]:
                manager = pc.ReconstructionManager()
                pipe = pc.IncrementalPipeline(popts, cache, manager)
                mapper = pc.IncrementalMapper(cache)
                rec = pc.Reconstruction()
                mapper.begin_reconstruction(rec)
                mopts = popts.get_mapper()
                try:
                    mapper.register_initial_image_pair(mopts, a + 1, b + 1, rel)
                except Exception as exc:  # COLMAP refuses the pair
                    messages.append(f"start pair {a},{b} refused ({exc})")
                    mapper.end_reconstruction(True)
                    continue
                tri = popts.get_triangulation()
                mapper.triangulate_image(tri, a + 1)
                mapper.triangulate_image(tri, b + 1)
                ba = popts.get_global_bundle_adjustment()
                ba.refine_focal_length = False
                mapper.adjust_global_bundle(mopts, ba)
                mapper.end_reconstruction(False)  # reconstruct_sub_model begins it again, seeded
                try:
                    pipe.reconstruct_sub_model(mapper, mopts, rec)
                except Exception as exc:
                    messages.append(f"start pair {a},{b}: mapping stopped ({exc})")
                n_reg = rec.num_reg_images()
                if n_reg == 0:
                    continue
                Rm = np.full((V, 3, 3), np.nan)
                tm = np.full((V, 3), np.nan)
                reg = np.zeros(V, bool)
                for iid in rec.reg_image_ids():
                    T = rec.images[iid].cam_from_world()
                    Rm[iid - 1] = T.rotation.matrix()
                    tm[iid - 1] = np.asarray(T.translation).reshape(3)
                    reg[iid - 1] = True
                fm = float(rec.cameras[1].params[0])
                plausible = focal / 3.0 <= fm <= 3.0 * focal
                rec.update_point_3d_errors()
                key = (plausible, int(reg.sum()), -float(rec.compute_mean_reprojection_error()))
                if best is None or key > best[0]:
                    best = (key, Rm, tm, fm, reg, (a, b))
                if plausible and reg.sum() == (ok.sum(axis=1) >= opts.min_view_points).sum():
                    break
    if best is None:
        return failed("mapping", V, P, "COLMAP's mapper registered no views from any start pair", time.perf_counter() - start)
    key, Rm, tm, fm, reg, pair = best
    messages.append(f"start pair views {pair[0]},{pair[1]}; COLMAP registered {int(reg.sum())} of {V} views, focal {fm:.0f} px")
    if not key[0]:
        messages.append(f"implausible focal {fm:.0f} px (guess {focal:.0f}): the model is probably flipped in depth")
    R = np.where(reg[:, None, None], Rm, np.eye(3))
    t = np.where(reg[:, None], tm, 0.0)
    return _polish("mapping", xy, R, t, fm, width, height, reg, opts, messages, start, 1, float(np.rad2deg(np.arctan(2 * opts.mapper_filter_px / fm))))
