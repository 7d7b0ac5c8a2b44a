"""The restricted unpickler: every pickle g3d reads from outside goes through it, and nothing in one is run.

Python's own unpickler calls whatever a pickle names (``os.system``, ``builtins.exec``, a class that
executes its embedded source). This one resolves only the globals in ``_ALLOWED_GLOBALS`` (containers,
torch tensors and storages, numpy arrays and scalars, and the few names StyleGAN network pickles use),
each to a stand-in that checks its arguments and builds plain data; anything else, and any persistent
id, is refused in one line naming what was asked for. The allow-list and its stand-ins live together
here so that the whole policy can be read in one place.

Readers: :mod:`g3d.synth.checkpoints` (NVlabs and TensorFlow StyleGAN2 network pickles, through
:func:`restricted_load`) and :mod:`g3d.filters.segmenters` (detectron2 model-zoo weights, through
:func:`read_data_pickle`). What a network pickle's stand-ins become: an NVlabs persistent module is a
:class:`PersistentObject` (class name and ``__dict__``, never its ``module_src``), a TensorFlow
``Network`` a :class:`TFNetwork` (its pickled state dict).
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from g3d.errors import UsageError, checkpoint_error, one_line


class _Refused(Exception):
    """A pickle asked for something outside the allow-list (a global or a persistent id)."""


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access not needed)."""

    def __setstate__(self, state: Any) -> None:  # BUILD with an instance __dict__: keep nothing
        return None


class PersistentObject:
    """What an NVlabs persistent module becomes: its class name and ``__dict__``, never its code."""

    def __init__(self, class_name: str, state: dict[str, Any], version: Any):
        self.class_name = class_name
        self.state = state
        self.version = version


class TFNetwork:
    """Stand-in for ``dnnlib.tflib.network.Network``: keeps the pickled state dict only."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise _Refused(f"a TensorFlow Network whose state is a {type(state).__name__}")
        self.state = state


class _NDArrayMarker:
    """Stand-in for the ``numpy.ndarray`` class argument of numpy's array reconstruction."""


def _sf_persistent_obj(meta: Any) -> PersistentObject:
    # NVlabs would exec meta['module_src'] here; we only keep the class name and state.
    if not isinstance(meta, dict):
        raise _Refused(f"a persistent object with {type(meta).__name__} metadata")
    if meta.get("type") != "class":
        raise _Refused(f"a persistent object of type {meta.get('type')!r}")
    class_name = meta.get("class_name")
    state = meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise _Refused("a persistent object without class_name/state")
    return PersistentObject(class_name, state, meta.get("version"))


def _sf_codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode used for anything but latin1 bytes")
    return text.encode("latin1")


