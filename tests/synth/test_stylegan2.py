"""The pure-PyTorch StyleGAN2 generator against the NVlabs and rosinality conformance fixtures.

These tests build the network straight from a :class:`StyleGAN2Config` and ``load_state_dict``
(no checkpoint loader), so a loader bug cannot hide a model bug; the loaders are covered in
``test_checkpoints.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from g3d.errors import G3DError, UsageError
from g3d.synth.generator import Generator
from g3d.synth.stylegan2 import StyleGAN2Config, StyleGAN2Generator, upsample2d

TOL = dict(atol=1e-4, rtol=1e-4)
CHANNELS = {4: 64, 8: 64, 16: 64, 32: 32, 64: 16}


def _close(actual: torch.Tensor, expected: np.ndarray) -> None:
    torch.testing.assert_close(actual, torch.from_numpy(np.asarray(expected)), **TOL)


@pytest.fixture(scope="module")
def nv(stylegan_fixtures: Path) -> tuple[StyleGAN2Generator, dict[str, np.ndarray]]:
    """The NVlabs fixture loaded by hand: key names are the internal layout already."""
    sd = load_file(str(stylegan_fixtures / "nvlabs_small.safetensors"))
    sd = {k: v for k, v in sd.items() if not k.endswith("resample_filter")}
    cfg = StyleGAN2Config(z_dim=128, w_dim=128, resolution=64, channels=dict(CHANNELS))
    gen = StyleGAN2Generator(cfg).eval().requires_grad_(False)
    gen.load_state_dict(sd, strict=True)
    cases = dict(np.load(stylegan_fixtures / "nvlabs_small_cases.npz"))
    return gen, cases


def test_config_and_interface(nv):
    gen, _ = nv
    assert isinstance(gen, Generator)
    assert (gen.z_dim, gen.w_dim, gen.num_ws, gen.resolution, gen.c_dim) == (128, 128, 10, 64, 0)
    assert gen.config.block_resolutions == [4, 8, 16, 32, 64]
    keys = set(gen.state_dict())
    assert "mapping.fc0.weight" in keys and "mapping.w_avg" in keys
    assert "synthesis.b8.conv0.noise_const" in keys and "synthesis.b64.torgb.affine.bias" in keys
    assert not any(k.endswith("resample_filter") for k in keys)
    d = gen.describe()
    assert d["format"] == "stylegan2" and d["architecture"]["num_ws"] == 10
    assert d["architecture"]["channels"] == {str(k): v for k, v in CHANNELS.items()}


def test_config_json_round_trip():
    cfg = StyleGAN2Config(z_dim=8, w_dim=16, resolution=16, channels={4: 8, 8: 4, 16: 2}, conv_clamp=256.0)
    again = StyleGAN2Config.from_dict(cfg.to_dict())
    assert again == cfg and again.num_ws == 6


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(c_dim=10), "conditional"),
        (dict(resolution=48), "power of two"),
        (dict(architecture="resnet"), "resnet"),
        (dict(channels={4: 8}), "no channel width"),
        (dict(img_channels=1), "RGB"),
        (dict(resample_filter=(1.0, 2.0, 1.0)), "even number"),
    ],
)
def test_config_refusals(changes, words):
    base = dict(z_dim=8, w_dim=8, resolution=16, channels={4: 8, 8: 8, 16: 8})
    base.update(changes)
    with pytest.raises(UsageError) as err:
        StyleGAN2Generator(StyleGAN2Config(**base))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_mapping_matches_fixture(nv):
    gen, c = nv
    z = torch.from_numpy(c["z"])
    with torch.no_grad():
        _close(gen.mapping(z, truncation_psi=1.0), c["ws_psi1"])
        _close(gen.mapping(z, truncation_psi=0.7), c["ws_psi07"])
        _close(gen.mapping(z, truncation_psi=0.7, truncation_cutoff=None), c["ws_psi07"])


@pytest.mark.parametrize("fused", [True, False])
def test_synthesis_matches_fixture(nv, fused):
    gen, c = nv
    with torch.no_grad():
        _close(gen.synthesis(torch.from_numpy(c["ws_psi1"]), "const", fused_modconv=fused), c["img_psi1"])
        _close(gen.synthesis(torch.from_numpy(c["ws_psi07"]), "const", fused_modconv=fused), c["img_psi07"])
        _close(
            gen.synthesis(torch.from_numpy(c["ws_psi1"]), "none", fused_modconv=fused),
            c["img_psi1_noise_none"],
        )


def test_style_mixing_matches_fixture(nv):
    gen, c = nv
    k, a, b = int(c["mix_k"]), c["mix_src_a"], c["mix_src_b"]
    with torch.no_grad():
        ws = gen.mapping(torch.from_numpy(c["z"]))
        mixed = ws[torch.from_numpy(b)].clone()
        mixed[:, :k] = ws[torch.from_numpy(a), :k]
        _close(mixed, c["mix_ws"])
        _close(gen.synthesis(mixed), c["mix_img"])
        _close(gen.synthesis(torch.from_numpy(c["mix_ws"])), c["mix_img"])


def test_forward_is_mapping_then_synthesis(nv):
    gen, c = nv
    with torch.no_grad():
        _close(gen(torch.from_numpy(c["z"]), truncation_psi=0.7), c["img_psi07"])


def test_one_image_at_a_time_matches_batch(nv):
    gen, c = nv
    z = torch.from_numpy(c["z"])
    with torch.no_grad():
        singles = torch.cat([gen.synthesis(gen.mapping(z[i : i + 1])) for i in range(z.shape[0])])
    _close(singles, c["img_psi1"])


def test_truncation_cutoff_rows(nv):
    gen, c = nv
    z = torch.from_numpy(c["z"])
    full, trunc = torch.from_numpy(c["ws_psi1"]), torch.from_numpy(c["ws_psi07"])
    with torch.no_grad():
        own = gen.mapping(z)  # psi 1 here: bit for bit what the rows past the cutoff must be (the fixture's within TOL:
        _close(own, full)  # another machine's float path)
        for cutoff in (0, 1, 4, 9):
            ws = gen.mapping(z, truncation_psi=0.7, truncation_cutoff=cutoff)
            torch.testing.assert_close(ws[:, :cutoff], trunc[:, :cutoff], **TOL)
            torch.testing.assert_close(ws[:, cutoff:], own[:, cutoff:], atol=0, rtol=0)  # untouched
        torch.testing.assert_close(gen.mapping(z, 0.7, truncation_cutoff=50), trunc, **TOL)
        avg = gen.mapping(z, truncation_psi=0.0)
        torch.testing.assert_close(avg, gen.w_avg.expand(4, 10, 128), atol=1e-6, rtol=0)


def test_noise_modes(nv):
    gen, c = nv
    ws = torch.from_numpy(c["ws_psi1"])
    with torch.no_grad():
        r1 = gen.synthesis(ws, "random", generator=torch.Generator().manual_seed(5))
        r2 = gen.synthesis(ws, "random", generator=torch.Generator().manual_seed(5))
        r3 = gen.synthesis(ws, "random", generator=torch.Generator().manual_seed(6))
        const = gen.synthesis(ws, "const")
    torch.testing.assert_close(r1, r2, atol=0, rtol=0)
    assert (r1 - r3).abs().max() > 1e-3 and (r1 - const).abs().max() > 1e-3
    assert r1.dtype == torch.float32 and r1.shape == (4, 3, 64, 64)


def test_bad_inputs_are_one_line_usage_errors(nv):
    gen, _ = nv
    for call in (
        lambda: gen.mapping(torch.zeros(2, 127)),
        lambda: gen.mapping(torch.zeros(2, 128), truncation_cutoff=-1),
        lambda: gen.synthesis(torch.zeros(2, 9, 128)),
        lambda: gen.synthesis(torch.zeros(2, 10, 128), noise_mode="fresh"),
        lambda: gen.set_precision(torch.float64),
    ):
        with pytest.raises(UsageError) as err:
            call()
        assert "\n" not in str(err.value)
        assert isinstance(err.value, G3DError)


def test_low_precision_paths_run_on_cpu(nv):
    """bfloat16 + channels_last (the CUDA path's knobs) stay close to float32; output is float32."""
    gen, c = nv
    ref = torch.from_numpy(c["img_psi1"])
    try:
        gen.set_precision(torch.bfloat16, channels_last=True, num_lowp_res=3)
        assert gen.lowp_from_res == 16
        with torch.no_grad():
            img = gen.synthesis(torch.from_numpy(c["ws_psi1"]))
        assert img.dtype == torch.float32 and img.is_contiguous()
        assert float((img - ref).abs().max() / ref.abs().max()) < 0.05
    finally:
        gen.set_precision(torch.float32)
    with torch.no_grad():
        _close(gen.synthesis(torch.from_numpy(c["ws_psi1"])), c["img_psi1"])


def test_upsample2d_is_zero_insert_then_fir():
    """The transposed-conv formulation equals zero insertion + pad (2, 1) + 4x4 FIR with gain 4."""
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = taps / taps.sum()
    up = torch.zeros(2, 3, 10, 12)
    up[:, :, ::2, ::2] = x
    up = torch.nn.functional.pad(up, [2, 1, 2, 1])
    k = (torch.outer(f, f) * 4).flip([0, 1]).expand(3, 1, 4, 4)
    expected = torch.nn.functional.conv2d(up, k, groups=3)
    torch.testing.assert_close(upsample2d(x, f), expected, atol=1e-6, rtol=1e-6)


def test_rosinality_fixture_by_hand(stylegan_fixtures: Path):
    """Same maths under rosinality's conventions: renaming/reshaping only, no rescaling."""
    sd = load_file(str(stylegan_fixtures / "rosinality_small.safetensors"))
    c = dict(np.load(stylegan_fixtures / "rosinality_small_cases.npz"))
    ours: dict[str, torch.Tensor] = {}
    for i in range(8):
        ours[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        ours[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
    ours["mapping.w_avg"] = torch.from_numpy(c["truncation_latent"][0])
    ours["synthesis.b4.const"] = sd["input.input"][0]

    def styled(src: str, dst: str, j: int) -> None:
        ours[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        ours[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        ours[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        ours[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        ours[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
        ours[f"{dst}.noise_const"] = sd[f"noises.noise_{j}"][0, 0]

    def rgb(src: str, dst: str) -> None:
        ours[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        ours[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        ours[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        ours[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

    styled("conv1", "synthesis.b4.conv1", 0)
    rgb("to_rgb1", "synthesis.b4.torgb")
    for k in range(4):
        r = 2 ** (k + 3)
        styled(f"convs.{2 * k}", f"synthesis.b{r}.conv0", 2 * k + 1)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1", 2 * k + 2)
        rgb(f"to_rgbs.{k}", f"synthesis.b{r}.torgb")
    gen = StyleGAN2Generator(StyleGAN2Config(z_dim=128, w_dim=128, resolution=64, channels=dict(CHANNELS)))
    gen.load_state_dict(ours, strict=True)
    z = torch.from_numpy(c["z"])
    with torch.no_grad():
        _close(gen.mapping(z)[:, 0], c["latent"])
        _close(gen.synthesis(gen.mapping(z)), c["img_trunc1"])
        _close(gen.mapping(z, 0.7), c["latent_trunc07_per_layer"])
        _close(gen.synthesis(gen.mapping(z, 0.7)), c["img_trunc07"])
        _close(gen.synthesis(torch.from_numpy(c["mix_latent"])), c["mix_img"])


def test_module_to_dtype_keeps_float32_interface(nv):
    """``gen.to(torch.bfloat16)`` (parameters rounded) still takes and returns float32 tensors."""
    import copy

    gen, c = nv
    low = copy.deepcopy(gen).to(torch.bfloat16)
    ref = torch.from_numpy(c["img_psi1"])
    with torch.no_grad():
        ws = low.mapping(torch.from_numpy(c["z"]))
        img = low.synthesis(ws)
    assert ws.dtype == torch.float32 and img.dtype == torch.float32
    assert float((img - ref).abs().max() / ref.abs().max()) < 0.1


@pytest.mark.parametrize("taps", [(1.0, 1.0), (1.0, 3.0, 3.0, 1.0), (1.0, 5.0, 10.0, 10.0, 5.0, 1.0)])
def test_other_even_filters_keep_the_resolution_ladder(taps):
    cfg = StyleGAN2Config(z_dim=8, w_dim=8, resolution=16, channels={4: 4, 8: 4, 16: 4}, resample_filter=taps)
    gen = StyleGAN2Generator(cfg)
    with torch.no_grad():
        img = gen(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))
    assert img.shape == (2, 3, 16, 16) and bool(torch.isfinite(img).all())
