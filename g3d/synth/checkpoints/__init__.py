"""Every StyleGAN2 checkpoint format g3d reads, one module per format; nothing inside a file is ever run.

Formats, detected from the file's content (never its name), and the module that reads each:

=========================  ==========================  ===================================================
``g3d``                    :mod:`.safetensors_file`    safetensors in the internal (NVlabs-named) layout,
                                                       the architecture as JSON under the metadata key
                                                       ``g3d_config`` (or in a sidecar ``<stem>.json``
                                                       holding ``{"g3d_config": {...}}``). Written by
                                                       :func:`convert_checkpoint`.
``nvlabs-pickle``          :mod:`.nvlabs_pickle`       stylegan2-ada-pytorch / stylegan3 network pickle
                                                       (``G_ema`` is used).
``tf-pickle``              :mod:`.tf_pickle`           NVIDIA's TensorFlow StyleGAN2 pickle ``(G, D, Gs)``
                                                       (``Gs`` is used); no TensorFlow needed.
``rosinality-torch``       :mod:`.rosinality`          rosinality/stylegan2-pytorch ``torch.save`` file
                                                       (``g_ema``, ``latent_avg``, ``args``), read with
                                                       ``torch.load(weights_only=True)`` allowing only
                                                       ``argparse.Namespace``.
``nvlabs-state-dict``      :mod:`.safetensors_file`    safetensors with NVlabs key names (e.g. the
``rosinality-state-dict``                              conformance fixtures), plus the sibling
                                                       ``<stem>.json`` constructor kwargs when present.
=========================  ==========================  ===================================================

Both pickle formats are read by the restricted unpickler of :mod:`g3d.safepickle`: the embedded module
source is never executed, modules become plain records of their state. Every format is converted into
the layout of :mod:`.nvlabs_layout`, which reads the architecture from the tensors.

Content signatures: ``PK\\x03\\x04`` torch zip; the legacy ``torch.save`` magic pickle; ``\\x80``
+ protocol byte: a pickle; 8-byte little-endian header length then ``{``: safetensors.

Every refusal is a :class:`~g3d.errors.CheckpointError` whose one-line message names the file,
the problem and the fix.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import torch

from g3d.datasets.io import file_sha256
from g3d.errors import UsageError, checkpoint_error, one_line
from g3d.safepickle import PersistentObject, TFNetwork, read_data_pickle, restricted_load
from g3d.synth.checkpoints.nvlabs_layout import (
    DEFAULT_FILTER,
    W_AVG_SAMPLES,
    W_AVG_SEED,
    LoadedCheckpoint,
    build_generator,
)
from g3d.synth.checkpoints.nvlabs_pickle import from_nvlabs_pickle
from g3d.synth.checkpoints.rosinality import read_torch_file
from g3d.synth.checkpoints.safetensors_file import G3D_FORMAT_VERSION, read_safetensors_file, write_g3d_file
from g3d.synth.checkpoints.tf_pickle import from_tf_network
from g3d.synth.generator import Generator

__all__ = [
    "DEFAULT_FILTER",
    "G3D_FORMAT_VERSION",
    "W_AVG_SAMPLES",
    "W_AVG_SEED",
    "LoadedCheckpoint",
    "convert_checkpoint",
    "detect_format",
    "load_generator",
    "read_checkpoint",
    "read_data_pickle",
]

_ZIP_MAGIC = b"PK\x03\x04"
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."  # pickled magic number of torch.save
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_LOAD_OPTIONS = ("dtype", "channels_last", "num_lowp_res", "fused_modconv")


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
        raise UsageError(f"device {device!r} is not a torch device ({one_line(exc)})") from None
    ck = read_checkpoint(path)
    gen = build_generator(ck)
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
    ck = read_checkpoint(src)
    gen = build_generator(ck)  # validates shapes once more
    return write_g3d_file(ck, gen, dst)


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
    raise checkpoint_error(
        p,
        f"is not a StyleGAN2 checkpoint (unrecognised content, first bytes {head[:8]!r})",
        "use an NVlabs .pkl, a TensorFlow StyleGAN2 .pkl, a rosinality .pt or a g3d .safetensors file",
    )


def read_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read a checkpoint of any supported format into the internal layout (nothing is executed)."""
    p = _check_file(path)
    kind = detect_format(p)
    if kind in ("torch-zip", "torch-legacy"):
        return read_torch_file(p)
    if kind == "pickle":
        return _read_pickle_file(p)
    return read_safetensors_file(p)


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise checkpoint_error(p, "no such file", "pass the path of a checkpoint file, or 'builtin'")
    if p.is_dir():
        raise checkpoint_error(p, "is a directory, not a checkpoint file", "pass the checkpoint file inside it")
    if not p.is_file():
        raise checkpoint_error(p, "is not a regular file", "pass the path of a checkpoint file")
    if p.stat().st_size == 0:
        raise checkpoint_error(p, "is empty (0 bytes)", "re-download or re-export the checkpoint")
    return p


def _read_pickle_file(p: Path) -> LoadedCheckpoint:
    obj = restricted_load(p, "StyleGAN2 network pickle", redo="re-download the checkpoint")
    if isinstance(obj, dict) and ("G_ema" in obj or "G" in obj or "D" in obj):
        g = obj.get("G_ema")
        if g is None:
            raise checkpoint_error(
                p,
                "network pickle has no 'G_ema' (keys: " + ", ".join(map(str, obj)) + ")",
                "export a snapshot that includes G_ema",
            )
        return from_nvlabs_pickle(g, p)
    if isinstance(obj, PersistentObject):
        return from_nvlabs_pickle(obj, p)
    if isinstance(obj, (tuple, list)) and obj and all(isinstance(o, TFNetwork) for o in obj):
        if len(obj) != 3:
            raise checkpoint_error(p, f"TensorFlow pickle holds {len(obj)} networks, expected (G, D, Gs)")
        return from_tf_network(obj[2], p)
    if isinstance(obj, TFNetwork):
        return from_tf_network(obj, p)
    raise checkpoint_error(
        p,
        f"pickle holds a {type(obj).__name__}, not a StyleGAN2 network",
        "expected an NVlabs network pickle (dict with 'G_ema') or a TensorFlow StyleGAN2 pickle (G, D, Gs)",
    )

