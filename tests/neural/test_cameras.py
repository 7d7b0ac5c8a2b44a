"""Cameras between the dataset's views (issue: one photo from anywhere): latents drawn between the views,
their cameras from the built-in generator's truth or the inverse network's camera head, which camera source a
run can use, and plain photos (no @VIEW) read with the head's camera."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.errors import UsageError
from g3d.neural.mapping import LatentLayout, camera_features
from g3d.neural.photos import read_photos
from g3d.neural.sources import Sources, cameras_for, draw_latents, head_cameras, read_image, resolve_camera_source, synthesize
from g3d.synth.builtin import BuiltinGenerator
from g3d.synth.viewpoints import random_codes
from g3d.train.camera import view_direction
from g3d.train.model import InverseGraphicsNet
from g3d.train.template import build_template
from tests.neural.test_mapping import small_stylegan, sources

VP = (0, 1, 2, 3)


def truth_sources(views: int = 5, size: int = 32, head: bool = False, turn_deg: float = 0.0) -> Sources:
    """Sources on the built-in generator whose dataset cameras are the generator's own (turned ``turn_deg`` in
    azimuth: cameras in another frame, as sfm-init's are), optionally with a camera head."""
    G = BuiltinGenerator(resolution=size)
    torch.manual_seed(1)
    tpl = build_template(1)
    inverse = InverseGraphicsNet(tpl, tex_res=16, camera_head=head).eval().requires_grad_(False)
    codes = random_codes(G, 5, np.zeros(views, int), np.arange(views), VP, 0.7)
    vt = G.viewpoint_truth(codes, VP)
    R, t = cameras.from_azimuth_elevation(vt["azimuth_deg"] + turn_deg, vt["elevation_deg"], vt["distance"])
    K = np.broadcast_to(cameras.intrinsics(size, size, 40.0), (views, 3, 3))
    f = lambda x: torch.tensor(np.ascontiguousarray(x), dtype=torch.float32)  # noqa: E731
    return Sources(G, inverse, tpl, codes, f(K), f(R), f(t), LatentLayout.of(G, VP), 0.7, None, None, (size, size))


def _set_head(src: Sources, azimuth_deg: float, elevation_deg: float) -> None:
    """Make the camera head answer one direction whatever the photo (zero weights, the answer in the bias)."""
    last = src.inverse.camera_head[2]
    with torch.no_grad():
        last.weight.zero_()
        a = np.radians(azimuth_deg)
        last.bias.copy_(torch.tensor([np.sin(a), np.cos(a), elevation_deg / 30.0]))


def test_latents_between_views_keep_the_content_and_draw_their_own_viewpoint():
    src = truth_sources()
    a, va = draw_latents(src, 3, 7, 6)
    b, vb = draw_latents(src, 3, 7, 6, between=0.0)
    assert torch.equal(a, b) and torch.equal(va, vb) and (va >= 0).all()  # between 0: the latents of before
    c, vc = draw_latents(src, 3, 7, 6, between=1.0)
    assert (vc == -1).all()
    content = [r for r in range(src.G.num_ws) if r not in VP]
    assert torch.equal(c[:, content], a[:, content])  # the same cars, other viewpoints
    for code in src.codes:  # no viewpoint of a dataset view
        assert not any(torch.allclose(code, c[i, list(VP)]) for i in range(6))
    d, vd = draw_latents(src, 3, 7, 400, between=0.5)
    assert 0.4 < float((vd < 0).float().mean()) < 0.6
    assert torch.equal(d[vd >= 0][:, list(VP)], src.codes[vd[vd >= 0]])


def test_cameras_between_views_are_the_generators_truth():
    src = truth_sources()
    src.camera_source = resolve_camera_source(src, "auto")
    assert src.camera_source == "truth"
    ws, ids = draw_latents(src, 0, 0, 12, between=0.5)
    assert (ids < 0).any() and (ids >= 0).any()
    cams = cameras_for(src, ws, ids)
    vt = src.G.viewpoint_truth(ws[:, list(VP)], VP)
    az, el, d = cameras.to_azimuth_elevation(cams.R.double().numpy(), cams.t.double().numpy())
    diff = np.abs(az - vt["azimuth_deg"]) % 360
    assert np.minimum(diff, 360 - diff).max() < 1e-3 and np.abs(el - vt["elevation_deg"]).max() < 1e-3
    assert np.allclose(d, vt["distance"], rtol=1e-5)
    assert torch.allclose(cams.features, camera_features(vt["azimuth_deg"], vt["elevation_deg"], vt["distance"]), atol=1e-5)
    on = ids >= 0
    assert torch.equal(cams.R[on], src.R[ids[on]]) and torch.equal(cams.ids, ids)
    # The predicted silhouette of an image between the views is rendered at that image's own camera.
    img = synthesize(src, ws)
    mask = read_image(src, img, cams)[4]
    wrong = read_image(src, img, src.at_views(ids.clamp(min=0)))[4]
    off = ~on
    assert not torch.equal(mask[off], wrong[off]) and torch.equal(mask[on], wrong[on])


