"""Checkpoint formats: every fixture case reproduced through every loader, and every refusal.

The network pickles are built here from the fixture weights, in the layouts the real files have:

* NVlabs: globals ``torch_utils.persistence._reconstruct_persistent_obj`` with a meta dict
  (type, version, module_src, class_name, state), ``dnnlib.util.EasyDict`` kwargs, torch tensors
  pickled by torch itself (``_rebuild_parameter`` / ``_rebuild_tensor_v2`` / ``_load_from_bytes``),
  numpy float64 attributes, sets and OrderedDicts. The ``module_src`` would write a marker file
  if it were ever executed.
* TensorFlow: ``dnnlib.tflib.network.Network`` objects (G, D, Gs) whose state holds
  ``variables`` (name, numpy array) in TF layout, made by inverting the published conversion rules.
* rosinality: ``torch.save`` of ``{g_ema, latent_avg, args (argparse.Namespace), g, d}``.

To give the pickles the real global names, stand-in modules are registered in ``sys.modules``
only while pickling; the loader never imports anything.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from g3d.errors import CheckpointError, UsageError
from g3d.synth.checkpoints import convert_checkpoint, detect_format, load_generator, read_checkpoint

TOL = dict(atol=1e-4, rtol=1e-4)
BUFFERS = ("w_avg", "noise_const", "resample_filter")


# --------------------------------------------------------------------------------------------
# Stand-ins carrying the original global names (used only while pickling)


def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called: the loader must not
    raise AssertionError("the test's persistence stand-in must never be called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
_reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"


class EasyDict(dict):
    """Pickled as dnnlib.util.EasyDict."""


EasyDict.__module__ = "dnnlib.util"
EasyDict.__qualname__ = "EasyDict"


class Network:
    """Pickled as dnnlib.tflib.network.Network (state via __getstate__, as dnnlib does)."""

    def __init__(self, state: dict[str, Any]):
        self._state = state

    def __getstate__(self) -> dict[str, Any]:
        return self._state


Network.__module__ = "dnnlib.tflib.network"
Network.__qualname__ = "Network"


class Persistent:
    """Reduces exactly like an NVlabs persistent_class instance."""

    def __init__(self, meta: dict[str, Any]):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


@contextlib.contextmanager
def original_names() -> Iterator[None]:
    mods = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": types.ModuleType("dnnlib.util"),
        "dnnlib.tflib": types.ModuleType("dnnlib.tflib"),
        "dnnlib.tflib.network": types.ModuleType("dnnlib.tflib.network"),
    }
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["dnnlib.util"].EasyDict = EasyDict
    mods["dnnlib.tflib.network"].Network = Network
    clash = [m for m in mods if m in sys.modules]
    assert not clash, f"real modules {clash} are importable; the test would not be isolated"
    sys.modules.update(mods)
    try:
        yield
    finally:
        for m in mods:
            sys.modules.pop(m, None)


# --------------------------------------------------------------------------------------------
# Builders


def _class_name(path: str) -> str:
    last = path.rsplit(".", 1)[-1]
    if path == "":
        return "Generator"
    if path == "mapping":
        return "MappingNetwork"
    if path == "synthesis":
        return "SynthesisNetwork"
    if last.startswith("fc") or last == "affine":
        return "FullyConnectedLayer"
    if last.startswith("b") and last[1:].isdigit():
        return "SynthesisBlock"
    if last in ("conv0", "conv1"):
        return "SynthesisLayer"
    if last == "torgb":
        return "ToRGBLayer"
    raise AssertionError(path)


def _persistent_tree(sd: dict[str, torch.Tensor], module_src: str, root_kwargs: dict[str, Any]) -> Persistent:
    """Nest a flat NVlabs state dict into persistent objects with realistic module __dict__s."""
    nodes: dict[str, dict[str, Any]] = {}

    def node(path: str) -> dict[str, Any]:
        if path not in nodes:
            nodes[path] = {
                "training": False,
                "_parameters": collections.OrderedDict(),
                "_buffers": collections.OrderedDict(),
                "_non_persistent_buffers_set": set(),
                "_backward_hooks": collections.OrderedDict(),
                "_forward_hooks": collections.OrderedDict(),
                "_forward_pre_hooks": collections.OrderedDict(),
                "_state_dict_hooks": collections.OrderedDict(),
                "_load_state_dict_pre_hooks": collections.OrderedDict(),
                "_modules": collections.OrderedDict(),
                "_init_args": (),
                "_init_kwargs": EasyDict(),
            }
            name = _class_name(path)
            if name == "FullyConnectedLayer":
                nodes[path]["weight_gain"] = np.float64(0.0883883476)
                nodes[path]["activation"] = "lrelu" if ".fc" in f".{path}" else "linear"
            if name == "SynthesisLayer":
                nodes[path]["act_gain"] = np.float64(np.sqrt(2))
                nodes[path]["conv_clamp"] = None
            if name == "SynthesisBlock":
                nodes[path]["use_fp16"] = False
                nodes[path]["architecture"] = "skip"
            if path:
                parent, _, leaf = path.rpartition(".")
                node(parent)["_modules"][leaf] = path  # replaced by the Persistent below
        return nodes[path]

    for key, value in sd.items():
        path, _, leaf = key.rpartition(".")
        st = node(path)
        if leaf in BUFFERS:
            st["_buffers"][leaf] = value.clone()
        else:
            st["_parameters"][leaf] = torch.nn.Parameter(value.clone(), requires_grad=False)
    node("")["_init_kwargs"] = EasyDict(root_kwargs)

    built: dict[str, Persistent] = {}

    def build(path: str) -> Persistent:
        st = nodes[path]
        st["_modules"] = collections.OrderedDict((k, build(v)) for k, v in st["_modules"].items())
        meta = dict(type="class", version=6, module_src=module_src, class_name=_class_name(path), state=st)
        built[path] = Persistent(meta)
        return built[path]

    return build("")


def _evil_source(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('module_src was executed')\n"


def make_nvlabs_pickle(
    path: Path, sd: dict[str, torch.Tensor], kwargs: dict[str, Any], marker: Path, protocol: int
) -> Path:
    src = _evil_source(marker)
    g_ema = _persistent_tree(sd, src, kwargs)
    g_train = _persistent_tree({k: v * 0.5 for k, v in sd.items()}, src, kwargs)  # must not be used
    d_state = {
        "training": False,
        "_parameters": collections.OrderedDict(b=torch.nn.Parameter(torch.zeros(1))),
        "_buffers": collections.OrderedDict(),
        "_modules": collections.OrderedDict(),
    }
    disc = Persistent(
        dict(type="class", version=6, module_src=src, class_name="Discriminator", state=d_state)
    )
    data = {
        "training_set_kwargs": EasyDict(path="~/datasets/cars.zip", resolution=64, use_labels=False),
        "G": g_train,
        "D": disc,
        "G_ema": g_ema,
        "augment_pipe": None,
    }
    with original_names():
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def nvlabs_to_tf(sd: dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Inverse of the published TF -> PyTorch rules: (Gs own vars, mapping vars, synthesis vars)."""
    a = {k: v.numpy().astype(np.float32) for k, v in sd.items()}
    mapping, synthesis = {}, {}
    i = 0
    while f"mapping.fc{i}.weight" in a:
        mapping[f"Dense{i}/weight"] = a[f"mapping.fc{i}.weight"].T.copy()
        mapping[f"Dense{i}/bias"] = a[f"mapping.fc{i}.bias"]
        i += 1
    res = sorted({int(k.split(".")[1][1:]) for k in a if k.startswith("synthesis.b")})
    for r in res:
        b, s = f"synthesis.b{r}", f"{r}x{r}"
        layers = (
            [("conv1", "Conv", 0)]
            if r == 4
            else [("conv0", "Conv0_up", 2 * int(np.log2(r)) - 5), ("conv1", "Conv1", 2 * int(np.log2(r)) - 4)]
        )
        if r == 4:
            synthesis[f"{s}/Const/const"] = a[f"{b}.const"][None]
        for pt, tf, n in layers:
            w = a[f"{b}.{pt}.weight"].transpose(2, 3, 1, 0)  # [O,I,kh,kw] -> [kh,kw,I,O]
            if tf == "Conv0_up":
                w = w[::-1, ::-1]
            synthesis[f"{s}/{tf}/weight"] = np.ascontiguousarray(w)
            synthesis[f"{s}/{tf}/bias"] = a[f"{b}.{pt}.bias"]
            synthesis[f"{s}/{tf}/mod_weight"] = a[f"{b}.{pt}.affine.weight"].T.copy()
            synthesis[f"{s}/{tf}/mod_bias"] = a[f"{b}.{pt}.affine.bias"] - 1
            synthesis[f"{s}/{tf}/noise_strength"] = a[f"{b}.{pt}.noise_strength"]
            synthesis[f"noise{n}"] = a[f"{b}.{pt}.noise_const"][None, None]
        synthesis[f"{s}/ToRGB/weight"] = np.ascontiguousarray(a[f"{b}.torgb.weight"].transpose(2, 3, 1, 0))
        synthesis[f"{s}/ToRGB/bias"] = a[f"{b}.torgb.bias"]
        synthesis[f"{s}/ToRGB/mod_weight"] = a[f"{b}.torgb.affine.weight"].T.copy()
        synthesis[f"{s}/ToRGB/mod_bias"] = a[f"{b}.torgb.affine.bias"] - 1
    # G_main also keeps its level-of-detail scalar 'lod' among its own variables.
    return {"dlatent_avg": a["mapping.w_avg"], "lod": np.float32(0.0)}, mapping, synthesis


