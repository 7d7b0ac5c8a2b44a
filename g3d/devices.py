"""The compute device an option names, checked at the boundary: one that exists here, or a one-line error."""

from __future__ import annotations

import re

from g3d.errors import UsageError


def check_device(device: str, option: str = "--device") -> str:
    """``device`` ('cpu', 'cuda' or 'cuda:N') if torch can use it on this machine, else a :class:`UsageError`
    naming the fix. Returns it normalised (lower case, no spaces)."""
    import torch

    d = str(device).strip().lower()
    if d == "cpu":
        return d
    if d == "cuda" or re.fullmatch(r"cuda:\d+", d):
        if not torch.cuda.is_available():
            raise UsageError(f"{option} {device}: torch sees no CUDA GPU on this machine: use {option} cpu (or install a CUDA build of torch)")
        if ":" in d and int(d.split(":")[1]) >= torch.cuda.device_count():
            raise UsageError(f"{option} {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
        return d
    raise UsageError(f"{option} {device!r} is not a device g3d can use: give cpu, cuda or cuda:N")
