"""Every StyleGAN2 checkpoint format g3d reads, in one module; nothing inside a file is ever run.

Formats, detected from the file's content (never its name):

=====================  ===================================================================
``g3d``                safetensors in the internal (NVlabs-named) layout, the architecture as
                       JSON under the metadata key ``g3d_config`` (or in a sidecar
                       ``<stem>.json`` holding ``{"g3d_config": {...}}``). Written by
                       :func:`convert_checkpoint`.
``nvlabs-pickle``      stylegan2-ada-pytorch / stylegan3 network pickle (``G_ema`` is used). Read
                       by the restricted unpickler of :mod:`g3d.safepickle`: the embedded module source is never executed,
                       modules become plain dicts of their state.
``tf-pickle``          NVIDIA's TensorFlow StyleGAN2 pickle ``(G, D, Gs)`` (``Gs`` is used). Read
                       by the same restricted unpickler; no TensorFlow needed.
``rosinality-torch``   rosinality/stylegan2-pytorch ``torch.save`` file (``g_ema``,
                       ``latent_avg``, ``args``), read with ``torch.load(weights_only=True)``
                       allowing only ``argparse.Namespace``.
``nvlabs-state-dict``  safetensors with NVlabs key names (e.g. the conformance fixtures), plus
``rosinality-state-dict``  the sibling ``<stem>.json`` constructor kwargs when present.
=====================  ===================================================================

Content signatures: ``PK\\x03\\x04`` torch zip; the legacy ``torch.save`` magic pickle; ``\\x80``
+ protocol byte: a pickle; 8-byte little-endian header length then ``{``: safetensors.

Every refusal is a :class:`~g3d.errors.CheckpointError` whose one-line message names the file,
the problem and the fix.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from g3d.datasets.io import file_sha256
from g3d.errors import CheckpointError, G3DError, UsageError
from g3d.safepickle import PersistentObject, TFNetwork, restricted_load
from g3d.safepickle import read_data_pickle as read_data_pickle  # its home before g3d.safepickle
from g3d.synth.generator import Generator
from g3d.synth.stylegan2 import StyleGAN2Config, StyleGAN2Generator, compute_w_avg

G3D_FORMAT_VERSION = "1"
W_AVG_SAMPLES = 4096  # z samples averaged when a checkpoint stores no truncation centre
W_AVG_SEED = 2  # seed of the CPU torch.Generator drawing them
DEFAULT_FILTER = (1.0, 3.0, 3.0, 1.0)

_ZIP_MAGIC = b"PK\x03\x04"
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."  # pickled magic number of torch.save
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_LOAD_OPTIONS = ("dtype", "channels_last", "num_lowp_res", "fused_modconv")


@dataclass
class LoadedCheckpoint:
    """A checkpoint read into the internal layout, before a generator is built from it."""

    config: StyleGAN2Config  # architecture, read from tensor shapes and stored kwargs
    state: dict[str, torch.Tensor]  # internal (NVlabs-named) float32 state dict, w_avg included
    format: str  # one of the format names in the module docstring
    path: Path  # the file read
    notes: dict[str, Any] = field(default_factory=dict)  # provenance (w_avg origin, conversions)


# --------------------------------------------------------------------------------------------
# Messages


def _one_line(text: object, limit: int = 240) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _fail(path: Path | str, problem: str, fix: str | None = None) -> CheckpointError:
    msg = f"{path}: {problem}"
    if fix:
        msg += f"; {fix}"
    return CheckpointError(_one_line(msg, limit=600))


# --------------------------------------------------------------------------------------------
# Public API


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", **kwargs: Any) -> Generator:
    """Load a generator: ``"builtin"``, or a StyleGAN2 checkpoint of any supported format.

    ``kwargs`` for StyleGAN2 files: ``dtype`` (torch.float32 | float16 | bfloat16, synthesis
    compute precision), ``channels_last`` (bool), ``num_lowp_res`` (int | None),
    ``fused_modconv`` (bool | None). For ``"builtin"`` they go to ``BuiltinGenerator``.
    The returned generator is in eval mode with ``requires_grad`` off on its parameters.
    """
    if isinstance(path, str) and path == "builtin":
        from g3d.synth.builtin import BuiltinGenerator

        return BuiltinGenerator(**kwargs).to(device)
    unknown = sorted(set(kwargs) - set(_LOAD_OPTIONS))
    if unknown:
        raise UsageError(
            f"unknown option(s) {unknown} for a StyleGAN2 checkpoint; valid: {list(_LOAD_OPTIONS)}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"device {device!r} is not a torch device ({_one_line(exc)})") from None
    ck = read_checkpoint(path)
    gen = _build_generator(ck)
    gen.source_info = {
        "checkpoint_format": ck.format,
        "source": str(ck.path.resolve()),
        "sha256": file_sha256(ck.path),
        **ck.notes,
    }
    gen.eval().requires_grad_(False)
    if "dtype" in kwargs or "channels_last" in kwargs or "num_lowp_res" in kwargs:
        gen.set_precision(
            kwargs.get("dtype", torch.float32),
            bool(kwargs.get("channels_last", False)),
            kwargs.get("num_lowp_res"),
        )
    if "fused_modconv" in kwargs:
        gen.fused_modconv = kwargs["fused_modconv"]
    return gen.to(dev)


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write any supported checkpoint as a g3d ``.safetensors`` file (atomically); returns ``dst``.

    The file holds the internal state dict (float32) and, in its metadata, ``g3d_config`` (the
    architecture as JSON), ``g3d_format_version`` and ``g3d_source`` (original format, file name,
    sha256, notes).
    """
    from safetensors.torch import save_file

    ck = read_checkpoint(src)
    gen = _build_generator(ck)  # validates shapes once more
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
        raise _fail(dst, f"its folder {dst.parent} does not exist", "create it first, or write the file somewhere that exists")
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
        raise _fail(
            dst,
            f"cannot write the converted checkpoint ({_one_line(exc)})",
            "check the folder exists and is writable",
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def detect_format(path: str | os.PathLike) -> str:
    """The container of a file from its first bytes: 'torch-zip' | 'torch-legacy' | 'pickle' | 'safetensors'."""
    p = _check_file(path)
    with open(p, "rb") as f:
        head = f.read(64)
    size = p.stat().st_size
    if head.startswith(_ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch-legacy"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= min(size - 8, _MAX_SAFETENSORS_HEADER) and head[8:9] == b"{":
            return "safetensors"
    raise _fail(
        p,
        f"is not a StyleGAN2 checkpoint (unrecognised content, first bytes {head[:8]!r})",
        "use an NVlabs .pkl, a TensorFlow StyleGAN2 .pkl, a rosinality .pt or a g3d .safetensors file",
    )


def read_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read a checkpoint of any supported format into the internal layout (nothing is executed)."""
    p = _check_file(path)
    kind = detect_format(p)
    if kind in ("torch-zip", "torch-legacy"):
        return _read_torch_file(p)
    if kind == "pickle":
        return _read_pickle_file(p)
    return _read_safetensors_file(p)


# --------------------------------------------------------------------------------------------
# Files


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise _fail(p, "no such file", "pass the path of a checkpoint file, or 'builtin'")
    if p.is_dir():
        raise _fail(p, "is a directory, not a checkpoint file", "pass the checkpoint file inside it")
    if not p.is_file():
        raise _fail(p, "is not a regular file", "pass the path of a checkpoint file")
    if p.stat().st_size == 0:
        raise _fail(p, "is empty (0 bytes)", "re-download or re-export the checkpoint")
    return p


def _build_generator(ck: LoadedCheckpoint) -> StyleGAN2Generator:
    try:
        gen = StyleGAN2Generator(ck.config)
    except G3DError as exc:
        raise _fail(ck.path, str(exc)) from None
    _check_state(gen, ck.state, ck.path)
    gen.load_state_dict(ck.state, strict=True)
    return gen


def _check_state(gen: StyleGAN2Generator, state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse missing, unexpected, misshapen, non-float or non-finite tensors (one line each)."""
    expected = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise _fail(
            path,
            f"missing tensor {missing[0]!r}{more}",
            "the checkpoint is incomplete or not a StyleGAN2 generator",
        )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise _fail(
            path,
            f"unexpected tensor {unexpected[0]!r}{more}",
            "the checkpoint does not describe a StyleGAN2 'skip' generator",
        )
    for k, shape in expected.items():
        t = state[k]
        if not isinstance(t, torch.Tensor):
            raise _fail(path, f"entry {k!r} is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != shape:
            raise _fail(
                path,
                f"tensor {k!r} has shape {list(t.shape)}, expected {list(shape)}",
                "the checkpoint is corrupt or its tensors disagree with each other",
            )
        if not t.is_floating_point():
            raise _fail(path, f"tensor {k!r} has dtype {t.dtype}, expected a float type")
        if not bool(torch.isfinite(t).all()):
            raise _fail(path, f"tensor {k!r} contains NaN or infinite values", "the checkpoint is corrupt")


# --------------------------------------------------------------------------------------------
# Safetensors (g3d format and original-key-name state dicts)


def _read_safetensors_file(p: Path) -> LoadedCheckpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers/offsets
        raise _fail(
            p,
            f"is not a readable safetensors file ({_one_line(exc, 160)})",
            "the file is truncated or corrupt: re-download it",
        ) from None
    sidecar = _read_sidecar(p)
    if "g3d_config" in metadata or (sidecar is not None and "g3d_config" in sidecar):
        raw = metadata.get("g3d_config")
        try:
            cfg_dict = json.loads(raw) if raw is not None else sidecar["g3d_config"]  # type: ignore[index]
            config = StyleGAN2Config.from_dict(cfg_dict)
        except (json.JSONDecodeError, TypeError, G3DError) as exc:
            raise _fail(
                p,
                f"has an unreadable g3d_config ({_one_line(exc, 160)})",
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
        return _from_nvlabs_layout(state, hints, p, "nvlabs-state-dict")
    if "style.1.weight" in state or "input.input" in state:
        state, notes = _rosinality_to_nvlabs(state, p)
        return _from_nvlabs_layout(state, hints, p, "rosinality-state-dict", notes)
    raise _fail(
        p,
        f"safetensors keys ({_key_sample(state)}) are not a known StyleGAN2 layout",
        "expected NVlabs ('mapping.fc0.weight', ...), rosinality ('style.1.weight', ...) or g3d keys",
    )


def _read_sidecar(p: Path) -> dict[str, Any] | None:
    side = p.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(
            side, f"sidecar JSON of {p.name} is unreadable ({_one_line(exc, 160)})", "fix or remove it"
        ) from None
    if not isinstance(data, dict):
        raise _fail(side, "sidecar JSON is not an object", "fix or remove it")
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


def _key_sample(state: dict[str, Any], n: int = 3) -> str:
    keys = list(state)[:n]
    return ", ".join(repr(k) for k in keys) + (", ..." if len(state) > n else "") if keys else "none"


# --------------------------------------------------------------------------------------------
# torch.save files (rosinality)


def _read_torch_file(p: Path) -> LoadedCheckpoint:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        m = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if m:
            raise _fail(
                p,
                f"refused: the torch file references {m.group(1)}, which a StyleGAN2 checkpoint never needs; nothing in it was run",
                "only load checkpoints from a source you trust, in a supported format",
            ) from None
        raise _fail(
            p,
            f"torch file cannot be read safely ({_one_line(exc, 160)})",
            "the file is corrupt or not a checkpoint",
        ) from None
    except Exception as exc:  # zip/stream errors of a truncated or corrupt file
        raise _fail(
            p,
            f"torch file is truncated or corrupt ({type(exc).__name__}: {_one_line(exc, 120)})",
            "re-download the checkpoint",
        ) from None
    if not isinstance(obj, dict):
        raise _fail(p, f"torch file holds a {type(obj).__name__}, expected a dict with 'g_ema'")
    if "g_ema" in obj:
        sd = obj["g_ema"]
        if not isinstance(sd, dict):
            raise _fail(p, f"'g_ema' is a {type(sd).__name__}, expected a state dict")
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
        sd, notes = _rosinality_to_nvlabs(dict(sd), p)
        avg = obj.get("latent_avg", obj.get("truncation_latent"))
        if avg is not None:
            if not isinstance(avg, torch.Tensor):
                raise _fail(p, f"'latent_avg' is a {type(avg).__name__}, expected a tensor")
            sd["mapping.w_avg"] = avg.reshape(-1) if avg.ndim == 2 and avg.shape[0] == 1 else avg
        return _from_nvlabs_layout(sd, hints, p, "rosinality-torch", notes)
    tensors_only = all(isinstance(v, torch.Tensor) for v in obj.values())
    if tensors_only and ("style.1.weight" in obj or "input.input" in obj):
        sd, notes = _rosinality_to_nvlabs(dict(obj), p)
        return _from_nvlabs_layout(sd, {}, p, "rosinality-torch", notes)
    if tensors_only and "mapping.fc0.weight" in obj:
        return _from_nvlabs_layout(dict(obj), {}, p, "nvlabs-state-dict")
    raise _fail(
        p,
        f"torch file holds a dict with keys {_key_sample(obj, 6)}, none of them a generator",
        "expected a rosinality checkpoint with 'g_ema'",
    )


# --------------------------------------------------------------------------------------------
# Network pickles (NVlabs and TensorFlow), read by the restricted unpickler of g3d.safepickle


def _read_pickle_file(p: Path) -> LoadedCheckpoint:
    obj = restricted_load(p, "StyleGAN2 network pickle", redo="re-download the checkpoint")
    if isinstance(obj, dict) and ("G_ema" in obj or "G" in obj or "D" in obj):
        g = obj.get("G_ema")
        if g is None:
            raise _fail(
                p,
                "network pickle has no 'G_ema' (keys: " + ", ".join(map(str, obj)) + ")",
                "export a snapshot that includes G_ema",
            )
        return _from_nvlabs_pickle(g, p)
    if isinstance(obj, PersistentObject):
        return _from_nvlabs_pickle(obj, p)
    if isinstance(obj, (tuple, list)) and obj and all(isinstance(o, TFNetwork) for o in obj):
        if len(obj) != 3:
            raise _fail(p, f"TensorFlow pickle holds {len(obj)} networks, expected (G, D, Gs)")
        return _from_tf_network(obj[2], p)
    if isinstance(obj, TFNetwork):
        return _from_tf_network(obj, p)
    raise _fail(
        p,
        f"pickle holds a {type(obj).__name__}, not a StyleGAN2 network",
        "expected an NVlabs network pickle (dict with 'G_ema') or a TensorFlow StyleGAN2 pickle (G, D, Gs)",
    )


# --------------------------------------------------------------------------------------------
# NVlabs network pickles


def _persistent_state_dict(
    obj: PersistentObject, p: Path, prefix: str = "", depth: int = 0
) -> dict[str, Any]:
    """Rebuild ``state_dict()`` of a persistent module tree: parameters + persistent buffers."""
    if depth > 32:
        raise _fail(p, "network pickle nests modules more than 32 deep")
    st = obj.state
    out: dict[str, Any] = {}
    params = st.get("_parameters") or {}
    buffers = st.get("_buffers") or {}
    non_persistent = st.get("_non_persistent_buffers_set") or set()
    modules = st.get("_modules") or {}
    if not all(isinstance(d, dict) for d in (params, buffers, modules)):
        raise _fail(p, f"module {prefix or '<root>'} has malformed _parameters/_buffers/_modules")
    for name, value in params.items():
        if value is not None:
            out[prefix + name] = value
    for name, value in buffers.items():
        if value is not None and name not in non_persistent:
            out[prefix + name] = value
    for name, child in modules.items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise _fail(p, f"module {prefix + name} is a {type(child).__name__}, not a network module")
        out.update(_persistent_state_dict(child, p, f"{prefix}{name}.", depth + 1))
    return out


def _from_nvlabs_pickle(g: Any, p: Path) -> LoadedCheckpoint:
    if not isinstance(g, PersistentObject):
        raise _fail(p, f"'G_ema' is a {type(g).__name__}, not an NVlabs network module")
    if g.class_name != "Generator":
        raise _fail(p, f"'G_ema' is a {g.class_name}, expected a Generator")
    sd = _persistent_state_dict(g, p)
    kwargs = g.state.get("_init_kwargs", g.state.get("init_kwargs")) or {}
    if not isinstance(kwargs, dict):
        raise _fail(p, f"G_ema's init kwargs are a {type(kwargs).__name__}, expected a dict")
    notes = {"persistence_version": g.version} if g.version is not None else {}
    return _from_nvlabs_layout(sd, dict(kwargs), p, "nvlabs-pickle", notes)


# --------------------------------------------------------------------------------------------
# TensorFlow pickles


def _tf_variables(net: TFNetwork, p: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def walk(n: TFNetwork, prefix: str, depth: int) -> None:
        if depth > 8:
            raise _fail(p, "TensorFlow network components nest more than 8 deep")
        for item in n.state.get("variables") or []:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise _fail(p, "TensorFlow network variables are not (name, array) pairs")
            name, value = item
            if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.hasobject:
                raise _fail(p, f"TensorFlow variable {prefix + name!r} is not a numeric array")
            out[prefix + name] = np.asarray(value)
        for cname, comp in (n.state.get("components") or {}).items():
            if not isinstance(comp, TFNetwork):
                raise _fail(p, f"TensorFlow component {cname!r} is a {type(comp).__name__}, not a Network")
            walk(comp, f"{prefix}{cname}/", depth + 1)

    walk(net, "", 0)
    return out


def _tf_to_nvlabs(tf: dict[str, np.ndarray], p: Path) -> dict[str, torch.Tensor]:
    """Apply the published TF -> PyTorch renaming/reshaping rules (transposes, flips, mod_bias + 1)."""

    def need(name: str) -> np.ndarray:
        if name not in tf:
            raise _fail(
                p,
                f"TensorFlow variable {name!r} is missing",
                "the pickle is not a complete StyleGAN2 generator",
            )
        return tf[name]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def conv(a: np.ndarray, name: str, flip: bool = False) -> torch.Tensor:
        if a.ndim != 4:
            raise _fail(
                p, f"TensorFlow variable {name!r} has shape {list(a.shape)}, expected [kh, kw, in, out]"
            )
        if flip:
            a = a[::-1, ::-1]
        return t(a.transpose(3, 2, 0, 1))

    def dense(a: np.ndarray, name: str) -> torch.Tensor:
        if a.ndim != 2:
            raise _fail(p, f"TensorFlow variable {name!r} has shape {list(a.shape)}, expected [in, out]")
        return t(a.T)

    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return need(name)

    sd: dict[str, torch.Tensor] = {}
    if "dlatent_avg" in tf:
        sd["mapping.w_avg"] = t(take("dlatent_avg"))
    if any(k.startswith("mapping/LabelEmbed") or k.startswith("mapping/LabelConcat") for k in tf):
        raise _fail(
            p,
            "TensorFlow generator is conditional (has a label embedding)",
            "use an unconditional checkpoint",
        )
    i = 0
    while f"mapping/Dense{i}/weight" in tf:
        sd[f"mapping.fc{i}.weight"] = dense(take(f"mapping/Dense{i}/weight"), f"mapping/Dense{i}/weight")
        sd[f"mapping.fc{i}.bias"] = t(take(f"mapping/Dense{i}/bias"))
        i += 1
    if i == 0:
        need("mapping/Dense0/weight")
    res_list = sorted({int(m.group(1)) for k in tf if (m := re.match(r"synthesis/(\d+)x\1/", k))})
    if not res_list:
        need("synthesis/4x4/Const/const")
    for r in res_list:
        s = f"synthesis/{r}x{r}"
        b = f"synthesis.b{r}"
        layers = (
            [("Conv", "conv1", None)]
            if r == 4
            else [
                ("Conv0_up", "conv0", 2 * int(math.log2(r)) - 5),
                ("Conv1", "conv1", 2 * int(math.log2(r)) - 4),
            ]
        )
        if r == 4:
            const = take(f"{s}/Const/const")
            if const.ndim != 4 or const.shape[0] != 1:
                raise _fail(
                    p,
                    f"TensorFlow variable '{s}/Const/const' has shape {list(const.shape)}, expected [1, C, 4, 4]",
                )
            sd[f"{b}.const"] = t(const[0])
        for tf_name, pt_name, noise_idx in layers:
            n = f"{s}/{tf_name}"
            sd[f"{b}.{pt_name}.weight"] = conv(
                take(f"{n}/weight"), f"{n}/weight", flip=(tf_name == "Conv0_up")
            )
            sd[f"{b}.{pt_name}.bias"] = t(take(f"{n}/bias"))
            sd[f"{b}.{pt_name}.affine.weight"] = dense(take(f"{n}/mod_weight"), f"{n}/mod_weight")
            sd[f"{b}.{pt_name}.affine.bias"] = t(take(f"{n}/mod_bias")) + 1
            if f"{n}/noise_strength" in tf:
                sd[f"{b}.{pt_name}.noise_strength"] = t(take(f"{n}/noise_strength")).reshape([])
                idx = 0 if r == 4 else noise_idx
                noise = take(f"synthesis/noise{idx}")
                if noise.ndim != 4 or noise.shape[:2] != (1, 1):
                    raise _fail(
                        p,
                        f"TensorFlow variable 'synthesis/noise{idx}' has shape {list(noise.shape)}, expected [1, 1, r, r]",
                    )
                sd[f"{b}.{pt_name}.noise_const"] = t(noise[0, 0])
        n = f"{s}/ToRGB"
        if f"{n}/weight" in tf:
            sd[f"{b}.torgb.weight"] = conv(take(f"{n}/weight"), f"{n}/weight")
            sd[f"{b}.torgb.bias"] = t(take(f"{n}/bias"))
            sd[f"{b}.torgb.affine.weight"] = dense(take(f"{n}/mod_weight"), f"{n}/mod_weight")
            sd[f"{b}.torgb.affine.bias"] = t(take(f"{n}/mod_bias")) + 1
        if any(k.startswith(f"{s}/Skip") for k in tf):
            raise _fail(
                p,
                "TensorFlow generator uses the 'resnet' architecture",
                "only 'skip' (config-e/f) generators are supported",
            )
    # G_main keeps its progressive-growing level of detail ('lod', a scalar) as a variable.
    used.update(k for k in tf if k.rsplit("/", 1)[-1] == "lod" and tf[k].size == 1)
    unused = sorted(set(tf) - used)
    if unused:
        raise _fail(
            p,
            f"TensorFlow variable {unused[0]!r} has no place in a StyleGAN2 'skip' generator"
            + (f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""),
        )
    return sd


def _from_tf_network(gs: TFNetwork, p: Path) -> LoadedCheckpoint:
    comps = gs.state.get("components") or {}
    if not isinstance(comps, dict) or "mapping" not in comps or "synthesis" not in comps:
        raise _fail(
            p,
            "TensorFlow network has no 'mapping' and 'synthesis' components",
            "expected a StyleGAN2 Gs network",
        )
    kw: dict[str, Any] = {}
    for net in (gs, comps["mapping"], comps["synthesis"]):
        sk = net.state.get("static_kwargs") or {}
        if isinstance(sk, dict):
            for k, v in sk.items():
                kw.setdefault(k, v)
    if not kw.get("normalize_latents", True):
        raise _fail(
            p, "TensorFlow mapping network does not normalise z (normalize_latents=False)", "not supported"
        )
    for key in ("nonlinearity", "mapping_nonlinearity"):
        if kw.get(key, "lrelu") != "lrelu":
            raise _fail(p, f"TensorFlow generator uses {key}={kw[key]!r}; only 'lrelu' is supported")
    hints: dict[str, Any] = {
        "c_dim": int(kw.get("label_size", 0) or 0),
        "mapping_kwargs": {"lr_multiplier": float(kw.get("mapping_lrmul", 0.01))},
        "synthesis_kwargs": {
            "architecture": kw.get("architecture", "skip"),
            "resample_filter": list(kw.get("resample_kernel", DEFAULT_FILTER)),
            "conv_clamp": kw.get("conv_clamp"),
            "use_noise": kw.get("use_noise", True),
        },
    }
    if "resolution" in kw:
        hints["img_resolution"] = int(kw["resolution"])
    if "num_channels" in kw:
        hints["img_channels"] = int(kw["num_channels"])
    if "mapping_layers" in kw:
        hints["mapping_kwargs"]["num_layers"] = int(kw["mapping_layers"])
    sd = _tf_to_nvlabs(_tf_variables(gs, p), p)
    return _from_nvlabs_layout(sd, hints, p, "tf-pickle", {"tf_network_version": gs.state.get("version")})


# --------------------------------------------------------------------------------------------
# rosinality layout


def _rosinality_to_nvlabs(sd: dict[str, Any], p: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Rename/reshape a rosinality ``g_ema`` state dict into NVlabs key names (no rescaling needed)."""
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise _fail(p, f"missing tensor {key!r}", "the rosinality checkpoint is incomplete")
        v = sd[key]
        if not isinstance(v, torch.Tensor):
            raise _fail(p, f"entry {key!r} is a {type(v).__name__}, not a tensor")
        used.add(key)
        return v

    def lead(key: str, n_lead: int, ndim: int) -> torch.Tensor:
        v = take(key)
        if v.ndim != ndim or any(d != 1 for d in v.shape[:n_lead]):
            want = "[" + ", ".join(["1"] * n_lead + ["..."]) + f"] with {ndim} dims"
            raise _fail(
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
                raise _fail(p, f"tensor '{src}.noise.weight' has shape {list(strength.shape)}, expected [1]")
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
            raise _fail(p, f"tensor '{src}.bias' has shape {list(bias.shape)}, expected [1, C, 1, 1]")
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
        raise _fail(
            p,
            f"unexpected tensor {unused[0]!r}{more} in the rosinality state dict",
            "the checkpoint is not a rosinality StyleGAN2 generator of a known layout",
        )
    return out, {}


# --------------------------------------------------------------------------------------------
# NVlabs layout -> config + internal state


def _need(sd: dict[str, Any], key: str, p: Path, ndim: int | None = None) -> torch.Tensor:
    if key not in sd:
        raise _fail(p, f"missing tensor {key!r}", "the checkpoint is incomplete or not a StyleGAN2 generator")
    v = sd[key]
    if not isinstance(v, torch.Tensor):
        raise _fail(p, f"entry {key!r} is a {type(v).__name__}, not a tensor")
    if ndim is not None and v.ndim != ndim:
        raise _fail(
            p,
            f"tensor {key!r} has shape {list(v.shape)}, expected {ndim} dimensions",
            "the checkpoint is corrupt",
        )
    return v


def _taps_from_filter(f2d: torch.Tensor, key: str, p: Path) -> tuple[float, ...]:
    f2d = f2d.double()
    if f2d.ndim != 2 or f2d.shape[0] != f2d.shape[1]:
        raise _fail(p, f"resample filter {key!r} has shape {list(f2d.shape)}, expected a square 2-D filter")
    taps = f2d.sum(dim=1) / f2d.sum().sqrt()
    if not torch.allclose(torch.outer(taps, taps), f2d, atol=1e-6):
        raise _fail(
            p, f"resample filter {key!r} is not separable", "only separable FIR filters are supported"
        )
    nz = taps.abs()[taps.abs() > 1e-12]
    taps = taps / nz.min() if nz.numel() else taps
    return tuple(round(float(v), 6) for v in taps)


def _from_nvlabs_layout(
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
        raise _fail(p, "is a StyleGAN3 (alias-free) generator", "only StyleGAN2 generators are supported")
    c_dim = int(hints.get("c_dim", 0) or 0)
    if "mapping.embed.weight" in sd:
        c_dim = max(c_dim, int(_need(sd, "mapping.embed.weight", p, 2).shape[1]))
    if c_dim:
        raise _fail(
            p,
            f"is a conditional generator (c_dim={c_dim})",
            "use an unconditional StyleGAN2 checkpoint (c_dim=0)",
        )
    for key, val in (
        ("activation", mk.get("activation", "lrelu")),
        ("activation", sk.get("activation", "lrelu")),
    ):
        if val != "lrelu":
            raise _fail(p, f"uses {key} {val!r}; only 'lrelu' is supported")

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
        raise _fail(
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
            raise _fail(
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
        raise _fail(p, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise _fail(p, f"stored constructor kwargs are malformed ({_one_line(exc, 120)})") from None

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
            raise _fail(
                p,
                f"stored kwargs say {name}={want} but the tensors give {actual[name]}",
                "the checkpoint is inconsistent or corrupt",
            )
    if sk.get("use_noise") is False and use_noise:
        raise _fail(p, "stored kwargs say use_noise=False but the checkpoint has noise tensors")

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