def _tf_net(
    name: str, variables: dict[str, Any], static_kwargs: dict[str, Any], components: dict[str, Any]
) -> Network:
    return Network(
        {
            "version": 4,
            "name": name,
            "static_kwargs": static_kwargs,
            "components": EasyDict(components),
            "build_module_src": "raise SystemExit('build_module_src must never run')\n",
            "build_func_name": "G_main",
            "variables": list(variables.items()),
        }
    )


def make_tf_pickle(
    path: Path, sd: dict[str, torch.Tensor], protocol: int, numpy1_names: bool = False
) -> Path:
    own, mapping, synthesis = nvlabs_to_tf(sd)
    kw = {
        "num_channels": 3,
        "resolution": 64,
        "label_size": 0,
        "fmap_base": 512,
        "fmap_max": 64,
        "mapping_lrmul": 0.01,
    }

    def gnet(o, m, s):
        return _tf_net(
            "G",
            o,
            dict(kw),
            {
                "mapping": _tf_net(
                    "G_mapping", m, {"latent_size": 128, "dlatent_size": 128, "mapping_layers": 8}, {}
                ),
                "synthesis": _tf_net(
                    "G_synthesis", s, {"resolution": 64, "resample_kernel": [1, 3, 3, 1]}, {}
                ),
            },
        )

    zeros = lambda d: {k: np.zeros_like(v) for k, v in d.items()}  # noqa: E731
    g = gnet(zeros(own), zeros(mapping), zeros(synthesis))  # the training G: must not be used
    d = _tf_net("D", {"Output/weight": np.zeros([4, 1], np.float32)}, {}, {})
    gs = gnet(own, mapping, synthesis)
    with original_names():
        data = pickle.dumps((g, d, gs), protocol=protocol)
    if numpy1_names:  # what numpy 1.x wrote (text GLOBAL opcodes at protocol 2 carry no lengths)
        assert protocol == 2
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert b"numpy.core.multiarray\n" in data
    path.write_bytes(data)
    return path


