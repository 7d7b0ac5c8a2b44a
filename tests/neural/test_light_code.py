"""StyleGAN-R's light code: where the inverse-graphics network predicts the light (g3d train --light), the light
is a fourth source of the mapping, so a swap moves the light alone (plumbing, on the built-in generator with a
randomly initialised inverse network; `g3d neural eval` measures the quality)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.errors import UsageError
from g3d.neural.mapping import LatentLayout, NeuralMapping
from g3d.neural.sources import Sources, draw_latents, read_image, synthesize
from g3d.neural.train import stage1_loss
from g3d.synth.builtin import LIGHT_ROWS, SHAPE_ROWS, BuiltinGenerator
from g3d.train.model import InverseGraphicsNet
from g3d.train.template import build_template


def _sources(light: bool, views: int = 4, size: int = 32) -> Sources:
    G = BuiltinGenerator(resolution=size)
    torch.manual_seed(1)
    tpl = build_template(1)
    inverse = InverseGraphicsNet(tpl, tex_res=16, light_head=light).eval().requires_grad_(False)
    with torch.no_grad():  # non-zero output layers, so the mesh and the light depend on the image
        inverse.shape_head[2].weight.normal_(0, 1e-3)
        if light:
            inverse.light_head[2].weight.normal_(0, 0.5)
    az = np.linspace(0, 270, views)
    R, t = cameras.from_azimuth_elevation(az, np.full(views, 15.0), np.full(views, 3.5))
    K = np.broadcast_to(cameras.intrinsics(size, size, 40.0), (views, 3, 3))
    codes = G.mapping(torch.randn(views, G.z_dim, generator=torch.Generator().manual_seed(2)), 0.7)[:, :4]
    f = lambda x: torch.tensor(np.ascontiguousarray(x), dtype=torch.float32)  # noqa: E731
    return Sources(G, inverse, tpl, codes, f(K), f(R), f(t), LatentLayout.of(G, (0, 1, 2, 3)), 0.7, None, None, (size, size))


def _mapping(src: Sources) -> NeuralMapping:
    torch.manual_seed(0)
    m = NeuralMapping(src.layout, src.tpl.verts.shape[0], src.G.w_avg.reshape(-1)[: src.layout.w_dim], hidden=32, shape_modes=2,
                      light=src.has_light)
    with torch.no_grad():
        ws, views = draw_latents(src, 0, 0, 6, stream=3)
        m.calibrate(read_image(src, synthesize(src, ws), views)[1])
    return m


def test_a_light_run_gives_the_mapping_a_light_source_that_moves_the_light_rows_alone():
    from g3d.neural.figures import swap_ws

    src = _sources(light=True)
    assert src.has_light and not _sources(light=False).has_light
    m = _mapping(src)
    assert m.sources == ("shape", "texture", "background", "light") and m.gate_logits.shape[0] == 4
    ws, views = draw_latents(src, 0, 0, 4, stream=4)
    images = synthesize(src, ws)
    light = read_image(src, images, views)[5]
    assert light.shape == (4, 4) and torch.allclose(light[:, :3].norm(dim=1), torch.ones(4), atol=1e-5)
    assert float((light[:, 3] > 0).float().mean()) == 1.0 and light[:, :3].std(0).max() > 1e-3  # it reads each photo
    # A gate that gives each row group to its own source: the light rows to the light code.
    rows = list(src.layout.content_rows)
    with torch.no_grad():
        m.gate_logits.fill_(-20.0)
        for k, group in enumerate(src.layout.groups):
            for r in group:
                m.gate_logits[k, rows.index(r)] = 20.0
    other = torch.roll(torch.arange(4), 1)
    base = swap_ws(m, src, images, views)
    lit = swap_ws(m, src, images, views, light_from=other)
    moved = (lit - base).abs().amax(dim=(0, 2))  # per ws row
    assert moved[list(LIGHT_ROWS)].min() > 1e-4
    assert moved[[r for r in range(src.G.num_ws) if r not in LIGHT_ROWS]].max() < 1e-6
    shaped = swap_ws(m, src, images, views, shape_from=other)
    assert (shaped - base).abs().amax(dim=(0, 2))[list(LIGHT_ROWS)].max() < 1e-6
    assert (shaped - base).abs().amax(dim=(0, 2))[list(SHAPE_ROWS)].min() > 1e-6


def test_stage1_trains_the_light_code_and_a_mapping_without_one_refuses_a_light_swap(tmp_path):
    from g3d.neural.figures import write_swap_figure

    src = _sources(light=True)
    m = _mapping(src)
    ws, views = draw_latents(src, 0, 1, 4)
    total, terms = stage1_loss(m, src, ws, views, entropy_weight=0.01)
    total.backward()
    assert m.light[0].weight.grad is not None and m.light[0].weight.grad.abs().sum() > 0
    assert torch.isfinite(total)
    plain = _sources(light=False)
    pm = _mapping(plain)
    assert pm.sources == ("shape", "texture", "background") and pm.light is None
    ws, views = draw_latents(plain, 0, 0, 3, stream=4)
    with pytest.raises(UsageError, match="no light code") as e:
        write_swap_figure(tmp_path / "s.png", pm, plain, synthesize(plain, ws), views, 0, 1, 2, 1)
    assert "\n" not in str(e.value)
    out = write_swap_figure(tmp_path / "l.png", m, src, synthesize(src, draw_latents(src, 0, 0, 3, stream=4)[0]),
                            draw_latents(src, 0, 0, 3, stream=4)[1], -1, -1, -1, 1)
    assert out.is_file()
