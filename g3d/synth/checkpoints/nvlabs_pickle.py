"""NVlabs network pickles (stylegan2-ada-pytorch / stylegan3 ``.pkl``): the ``G_ema`` module tree.

The file is read by :func:`g3d.safepickle.restricted_load`, where each persistent module becomes a
:class:`~g3d.safepickle.PersistentObject` (class name and ``__dict__``; the embedded ``module_src``
is never run). :func:`from_nvlabs_pickle` rebuilds ``state_dict()`` from that tree (parameters and
persistent buffers) and takes the constructor kwargs from ``_init_kwargs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from g3d.errors import checkpoint_error
from g3d.safepickle import PersistentObject
from g3d.synth.checkpoints.nvlabs_layout import LoadedCheckpoint, from_nvlabs_layout


def _persistent_state_dict(
    obj: PersistentObject, p: Path, prefix: str = "", depth: int = 0
) -> dict[str, Any]:
    """Rebuild ``state_dict()`` of a persistent module tree: parameters + persistent buffers."""
    if depth > 32:
        raise checkpoint_error(p, "network pickle nests modules more than 32 deep")
    st = obj.state
    out: dict[str, Any] = {}
    params = st.get("_parameters") or {}
    buffers = st.get("_buffers") or {}
    non_persistent = st.get("_non_persistent_buffers_set") or set()
    modules = st.get("_modules") or {}
    if not all(isinstance(d, dict) for d in (params, buffers, modules)):
        raise checkpoint_error(p, f"module {prefix or '<root>'} has malformed _parameters/_buffers/_modules")
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
            raise checkpoint_error(p, f"module {prefix + name} is a {type(child).__name__}, not a network module")
        out.update(_persistent_state_dict(child, p, f"{prefix}{name}.", depth + 1))
    return out


def from_nvlabs_pickle(g: Any, p: Path) -> LoadedCheckpoint:
    if not isinstance(g, PersistentObject):
        raise checkpoint_error(p, f"'G_ema' is a {type(g).__name__}, not an NVlabs network module")
    if g.class_name != "Generator":
        raise checkpoint_error(p, f"'G_ema' is a {g.class_name}, expected a Generator")
    sd = _persistent_state_dict(g, p)
    kwargs = g.state.get("_init_kwargs", g.state.get("init_kwargs")) or {}
    if not isinstance(kwargs, dict):
        raise checkpoint_error(p, f"G_ema's init kwargs are a {type(kwargs).__name__}, expected a dict")
    notes = {"persistence_version": g.version} if g.version is not None else {}
    return from_nvlabs_layout(sd, dict(kwargs), p, "nvlabs-pickle", notes)