def _sf_load_storage(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused("torch.storage._load_from_bytes without bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's own allow-list said no
        m = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise _Refused(f"{m.group(1) if m else 'a global'} inside a tensor storage") from None
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise _Refused(f"a tensor storage that is a {type(storage).__name__}")
    return storage


def _sf_rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):  # noqa: ANN001
    if isinstance(storage, torch.storage.TypedStorage):
        dtype = storage.dtype
        with warnings.catch_warnings():  # TypedStorage is deprecated, but it is what these files hold
            warnings.simplefilter("ignore")
            untyped = storage.untyped()
    else:
        raise _Refused("a tensor rebuilt from something other than a typed storage")
    ints = lambda xs: isinstance(xs, (tuple, list)) and all(
        isinstance(v, int) and v >= 0 for v in xs
    )  # noqa: E731
    if not (
        isinstance(storage_offset, int)
        and storage_offset >= 0
        and ints(size)
        and ints(stride)
        and len(size) == len(stride)
    ):
        raise _Refused("a tensor with malformed offset/size/stride")
    itemsize = torch.empty([], dtype=dtype).element_size()
    numel_storage = untyped.nbytes() // itemsize
    if math.prod(size) > 0:
        last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= numel_storage:
            raise _Refused("a tensor view outside its storage")
    t = torch.empty([0], dtype=dtype)
    t.set_(untyped, storage_offset, tuple(size), tuple(stride))
    return t


def _sf_rebuild_parameter(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise _Refused("a parameter without tensor data")
    return data


def _sf_device(*args: Any) -> torch.device:
    if not args or not all(isinstance(a, (str, int)) for a in args):
        raise _Refused("torch.device with non-string arguments")
    return torch.device(*args)


def _sf_np_dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(obj, str):
        raise _Refused("numpy.dtype of a non-string")
    dt = np.dtype(obj)
    if dt.hasobject:
        raise _Refused("a numpy object dtype")
    return dt


def _sf_np_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise _Refused("a numpy scalar that is not plain numeric data")
    if len(data) != dtype.itemsize:
        raise _Refused("a numpy scalar with the wrong byte count")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


def _sf_np_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not _NDArrayMarker:
        raise _Refused("numpy array reconstruction of a class other than numpy.ndarray")
    # An empty uint8 array; numpy's own __setstate__ (BUILD) then fills it from raw bytes.
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _sf_np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(buf, (bytes, bytearray)):
        raise _Refused("a numpy buffer that is not plain numeric data")
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order="F" if order == "F" else "C").copy()


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _sf_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("__builtin__", "bytearray"): bytearray,
    ("builtins", "slice"): slice,
    ("__builtin__", "slice"): slice,
    ("_codecs", "encode"): _sf_codecs_encode,
    ("torch._utils", "_rebuild_tensor_v2"): _sf_rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _sf_rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _sf_rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _sf_load_storage,
    ("torch", "device"): _sf_device,
    ("numpy", "dtype"): _sf_np_dtype,
    ("numpy", "ndarray"): _NDArrayMarker,
}
for _np_mod in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_np_mod}.multiarray", "scalar")] = _sf_np_scalar
    _ALLOWED_GLOBALS[(f"{_np_mod}.multiarray", "_reconstruct")] = _sf_np_reconstruct
    _ALLOWED_GLOBALS[(f"{_np_mod}.numeric", "_frombuffer")] = _sf_np_frombuffer


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals above, each to a harmless stand-in; refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise _Refused(f"{module}.{name}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"persistent id {one_line(repr(pid), 60)}")


def read_data_pickle(path: str | os.PathLike, what: str = "weights file", encoding: str = "ASCII") -> Any:
    """Read a pickle that should hold only data (dicts, lists, strings, numbers, numpy arrays), with the
    same restricted unpickler as network pickles: anything else it names (a class, a function) is
    refused in one line and nothing in the file runs. ``encoding="latin1"`` reads Python 2 pickles
    such as detectron2's model-zoo ``.pkl`` files."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such {what}")
    return restricted_load(p, what, encoding, redo=f"pass a {what} from a source you trust")


def restricted_load(p: Path, what: str, encoding: str = "ASCII", *, redo: str) -> Any:
    """The object in pickle ``p``, read with :class:`_RestrictedUnpickler`. Every failure is one
    :class:`~g3d.errors.CheckpointError` line naming ``what`` the file should be (a refused global, too
    deep, truncated or corrupt: then ``redo`` says how to get a good copy)."""
    try:
        with open(p, "rb") as f:
            return _RestrictedUnpickler(f, encoding=encoding).load()
    except _Refused as exc:
        raise checkpoint_error(
            p,
            f"refused: the pickle needs {exc}, which a {what} never contains; nothing in it was run",
            "only load files from a source you trust, in a supported format",
        ) from None
    except RecursionError:
        raise checkpoint_error(p, f"pickle is nested too deeply to be a {what}") from None
    except Exception as exc:  # EOFError, UnpicklingError, errors of stand-ins on malformed data
        raise checkpoint_error(p, f"pickle is truncated or corrupt ({type(exc).__name__}: {one_line(exc, 120)})", redo) from None