def test_which_camera_source_a_run_can_use():
    assert resolve_camera_source(truth_sources(), "truth") == "truth"
    turned = truth_sources(turn_deg=30.0)  # cameras in their own frame (sfm-init): the truth would disagree with them
    assert resolve_camera_source(turned, "auto") == "views"
    with pytest.raises(UsageError, match="30.0 deg .median. from the generator's own.*--cameras head"):
        resolve_camera_source(turned, "truth")
    with pytest.raises(UsageError, match="trained without --camera-head"):
        resolve_camera_source(turned, "head")
    assert resolve_camera_source(truth_sources(turn_deg=30.0, head=True), "auto") == "head"
    assert resolve_camera_source(truth_sources(head=True), "auto") == "truth"
    assert resolve_camera_source(sources(small_stylegan()), "auto") == "views"  # a checkpoint: no truth, no head
    with pytest.raises(UsageError, match="choose one of auto, views, truth, head"):
        resolve_camera_source(truth_sources(), "exact")


def test_head_cameras_follow_the_heads_direction_in_the_project_convention():
    src = truth_sources(head=True)
    _set_head(src, 200.0, 12.0)
    img = torch.rand(2, 3, 32, 32)
    cams = head_cameras(src, img)
    az, el, d = cameras.to_azimuth_elevation(cams.R.double().numpy(), cams.t.double().numpy())
    assert np.allclose(az % 360, 200.0, atol=1e-3) and np.allclose(el, 12.0, atol=1e-3) and np.allclose(d, src.off_distance)
    a, e = view_direction(cams.R, cams.t)  # the angles the head is trained against (g3d train --camera-head)
    assert np.allclose(np.degrees(a.numpy()) % 360, 200.0, atol=1e-3) and np.allclose(np.degrees(e.numpy()), 12.0, atol=1e-3)
    assert (cams.ids == -1).all() and torch.equal(cams.K[0], src.off_K)
    src.camera_source = "head"
    ws, ids = draw_latents(src, 0, 0, 6, between=1.0)
    assert torch.allclose(cameras_for(src, ws, ids, synthesize(src, ws)).R, head_cameras(src, synthesize(src, ws)).R)
    with pytest.raises(UsageError, match="trained without --camera-head"):
        head_cameras(truth_sources(), img)


def test_plain_photos_take_the_heads_camera_and_a_wrong_shape_is_refused(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "a.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))  # 2x the run's size: resized
    cv2.imwrite(str(tmp_path / "wide.png"), rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
    src = truth_sources(head=True)
    _set_head(src, 75.0, 20.0)
    images, cams = read_photos(src, [str(tmp_path / "a.png"), f"{tmp_path / 'a.png'}@3"])
    assert images.shape == (2, 3, 32, 32) and cams.ids.tolist() == [-1, 3]
    az, el, _ = cameras.to_azimuth_elevation(cams.R.double().numpy(), cams.t.double().numpy())
    assert abs(az[0] - 75.0) < 1e-3 and abs(el[0] - 20.0) < 1e-3
    assert torch.equal(cams.R[1], src.R[3]) and torch.equal(cams.features[1], src.cam_features[3])
    with pytest.raises(UsageError, match="48x32 but the run's images are 32x32 .width x height.: crop it"):
        read_photos(src, [str(tmp_path / "wide.png")])
    with pytest.raises(UsageError, match="names no view, and the inverse-graphics run .* predicts no camera.*--camera-head"):
        read_photos(truth_sources(), [str(tmp_path / "a.png")])


def test_the_camera_fit_on_drawn_viewpoints_teaches_the_camera_mlp_alone():
    from g3d.neural.evaluate import _diff
    from g3d.neural.sources import draw_viewpoints
    from g3d.neural.train import camera_fit_loss
    from tests.neural.test_mapping import mapping_for

    src = truth_sources()
    vp, feats = draw_viewpoints(src, 0, 5, 8)
    vp2, feats2 = draw_viewpoints(src, 0, 5, 8)
    assert torch.equal(vp, vp2) and torch.equal(feats, feats2) and not torch.equal(vp, draw_viewpoints(src, 0, 6, 8)[0])
    vt = src.G.viewpoint_truth(vp, VP)
    assert torch.allclose(feats, camera_features(vt["azimuth_deg"], vt["elevation_deg"], vt["distance"]))
    m = mapping_for(src)
    loss = camera_fit_loss(m, src, 0, 0, 16)
    loss.backward()
    grads = {n for n, p in m.named_parameters() if p.grad is not None and float(p.grad.abs().sum()) > 0}
    assert grads and all(n.startswith("camera.") for n in grads)

    def az_error() -> float:  # new cameras through the camera MLP, decoded by the generator
        g = torch.Generator().manual_seed(9)
        az, el = torch.rand(64, generator=g).double().numpy() * 360, 2 + 26 * torch.rand(64, generator=g).double().numpy()
        d = np.full(64, 4.0)
        with torch.no_grad():
            ws = m.w_avg.expand(64, src.G.num_ws, src.G.w_dim).clone()
            ws[:, list(VP)] += m.camera(camera_features(az, el, d)).view(64, len(VP), -1)
        return float(np.median(_diff("azimuth_deg", src.G.parameters_of(ws)["azimuth_deg"].double().numpy(), az)))

    before = az_error()
    opt = torch.optim.Adam(m.camera.parameters(), lr=3e-3)
    for step in range(300):
        opt.zero_grad()
        camera_fit_loss(m, src, 0, step, 128).backward()
        opt.step()
    after = az_error()
    assert before > 45 and after < 10, (before, after)  # from an untrained MLP's ~90 deg (a constant camera's) to a few
