"""Object-centred crops and their exact intrinsics (g3d.cameras.object_box / crop_intrinsics, g3d.train.crop)."""

import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.train.crop import crop_image, mask_box


def test_crop_intrinsics_move_projections_with_the_crop_and_invert():
    rng = np.random.default_rng(0)
    K = cameras.intrinsics(300, 200, 40.0)
    R, t = cameras.from_azimuth_elevation(30.0, 15.0, 4.0)
    pts = rng.uniform(-1, 1, (50, 3))
    uv, _ = cameras.project(pts, K, R, t)
    box = (-13, 27, 151)  # reaching past the photo's left edge
    Kc = cameras.crop_intrinsics(K, box, 64)
    uv_c, _ = cameras.project(pts, Kc, R, t)
    assert np.allclose(uv_c, (uv - [box[0], box[1]]) * 64 / 151)
    assert np.allclose(cameras.uncrop_intrinsics(Kc, box, 64), K)


def test_object_box_is_a_square_around_the_box_with_a_margin():
    x0, y0, side = cameras.object_box((10, 40, 50, 60), margin=0.25)
    assert side == 60 and x0 + side / 2 == pytest.approx(30, abs=1) and y0 + side / 2 == pytest.approx(50, abs=1)
    with pytest.raises(ValueError):
        cameras.object_box((5, 5, 5, 9))


def test_a_true_mesh_lands_on_its_cropped_mask_only_with_the_crop_camera():
    """The built-in generator's car at 128 px, cropped around its mask to 48 px: its true mesh rendered with the crop's
    intrinsics covers the cropped mask (the check of the pixel-centre convention through the resampling); the photo's
    intrinsics merely rescaled to 48 px (the uncropped baseline) do not."""
    from g3d.render.dibr import render
    from g3d.synth.builtin import BuiltinGenerator

    G = BuiltinGenerator(resolution=128)
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ws = G.mapping(z, 0.7)
        _, truth = G.synthesis_with_truth(ws)
        mesh, _, _ = G.build_mesh(G.parameters_of(ws))
    for n in range(3):
        m = truth.masks[n]
        box = cameras.object_box(mask_box(m), margin=0.1)
        crop = crop_image(m, box, 48, mask=True)
        img = crop_image(np.zeros((128, 128, 3), np.uint8), box, 48)
        assert img.shape == (48, 48, 3) and crop.shape == (48, 48)
        scores = {}
        for name, K in (("crop", cameras.crop_intrinsics(truth.K[n], box, 48)), ("rescaled", np.diag([48 / 128, 48 / 128, 1]) @ truth.K[n])):
            f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
            hard = render(mesh.verts[n:n + 1].float(), mesh.faces, f(K), f(truth.R[n]), f(truth.t[n]), 48, 48, silhouette=False).fragments.mask[0].numpy()
            scores[name] = (hard & crop).sum() / (hard | crop).sum()
        assert scores["crop"] > 0.95 and scores["rescaled"] < scores["crop"] - 0.1, scores
