import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.classes import CAR_KEYPOINTS
from g3d.errors import UsageError
from g3d.synth.builtin import CAMERA_ROWS, BuiltinGenerator


@pytest.fixture(scope="module")
def G():
    return BuiltinGenerator(resolution=96)


def _ws(G, n, seed=0, psi=0.7):
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G.mapping(z, truncation_psi=psi)


def test_interface_shapes_and_range(G):
    ws = _ws(G, 3)
    assert ws.shape == (3, 16, 64)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, 96, 96) and img.dtype == torch.float32
    assert img.min() >= -1 and img.max() <= 1
    assert img.std() > 0.05  # not a blank picture


def test_truncation_pulls_towards_the_average():
    G = BuiltinGenerator(resolution=32)
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    full, half = G.mapping(z, 1.0), G.mapping(z, 0.5)
    torch.testing.assert_close(half, full * 0.5)
    cut = G.mapping(z, 0.5, truncation_cutoff=4)
    torch.testing.assert_close(cut[:, :4], full[:, :4] * 0.5)
    torch.testing.assert_close(cut[:, 4:], full[:, 4:])


def test_camera_rows_set_only_the_camera(G):
    a, b = _ws(G, 4, seed=1), _ws(G, 4, seed=2)
    mixed = a.clone()
    mixed[:, list(CAMERA_ROWS)] = b[:, list(CAMERA_ROWS)]
    pa, pb, pm = G.parameters_of(a), G.parameters_of(b), G.parameters_of(mixed)
    for name in pm:
        expect = pb[name] if name in ("azimuth_deg", "elevation_deg", "distance") else pa[name]
        torch.testing.assert_close(pm[name], expect, msg=name)
        if name in ("length", "paint_hue", "azimuth_deg"):
            assert not torch.allclose(pa[name], pb[name])  # the two latents really differ there


def test_azimuth_covers_the_full_circle_and_elevation_stays_low():
    G = BuiltinGenerator(resolution=32)
    prm = G.parameters_of(_ws(G, 2000, psi=1.0))
    hist = np.histogram(prm["azimuth_deg"].numpy(), bins=12, range=(0, 360))[0]
    assert hist.min() > 2000 / 12 * 0.6
    el = prm["elevation_deg"].numpy()
    assert el.min() >= 2 and el.max() <= 28


def test_ground_truth_is_consistent_with_the_pictures(G):
    ws = _ws(G, 6, seed=3)
    img, gt = G.synthesis_with_truth(ws)
    N, H = 6, 96
    assert gt.masks.shape == (N, H, H) and gt.keypoints_2d.shape == (N, len(CAR_KEYPOINTS), 2)
    area = gt.masks.mean(axis=(1, 2))
    assert np.all((area > 0.04) & (area < 0.6)), area
    # Cameras follow g3d.cameras and reproduce the 2D keypoints from the 3D ones.
    uv, z = cameras.project(gt.keypoints_3d, gt.K, gt.R, gt.t)
    np.testing.assert_allclose(uv, gt.keypoints_2d, atol=1e-6)
    az, el, d = cameras.to_azimuth_elevation(gt.R, gt.t)
    np.testing.assert_allclose(az, gt.azimuth_deg % 360, atol=1e-4)
    np.testing.assert_allclose(d, gt.distance, atol=1e-6)
    # Visible keypoints lie on the object's mask (within a pixel); each view sees some and hides some.
    for n in range(N):
        vis = gt.keypoints_visible[n]
        assert 3 <= vis.sum() < len(CAR_KEYPOINTS)
        m = np.pad(gt.masks[n], 1)
        for (u, v) in gt.keypoints_2d[n][vis]:
            x, y = int(u) + 1, int(v) + 1
            assert m[y - 1 : y + 2, x - 1 : x + 2].any()
    # The picture differs from the background where the mask is.
    assert gt.masks.dtype == bool


def test_left_keypoints_face_the_camera_from_the_left():
    G = BuiltinGenerator(resolution=64)
    ws = _ws(G, 1, seed=4)
    # A camera at azimuth 90 deg (the car's left side, +x): left wheels visible, right wheels hidden.
    c = ws.clone()
    prm = G.parameters_of(c)
    for _ in range(200):  # search the camera rows for a code near azimuth 90
        trial = c.clone()
        trial[:, list(CAMERA_ROWS)] = torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(_)) * 0.8
        prm = G.parameters_of(trial)
        if abs(prm["azimuth_deg"].item() - 90) < 15:
            break
    _, gt = G.synthesis_with_truth(trial)
    names = dict(zip(CAR_KEYPOINTS, gt.keypoints_visible[0]))
    assert names["left_front_wheel"] and names["left_back_wheel"]
    assert not names["right_front_wheel"] and not names["right_back_wheel"]


def test_smooth_in_ws(G):
    ws = _ws(G, 1, seed=5)
    step = torch.randn(ws.shape, generator=torch.Generator().manual_seed(9))
    a = G.synthesis(ws)
    b = G.synthesis(ws + 1e-3 * step)
    c = G.synthesis(ws + 3e-1 * step)
    small, big = (a - b).abs().mean().item(), (a - c).abs().mean().item()
    assert small < 0.01 and big > 10 * small


def test_resolutions(G):
    for res in (128, 512):
        g = BuiltinGenerator(resolution=res)
        assert g.synthesis(_ws(g, 1)).shape == (1, 3, res, res)


def test_bad_arguments():
    with pytest.raises(UsageError, match="resolution"):
        BuiltinGenerator(resolution=8)
    with pytest.raises(UsageError, match="cars only"):
        BuiltinGenerator(class_name="horse")