def make_rosinality_pt(
    path: Path, sd: dict[str, torch.Tensor], latent_avg: torch.Tensor | None, legacy: bool = False
) -> Path:
    ckpt: dict[str, Any] = {
        "g_ema": {k: v.clone() for k, v in sd.items()},
        "g": {k: torch.zeros_like(v) for k, v in sd.items()},  # must not be used
        "d": {"convs.0.0.weight": torch.zeros(4, 3, 1, 1)},
        "args": argparse.Namespace(size=64, latent=128, n_mlp=8, channel_multiplier=2, iter=800000, batch=16),
        "ada_aug_p": 0.0,
    }
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)  # legacy: torch < 1.6 files
    return path


# --------------------------------------------------------------------------------------------
# Fixture data and the case checks


@pytest.fixture(scope="module")
def fx(stylegan_fixtures: Path) -> dict[str, Any]:
    nv_json = json.loads((stylegan_fixtures / "nvlabs_small.json").read_text())
    return {
        "dir": stylegan_fixtures,
        "nv_sd": load_file(str(stylegan_fixtures / "nvlabs_small.safetensors")),
        "ro_sd": load_file(str(stylegan_fixtures / "rosinality_small.safetensors")),
        "nv_cases": dict(np.load(stylegan_fixtures / "nvlabs_small_cases.npz")),
        "ro_cases": dict(np.load(stylegan_fixtures / "rosinality_small_cases.npz")),
        "nv_kwargs": nv_json["constructor_kwargs"],
    }


