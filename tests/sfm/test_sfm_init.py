"""g3d sfm-init end to end: annotation files written from the built-in generator's truth, cameras compared to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from g3d import cameras
from g3d.sfm.align import angle_difference_deg, compare_cameras
from g3d.sfm.run import SfmConfig, run_sfm_init, solve
from g3d.sfm.synthetic import make_scene, scene_annotations, shift_bin, swap_left_right, write_annotations

from .conftest import needs_pycolmap

pytestmark = needs_pycolmap


def _read_cameras(folder: Path):
    df = pq.read_table(folder / "cameras.parquet").to_pandas()
    K = np.stack([np.reshape(k, (3, 3)) for k in df.K])
    R = np.stack([np.reshape(r, (3, 3)) for r in df.R])
    t = np.stack([np.asarray(x) for x in df.t])
    return df, K, R, t


def _view_near(scene, azimuth: float) -> int:
    return int(np.argmin(np.abs(angle_difference_deg(scene.azimuth_deg, azimuth))))


def test_exact_recovery_without_noise(tmp_path):
    scene = make_scene(seed=11, views=39, noise_px=0.0)
    write_annotations(tmp_path, scene)
    rep = run_sfm_init(SfmConfig(folder=tmp_path))
    df, K, R, t = _read_cameras(tmp_path)
    # Format: one row per view, the agreed columns and types.
    schema = pq.read_schema(tmp_path / "cameras.parquet")
    assert [f.name for f in schema] == [
        "view_id", "K", "R", "t", "azimuth_deg", "elevation_deg", "distance", "fov_deg", "source", "reprojection_error", "num_keypoints",
        "usable", "failed_checks",
    ]
    assert str(schema.field("view_id").type) == "int32" and str(schema.field("num_keypoints").type) == "int32"
    assert str(schema.field("K").type) == "fixed_size_list<element: double>[9]"
    assert list(df.view_id) == list(range(39)) and rep.written == 39
    assert set(df.source) == {"sfm"} and not rep.flagged and df.usable.all() and (df.failed_checks == "").all()
    assert (df.reprojection_error < 1e-3).all()
    assert list(df.num_keypoints) == list(np.isfinite(scene.xy[..., 0]).sum(axis=1))
    err = compare_cameras(R, t, K[0, 0, 0], scene.R, scene.t, scene.focal)
    assert err.worst_rotation_deg < 0.01
    assert err.focal_rel < 1e-5 and np.max(err.centre) < 1e-4
    # Both routes recover the truth on their own, and agree.
    assert {r.route for r in rep.routes} == {"bins_ba", "mapping"}
    assert all(r.registered == 39 and r.kept == 39 for r in rep.routes)
    assert rep.preview is not None and rep.preview.stat().st_size > 5000
    assert rep.lines()[0].startswith("39 of 39 views have a camera (39 sfm)")


def test_output_frame_matches_the_pose_bin_convention(tmp_path):
    scene = make_scene(seed=12, views=39, noise_px=1.0)
    write_annotations(tmp_path, scene)
    run_sfm_init(SfmConfig(folder=tmp_path, preview=False))
    df, K, R, t = _read_cameras(tmp_path)
    # No alignment to the truth here: azimuth/elevation/distance are read in the object frame directly.
    front = _view_near(scene, 0.0)
    left = _view_near(scene, 90.0)
    assert abs(angle_difference_deg(df.azimuth_deg[front], scene.azimuth_deg[front])) < 2.0
    assert abs(angle_difference_deg(df.azimuth_deg[front], 0.0)) < 2.0 + 360.0 / 39
    assert abs(angle_difference_deg(df.azimuth_deg[left], scene.azimuth_deg[left])) < 2.0
    assert np.abs(angle_difference_deg(df.azimuth_deg, scene.azimuth_deg)).max() < 3.0
    assert np.abs(df.elevation_deg - scene.elevation_deg).max() < 3.0  # above the object, as the bins
    assert abs(np.median(df.distance) - 4.0) < 1e-6  # the preset's pose-bin distance sets the scale
    # The cameras look at the object: its centre projects near the image centre.
    uv, z = cameras.project(np.zeros((39, 1, 3)), K, R, t)
    assert (z > 0).all() and np.abs(uv[:, 0] - [256, 192]).max() < 60


def test_a_flipped_bin_and_mirrored_labels_are_corrected_from_the_keypoints(tmp_path):
    scene = make_scene(seed=13, views=39, noise_px=1.0)
    swapped = _view_near(scene, 50.0)
    wrong_bin = _view_near(scene, 160.0)
    swap_left_right(scene, swapped)
    shift_bin(scene, wrong_bin, 180.0)
    write_annotations(tmp_path, scene)
    rep = run_sfm_init(SfmConfig(folder=tmp_path, preview=False))
    df, K, R, t = _read_cameras(tmp_path)
    assert set(rep.flagged) == {swapped, wrong_bin}  # still reported, with the cause
    assert "swapped" in " ".join(rep.flagged[swapped])
    assert "180" in " ".join(rep.flagged[wrong_bin])
    assert rep.corrected == {swapped: "sfm_labels_swapped", wrong_bin: "sfm_bin_corrected"} and not rep.unusable
    assert df.source[wrong_bin] == "sfm_bin_corrected" and df.failed_checks[wrong_bin] == "bin_azimuth"
    assert df.source[swapped] == "sfm_labels_swapped" and "swapped" in df.failed_checks[swapped].split(",")
    # Neither is written on its (wrong, or elevation-0) bin camera: both are within 3 deg of the truth.
    err = compare_cameras(R, t, K[0, 0, 0], scene.R, scene.t, scene.focal)
    assert err.rotation_deg[wrong_bin] < 3.0 and err.rotation_deg[swapped] < 3.0
    assert abs(angle_difference_deg(df.azimuth_deg[wrong_bin], scene.bin_azimuth_deg[wrong_bin])) > 150
    assert df.usable.all() and err.median_rotation_deg < 1.0 and err.worst_rotation_deg < 3.0
    assert sum(s == "sfm" for s in df.source) == 37


def test_an_unsettled_contradiction_is_written_unusable():
    """Bin 180 deg off in a view whose exchanged labels agree with the bin: a mirrored side view and a
    flipped bin look alike, so nothing settles which is wrong; the bin camera is written, marked unusable."""
    from g3d.sfm import checks as chk
    from g3d.sfm.run import _correction, usable_views

    cfg = SfmConfig(folder=Path("."))
    R, t = cameras.from_azimuth_elevation(np.array([270.0]), np.array([10.0]), np.array([4.0]))
    Rs, ts = cameras.from_azimuth_elevation(np.array([90.0]), np.array([10.0]), np.array([4.0]))
    bin_flag = [chk.Flag("bin_azimuth", "view 0: ...")]
    swap = (Rs[0], ts[0], np.full(9, 0.5))
    assert _correction(0, bin_flag, R[0], t[0], swap, 90.0, 45.0, cfg) is None  # exchanged labels agree with the bin
    fix = _correction(0, bin_flag, R[0], t[0], None, 90.0, 45.0, cfg)  # nothing else explains it: the bin is wrong
    assert fix[0] == "sfm_bin_corrected" and np.array_equal(fix[1], R[0])
    # Mirrored labels whose exchange fits only 6 of 9 points: not settled.
    bad = (Rs[0], ts[0], np.array([0.5] * 6 + [20.0] * 3))
    assert _correction(0, [chk.Flag("swapped", ""), chk.Flag("outliers", "")], R[0], t[0], bad, 90.0, 45.0, cfg) is None
    assert _correction(0, [chk.Flag("swapped", ""), chk.Flag("outliers", "")], R[0], t[0], swap, 90.0, 45.0, cfg)[0] == "sfm_labels_swapped"
    assert _correction(0, [chk.Flag("swapped", ""), chk.Flag("collinear", "")], R[0], t[0], swap, 90.0, 45.0, cfg) is None
    flags = [bin_flag, [chk.Flag("few_keypoints", "")], [chk.Flag("model", ""), *bin_flag], [], []]
    assert usable_views(["sfm_flagged", "sfm_flagged", "sfm_flagged", "sfm", None], flags).tolist() == [False, True, True, True, False]


def test_keypoints_only_route_recovers_the_cameras(tmp_path):
    scene = make_scene(seed=14, views=22, noise_px=0.0)
    write_annotations(tmp_path, scene, pose_bins=False)
    rep = run_sfm_init(SfmConfig(folder=tmp_path, method="sfm", preview=False))
    df, K, R, t = _read_cameras(tmp_path)
    assert rep.chosen_route == "mapping" and set(df.source) == {"sfm"}
    err = compare_cameras(R, t, K[0, 0, 0], scene.R, scene.t, scene.focal)
    assert err.worst_rotation_deg < 0.01
    assert np.abs(angle_difference_deg(df.azimuth_deg, scene.azimuth_deg)).max() < 1.5  # object frame from the keypoints alone


def test_method_bins_gives_every_view_its_pose_bin_camera(tmp_path):
    scene = make_scene(seed=15, views=8, noise_px=1.0)
    write_annotations(tmp_path, scene, keypoints=False)
    rep = run_sfm_init(SfmConfig(folder=tmp_path, method="bins", preview=False))
    df, K, R, t = _read_cameras(tmp_path)
    assert set(df.source) == {"pose_bin"} and df.reprojection_error.isna().all()
    np.testing.assert_allclose(df.azimuth_deg, scene.bin_azimuth_deg, atol=1e-9)
    np.testing.assert_allclose(df.elevation_deg, 0.0, atol=1e-9)
    np.testing.assert_allclose(df.fov_deg, 40.0, atol=1e-9)
    Rb, tb = cameras.from_azimuth_elevation(scene.bin_azimuth_deg, 0.0, 4.0)
    np.testing.assert_allclose(R, Rb, atol=1e-12)
    np.testing.assert_allclose(t, tb, atol=1e-12)
    assert rep.routes == []


def test_a_wrong_focal_guess_is_caught_and_every_view_falls_back(tmp_path):
    scene = make_scene(seed=16, views=22, noise_px=1.0)
    write_annotations(tmp_path, scene)
    rep = run_sfm_init(SfmConfig(folder=tmp_path, focal_guess=150.0, preview=False))
    df, K, R, t = _read_cameras(tmp_path)
    assert set(df.source) == {"sfm_flagged"} and len(rep.flagged) == 22
    assert any("focal" in p and "150" in p for p in rep.problems)
    np.testing.assert_allclose(K[:, 0, 0], 150.0)  # the guess stays: the refined focal was not trusted


def test_refining_from_a_focal_guess_off_by_15_percent(tmp_path):
    scene = make_scene(seed=17, views=39, noise_px=0.0)
    write_annotations(tmp_path, scene)
    rep = run_sfm_init(SfmConfig(folder=tmp_path, focal_guess=scene.focal * 1.15, preview=False))
    assert rep.sources["sfm"] == 39
    assert abs(rep.focal / scene.focal - 1) < 1e-5


def test_views_with_too_few_keypoints_keep_their_bin_camera():
    scene = make_scene(seed=18, views=22, noise_px=1.0)
    ones = np.flatnonzero(np.isfinite(scene.xy[3, :, 0]))
    scene.xy[3, ones[1:]] = np.nan  # one point left
    threes = np.flatnonzero(np.isfinite(scene.xy[7, :, 0]))
    scene.xy[7, threes[3:]] = np.nan  # three points left
    scene.xy[9] = np.nan  # nothing clicked
    sol = solve(scene_annotations(scene), SfmConfig(folder=Path(".")))
    assert sol.source[3] == "sfm_flagged" and "only 1 keypoint" in sol.flags[3][0].message
    assert sol.source[7] == "sfm_flagged" and [f.code for f in sol.flags[7]][0] == "few_keypoints"
    assert sol.source[9] == "pose_bin" and not sol.flags[9]  # nothing to refine: the bin camera, not a flag
    assert any("no keypoints clicked in views 9" in p for p in sol.problems)
    assert sum(s == "sfm" for s in sol.source) == 19


def test_same_input_same_cameras(tmp_path):
    scene = make_scene(seed=19, views=22, noise_px=3.0, missing=0.3)
    a = solve(scene_annotations(scene), SfmConfig(folder=Path(".")))
    b = solve(scene_annotations(scene), SfmConfig(folder=Path(".")))
    assert a.source == b.source
    np.testing.assert_array_equal(a.R, b.R)
    np.testing.assert_array_equal(a.t, b.t)
