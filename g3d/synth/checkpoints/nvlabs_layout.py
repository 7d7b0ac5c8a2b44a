"""The internal layout every checkpoint format is converted into: NVlabs key names, read into a config.

A format module renames its file's tensors into stylegan2-ada-pytorch's ``state_dict()`` names and
hands them to :func:`from_nvlabs_layout`, with the constructor kwargs the file stores (``hints``).
That function reads the architecture from the tensor shapes, checks it against the kwargs, and
fills a missing truncation centre (``mapping.w_avg``) with a fixed-seed mean of the mapping network.
:func:`build_generator` checks every tensor once more (missing, unexpected, misshapen, non-float,
non-finite) and loads it into :class:`~g3d.synth.stylegan2.StyleGAN2Generator`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from g3d.errors import G3DError, checkpoint_error, one_line
from g3d.synth.stylegan2 import StyleGAN2Config, StyleGAN2Generator, compute_w_avg

W_AVG_SAMPLES = 4096  # z samples averaged when a checkpoint stores no truncation centre
W_AVG_SEED = 2  # seed of the CPU torch.Generator drawing them
DEFAULT_FILTER = (1.0, 3.0, 3.0, 1.0)


@dataclass
@dataclass
class LoadedCheckpoint:
    """A checkpoint read into the internal layout, before a generator is built from it."""

    config: StyleGAN2Config  # architecture, read from tensor shapes and stored kwargs
    state: dict[str, torch.Tensor]  # internal (NVlabs-named) float32 state dict, w_avg included
    format: str  # one of the format names in the docstring of g3d.synth.checkpoints
    path: Path  # the file read
    notes: dict[str, Any] = field(default_factory=dict)  # provenance (w_avg origin, conversions)


def key_sample(state: dict[str, Any], n: int = 3) -> str:
    keys = list(state)[:n]
    return ", ".join(repr(k) for k in keys) + (", ..." if len(state) > n else "") if keys else "none"



def build_generator(ck: LoadedCheckpoint) -> StyleGAN2Generator:
    try:
        gen = StyleGAN2Generator(ck.config)
    except G3DError as exc:
        raise checkpoint_error(ck.path, str(exc)) from None
    _check_state(gen, ck.state, ck.path)
    gen.load_state_dict(ck.state, strict=True)
    return gen


def _check_state(gen: StyleGAN2Generator, state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse missing, unexpected, misshapen, non-float or non-finite tensors (one line each)."""
    expected = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise checkpoint_error(
            path,
            f"missing tensor {missing[0]!r}{more}",
            "the checkpoint is incomplete or not a StyleGAN2 generator",
        )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise checkpoint_error(
            path,
            f"unexpected tensor {unexpected[0]!r}{more}",
            "the checkpoint does not describe a StyleGAN2 'skip' generator",
        )
    for k, shape in expected.items():
        t = state[k]
        if not isinstance(t, torch.Tensor):
            raise checkpoint_error(path, f"entry {k!r} is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != shape:
            raise checkpoint_error(
                path,
                f"tensor {k!r} has shape {list(t.shape)}, expected {list(shape)}",
                "the checkpoint is corrupt or its tensors disagree with each other",
            )
        if not t.is_floating_point():
            raise checkpoint_error(path, f"tensor {k!r} has dtype {t.dtype}, expected a float type")
        if not bool(torch.isfinite(t).all()):
            raise checkpoint_error(path, f"tensor {k!r} contains NaN or infinite values", "the checkpoint is corrupt")



def _need(sd: dict[str, Any], key: str, p: Path, ndim: int | None = None) -> torch.Tensor:
    if key not in sd:
        raise checkpoint_error(p, f"missing tensor {key!r}", "the checkpoint is incomplete or not a StyleGAN2 generator")
    v = sd[key]
    if not isinstance(v, torch.Tensor):
        raise checkpoint_error(p, f"entry {key!r} is a {type(v).__name__}, not a tensor")
    if ndim is not None and v.ndim != ndim:
        raise checkpoint_error(
            p,
            f"tensor {key!r} has shape {list(v.shape)}, expected {ndim} dimensions",
            "the checkpoint is corrupt",
        )
    return v


def _taps_from_filter(f2d: torch.Tensor, key: str, p: Path) -> tuple[float, ...]:
    f2d = f2d.double()
    if f2d.ndim != 2 or f2d.shape[0] != f2d.shape[1]:
        raise checkpoint_error(p, f"resample filter {key!r} has shape {list(f2d.shape)}, expected a square 2-D filter")
    taps = f2d.sum(dim=1) / f2d.sum().sqrt()
    if not torch.allclose(torch.outer(taps, taps), f2d, atol=1e-6):
        raise checkpoint_error(
            p, f"resample filter {key!r} is not separable", "only separable FIR filters are supported"
        )
    nz = taps.abs()[taps.abs() > 1e-12]
    taps = taps / nz.min() if nz.numel() else taps
    return tuple(round(float(v), 6) for v in taps)


def from_nvlabs_layout(
    sd: dict[str, Any],
    hints: dict[str, Any],
    p: Path,
    fmt: str,
    notes: dict[str, Any] | None = None,
) -> LoadedCheckpoint:
    """Derive the architecture from tensor shapes (+ stored kwargs) and check every tensor."""
    notes = dict(notes or {})
    mk = dict(hints.get("mapping_kwargs") or {})
    sk = dict(hints.get("synthesis_kwargs") or {})
    keys = list(sd)
    if any(k.startswith("synthesis.input.") or re.match(r"synthesis\.L\d+_", k) for k in keys):
        raise checkpoint_error(p, "is a StyleGAN3 (alias-free) generator", "only StyleGAN2 generators are supported")
    c_dim = int(hints.get("c_dim", 0) or 0)
    if "mapping.embed.weight" in sd:
        c_dim = max(c_dim, int(_need(sd, "mapping.embed.weight", p, 2).shape[1]))
    if c_dim:
        raise checkpoint_error(
            p,
            f"is a conditional generator (c_dim={c_dim})",
            "use an unconditional StyleGAN2 checkpoint (c_dim=0)",
        )
    for key, val in (
        ("activation", mk.get("activation", "lrelu")),
        ("activation", sk.get("activation", "lrelu")),
    ):
        if val != "lrelu":
            raise checkpoint_error(p, f"uses {key} {val!r}; only 'lrelu' is supported")

    # Mapping network.
    n_layers = 0
    while f"mapping.fc{n_layers}.weight" in sd:
        n_layers += 1
    fc0 = _need(sd, "mapping.fc0.weight", p, 2)
    last = _need(sd, f"mapping.fc{n_layers - 1}.weight", p, 2)
    z_dim, w_dim = int(fc0.shape[1]), int(last.shape[0])
    hidden = int(fc0.shape[0]) if n_layers > 1 else None
    if hidden == w_dim:
        hidden = None

    # Synthesis blocks.
    res_list = sorted({int(m.group(1)) for k in keys if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    if not res_list:
        _need(sd, "synthesis.b4.const", p)
    resolution = res_list[-1]
    expected_res = [2**i for i in range(2, int(math.log2(max(resolution, 4))) + 1)]
    if res_list != expected_res:
        raise checkpoint_error(
            p,
            f"synthesis blocks {res_list} are not the sequence 4, 8, ..., {resolution}",
            "the checkpoint is incomplete",
        )
    channels = {4: int(_need(sd, "synthesis.b4.const", p, 3).shape[0])}
    for r in res_list[1:]:
        channels[r] = int(_need(sd, f"synthesis.b{r}.conv1.weight", p, 4).shape[0])
    img_channels = (
        int(_need(sd, "synthesis.b4.torgb.weight", p, 4).shape[0]) if "synthesis.b4.torgb.weight" in sd else 3
    )
    architecture = sk.get("architecture", "skip")
    if any(".skip." in k for k in keys):
        architecture = "resnet"
    elif any(f"synthesis.b{r}.torgb.weight" not in sd for r in res_list[:-1]):
        architecture = "orig"
    use_noise = "synthesis.b4.conv1.noise_strength" in sd

    # Resample filter: stored kwargs, else the stored filter buffers, else [1,3,3,1].
    filter_keys = [k for k in keys if k.endswith("resample_filter")]
    if "resample_filter" in sk and sk["resample_filter"] is not None:
        taps = tuple(float(v) for v in sk["resample_filter"])
    elif filter_keys:
        taps = _taps_from_filter(_need(sd, filter_keys[0], p), filter_keys[0], p)
    else:
        taps = DEFAULT_FILTER
    ref = torch.tensor(taps, dtype=torch.float64)
    ref2d = torch.outer(ref, ref) / ref.sum() ** 2
    for k in filter_keys:
        f = _need(sd, k, p).double()
        if f.shape != ref2d.shape or not torch.allclose(f, ref2d, atol=1e-6):
            raise checkpoint_error(
                p,
                f"resample filter {k!r} differs from the filter {list(taps)} the network declares",
                "the checkpoint is inconsistent",
            )
    state = {k: v for k, v in sd.items() if k not in filter_keys}

    conv_clamp = sk.get("conv_clamp")
    lr = mk.get("lr_multiplier")
    if lr is None:
        lr = 0.01
        notes["mapping_lr_multiplier"] = "not stored; assumed the StyleGAN2 default 0.01"
    try:
        config = StyleGAN2Config(
            z_dim=z_dim,
            w_dim=w_dim,
            resolution=resolution,
            channels=channels,
            mapping_layers=n_layers,
            mapping_hidden=hidden,
            mapping_lr_multiplier=float(lr),
            img_channels=img_channels,
            c_dim=0,
            conv_clamp=None if conv_clamp is None else float(conv_clamp),
            resample_filter=taps,
            use_noise=use_noise,
            architecture=str(architecture),
        ).validate()
    except G3DError as exc:
        raise checkpoint_error(p, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise checkpoint_error(p, f"stored constructor kwargs are malformed ({one_line(exc, 120)})") from None

    # Cross-check declared kwargs against what the tensors say.
    declared = {
        "z_dim": hints.get("z_dim"),
        "w_dim": hints.get("w_dim"),
        "img_resolution": hints.get("img_resolution"),
        "img_channels": hints.get("img_channels"),
        "mapping num_layers": mk.get("num_layers"),
    }
    actual = {
        "z_dim": z_dim,
        "w_dim": w_dim,
        "img_resolution": resolution,
        "img_channels": img_channels,
        "mapping num_layers": n_layers,
    }
    for name, want in declared.items():
        if want is not None and int(want) != actual[name]:
            raise checkpoint_error(
                p,
                f"stored kwargs say {name}={want} but the tensors give {actual[name]}",
                "the checkpoint is inconsistent or corrupt",
            )
    if sk.get("use_noise") is False and use_noise:
        raise checkpoint_error(p, "stored kwargs say use_noise=False but the checkpoint has noise tensors")

    state = {
        k: (v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
        for k, v in state.items()
    }
    ck = LoadedCheckpoint(config, state, fmt, p, notes)
    if "mapping.w_avg" not in state:
        _fill_w_avg(ck)
    else:
        notes.setdefault("w_avg", "stored in the checkpoint")
    return ck


def _fill_w_avg(ck: LoadedCheckpoint) -> None:
    """Checkpoints without a truncation centre get the mean of the mapping over fixed-seed z."""
    gen = StyleGAN2Generator(ck.config)
    probe = dict(ck.state)
    probe["mapping.w_avg"] = torch.zeros([ck.config.w_dim])
    _check_state(gen, probe, ck.path)
    gen.load_state_dict(probe, strict=True)
    ck.state["mapping.w_avg"] = compute_w_avg(gen, W_AVG_SAMPLES, W_AVG_SEED)
    ck.notes["w_avg"] = (
        f"computed: mean of the mapping network over {W_AVG_SAMPLES} z ~ N(0, I) "
        f"from torch.Generator().manual_seed({W_AVG_SEED}) (the checkpoint stores none)"
    )