@pytest.fixture(scope="module")
def built(fx, tmp_path_factory) -> dict[str, Path]:
    """Every checkpoint file the case tests read, made once per module."""
    d = tmp_path_factory.mktemp("ckpts")
    marker = d / "MODULE_SRC_WAS_EXECUTED"
    files = {
        "nvlabs-safetensors": fx["dir"] / "nvlabs_small.safetensors",
        "rosinality-safetensors": fx["dir"] / "rosinality_small.safetensors",
        "nvlabs-pickle-p4": make_nvlabs_pickle(
            d / "network-snapshot.pkl", fx["nv_sd"], fx["nv_kwargs"], marker, 4
        ),
        "nvlabs-pickle-p2": make_nvlabs_pickle(d / "network-p2.pkl", fx["nv_sd"], fx["nv_kwargs"], marker, 2),
        "tf-pickle-p4": make_tf_pickle(d / "stylegan2-tf.pkl", fx["nv_sd"], 4),
        "tf-pickle-p2-numpy1": make_tf_pickle(d / "stylegan2-tf-p2.pkl", fx["nv_sd"], 2, numpy1_names=True),
        "rosinality-pt": make_rosinality_pt(
            d / "550000.pt", fx["ro_sd"], torch.from_numpy(fx["ro_cases"]["truncation_latent"][0])
        ),
        "rosinality-pt-no-latent-avg": make_rosinality_pt(d / "no_avg.pt", fx["ro_sd"], None),
        "rosinality-pt-legacy": make_rosinality_pt(
            d / "legacy.pt", fx["ro_sd"], torch.from_numpy(fx["ro_cases"]["truncation_latent"]), legacy=True
        ),
    }
    for src in ("nvlabs-pickle-p4", "tf-pickle-p4", "rosinality-pt", "rosinality-safetensors"):
        files[f"g3d-from-{src}"] = convert_checkpoint(files[src], d / f"g3d-{src}.safetensors")
    files["g3d-twice"] = convert_checkpoint(files["g3d-from-nvlabs-pickle-p4"], d / "g3d-twice.safetensors")
    files["_marker"] = marker
    return files


def _close(actual: torch.Tensor, expected: np.ndarray) -> None:
    torch.testing.assert_close(actual, torch.from_numpy(np.asarray(expected)), **TOL)


def check_nvlabs_cases(gen, c: dict[str, np.ndarray]) -> None:
    z = torch.from_numpy(c["z"])
    with torch.no_grad():
        ws1, ws07 = gen.mapping(z, 1.0), gen.mapping(z, 0.7)
        _close(ws1, c["ws_psi1"])
        _close(ws07, c["ws_psi07"])
        _close(gen.synthesis(ws1, noise_mode="const"), c["img_psi1"])
        _close(gen.synthesis(ws07, noise_mode="const"), c["img_psi07"])
        _close(gen.synthesis(ws1, noise_mode="none"), c["img_psi1_noise_none"])
        k, a, b = int(c["mix_k"]), torch.from_numpy(c["mix_src_a"]), torch.from_numpy(c["mix_src_b"])
        mixed = ws1[b].clone()
        mixed[:, :k] = ws1[a, :k]
        _close(mixed, c["mix_ws"])
        _close(gen.synthesis(mixed, noise_mode="const"), c["mix_img"])


def check_rosinality_cases(gen, c: dict[str, np.ndarray]) -> None:
    z = torch.from_numpy(c["z"])
    with torch.no_grad():
        _close(gen.w_avg[None], c["truncation_latent"])
        ws1, ws07 = gen.mapping(z, 1.0), gen.mapping(z, 0.7)
        _close(ws1[:, 0], c["latent"])
        _close(ws07, c["latent_trunc07_per_layer"])
        _close(gen.synthesis(ws1, noise_mode="const"), c["img_trunc1"])
        _close(gen.synthesis(ws07, noise_mode="const"), c["img_trunc07"])
        k, a, b = int(c["mix_k"]), torch.from_numpy(c["mix_src_a"]), torch.from_numpy(c["mix_src_b"])
        mixed = ws1[b].clone()
        mixed[:, :k] = ws1[a, :k]
        _close(mixed, c["mix_latent"])
        _close(gen.synthesis(mixed, noise_mode="const"), c["mix_img"])


