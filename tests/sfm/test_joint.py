"""sfm-init with keypoints clicked on several objects: one joint solve, one 3D point per object and name."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from g3d import cameras
from g3d.classes import get_preset
from g3d.sfm import checks as chk
from g3d.sfm.align import compare_cameras, object_axes
from g3d.sfm.colmap import bundle_adjust_from
from g3d.sfm.run import SfmConfig, solve
from g3d.sfm.synthetic import car_keypoints, make_scene, scene_annotations, visible

from .conftest import needs_pycolmap


def _second_car(scene, seed: int, noise_px: float) -> np.ndarray:
    """float64 [V, P, 2]: another built-in car seen by the scene's cameras, its visible keypoints clicked with noise."""
    rng = np.random.default_rng(seed)
    pts = car_keypoints(seed)[0]
    V = len(scene.R)
    uv, z = cameras.project(np.broadcast_to(pts, (V,) + pts.shape), scene.K, scene.R, scene.t)
    vis = visible(pts, cameras.center_of(scene.R, scene.t), scene.names) & (z > 0)
    vis &= (uv[..., 0] >= 0) & (uv[..., 0] < scene.width) & (uv[..., 1] >= 0) & (uv[..., 1] < scene.height)
    xy = uv + rng.normal(0.0, noise_px, uv.shape)
    xy[~vis] = np.nan
    return xy


def _two_cars(seed: int, noise_px: float = 1.0, views: int = 39):
    scene = make_scene(seed=seed, views=views, noise_px=noise_px)
    ann = scene_annotations(scene)
    ann.by_object = {0: scene.xy.copy(), 1: _second_car(scene, seed + 100, noise_px)}
    return scene, ann


def _rotation_errors(sol, scene) -> np.ndarray:
    return compare_cameras(sol.R, sol.t, float(sol.K[0, 0]), scene.R, scene.t, scene.focal).rotation_deg


def test_stacked_annotations_keep_each_object_and_name_apart():
    scene, ann = _two_cars(seed=3, views=6)
    st = ann.stacked()
    P = len(ann.preset.keypoints)
    assert st.xy.shape == (6, 2 * P, 2) and st.objects == (0, 1)
    np.testing.assert_array_equal(st.xy[:, P:], ann.by_object[1])
    assert st.keypoint_label(P + 2) == f"object 1 {ann.preset.keypoints[2]}" and ann.keypoint_label(2) == ann.preset.keypoints[2]
    # Exchanging left and right exchanges them within each object, never across objects.
    sw = chk.swap_left_right(st.xy[0], ann.preset)
    np.testing.assert_array_equal(sw[:P], chk.swap_left_right(st.xy[0, :P], ann.preset))
    np.testing.assert_array_equal(sw[P:], chk.swap_left_right(st.xy[0, P:], ann.preset))


def test_object_axes_count_the_pairs_of_every_stacked_object():
    preset = get_preset("car")
    a, b = car_keypoints(1)[0], car_keypoints(2)[0]
    rot = cameras.from_azimuth_elevation(np.array([30.0]), np.array([10.0]), np.array([1.0]))[0][0]
    R_ab, how = object_axes(np.concatenate([a, b]) @ rot.T, preset)
    assert "12 left/right pairs" in how  # 6 per car
    np.testing.assert_allclose(R_ab @ rot, np.eye(3), atol=1e-6)  # rows: the object axes, rotated
    # The second object's pairs count: a first object missing its front wheels still gets its forward axis.
    a_missing = a.copy()
    a_missing[[preset.keypoint_index[n] for n in preset.keypoints if "wheel" in n]] = np.nan
    R_b, _ = object_axes(np.concatenate([a_missing, b]), preset)
    np.testing.assert_allclose(R_b, np.eye(3), atol=0.05)
    with pytest.raises(ValueError, match="whole sets"):
        object_axes(np.concatenate([a, b[:3]]), preset)


@needs_pycolmap
def test_two_clicked_cars_are_solved_jointly_and_beat_either_alone():
    """Median camera error over 3 layouts: the joint solve against each object alone (the old answer)
    and the pose bins (the fallback), with a bundle adjustment started at the true cameras as the
    ceiling this noise allows."""
    joint, alone, bins, ceiling = [], [], [], []
    for seed in (5, 6, 7):
        scene, ann = _two_cars(seed)
        sol = solve(ann, SfmConfig(folder="."))
        assert any("kept all 2 objects jointly" in p for p in sol.problems), sol.problems
        assert sol.points.shape == (2 * len(ann.preset.keypoints), 3)
        joint.append(np.median(_rotation_errors(sol, scene)))
        alone.append(min(np.median(_rotation_errors(solve(replace(ann, xy=xy, by_object={}), SfmConfig(folder=".")), scene))
                         for xy in ann.by_object.values()))
        bins.append(np.median(_rotation_errors(replace(sol, R=sol.bin_R, t=sol.bin_t), scene)))
        st = ann.stacked()
        ref = bundle_adjust_from(st.xy, scene.R, scene.t, scene.focal, scene.width, scene.height)
        ceiling.append(np.median(compare_cameras(ref.R, ref.t, ref.focal, scene.R, scene.t, scene.focal).rotation_deg))
    joint, alone, bins, ceiling = map(np.median, (joint, alone, bins, ceiling))
    print(f"median rotation error, deg: joint {joint:.2f}, better object alone {alone:.2f}, pose bins {bins:.2f}, true-start BA {ceiling:.2f}")
    assert joint < 0.9 * alone and joint < 0.3 * bins
    assert joint <= 1.1 * ceiling
