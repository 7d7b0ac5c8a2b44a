"""The pieces of sfm-init: object frame from keypoint names, checks, pose bins, the COLMAP routes."""

from __future__ import annotations

import numpy as np
import pytest

from g3d import cameras
from g3d.classes import get_preset
from g3d.sfm import checks
from g3d.sfm.align import AlignmentError, Similarity, angle_difference_deg, compare_cameras, to_object_frame, umeyama
from g3d.sfm.posebins import bin_width_deg, focal_guess, pose_bin_cameras
from g3d.sfm.synthetic import car_keypoints, make_scene, visible

from .conftest import needs_pycolmap

CAR = get_preset("car")


def _random_similarity(rng) -> Similarity:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return Similarity(rotation=q, origin=rng.normal(size=3), scale=float(rng.uniform(0.2, 5.0)))


def test_object_frame_from_keypoint_names_undoes_any_similarity():
    rng = np.random.default_rng(0)
    scene = make_scene(seed=1, views=12)
    pts = scene.points
    sim = _random_similarity(rng)
    R_w, t_w = sim.cameras(scene.R, scene.t)  # the same cameras in a scrambled frame
    frame = to_object_frame(sim.points(pts), R_w, t_w, CAR, scale="distance", distance=4.0)
    R_o, t_o = frame.cameras(R_w, t_w)
    # Axes come back exactly (the car is mirror-symmetric, its wheels level); scale and origin are g3d's choice.
    np.testing.assert_allclose(R_o, scene.R, atol=1e-9)
    az, el, d = cameras.to_azimuth_elevation(R_o, t_o)
    assert np.abs(angle_difference_deg(az, scene.azimuth_deg)).max() < 1.5
    assert np.abs(el - scene.elevation_deg).max() < 2.0
    assert abs(np.median(d) - 4.0) < 1e-9
    # Projections are unchanged by the similarity.
    uv_a, _ = cameras.project(pts, scene.K, scene.R[0], scene.t[0])
    uv_b, _ = cameras.project(frame.points(sim.points(pts)), scene.K, R_o[0], t_o[0])
    np.testing.assert_allclose(uv_a, uv_b, atol=1e-9)


def test_unit_box_and_length_scales():
    pts = car_keypoints(seed=3)[0]
    R, t = cameras.from_azimuth_elevation(np.array([0.0, 90.0]), 10.0, 4.0)
    box = to_object_frame(pts, R, t, CAR, scale="unit_box")
    p = box.points(pts)
    assert abs((p.max(axis=0) - p.min(axis=0)).max() - 1.0) < 1e-12
    np.testing.assert_allclose((p.max(axis=0) + p.min(axis=0)) / 2, 0.0, atol=1e-12)
    length = to_object_frame(pts, R, t, CAR, scale=2.0)
    q = length.points(pts)
    assert abs(q[:, 2].max() - q[:, 2].min() - 2.0) < 1e-12


def test_missing_names_cannot_define_the_frame():
    pts = car_keypoints(seed=3)[0].copy()
    idx = CAR.keypoint_index
    for n in ("left_front_wheel", "right_front_wheel"):
        pts[idx[n]] = np.nan
    pts[idx["left_back_wheel"]] = np.nan
    pts[idx["right_back_wheel"]] = np.nan
    with pytest.raises(AlignmentError, match="front/back"):
        to_object_frame(pts, np.eye(3)[None], np.zeros((1, 3)), CAR)


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(20, 3))
    sim = _random_similarity(rng)
    fit = umeyama(src, sim.points(src))
    np.testing.assert_allclose(fit.points(src), sim.points(src), atol=1e-9)
    e = compare_cameras(*sim.cameras(*cameras.from_azimuth_elevation(np.arange(0, 360, 30.0), 10.0, 4.0)), 700.0,
                        *cameras.from_azimuth_elevation(np.arange(0, 360, 30.0), 10.0, 4.0), 700.0)
    assert e.worst_rotation_deg < 1e-5 and e.centre.max() < 1e-9  # arccos's floor near 0


