"""Safetensors checkpoints: g3d's own format (read and written), and state dicts in NVlabs or rosinality names.

g3d's format holds the internal (NVlabs-named) float32 state dict and, in the file's metadata,
``g3d_config`` (the architecture as JSON), ``g3d_format_version`` and ``g3d_source`` (the original
format, file name, sha256 and notes); :func:`write_g3d_file` writes it atomically. A file without
``g3d_config`` is a plain state dict (e.g. the conformance fixtures), read with the constructor kwargs
of a sidecar ``<stem>.json`` when there is one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from g3d.datasets.io import file_sha256
from g3d.errors import G3DError, checkpoint_error, one_line
from g3d.synth.checkpoints.nvlabs_layout import LoadedCheckpoint, from_nvlabs_layout, key_sample
from g3d.synth.checkpoints.rosinality import rosinality_to_nvlabs
from g3d.synth.stylegan2 import StyleGAN2Config, StyleGAN2Generator

G3D_FORMAT_VERSION = "1"


def read_safetensors_file(p: Path) -> LoadedCheckpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers/offsets
        raise checkpoint_error(
            p,
            f"is not a readable safetensors file ({one_line(exc, 160)})",
            "the file is truncated or corrupt: re-download it",
        ) from None
    sidecar = _read_sidecar(p)
    if "g3d_config" in metadata or (sidecar is not None and "g3d_config" in sidecar):
        raw = metadata.get("g3d_config")
        try:
            cfg_dict = json.loads(raw) if raw is not None else sidecar["g3d_config"]  # type: ignore[index]
            config = StyleGAN2Config.from_dict(cfg_dict)
        except (json.JSONDecodeError, TypeError, G3DError) as exc:
            raise checkpoint_error(
                p,
                f"has an unreadable g3d_config ({one_line(exc, 160)})",
                "re-create it with convert_checkpoint",
            ) from None
        notes: dict[str, Any] = {}
        if "g3d_source" in metadata:
            try:
                notes["converted_from"] = json.loads(metadata["g3d_source"])
            except json.JSONDecodeError:
                notes["converted_from"] = metadata["g3d_source"]
        state = {k: v.float() for k, v in state.items()}
        return LoadedCheckpoint(config, state, "g3d", p, notes)
    hints = _hints_from_sidecar(sidecar)
    if "mapping.fc0.weight" in state or any(k.startswith("synthesis.") for k in state):
        return from_nvlabs_layout(state, hints, p, "nvlabs-state-dict")
    if "style.1.weight" in state or "input.input" in state:
        state, notes = rosinality_to_nvlabs(state, p)
        return from_nvlabs_layout(state, hints, p, "rosinality-state-dict", notes)
    raise checkpoint_error(
        p,
        f"safetensors keys ({key_sample(state)}) are not a known StyleGAN2 layout",
        "expected NVlabs ('mapping.fc0.weight', ...), rosinality ('style.1.weight', ...) or g3d keys",
    )


def _read_sidecar(p: Path) -> dict[str, Any] | None:
    side = p.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise checkpoint_error(
            side, f"sidecar JSON of {p.name} is unreadable ({one_line(exc, 160)})", "fix or remove it"
        ) from None
    if not isinstance(data, dict):
        raise checkpoint_error(side, "sidecar JSON is not an object", "fix or remove it")
    return data


def _hints_from_sidecar(sidecar: dict[str, Any] | None) -> dict[str, Any]:
    """NVlabs-style constructor kwargs from a fixture-style ``<stem>.json`` (both layouts)."""
    if not sidecar:
        return {}
    kw = dict(sidecar.get("constructor_kwargs") or {})
    eff = sidecar.get("effective_settings_passed_plus_defaults") or {}
    hints: dict[str, Any] = {}
    if "size" in kw or "style_dim" in kw:  # rosinality constructor kwargs
        hints["mapping_kwargs"] = {"lr_multiplier": kw.get("lr_mlp", 0.01)}
        if "blur_kernel" in kw:
            hints["synthesis_kwargs"] = {"resample_filter": kw["blur_kernel"]}
        if "size" in kw:
            hints["img_resolution"] = kw["size"]
        if "style_dim" in kw:
            hints["w_dim"] = hints["z_dim"] = kw["style_dim"]
        if "n_mlp" in kw:
            hints["mapping_kwargs"]["num_layers"] = kw["n_mlp"]
        return hints
    hints.update(kw)
    for part in ("mapping_kwargs", "synthesis_kwargs"):
        merged = dict(eff.get(part) or {})
        merged.update(kw.get(part) or {})
        if merged:
            hints[part] = merged
    return hints


def write_g3d_file(ck: LoadedCheckpoint, gen: StyleGAN2Generator, dst: str | os.PathLike) -> Path:
    """Write ``gen`` (built from ``ck``) as a g3d ``.safetensors`` file, atomically; returns ``dst``."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in gen.state_dict().items()}
    source = {"format": ck.format, "file": ck.path.name, "sha256": file_sha256(ck.path), **ck.notes}
    if ck.format == "g3d":  # keep the original provenance through repeated conversions
        source = dict(ck.notes.get("converted_from") or source)
    metadata = {
        "g3d_config": ck.config.to_json(),
        "g3d_format_version": G3D_FORMAT_VERSION,
        "g3d_source": json.dumps(source, sort_keys=True, default=str),
    }
    dst = Path(dst)
    if not dst.parent.is_dir():
        raise checkpoint_error(dst, f"its folder {dst.parent} does not exist", "create it first, or write the file somewhere that exists")
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        try:
            save_file(state, str(tmp), metadata=metadata)
        except Exception as exc:  # safetensors reports I/O failures as its own error type
            if isinstance(exc, OSError):
                raise
            raise OSError(str(exc)) from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors writes 0600: give the file the usual mode of a new file
        os.replace(tmp, dst)
    except OSError as exc:
        raise checkpoint_error(
            dst,
            f"cannot write the converted checkpoint ({one_line(exc)})",
            "check the folder exists and is writable",
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst
