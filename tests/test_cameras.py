import numpy as np
import pytest

from g3d import cameras


def test_azimuth_zero_sees_the_front_and_ninety_the_left_side():
    R, t = cameras.from_azimuth_elevation(0.0, 0.0, 4.0)
    c = cameras.center_of(R, t)
    np.testing.assert_allclose(c, [0, 0, 4], atol=1e-12)
    # The object's front (+z) is nearer the camera than its back.
    (_, z), = [cameras.project(np.array([[0, 0, 1.0], [0, 0, -1.0]]), np.eye(3), R, t)]
    assert z[0] < z[1]
    R90, t90 = cameras.from_azimuth_elevation(90.0, 0.0, 4.0)
    np.testing.assert_allclose(cameras.center_of(R90, t90), [4, 0, 0], atol=1e-12)


def test_opencv_axes_up_is_up_and_left_side_appears_on_the_right_from_the_front():
    K = cameras.intrinsics(200, 100, 60.0)
    R, t = cameras.from_azimuth_elevation(0.0, 0.0, 5.0)
    uv, z = cameras.project(np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 0]]), K, R, t)
    np.testing.assert_allclose(uv[2], [100, 50])  # origin on the principal point
    assert uv[0, 1] < 50  # +y (up) is higher in the image (smaller row)
    assert uv[1, 0] > 100  # facing the car's front, its left side (+x) is on the image's right
    assert np.all(z > 0)


def test_rotation_is_orthonormal_and_round_trips_azimuth_elevation():
    rng = np.random.default_rng(0)
    az = rng.uniform(0, 360, 50)
    el = rng.uniform(-80, 80, 50)
    d = rng.uniform(1, 10, 50)
    R, t = cameras.from_azimuth_elevation(az, el, d)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    az2, el2, d2 = cameras.to_azimuth_elevation(R, t)
    np.testing.assert_allclose(az2, az, atol=1e-9)
    np.testing.assert_allclose(el2, el, atol=1e-9)
    np.testing.assert_allclose(d2, d, atol=1e-9)


def test_camera_looks_at_origin_and_horizon_is_level():
    R, t = cameras.from_azimuth_elevation(37.0, 20.0, 3.0)
    K = cameras.intrinsics(64, 64, 40)
    uv, _ = cameras.project(np.zeros((1, 3)), K, R, t)
    np.testing.assert_allclose(uv[0], [32, 32], atol=1e-9)
    assert abs(R[0, 1]) < 1e-12  # camera x axis has no vertical component: roll 0


def test_transforms_json_round_trip():
    R, t = cameras.from_azimuth_elevation([10.0, 200.0], [5.0, 25.0], [4.0, 4.5])
    K = cameras.intrinsics(256, 256, 40)
    tj = cameras.to_transforms_json(K, R, t, 256, 256, ["a.png", "b.png"])
    assert tj["fl_x"] == pytest.approx(K[0, 0]) and len(tj["frames"]) == 2
    for f, Ri, ti in zip(tj["frames"], R, t):
        M = np.array(f["transform_matrix"])
        # OpenGL camera looks down its -z axis: towards the origin here.
        look = -M[:3, 2]
        np.testing.assert_allclose(look, -M[:3, 3] / np.linalg.norm(M[:3, 3]), atol=1e-9)
        R2, t2 = cameras.from_c2w_opengl(M)
        np.testing.assert_allclose(R2, Ri, atol=1e-12)
        np.testing.assert_allclose(t2, ti, atol=1e-12)


def test_fov_round_trip():
    K = cameras.intrinsics(320, 240, 50.0)
    assert cameras.fov_of(K, 320) == pytest.approx(50.0)


def test_interpolated_cameras_run_from_one_camera_to_the_other_looking_at_the_object():
    from g3d.cameras import from_azimuth_elevation, interpolate, to_azimuth_elevation

    Ra, ta = from_azimuth_elevation(np.array([350.0, 90.0]), np.array([10.0, 5.0]), np.array([4.0, 5.0]))
    Rb, tb = from_azimuth_elevation(np.array([30.0, 170.0]), np.array([20.0, 25.0]), np.array([6.0, 5.0]))
    for w, want_az, want_el, want_d in ((0.0, [350.0, 90.0], [10.0, 5.0], [4.0, 5.0]), (1.0, [30.0, 170.0], [20.0, 25.0], [6.0, 5.0])):
        R, t = interpolate(Ra, ta, Rb, tb, np.full(2, w))
        az, el, d = to_azimuth_elevation(R, t)
        assert np.allclose(az, want_az, atol=1e-6) and np.allclose(el, want_el, atol=1e-6) and np.allclose(d, want_d, atol=1e-9)
    R, t = interpolate(Ra, ta, Rb, tb, np.full(2, 0.5))
    az, el, d = to_azimuth_elevation(R, t)
    assert np.allclose(d, [5.0, 5.0])  # the distance linear in the weight
    assert abs((az[0] + 180.0) % 360.0 - 190.0) < 1.0 and 125.0 < az[1] < 135.0  # across 0 deg: the short way round
    assert 14.0 < el[0] < 16.0 and 14.0 < el[1] < 16.0
    assert np.allclose(np.linalg.det(R), 1.0) and np.allclose(R @ np.transpose(R, (0, 2, 1)), np.eye(3), atol=1e-9)
    # Still looking at the object: its origin on the optical axis (camera x, y of the origin are 0).
    assert np.allclose(t[:, :2], 0.0, atol=1e-9) and (t[:, 2] > 0).all()
    # The same rotation twice: that rotation at any weight.
    R2, t2 = interpolate(Ra, ta, Ra, ta, np.array([0.3, 0.7]))
    assert np.allclose(R2, Ra) and np.allclose(t2, ta)
