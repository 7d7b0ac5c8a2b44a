"""The run folder both trainers write: ``g3d train``'s ``RUN/`` and ``g3d neural train``'s ``NRUN/``.

A run folder holds ``config.json`` (the settings; a rerun into the folder resumes only when the settings
outside the trainer's resumable ones match), ``metrics.jsonl`` (one JSON line per logged step; lines
past the checkpoint's step are dropped on resume), ``checkpoints/last.pt`` (a ``torch.save`` dict with
at least ``step``), and ``ddp_check.json`` under torchrun (every rank's parameter checksum). Each
trainer adds its own files (previews, ``history.jsonl``, the cameras it used).

Here: the folder's files and their reader and writers (:class:`RunFolder`), the stops that keep the last
good checkpoint (a non-finite loss or parameters), and the distributed set-up under ``torchrun``
(:func:`start_ranks`) with the end-of-run check that the ranks agree. Writes are atomic
(:mod:`g3d.datasets.io`); under torchrun rank 0 alone writes.
"""

from __future__ import annotations

import datetime
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from g3d.datasets import io as dsio
from g3d.errors import G3DError, UsageError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
HISTORY = "history.jsonl"
CHECKPOINT = "checkpoints/last.pt"
RANKS_CHECK = "ddp_check.json"


class TrainingError(G3DError):
    """Training cannot go on (NaN loss, corrupt checkpoint, ...)."""


def is_run(path: str | Path) -> bool:
    """Whether ``path`` holds a trained run (its ``config.json`` and ``checkpoints/last.pt``)."""
    return (Path(path) / CONFIG).is_file() and (Path(path) / CHECKPOINT).is_file()


def due(done: int, every: int, steps: int) -> bool:
    """Whether something done every ``every`` steps (and at the last of ``steps``) is due after step ``done``."""
    return done % every == 0 or done == steps


def check_every(**every: int) -> None:
    """Step intervals (``checkpoint_every=250``, ...) of at least 1; else a :class:`UsageError` naming the option."""
    for name, k in every.items():
        if k < 1:
            raise UsageError(f"--{name.replace('_', '-')} {k}: give a number of steps of at least 1")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``state`` written with ``torch.save``, atomically (a kill leaves the previous checkpoint whole)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    dsio.write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A run checkpoint; a damaged file is a :class:`TrainingError` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"checkpoint {path} is damaged ({type(exc).__name__}): delete it to start over, or restore a copy") from None


def trim_metrics(path: Path, step: int) -> None:
    """Drop metric lines past ``step`` (left by a run that died after logging, before checkpointing)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    dsio.write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())


def all_finite(*modules: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``modules`` is finite."""
    return all(bool(torch.isfinite(t).all()) for m in modules for t in m.state_dict().values() if t.is_floating_point())


@dataclass(frozen=True)
class Ranks:
    """This process's place under ``torchrun`` (rank 0 of 1 without it)."""

    rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1


def ranks_from_env(env: dict[str, str] | None = None) -> Ranks:
    """torchrun's ``RANK`` / ``WORLD_SIZE`` (0 / 1 when unset); values that are not whole numbers are a :class:`UsageError`."""
    env = os.environ if env is None else env
    try:
        return Ranks(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")))
    except ValueError:
        raise UsageError(f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} in the environment are not whole numbers: "
                         "unset them, or launch through torchrun") from None


def start_ranks(device: str) -> tuple[Ranks, str]:
    """(ranks, the device this rank trains on): ``device`` checked; under torchrun the process group
    started (NCCL on CUDA, gloo on CPU) and ``cuda`` made this rank's GPU (``LOCAL_RANK``)."""
    from g3d.devices import check_device

    check_device(device)
    ranks = ranks_from_env()
    if ranks.distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', ranks.rank))}"
    return ranks, device


def other_settings(old: dict[str, Any], new: dict[str, Any], resumable: Iterable[str]) -> list[str]:
    """The settings outside ``resumable`` in which ``old`` and ``new`` differ, sorted."""
    resumable = set(resumable)
    return sorted(k for k in set(old) | set(new) if k not in resumable and old.get(k) != new.get(k))


class MetricsLog:
    """``metrics.jsonl``: one line per logged step, with the seconds per step since the previous line."""

    def __init__(self, path: Path, every: int, steps: int, start: int) -> None:
        import time

        self.path, self.every, self.steps, self.start = path, every, steps, start
        self._clock = time.perf_counter
        self._last = self._clock()

    def due(self, done: int) -> bool:
        return due(done, self.every, self.steps)

    def write(self, done: int, values: dict[str, float]) -> dict[str, float]:
        """Append ``{"step": done, **values, "seconds_per_step": ...}`` and return it."""
        now = self._clock()
        entry = {"step": done, **values, "seconds_per_step": (now - self._last) / max(1, min(self.every, done - self.start))}
        self._last = now
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        return entry


