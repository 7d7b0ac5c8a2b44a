"""Weights files that users bring (torchvision state dicts for segmenters, encoders, VGG): read safely.

Shared by the stages that take a ``--...-weights PATH`` option; ``torch.load(weights_only=True)`` never
runs code from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from g3d.errors import UsageError


def load_state_dict(path: str | Path, option: str = "--weights") -> dict[str, Any]:
    """A torch state dict from ``path`` (plain, or under a 'model' / 'state_dict' key); never runs code.

    ``option`` names the command-line option in the one-line errors (missing file, not a state dict)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{option} {path}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"{option} {path} is not a torch state dict ({type(exc).__name__}): save one with torch.save(model.state_dict(), PATH)") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise UsageError(f"{option} {path} holds a {type(obj).__name__}, not a state dict")
    return obj
