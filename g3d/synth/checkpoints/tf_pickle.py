"""NVIDIA's TensorFlow StyleGAN2 pickles ``(G, D, Gs)`` (e.g. car config-f): ``Gs``, no TensorFlow needed.

The file is read by :func:`g3d.safepickle.restricted_load`, where each ``dnnlib.tflib.network.Network``
becomes a :class:`~g3d.safepickle.TFNetwork` (its pickled state). :func:`from_tf_network` collects the
variables of ``Gs`` and its components and maps them to NVlabs names by the published conversion rules
(transposes, flipped up-sampling kernels, ``mod_bias + 1``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from g3d.errors import checkpoint_error
from g3d.safepickle import TFNetwork
from g3d.synth.checkpoints.nvlabs_layout import DEFAULT_FILTER, LoadedCheckpoint, from_nvlabs_layout


def _tf_variables(net: TFNetwork, p: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def walk(n: TFNetwork, prefix: str, depth: int) -> None:
        if depth > 8:
            raise checkpoint_error(p, "TensorFlow network components nest more than 8 deep")
        for item in n.state.get("variables") or []:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise checkpoint_error(p, "TensorFlow network variables are not (name, array) pairs")
            name, value = item
            if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.hasobject:
                raise checkpoint_error(p, f"TensorFlow variable {prefix + name!r} is not a numeric array")
            out[prefix + name] = np.asarray(value)
        for cname, comp in (n.state.get("components") or {}).items():
            if not isinstance(comp, TFNetwork):
                raise checkpoint_error(p, f"TensorFlow component {cname!r} is a {type(comp).__name__}, not a Network")
            walk(comp, f"{prefix}{cname}/", depth + 1)

    walk(net, "", 0)
    return out


def _tf_to_nvlabs(tf: dict[str, np.ndarray], p: Path) -> dict[str, torch.Tensor]:
    """Apply the published TF -> PyTorch renaming/reshaping rules (transposes, flips, mod_bias + 1)."""

    def need(name: str) -> np.ndarray:
        if name not in tf:
            raise checkpoint_error(
                p,
                f"TensorFlow variable {name!r} is missing",
                "the pickle is not a complete StyleGAN2 generator",
            )
        return tf[name]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def conv(a: np.ndarray, name: str, flip: bool = False) -> torch.Tensor:
        if a.ndim != 4:
            raise checkpoint_error(
                p, f"TensorFlow variable {name!r} has shape {list(a.shape)}, expected [kh, kw, in, out]"
            )
        if flip:
            a = a[::-1, ::-1]
        return t(a.transpose(3, 2, 0, 1))

    def dense(a: np.ndarray, name: str) -> torch.Tensor:
        if a.ndim != 2:
            raise checkpoint_error(p, f"TensorFlow variable {name!r} has shape {list(a.shape)}, expected [in, out]")
        return t(a.T)

    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return need(name)

    sd: dict[str, torch.Tensor] = {}
    if "dlatent_avg" in tf:
        sd["mapping.w_avg"] = t(take("dlatent_avg"))
    if any(k.startswith("mapping/LabelEmbed") or k.startswith("mapping/LabelConcat") for k in tf):
        raise checkpoint_error(
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
                raise checkpoint_error(
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
                    raise checkpoint_error(
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
            raise checkpoint_error(
                p,
                "TensorFlow generator uses the 'resnet' architecture",
                "only 'skip' (config-e/f) generators are supported",
            )
    # G_main keeps its progressive-growing level of detail ('lod', a scalar) as a variable.
    used.update(k for k in tf if k.rsplit("/", 1)[-1] == "lod" and tf[k].size == 1)
    unused = sorted(set(tf) - used)
    if unused:
        raise checkpoint_error(
            p,
            f"TensorFlow variable {unused[0]!r} has no place in a StyleGAN2 'skip' generator"
            + (f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""),
        )
    return sd


def from_tf_network(gs: TFNetwork, p: Path) -> LoadedCheckpoint:
    comps = gs.state.get("components") or {}
    if not isinstance(comps, dict) or "mapping" not in comps or "synthesis" not in comps:
        raise checkpoint_error(
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
        raise checkpoint_error(
            p, "TensorFlow mapping network does not normalise z (normalize_latents=False)", "not supported"
        )
    for key in ("nonlinearity", "mapping_nonlinearity"):
        if kw.get(key, "lrelu") != "lrelu":
            raise checkpoint_error(p, f"TensorFlow generator uses {key}={kw[key]!r}; only 'lrelu' is supported")
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
    return from_nvlabs_layout(sd, hints, p, "tf-pickle", {"tf_network_version": gs.state.get("version")})