EXPECTED_FORMAT = {
    "nvlabs-safetensors": "nvlabs-state-dict",
    "rosinality-safetensors": "rosinality-state-dict",
    "nvlabs-pickle-p4": "nvlabs-pickle",
    "nvlabs-pickle-p2": "nvlabs-pickle",
    "tf-pickle-p4": "tf-pickle",
    "tf-pickle-p2-numpy1": "tf-pickle",
    "rosinality-pt": "rosinality-torch",
    "rosinality-pt-no-latent-avg": "rosinality-torch",
    "rosinality-pt-legacy": "rosinality-torch",
}


@pytest.mark.parametrize(
    "kind",
    sorted(EXPECTED_FORMAT)
    + [
        "g3d-from-nvlabs-pickle-p4",
        "g3d-from-tf-pickle-p4",
        "g3d-from-rosinality-pt",
        "g3d-from-rosinality-safetensors",
        "g3d-twice",
    ],
)
def test_every_format_reproduces_every_fixture_case(kind, built, fx):
    gen = load_generator(built[kind])
    info = gen.describe()
    assert info["checkpoint_format"] == EXPECTED_FORMAT.get(kind, "g3d")
    assert info["sha256"] == hashlib.sha256(Path(built[kind]).read_bytes()).hexdigest()
    assert info["source"] == str(Path(built[kind]).resolve())
    assert info["architecture"]["channels"] == {"4": 64, "8": 64, "16": 64, "32": 32, "64": 16}
    assert not gen.training and not any(p.requires_grad for p in gen.parameters())
    if "rosinality" in kind:
        check_rosinality_cases(gen, fx["ro_cases"])
    else:
        check_nvlabs_cases(gen, fx["nv_cases"])
    assert not built["_marker"].exists(), "module_src of the network pickle was executed"


def test_w_avg_provenance_is_recorded(built):
    computed = load_generator(built["rosinality-pt-no-latent-avg"]).describe()["w_avg"]
    assert computed.startswith("computed") and "4096" in computed and "manual_seed(2)" in computed
    assert load_generator(built["rosinality-pt"]).describe()["w_avg"] == "stored in the checkpoint"
    conv = load_generator(built["g3d-from-rosinality-safetensors"]).describe()["converted_from"]
    assert conv["format"] == "rosinality-state-dict" and conv["w_avg"].startswith("computed")
    twice = load_generator(built["g3d-twice"]).describe()["converted_from"]
    assert twice["format"] == "nvlabs-pickle" and twice["file"] == "network-snapshot.pkl"


