"""The network's structure and the schedules of the training loop."""

import math

import numpy as np
import pytest
import torch

from g3d.render.dibr import SIGMA
from g3d.train.loop import TrainConfig, lr_factor, sigma_at, upgrade_config
from g3d.train.model import InverseGraphicsNet
from g3d.train.template import build_template


@pytest.fixture(scope="module")
def tpl():
    return build_template(3)


def _images(n=2, size=64):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, size, size, generator=g)
    x[1] = x[1] * 0.2 + torch.tensor([0.8, 0.7, 0.0]).view(3, 1, 1)  # a yellow picture beside a random one
    return x


@pytest.mark.parametrize("backbone", ["small", "resnet18"])
def test_untrained_network_is_the_template_in_one_colour_per_image(tpl, backbone):
    torch.manual_seed(0)
    net = InverseGraphicsNet(tpl, tex_res=16, backbone=backbone).eval()
    with torch.no_grad():
        verts, tex, offsets = net(_images())
    assert torch.allclose(verts, net.template_verts(2), atol=1e-6) and offsets.abs().max() == 0
    assert tex.shape == (2, 3, 16, 16)
    flat = tex.flatten(2)
    assert (flat.max(-1).values - flat.min(-1).values).max() < 1e-6  # the detail map starts flat
    assert (tex[0, :, 0, 0] - tex[1, :, 0, 0]).abs().max() > 1e-3  # the colour path reads the picture


def test_shapes_are_left_right_symmetric(tpl):
    torch.manual_seed(0)
    net = InverseGraphicsNet(tpl, tex_res=16).eval()
    with torch.no_grad():
        net.shape_head[2].weight.normal_(0, 0.05)
        net.shape_head[2].bias.normal_(0, 0.3)
        verts, _, _ = net(_images())
    mirrored = verts[:, tpl.mirror] * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(mirrored, verts, atol=1e-5)
    assert (verts - net.template_verts(2)).abs().max() > 0.05  # not symmetric merely by being the template
    free = InverseGraphicsNet(tpl, tex_res=16, symmetric=False).eval()
    free.load_state_dict(net.state_dict())
    with torch.no_grad():
        v2, _, _ = free(_images())
    assert not torch.allclose(v2[:, tpl.mirror] * torch.tensor([-1.0, 1.0, 1.0]), v2, atol=1e-3)


def test_the_mirror_map_pairs_each_vertex_with_its_reflection(tpl):
    ref = tpl.verts * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(tpl.verts[tpl.mirror], ref, atol=1e-6)
    assert torch.equal(tpl.mirror[tpl.mirror], torch.arange(len(tpl.verts)))


def test_sigma_anneals_log_linearly_from_dibr_to_the_target():
    cfg = TrainConfig(folder="x", out="y", steps=1000, sigma=1e-5, sigma_anneal=0.5)
    assert sigma_at(cfg, 0) == pytest.approx(SIGMA)
    assert sigma_at(cfg, 250) == pytest.approx(math.sqrt(SIGMA * 1e-5))
    assert sigma_at(cfg, 500) == pytest.approx(1e-5) and sigma_at(cfg, 999) == pytest.approx(1e-5)
    assert sigma_at(TrainConfig(folder="x", out="y", sigma_anneal=0.0, sigma=2e-5), 0) == pytest.approx(2e-5)


def test_cosine_schedule_and_old_runs():
    assert lr_factor("constant", 500, 1000) == 1.0
    assert lr_factor("cosine", 0, 1000) == pytest.approx(1.0)
    assert lr_factor("cosine", 500, 1000) == pytest.approx(0.05 + 0.95 * 0.5)
    assert lr_factor("cosine", 1000, 1000) == pytest.approx(0.05)
    old = upgrade_config({"steps": 10})  # a config.json written before issue #10's options
    assert old["backbone"] == "resnet18" and old["color_readout"] is False and old["symmetric"] is False
    assert old["sigma"] == SIGMA and old["lr_schedule"] == "constant"


def test_swapped_pairing_pairs_every_image_with_another_object_in_the_same_view():
    import numpy as np

    from g3d.train.evaluate import derangement, pearson

    sids = np.array([5, 5, 5, 7, 7, 9, 9, 9])
    vids = np.array([0, 1, 2, 0, 2, 0, 1, 2])
    other = derangement(sids, vids)
    assert (sids[other] != sids).all()
    assert vids[other][0] == 0 and vids[other][2] == 2  # object 5's views 0 and 2 -> object 7's views 0 and 2
    assert sids[other][1] == 7 and vids[other][1] == 0  # object 7 has no view 1: its first image
    assert (derangement(np.array([3, 3]), np.array([0, 1])) == [0, 1]).all()  # one object: nothing to swap with
    assert pearson(np.ones(4), np.arange(4)) == 0.0 and pearson(np.arange(4), 2 * np.arange(4) + 1) == pytest.approx(1.0)


def test_camera_freedom_scales_each_views_step():
    from g3d import cameras as camlib
    from g3d.train.model import ViewCameras

    R, t = camlib.from_azimuth_elevation(np.array([0.0, 0.0, 0.0]), np.array([10.0] * 3), np.array([4.0] * 3))
    K = torch.eye(3).expand(3, 3, 3)
    cams = ViewCameras(K, torch.tensor(R), torch.tensor(t), freedom=torch.tensor([1.0, 0.25, 0.0]))
    opt = torch.optim.Adam(cams.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        _, Rv, tv = cams(torch.arange(3))
        (Rv[:, 0, 2].sum() + tv[:, 0].sum()).backward()  # the same pull on every view
        opt.step()
    with torch.no_grad():
        _, Rv, tv = cams(torch.arange(3))
    turn = torch.linalg.matrix_norm(Rv - torch.tensor(R, dtype=torch.float32))
    shift = (tv - torch.tensor(t, dtype=torch.float32)).norm(dim=1)
    assert turn[2] == 0 and shift[2] == 0  # no freedom: the camera stays
    assert abs(float(turn[0] / turn[1]) - 4.0) < 0.2 and abs(float(shift[0] / shift[1]) - 4.0) < 0.2