def test_pose_bin_cameras_follow_the_convention():
    R, t = pose_bin_cameras(np.array([0.0, 90.0, np.nan]), np.array([0.0, 15.0, 0.0]), 4.0)
    az, el, d = cameras.to_azimuth_elevation(R[:2], t[:2])
    np.testing.assert_allclose(az, [0.0, 90.0], atol=1e-9)
    np.testing.assert_allclose(el, [0.0, 15.0], atol=1e-9)
    np.testing.assert_allclose(d, 4.0)
    assert np.isnan(R[2]).all() and np.isnan(t[2]).all()
    assert np.allclose(cameras.center_of(R[1], t[1])[0], 4.0 * np.cos(np.deg2rad(15)))  # 90 = the object's left, +x
    assert abs(focal_guess(CAR, 512) - 512 / 2 / np.tan(np.deg2rad(20))) < 1e-9
    assert focal_guess(CAR, 512, 600.0) == 600.0 and bin_width_deg(CAR) == 30.0


def test_checks_catch_collinear_points_and_swap_labels():
    line = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.1], [np.nan, np.nan]])
    assert checks.collinear(line)
    assert not checks.collinear(np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 10.0]]))
    xy = np.arange(24, dtype=float).reshape(12, 2)
    sw = checks.swap_left_right(xy, CAR)
    idx = CAR.keypoint_index
    np.testing.assert_array_equal(sw[idx["left_front_wheel"]], xy[idx["right_front_wheel"]])
    assert checks.focal_flag(700.0, 703.0) is None
    assert checks.focal_flag(2500.0, 703.0).code == "focal"


def test_synthetic_visibility_matches_the_generator():
    pts = car_keypoints(seed=0)[0]
    az = np.arange(0.0, 360.0, 15.0)
    c = cameras.camera_center(az, 5.0, 4.0)
    vis = visible(pts, c)
    n = vis.sum(axis=1)
    assert n.min() >= 6 and n.max() <= 10  # the rendered generator shows 4-10, mostly 6-9
    idx = CAR.keypoint_index
    side = vis[list(az).index(90.0)]
    assert side[idx["left_front_wheel"]] and not side[idx["right_front_wheel"]]
    front = vis[0]
    assert front[idx["left_front_light"]] and not front[idx["left_back_trunk"]]


@needs_pycolmap
def test_routes_match_bundle_adjustment_from_the_truth():
    from g3d.sfm import colmap

    scene = make_scene(seed=21, views=22, noise_px=1.0)
    W, H, f0 = scene.width, scene.height, scene.focal
    Rb, tb = pose_bin_cameras(scene.bin_azimuth_deg, scene.bin_elevation_deg, 4.0)
    ref = colmap.bundle_adjust_from(scene.xy, scene.R, scene.t, f0, W, H)
    e_ref = compare_cameras(ref.R, ref.t, ref.focal, scene.R, scene.t, scene.focal)
    for res in (colmap.refine_from_bins(scene.xy, Rb, tb, f0, W, H), colmap.map_keypoints(scene.xy, f0, W, H)):
        assert res.ok and res.registered.all(), res.messages
        e = compare_cameras(res.R, res.t, res.focal, scene.R, scene.t, scene.focal)
        assert e.median_rotation_deg <= 1.1 * e_ref.median_rotation_deg, res.route
        assert e.median_rotation_deg < 1.0
        assert res.mean_reproj_px < 2.0


@needs_pycolmap
def test_a_180_degree_bin_is_re_estimated_by_absolute_pose():
    from g3d.sfm import colmap

    scene = make_scene(seed=22, views=22, noise_px=1.0)
    az = scene.bin_azimuth_deg.copy()
    az[0] = (az[0] + 180.0) % 360.0  # the first view: it also fixes BA's gauge
    Rb, tb = pose_bin_cameras(az, scene.bin_elevation_deg, 4.0)
    res = colmap.refine_from_bins(scene.xy, Rb, tb, scene.focal, scene.width, scene.height)
    assert 0 in res.reestimated
    e = compare_cameras(res.R, res.t, res.focal, scene.R, scene.t, scene.focal)
    assert e.worst_rotation_deg < 3.0