def test_g3d_file_layout(built):
    from safetensors import safe_open

    with safe_open(str(built["g3d-from-tf-pickle-p4"]), "pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    cfg = json.loads(meta["g3d_config"])
    assert cfg["resolution"] == 64 and cfg["channels"]["32"] == 32 and cfg["mapping_lr_multiplier"] == 0.01
    assert meta["g3d_format_version"] == "1"
    assert "mapping.w_avg" in keys and "synthesis.b64.conv1.noise_const" in keys
    assert not any(k.endswith("resample_filter") for k in keys)


def test_g3d_sidecar_config(built, tmp_path):
    src = built["g3d-from-nvlabs-pickle-p4"]
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        cfg = json.loads(f.metadata()["g3d_config"])
    plain = tmp_path / "model.safetensors"
    save_file(load_file(str(src)), str(plain))  # no metadata
    (tmp_path / "model.json").write_text(json.dumps({"g3d_config": cfg}))
    gen = load_generator(plain)
    assert gen.describe()["checkpoint_format"] == "g3d"
    check_nvlabs_cases(gen, np.load(Path(built["nvlabs-safetensors"]).with_name("nvlabs_small_cases.npz")))


def test_detection_uses_content_not_name(built, fx, tmp_path):
    swaps = {
        "rosinality-pt": ("weights.pkl", "torch-zip"),
        "nvlabs-pickle-p4": ("weights.pt", "pickle"),
        "tf-pickle-p4": ("weights.safetensors", "pickle"),
        "g3d-from-tf-pickle-p4": ("weights.pkl", "safetensors"),
    }
    for kind, (name, container) in swaps.items():
        dst = tmp_path / name
        shutil.copyfile(built[kind], dst)
        assert detect_format(dst) == container
        assert read_checkpoint(dst).format == (EXPECTED_FORMAT.get(kind) or "g3d")


def test_nvlabs_pickle_takes_g_ema_and_reads_kwargs(built):
    ck = read_checkpoint(built["nvlabs-pickle-p4"])
    assert ck.config.resolution == 64 and ck.config.num_ws == 10 and ck.config.conv_clamp is None
    assert ck.notes.get("mapping_lr_multiplier", "").startswith("not stored")  # the fixture passed none


def test_load_options(built):
    gen = load_generator(
        built["nvlabs-safetensors"],
        device="cpu",
        dtype=torch.bfloat16,
        channels_last=True,
        fused_modconv=False,
    )
    assert gen.compute_dtype == torch.bfloat16 and gen.channels_last and gen.fused_modconv is False
    with pytest.raises(UsageError):
        load_generator(built["nvlabs-safetensors"], truncation=0.5)
    with pytest.raises(UsageError):
        load_generator(built["nvlabs-safetensors"], device="warp-drive")


def test_builtin_is_dispatched_lazily():
    pytest.importorskip("g3d.synth.builtin")
    from g3d.synth.generator import Generator

    assert isinstance(load_generator("builtin"), Generator)


# --------------------------------------------------------------------------------------------
# Refusals: nothing named in a file is ever run


class _Call:
    """Pickles as a call of ``func(*args)``: what a malicious pickle does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _refusal(path: Path) -> str:
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    msg = str(err.value)
    assert path.name in msg, msg
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize(
    "attack", ["os.system", "builtins.exec", "builtins.eval", "subprocess.Popen", "nested", "storage"]
)
def test_malicious_pickles_are_refused_unrun(attack, tmp_path):
    marker = tmp_path / "PWNED"
    write = f"open({str(marker)!r}, 'w').write('x')"
    payload = {
        "os.system": _Call(os.system, f"touch {marker}"),
        "builtins.exec": _Call(builtins.exec, write),
        "builtins.eval": _Call(builtins.eval, write),
        "subprocess.Popen": _Call(subprocess.Popen, ["touch", str(marker)]),
        # hidden inside an otherwise well-formed persistent module's state / a tensor storage blob
        "nested": None,
        "storage": None,
    }[attack]
    path = tmp_path / f"{attack}.pkl"
    if attack == "storage":  # a legacy torch.save blob, as tensor storages are pickled, carrying a call
        blob = io.BytesIO()
        torch.save(_Call(os.system, f"touch {marker}"), blob, _use_new_zipfile_serialization=False)
        path.write_bytes(
            pickle.dumps({"G_ema": _Call(torch.storage._load_from_bytes, blob.getvalue())}, protocol=4)
        )
    elif attack == "nested":
        st = {
            "_parameters": {},
            "_buffers": {},
            "_modules": {},
            "_init_kwargs": _Call(os.system, f"touch {marker}"),
        }
        with original_names():
            path.write_bytes(
                pickle.dumps(
                    {
                        "G_ema": Persistent(
                            dict(type="class", version=6, module_src="", class_name="Generator", state=st)
                        )
                    },
                    protocol=4,
                )
            )
    else:
        path.write_bytes(pickle.dumps({"G_ema": payload, "G": None, "D": None}, protocol=4))
    msg = _refusal(path)
    assert "refused" in msg and ("system" in msg or "exec" in msg or "eval" in msg or "Popen" in msg)
    assert not marker.exists()


def test_malicious_torch_file_is_refused_unrun(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Call(os.system, f"touch {marker}")}, path)
    msg = _refusal(path)
    assert "refused" in msg and "system" in msg
    assert not marker.exists()


# Every global the restricted unpickler resolves. A new entry is a security change: review what its
# stand-in can build from attacker-chosen arguments before adding it here.
REVIEWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    ("dnnlib.util", "EasyDict"),
    ("dnnlib.tflib.network", "Network"),
    ("collections", "OrderedDict"),
    *((b, n) for b in ("builtins", "__builtin__") for n in ("set", "frozenset", "bytearray", "slice")),
    ("_codecs", "encode"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch.storage", "_load_from_bytes"),
    ("torch", "device"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    *((f"{m}.multiarray", n) for m in ("numpy.core", "numpy._core") for n in ("scalar", "_reconstruct")),
    *((f"{m}.numeric", "_frombuffer") for m in ("numpy.core", "numpy._core")),
}


def test_the_unpickler_resolves_only_the_reviewed_globals():
    from g3d import safepickle

    assert set(safepickle._ALLOWED_GLOBALS) == REVIEWED_GLOBALS


@pytest.mark.parametrize(
    "name",
    [
        "builtins.getattr",  # reaches any stand-in's __globals__, and from there eval
        "builtins.__import__",
        "builtins.open",
        "builtins.exec",
        "builtins.eval",
        "builtins.compile",
        "os.system",
        "posix.system",
        "subprocess.Popen",
        "pickle.loads",
        "importlib.import_module",
        "operator.attrgetter",
        "functools.partial",
        "types.FunctionType",
        "torch.load",
        "torch._utils._rebuild_tensor",
        "numpy.load",
        "collections.namedtuple",
    ],
)
def test_every_other_global_is_refused_by_both_readers(name, tmp_path):
    from g3d.safepickle import read_data_pickle

    module, attr = name.rsplit(".", 1)
    path = tmp_path / "one-global.pkl"
    path.write_bytes(b"\x80\x02c" + module.encode() + b"\n" + attr.encode() + b"\n.")  # GLOBAL, STOP
    assert f"refused: the pickle needs {name}," in _refusal(path)
    with pytest.raises(CheckpointError, match=f"refused: the pickle needs {name}, which a detectron2"):
        read_data_pickle(path, "detectron2 weights file", encoding="latin1")


def _truncate(src: Path, dst: Path, keep: float = 0.6) -> Path:
    data = Path(src).read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


@pytest.mark.parametrize(
    "kind",
    [
        "nvlabs-pickle-p4",
        "tf-pickle-p2-numpy1",
        "rosinality-pt",
        "nvlabs-safetensors",
        "g3d-from-rosinality-pt",
    ],
)
def test_truncated_files_are_refused(kind, built, tmp_path):
    msg = _refusal(_truncate(built[kind], tmp_path / f"cut-{Path(built[kind]).name}"))
    assert "truncated" in msg or "corrupt" in msg


def _save_variant(fx, tmp_path: Path, layout: str, name: str, edit) -> Path:
    sd = dict(fx["nv_sd"] if layout == "nvlabs" else fx["ro_sd"])
    edit(sd)
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


@pytest.mark.parametrize(
    "layout, key, words",
    [
        ("nvlabs", "synthesis.b8.conv0.affine.bias", "missing tensor 'synthesis.b8.conv0.affine.bias'"),
        ("nvlabs", "synthesis.b16.conv1.weight", "missing tensor 'synthesis.b16.conv1.weight'"),
        ("nvlabs", "mapping.fc0.weight", "missing tensor 'mapping.fc0.weight'"),
        ("rosinality", "convs.3.conv.modulation.weight", "missing tensor 'convs.3.conv.modulation.weight'"),
        ("rosinality", "noises.noise_4", "missing tensor 'noises.noise_4'"),
    ],
)
def test_missing_keys_are_refused(layout, key, words, fx, tmp_path):
    path = _save_variant(fx, tmp_path, layout, f"missing-{layout}.safetensors", lambda sd: sd.pop(key))
    assert words in _refusal(path)


@pytest.mark.parametrize(
    "layout, key, shape, words",
    [
        ("nvlabs", "synthesis.b8.conv0.affine.weight", (64, 127), "has shape [64, 127], expected [64, 128]"),
        ("nvlabs", "synthesis.b32.torgb.weight", (3, 32, 1, 2), "synthesis.b32.torgb.weight"),
        ("nvlabs", "synthesis.b16.conv1.noise_const", (16, 15), "noise_const"),
        ("rosinality", "convs.0.conv.weight", None, "convs.0.conv.weight"),
        ("rosinality", "to_rgbs.1.bias", (3,), "to_rgbs.1.bias"),
    ],
)
def test_misshapen_keys_are_refused(layout, key, shape, words, fx, tmp_path):
    def edit(sd):
        t = sd[key]
        if shape is None:  # drop rosinality's leading 1: [1,O,I,3,3] -> [O,I,3,3]
            sd[key] = t[0]
        else:
            sd[key] = torch.zeros(shape)

    path = _save_variant(fx, tmp_path, layout, f"bad-shape-{layout}.safetensors", edit)
    assert words in _refusal(path)


def test_missing_and_misshapen_in_g3d_files(built, tmp_path):
    from safetensors import safe_open

    with safe_open(str(built["g3d-from-rosinality-pt"]), "pt") as f:
        meta = f.metadata()
    sd = load_file(str(built["g3d-from-rosinality-pt"]))
    missing = dict(sd)
    missing.pop("synthesis.b32.conv0.noise_strength")
    save_file(missing, str(tmp_path / "g3d-missing.safetensors"), metadata=meta)
    assert "missing tensor 'synthesis.b32.conv0.noise_strength'" in _refusal(
        tmp_path / "g3d-missing.safetensors"
    )
    bad = dict(sd)
    bad["mapping.fc3.bias"] = torch.zeros(64)
    save_file(bad, str(tmp_path / "g3d-shape.safetensors"), metadata=meta)
    assert "'mapping.fc3.bias' has shape [64], expected [128]" in _refusal(tmp_path / "g3d-shape.safetensors")
    nan = dict(sd)
    nan["synthesis.b4.const"] = torch.full_like(sd["synthesis.b4.const"], float("nan"))
    save_file(nan, str(tmp_path / "g3d-nan.safetensors"), metadata=meta)
    assert "NaN" in _refusal(tmp_path / "g3d-nan.safetensors")
    meta_bad = dict(meta, g3d_config="{not json")
    save_file(sd, str(tmp_path / "g3d-badcfg.safetensors"), metadata=meta_bad)
    assert "g3d_config" in _refusal(tmp_path / "g3d-badcfg.safetensors")


def test_conditional_and_stylegan3_are_refused(fx, tmp_path):
    cond = _save_variant(
        fx,
        tmp_path,
        "nvlabs",
        "cond.safetensors",
        lambda sd: sd.update({"mapping.embed.weight": torch.zeros(128, 10)}),
    )
    assert "conditional" in _refusal(cond)
    sg3 = _save_variant(
        fx,
        tmp_path,
        "nvlabs",
        "sg3.safetensors",
        lambda sd: sd.update({"synthesis.input.weight": torch.zeros(4, 2)}),
    )
    assert "StyleGAN3" in _refusal(sg3)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("garbage.pkl", bytes(range(7, 250)) * 40, "not a StyleGAN2 checkpoint"),
        ("garbage-pickle.pkl", b"\x80\x04" + bytes(range(250)) * 8, "corrupt"),
        ("garbage.pt", b"PK\x03\x04" + bytes(range(250)) * 8, "corrupt"),
        (
            "garbage.safetensors",
            (20).to_bytes(8, "little") + b"{not json at all!!!}" + bytes(64),
            "safetensors",
        ),
        ("text.pkl", b"this is not a checkpoint\n" * 10, "not a StyleGAN2 checkpoint"),
        ("empty.pkl", b"", "empty"),
        ("list.pkl", pickle.dumps([1, 2, 3], protocol=4), "not a StyleGAN2 network"),
        ("tensors.safetensors", None, "not a known StyleGAN2 layout"),
    ],
)
def test_garbage_is_refused(name, content, words, tmp_path):
    path = tmp_path / name
    if content is None:
        save_file({"encoder.weight": torch.zeros(2)}, str(path))
    else:
        path.write_bytes(content)
    assert words in _refusal(path)


def test_directory_and_missing_path_are_refused(tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert "directory" in _refusal(folder)
    assert "no such file" in _refusal(tmp_path / "nowhere.pkl")


def test_convert_is_atomic_and_refuses_bad_sources(built, tmp_path):
    dst = tmp_path / "out.safetensors"
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError):
        convert_checkpoint(bad, dst)
    assert not dst.exists() and not list(tmp_path.glob(".out.safetensors.tmp-*"))
    convert_checkpoint(built["rosinality-pt"], dst)
    assert dst.exists() and not list(tmp_path.glob(".out.safetensors.tmp-*"))
