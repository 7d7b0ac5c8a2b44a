"""rosinality/stylegan2-pytorch: its ``g_ema`` key layout renamed to NVlabs names, and its ``torch.save`` files.

:func:`read_torch_file` reads a ``torch.save`` file (zip or legacy) with ``torch.load(weights_only=True)``,
allowing only ``argparse.Namespace`` (rosinality's ``args``): a rosinality checkpoint (``g_ema``,
``latent_avg``, ``args``), or a bare rosinality or NVlabs state dict. :func:`rosinality_to_nvlabs` is
also used for rosinality state dicts stored as safetensors.
"""

from __future__ import annotations

import argparse
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from g3d.errors import checkpoint_error, one_line
from g3d.synth.checkpoints.nvlabs_layout import LoadedCheckpoint, from_nvlabs_layout, key_sample


def read_torch_file(p: Path) -> LoadedCheckpoint:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        m = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if m:
            raise checkpoint_error(
                p,
                f"refused: the torch file references {m.group(1)}, which a StyleGAN2 checkpoint never needs; nothing in it was run",
                "only load checkpoints from a source you trust, in a supported format",
            ) from None
        raise checkpoint_error(
            p,
            f"torch file cannot be read safely ({one_line(exc, 160)})",
            "the file is corrupt or not a checkpoint",
        ) from None
    except Exception as exc:  # zip/stream errors of a truncated or corrupt file
        raise checkpoint_error(
            p,
            f"torch file is truncated or corrupt ({type(exc).__name__}: {one_line(exc, 120)})",
            "re-download the checkpoint",
        ) from None
    if not isinstance(obj, dict):
        raise checkpoint_error(p, f"torch file holds a {type(obj).__name__}, expected a dict with 'g_ema'")
    if "g_ema" in obj:
        sd = obj["g_ema"]
        if not isinstance(sd, dict):
            raise checkpoint_error(p, f"'g_ema' is a {type(sd).__name__}, expected a state dict")
        args = obj.get("args")
        hints: dict[str, Any] = {}
        if isinstance(args, argparse.Namespace):
            a = vars(args)
            mk = {"lr_multiplier": float(a.get("lr_mlp", 0.01))}
            if "n_mlp" in a:
                mk["num_layers"] = int(a["n_mlp"])
            hints["mapping_kwargs"] = mk
            if "size" in a:
                hints["img_resolution"] = int(a["size"])
            if "latent" in a:
                hints["w_dim"] = hints["z_dim"] = int(a["latent"])
        sd, notes = rosinality_to_nvlabs(dict(sd), p)
        avg = obj.get("latent_avg", obj.get("truncation_latent"))
        if avg is not None:
            if not isinstance(avg, torch.Tensor):
                raise checkpoint_error(p, f"'latent_avg' is a {type(avg).__name__}, expected a tensor")
            sd["mapping.w_avg"] = avg.reshape(-1) if avg.ndim == 2 and avg.shape[0] == 1 else avg
        return from_nvlabs_layout(sd, hints, p, "rosinality-torch", notes)
    tensors_only = all(isinstance(v, torch.Tensor) for v in obj.values())
    if tensors_only and ("style.1.weight" in obj or "input.input" in obj):
        sd, notes = rosinality_to_nvlabs(dict(obj), p)
        return from_nvlabs_layout(sd, {}, p, "rosinality-torch", notes)
    if tensors_only and "mapping.fc0.weight" in obj:
        return from_nvlabs_layout(dict(obj), {}, p, "nvlabs-state-dict")
    raise checkpoint_error(
        p,
        f"torch file holds a dict with keys {key_sample(obj, 6)}, none of them a generator",
        "expected a rosinality checkpoint with 'g_ema'",
    )



def rosinality_to_nvlabs(sd: dict[str, Any], p: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Rename/reshape a rosinality ``g_ema`` state dict into NVlabs key names (no rescaling needed)."""
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise checkpoint_error(p, f"missing tensor {key!r}", "the rosinality checkpoint is incomplete")
        v = sd[key]
        if not isinstance(v, torch.Tensor):
            raise checkpoint_error(p, f"entry {key!r} is a {type(v).__name__}, not a tensor")
        used.add(key)
        return v

    def lead(key: str, n_lead: int, ndim: int) -> torch.Tensor:
        v = take(key)
        if v.ndim != ndim or any(d != 1 for d in v.shape[:n_lead]):
            want = "[" + ", ".join(["1"] * n_lead + ["..."]) + f"] with {ndim} dims"
            raise checkpoint_error(
                p, f"tensor {key!r} has shape {list(v.shape)}, expected {want}", "the checkpoint is corrupt"
            )
        return v.reshape(v.shape[n_lead:])

    out: dict[str, torch.Tensor] = {}
    n = 0
    while f"style.{n + 1}.weight" in sd:
        out[f"mapping.fc{n}.weight"] = take(f"style.{n + 1}.weight")
        out[f"mapping.fc{n}.bias"] = take(f"style.{n + 1}.bias")
        n += 1
    if n == 0:
        take("style.1.weight")
    out["synthesis.b4.const"] = lead("input.input", 1, 4)
    num_rgbs = 0
    while f"to_rgbs.{num_rgbs}.conv.weight" in sd:
        num_rgbs += 1

    def styled(src: str, dst: str, noise_idx: int) -> None:
        out[f"{dst}.weight"] = lead(f"{src}.conv.weight", 1, 5)
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        if f"{src}.noise.weight" in sd:
            strength = take(f"{src}.noise.weight")
            if strength.numel() != 1:
                raise checkpoint_error(p, f"tensor '{src}.noise.weight' has shape {list(strength.shape)}, expected [1]")
            out[f"{dst}.noise_strength"] = strength.reshape([])
            out[f"{dst}.noise_const"] = lead(f"noises.noise_{noise_idx}", 2, 4)
        if f"{src}.conv.blur.kernel" in sd:
            out[f"{dst}.resample_filter"] = take(f"{src}.conv.blur.kernel") / 4  # stored with the x4 gain

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.torgb.weight"] = lead(f"{src}.conv.weight", 1, 5)
        out[f"{dst}.torgb.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.torgb.affine.bias"] = take(f"{src}.conv.modulation.bias")
        bias = take(f"{src}.bias")
        if bias.ndim != 4 or bias.shape[0] != 1 or bias.shape[2:] != (1, 1):
            raise checkpoint_error(p, f"tensor '{src}.bias' has shape {list(bias.shape)}, expected [1, C, 1, 1]")
        out[f"{dst}.torgb.bias"] = bias.reshape(-1)
        if f"{src}.upsample.kernel" in sd:
            out[f"{dst}.resample_filter"] = take(f"{src}.upsample.kernel") / 4

    styled("conv1", "synthesis.b4.conv1", 0)
    to_rgb("to_rgb1", "synthesis.b4")
    for k in range(num_rgbs):
        r = 2 ** (k + 3)
        styled(f"convs.{2 * k}", f"synthesis.b{r}.conv0", 2 * k + 1)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1", 2 * k + 2)
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{r}")
    unused = [k for k in sd if k not in used]
    if unused:
        more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
        raise checkpoint_error(
            p,
            f"unexpected tensor {unused[0]!r}{more} in the rosinality state dict",
            "the checkpoint is not a rosinality StyleGAN2 generator of a known layout",
        )
    return out, {}