class RunFolder:
    """One run folder (see the module docstring), named by the option ``option`` that gave it.

    ``error`` is the trainer's :class:`G3DError` for the stops (a non-finite loss or parameters)."""

    def __init__(self, path: str | Path, option: str = "--out", error: type[G3DError] = TrainingError) -> None:
        self.path = Path(path)
        self.option, self.error = option, error
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{option} {self.path} is a file, not a run folder: choose another {option}")

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    def previous_config(self) -> dict[str, Any] | None:
        """The settings a run in this folder was started with, or None."""
        path = self.path / CONFIG
        return json.loads(path.read_text()) if path.is_file() else None

    def refuse_other_settings(self, old: dict[str, Any], new: dict[str, Any], resumable: Iterable[str], what: str = "a run",
                              fix: str = "choose another --out") -> None:
        """A :class:`UsageError` when ``new`` differs from the folder's ``old`` settings outside ``resumable``."""
        diff = other_settings(old, new, resumable)
        if diff:
            raise UsageError(f"{self.option} {self.path} holds {what} with other settings ({', '.join(diff)}): {fix}")

    def clear(self, names: Iterable[str]) -> list[str]:
        """Remove the files and folders ``names`` (what the trainer writes; nothing else); returns those removed."""
        return [name for name in names if dsio.remove(self.path / name)]

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The folder's checkpoint, or None when it has none."""
        return load_checkpoint(self.checkpoint) if self.checkpoint.is_file() else None

    def begin(self, config: dict[str, Any], step: int) -> None:
        """Rank 0, before the first step: the folder made, ``config.json`` written, metrics past ``step`` dropped."""
        self.path.mkdir(parents=True, exist_ok=True)
        dsio.write_json(self.path / CONFIG, config)
        trim_metrics(self.metrics, step)

    def append_history(self, entry: dict[str, Any]) -> None:
        """One line of ``history.jsonl`` per invocation (with the time): the step it started from, its target,
        and the optimisation settings it changed."""
        path = self.path / HISTORY
        entry = {**entry, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        old = path.read_text() if path.is_file() else ""
        dsio.write_bytes(path, (old + json.dumps(entry) + "\n").encode())

    def stop_unless_finite(self, total: torch.Tensor, step: int) -> None:
        """The NaN stop: a non-finite loss at ``step`` ends the run before its update, the checkpoint kept."""
        if not torch.isfinite(total):
            raise self.error(f"loss is {float(total.detach())} at step {step}: stopped; {self.checkpoint} keeps the last good state "
                             "(lower --lr and resume)")

    def save(self, done: int, state: dict[str, Any], *modules: torch.nn.Module) -> None:
        """Checkpoint ``state`` after step ``done``, unless a parameter of ``modules`` is no longer finite (then
        the trainer's error, and the last good checkpoint stays)."""
        if not all_finite(*modules):
            raise self.error(f"parameters are no longer finite after step {done}: stopped without checkpointing; "
                             f"{self.checkpoint} keeps the last good state (lower --lr and rerun to resume)")
        save_checkpoint(self.checkpoint, state)

    def check_ranks_agree(self, ranks: Ranks, *modules: torch.nn.Module) -> None:
        """Under torchrun, after training: all-gather a checksum of every rank's parameters of ``modules``;
        rank 0 records them in ``ddp_check.json``; ranks that differ are a :class:`TrainingError`."""
        import torch.distributed as dist

        flat = torch.cat([p.detach().double().reshape(-1) for m in modules for p in m.parameters()])
        mine = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1, dtype=flat.dtype, device=flat.device).remainder(97)).sum()])
        allc = [torch.zeros_like(mine) for _ in range(ranks.world)]
        dist.all_gather(allc, mine)
        sums = [c.cpu().tolist() for c in allc]
        agree = all(s == sums[0] for s in sums)
        if ranks.rank == 0:
            dsio.write_json(self.path / RANKS_CHECK, {"world_size": ranks.world, "checksums": sums, "identical": agree})
        dist.barrier()
        if not agree:
            raise TrainingError(f"parameters differ between the {ranks.world} ranks after training (see {self.path / RANKS_CHECK})")
