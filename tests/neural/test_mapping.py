"""The neural renderer's mapping network and its two training stages, on a fixture-sized StyleGAN2 and the
built-in generator (randomly initialised inverse-graphics networks: these test the plumbing, not the
quality; `g3d neural eval` measures that)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.errors import UsageError
from g3d.neural.mapping import LatentLayout, NeuralMapping, camera_features
from g3d.neural.sources import Sources, draw_latents, read_image, synthesize
from g3d.neural.train import _freeze_generator, stage1_loss, stage2_loss, trainable
from g3d.synth.builtin import BuiltinGenerator
from g3d.synth.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from g3d.train.model import InverseGraphicsNet
from g3d.train.template import build_template


def small_stylegan(seed: int = 0) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    return StyleGAN2Generator(StyleGAN2Config(z_dim=8, w_dim=16, resolution=16, channels={4: 8, 8: 4, 16: 4})).eval().requires_grad_(False)


def sources(G, views: int = 3, size: int = 16, vp_rows=(0, 1)) -> Sources:
    torch.manual_seed(1)
    tpl = build_template(1)
    inverse = InverseGraphicsNet(tpl, tex_res=16).eval().requires_grad_(False)
    with torch.no_grad():  # a non-zero shape layer, so the mesh depends on the image
        inverse.shape_head[2].weight.normal_(0, 1e-3)
    az = np.linspace(0, 240, views)
    R, t = cameras.from_azimuth_elevation(az, np.full(views, 15.0), np.full(views, 4.0))
    K = np.broadcast_to(cameras.intrinsics(size, size, 40.0), (views, 3, 3))
    codes = torch.randn(views, len(vp_rows), G.w_dim, generator=torch.Generator().manual_seed(2))
    f = lambda x: torch.tensor(np.ascontiguousarray(x), dtype=torch.float32)  # noqa: E731
    return Sources(G, inverse, tpl, codes, f(K), f(R), f(t), LatentLayout.of(G, vp_rows), 0.7, None, None, (size, size))


def mapping_for(src: Sources, seed: int = 0) -> NeuralMapping:
    torch.manual_seed(seed)
    m = NeuralMapping(src.layout, src.tpl.verts.shape[0], src.G.w_avg, hidden=32, shape_modes=2)
    with torch.no_grad():
        ws, views = draw_latents(src, seed, 0, 6, stream=3)
        m.calibrate(read_image(src, synthesize(src, ws), views)[1])
    return m


def test_calibrated_shape_input_is_whitened_principal_modes():
    G = small_stylegan()
    src = sources(G)
    m = NeuralMapping(src.layout, src.tpl.verts.shape[0], src.G.w_avg, hidden=8, shape_modes=3)
    verts = src.tpl.verts[None] * (1 + 0.1 * torch.randn(40, 1, 3, generator=torch.Generator().manual_seed(0)))
    m.calibrate(verts)
    x = m.shape_input(verts).double()
    assert torch.allclose(x.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(torch.cov(x.T), torch.eye(3, dtype=torch.float64), atol=1e-3)  # unit spread, uncorrelated
    with pytest.raises(ValueError, match="more than 3"):
        m.calibrate(verts[:3])


def test_layout_of_the_builtin_generator_follows_its_row_groups():
    L = LatentLayout.of(BuiltinGenerator(resolution=32), (0, 1, 2, 3))
    assert L.content_rows == tuple(range(4, 16))
    assert L.groups == ((4, 5, 6, 7), (8, 9, 10, 11), (12, 13), (14, 15))
    assert L.content_dim == 12 * 64 and L.viewpoint_dim == 4 * 64


def test_layout_of_a_stylegan_splits_the_content_rows_in_three_blocks():
    G = small_stylegan()
    L = LatentLayout.of(G, (0, 1))
    assert G.num_ws == 6
    assert L.groups == ((2, 3), (4,), (5,))
    with pytest.raises(UsageError, match="do not fit"):
        LatentLayout.of(G, (0, 9))


def test_camera_features():
    f = camera_features([0.0, 90.0], [0.0, 30.0], [4.0, 8.0])
    assert f.dtype == torch.float32 and f.shape == (2, 4)
    assert torch.allclose(f[1], torch.tensor([0.0, 1.0, math.radians(30), math.log(2.0)]), atol=1e-6)


def test_mapping_shapes_dtypes_gate_and_determinism():
    G = small_stylegan()
    src = sources(G)
    m = mapping_for(src)
    ws, views = draw_latents(src, seed=0, step=0, batch=4)
    img = synthesize(src, ws)
    assert img.shape == (4, 3, 16, 16) and img.dtype == torch.float32 and 0 <= float(img.min()) <= float(img.max()) <= 1
    cam, verts, tex, bg, mask, light = read_image(src, img, views)
    assert light is None  # an inverse network without a light head
    out = m(cam, verts, tex, bg)
    assert out.shape == (4, G.num_ws, G.w_dim) and out.dtype == torch.float32
    assert torch.equal(out, mapping_for(src)(cam, verts, tex, bg))  # same seed, same network, same answer
    p = m.gate()
    assert p.shape == (3, src.layout.content_dim) and torch.allclose(p.sum(0), torch.ones(p.shape[1]))
    assert math.isclose(float(m.gate_entropy().detach()), math.log(3), rel_tol=1e-6)  # undecided at the start
    with torch.no_grad():
        m.gate_logits[0] = 20.0  # every dimension from the shape
    assert float(m.gate_entropy().detach()) < 1e-6
    # With the gate on the shape, the content no longer depends on texture or background.
    a = m(cam, verts, tex, bg)
    b = m(cam, verts, torch.rand_like(tex), torch.rand_like(bg))
    rows = list(src.layout.content_rows)
    assert torch.allclose(a[:, rows], b[:, rows], atol=1e-5)
    assert not torch.allclose(m(cam, verts, tex, bg, gate="uniform")[:, rows], m(cam, verts, torch.rand_like(tex), bg, gate="uniform")[:, rows])
    # The camera sets the viewpoint rows only.
    c = m(torch.roll(cam, 1, 0), verts, tex, bg)
    vp = list(src.layout.viewpoint_rows)
    assert torch.allclose(a[:, rows], c[:, rows]) and not torch.allclose(a[:, vp], c[:, vp])


def test_latents_are_a_pure_function_of_seed_and_step_and_mix_their_groups():
    G = BuiltinGenerator(resolution=32)
    src = sources(G, views=4, size=32, vp_rows=(0, 1, 2, 3))
    a, va = draw_latents(src, 3, 7, 5)
    b, vb = draw_latents(src, 3, 7, 5)
    c, _ = draw_latents(src, 3, 8, 5)
    assert torch.equal(a, b) and torch.equal(va, vb) and not torch.equal(a, c)
    assert torch.equal(a[:, :4], src.codes[va])  # viewpoint rows: the dataset's code of the drawn view
    assert not torch.allclose(a[:, 4], a[:, 8])  # shape and paint rows from different latents (style mixing)
    assert torch.equal(a[:, 4], a[:, 7]) and torch.equal(a[:, 8], a[:, 11])  # within a group, one latent
    d, _ = draw_latents(src, 3, 7, 5, mix=0.0)
    assert torch.equal(d[:, 4], d[:, 8]) and torch.equal(d[:, 4], d[:, 15])  # no mixing: one latent for all content


def _snapshot(mod):
    return {k: v.detach().clone() for k, v in mod.state_dict().items()}


def _changed(before, mod):
    return {k for k, v in mod.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("stage", [1, 2])
def test_each_stage_trains_what_it_should_and_nothing_else(stage):
    G = small_stylegan()
    src = sources(G)
    m = mapping_for(src)
    _freeze_generator(G, stage)
    opt = torch.optim.Adam(trainable(stage, m, G), lr=1e-2)
    g0, i0, m0 = _snapshot(G), _snapshot(src.inverse), _snapshot(m)
    ws, views = draw_latents(src, 0, 0, 4)
    if stage == 1:
        loss, terms = stage1_loss(m, src, ws, views, 0.01)
        assert set(terms) == {"latent", "sources", "entropy"}
    else:
        loss, terms = stage2_loss(m, src, ws, views, 0.01, 1.0)
        assert {"cycle_shape", "cycle_texture", "cycle_background"} <= set(terms)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert not _changed(i0, src.inverse)  # the inverse-graphics network is frozen in both stages
    assert _changed(m0, m) >= {"gate_logits", "camera.0.weight"}
    moved = _changed(g0, G)
    if stage == 1:
        assert not moved
    else:
        assert moved and all(k.startswith("synthesis.") for k in moved)  # the GAN's own mapping network stays
        assert not any(k.startswith("mapping.") for k in moved)


def test_stage_one_loss_terms_add_up_and_each_source_learns_whatever_the_gate():
    G = small_stylegan()
    src = sources(G)
    m = mapping_for(src)
    ws, views = draw_latents(src, 0, 0, 4)
    with torch.no_grad():
        m.gate_logits[0] = 30.0  # the gate has given every dimension to the shape
    total, terms = stage1_loss(m, src, ws, views, entropy_weight=0.5, source_weight=2.0)
    assert torch.allclose(total, terms["latent"] + 2.0 * terms["sources"] + 0.5 * terms["entropy"])
    # "sources": each source's code against the content part of ws (offsets from w_avg), by hand.
    with torch.no_grad():
        cam, verts, tex, bg, _, _ = read_image(src, synthesize(src, ws), views)
        codes = m.codes(verts, tex, bg)
        rows = list(src.layout.content_rows)
        want = ((codes - (ws[:, rows] - m.w_avg).flatten(1)[None]) ** 2).mean()
        assert torch.allclose(terms["sources"], want)
        assert torch.allclose(terms["latent"], ((m.assemble(cam, codes) - ws) ** 2).mean())
    m.zero_grad()
    total.backward()
    assert float(m.texture.out[-1].weight.grad.abs().sum()) > 0  # taught although gated out
    m.zero_grad()
    total0, _ = stage1_loss(m, src, ws, views, entropy_weight=0.5, source_weight=0.0)
    total0.backward()
    assert float(m.texture.out[-1].weight.grad.abs().sum()) < 1e-9  # without its own loss it would learn nothing


def test_swaps_route_each_source_to_its_rows():
    """With a decided gate (the built-in generator's row groups to shape, texture, background), taking one
    source from another photo changes that source's rows and nothing else; the camera stays the photo's own."""
    from g3d.neural.figures import swap_ws

    G = BuiltinGenerator(resolution=32)
    src = sources(G, views=4, size=32, vp_rows=(0, 1, 2, 3))
    m = mapping_for(src)
    L = src.layout
    with torch.no_grad():
        lg = torch.full((3, len(L.content_rows)), -30.0)
        for g, s in zip(L.groups, (0, 1, 2, 1)):
            lg[s, [L.content_rows.index(r) for r in g]] = 30.0
        m.gate_logits.copy_(lg)
    ws, views = draw_latents(src, 0, 0, 3)
    img = synthesize(src, ws)
    own = swap_ws(m, src, img, views)
    other = [1, 2, 0]
    for k, rows in ((0, L.groups[0]), (1, L.groups[1] + L.groups[3]), (2, L.groups[2])):
        pick = [None, None, None]
        pick[k] = other
        sw = swap_ws(m, src, img, views, *pick)
        moved = [r for r in range(G.num_ws) if not torch.allclose(sw[:, r], own[:, r], atol=1e-6)]
        assert moved == sorted(rows), (k, moved)
        # the swapped rows are exactly those the other photo's own mapping gives
        assert torch.allclose(sw[:, list(rows)], own[other][:, list(rows)], atol=1e-5)


def test_the_blend_trains_the_gate_and_camera_not_the_codes():
    """With each source's own L2 on, the blend's L2 reaches the gate and the camera MLP only (the codes enter
    it detached: trained through the blend they co-adapt, bench/README.md)."""
    G = small_stylegan()
    src = sources(G)
    m = mapping_for(src)
    ws, views = draw_latents(src, 0, 0, 4)
    _, terms = stage1_loss(m, src, ws, views, entropy_weight=0.0, source_weight=1.0)
    terms["latent"].backward()
    for branch in (m.shape, m.texture, m.background):
        assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in branch.parameters())
    assert float(m.gate_logits.grad.abs().sum()) > 0 and float(m.camera[0].weight.grad.abs().sum()) > 0
    m.zero_grad()
    _, terms = stage1_loss(m, src, ws, views, entropy_weight=0.0, source_weight=0.0)
    terms["latent"].backward()
    assert float(m.texture.out[-1].weight.grad.abs().sum()) > 0  # without the own L2, the blend trains the codes
