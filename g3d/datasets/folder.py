"""The dataset folder: its paths, what ``--overwrite`` may touch, the writer lock, finished shards.

The manifest and the shard plan are :mod:`g3d.datasets.manifest`'s; cameras, annotations and the
camera-source vocabulary are :mod:`g3d.datasets.cameras`' and :mod:`g3d.datasets.annotations`'.

Shard boundaries are a pure function of the run's arguments: shard k holds samples
``[k * samples_per_shard, (k + 1) * samples_per_shard)`` in every view, rows ordered by
(sample_id, view_id). ``--shard i/N`` writes the shards k with ``k % N == i``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from g3d.datasets import io as dsio
from g3d.datasets.manifest import MANIFEST, Manifest, ShardPlan, read_manifest, write_manifest
from g3d.errors import DatasetError, UsageError

VIEWPOINTS = "viewpoints.parquet"
BETWEEN = "between.parquet"  # g3d synth --between: where each extra image sits between two frozen views
SAMPLES = "samples.parquet"
IMAGES = "images"
PREVIEWS = "previews"
ANNOTATIONS = "annotations"
CAMERAS = "cameras.parquet"
CARD = "README.md"
# What g3d annotate pull writes under ANNOTATIONS (read through g3d.datasets.annotations).
POSE_BINS = "pose_bins.parquet"
KEYPOINTS = "keypoints.parquet"
MASK_POLYGONS = "mask_polygons.parquet"

# Everything g3d writes at a folder's top level (what --overwrite may remove or move aside).
OWNED = (MANIFEST, VIEWPOINTS, SAMPLES, IMAGES, PREVIEWS, CARD, ANNOTATIONS, CAMERAS, "annotate", "filter_report.json", ".g3d-filter")
# What holds people's work (labels pulled from Label Studio, cameras solved from them, the record of
# pushed projects): --overwrite moves these aside into KEPT/<UTC time>/ instead of deleting them.
HUMAN = (ANNOTATIONS, CAMERAS, "annotate")
KEPT = ".g3d-kept"


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def default_samples_per_shard(views: int, target_rows: int = 1024) -> int:
    """About ``target_rows`` rows per shard, whole samples only."""
    return max(1, target_rows // max(1, views))


def parse_shard(spec: str | None, env: dict[str, str] | None = None) -> tuple[int, int]:
    """``"i/N"`` -> (i, N). Without a spec, torchrun's RANK / WORLD_SIZE (or 0/1)."""
    if spec is None:
        env = env or {}
        try:
            world = int(env.get("WORLD_SIZE", "1") or 1)
            rank = int(env.get("RANK", "0") or 0)
        except ValueError:
            raise UsageError(f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} in the environment are not whole numbers: "
                             "unset them, or launch through torchrun, or pass --shard i/N") from None
        if world > 1:
            if not 0 <= rank < world:
                raise UsageError(f"torchrun gave RANK={rank} outside WORLD_SIZE={world}")
            return rank, world
        return 0, 1
    try:
        a, b = spec.split("/")
        i, n = int(a), int(b)
    except ValueError:
        raise UsageError(f"--shard {spec!r} is not of the form i/N (e.g. --shard 0/4)") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {spec}: i must be in 0..N-1 (e.g. --shard 0/{max(n, 1)} ... {max(n, 1) - 1}/{max(n, 1)})")
    return i, n


class WriterLock:
    """At most one writer per folder and shard set: ``.g3d-lock-<name>`` holds the owner's host, pid,
    command and start time while it writes. A lock whose owner on this host is gone (killed, crashed) is
    stale: it is taken over and said so. An ``exclusive`` writer (``--overwrite``, which removes files
    every writer shares) also refuses while any other writer's lock is live.

    ``with WriterLock(folder, "synth-0of1", "g3d synth", log=print): ...``
    """

    def __init__(self, folder: Path, name: str, command: str, exclusive: bool = False, log=None) -> None:
        self.folder, self.name, self.command, self.exclusive = Path(folder), name, command, exclusive
        self.log = log or (lambda msg: None)
        self.path: Path | None = self.folder / f".g3d-lock-{name}"

    @staticmethod
    def _owner(path: Path) -> dict[str, Any] | None:
        """The lock's owner, or None when that owner is gone from this host (or the file is unreadable)."""
        import socket

        try:
            info = json.loads(path.read_text())
            pid, host = int(info["pid"]), str(info["host"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        # Another machine's process cannot be checked from here, so it counts as live.
        return info if host != socket.gethostname() or dsio.pid_alive(pid) else None

    def _refuse(self, path: Path, info: dict[str, Any]) -> None:
        raise UsageError(
            f"{self.folder} is being written by {info.get('command', 'g3d')} (pid {info['pid']} on {info['host']}, since "
            f"{info.get('started', '?')}): wait for it to finish or stop it (if it is gone, delete {path})"
        )

    def __enter__(self) -> "WriterLock":
        import os
        import socket
        import time

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            self.path = None  # not a writable folder: the caller's own checks say so in one line
            return self
        if self.exclusive:
            for other in sorted(self.folder.glob(".g3d-lock-*")):
                info = self._owner(other)
                if other != self.path and info is not None and info.get("pid") != os.getpid():
                    self._refuse(other, info)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except PermissionError:
                self.path = None  # a read-only folder: the caller's own checks say so in one line
                return self
            except FileExistsError:
                info = self._owner(self.path)
                if info is not None:
                    self._refuse(self.path, info)
                self.log(f"removed a stale lock ({self.path.name}: its writer is gone)")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(record)
            return self
        raise UsageError(f"cannot take the lock {self.path}: another writer keeps taking it; try again")

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


# Options that older fingerprints recorded and newer ones leave out where the bytes do not depend on them.
NOT_OUTPUT = ("batch_size",)


def _same_run(old_fp: dict[str, Any], fingerprint: dict[str, Any]) -> bool:
    """Whether a manifest's fingerprint is the run ``fingerprint`` (options in :data:`NOT_OUTPUT` it still records aside)."""
    return bool(old_fp) and {k: v for k, v in old_fp.items() if k in fingerprint or k not in NOT_OUTPUT} == fingerprint


def _different_run(folder: Path, old_fp: dict[str, Any], fingerprint: dict[str, Any]) -> UsageError:
    diff = sorted(k for k in set(old_fp) | set(fingerprint) if old_fp.get(k) != fingerprint.get(k))
    og, ng = old_fp.get("generator") or {}, fingerprint.get("generator") or {}
    if og.get("format") == ng.get("format") == "builtin" and og.get("version", 1) != ng.get("version", 1):
        diff[diff.index("generator")] = f"generator: built-in version {og.get('version', 1)} there, {ng.get('version', 1)} in this g3d"
    return UsageError(
        f"--out {folder} holds a different run (differs in: {', '.join(diff) or 'format'}): pass --overwrite to replace it or choose another --out"
    )


def claim_manifest(folder: Path, manifest: Manifest) -> bool:
    """Create ``folder/g3d.json`` once, atomically and exclusively, before anything else of the run is written;
    True when this call created it. Workers started together (``--shard i/N`` on several machines) race
    here: the first one's manifest wins (:func:`g3d.datasets.manifest.write_manifest` with ``exclusive``),
    a worker of the same run (same fingerprint) goes on, one of another run is refused naming the difference."""
    if write_manifest(folder, manifest, exclusive=True):
        return True
    old_fp = read_manifest(folder).fingerprint or {}
    if not _same_run(old_fp, manifest.fingerprint):
        raise _different_run(folder, old_fp, manifest.fingerprint)
    return False


def prepare_output(folder: Path, fingerprint: dict[str, Any], overwrite: bool, log=None) -> bool:
    """Make ``folder`` ready for a run with ``fingerprint``; True when resuming a matching run.

    A folder holding a different g3d run is refused unless ``overwrite``, which removes only g3d's
    own files and moves people's work (:data:`HUMAN`) aside into ``.g3d-kept/<UTC time>/``, saying
    what it did through ``log``; a folder holding anything else is always refused.
    """
    log = log or (lambda msg: None)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file, not a folder: choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".g3d-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to --out {folder} ({exc.strerror}): choose a writable folder") from None
    entries = {p.name for p in folder.iterdir()}
    if not entries:
        return False
    if MANIFEST not in entries:
        foreign = sorted(e for e in entries if e not in OWNED and not e.startswith("."))
        if foreign:
            raise UsageError(
                f"--out {folder} already holds files that are not a g3d dataset ({', '.join(foreign[:3])}): choose an empty or new folder"
            )
        return False  # only our own leftovers from a run killed before its manifest
    try:
        old = read_manifest(folder)
    except DatasetError:
        if not overwrite:
            raise
        old = None  # a damaged g3d.json among g3d's own files: --overwrite replaces it like the rest
    old_fp = (old.fingerprint or {}) if old is not None else {}
    if _same_run(old_fp, fingerprint):
        if old_fp != fingerprint:  # written when the fingerprint still held an option the bytes do not depend on
            write_manifest(folder, replace(old, fingerprint=fingerprint))
            log(f"resuming: {MANIFEST}'s fingerprint updated (it recorded {', '.join(sorted(set(old_fp) - set(fingerprint)))}, "
                "which does not change this generator's images)")
        return True
    if not overwrite:
        raise _different_run(folder, old_fp, fingerprint)
    import datetime

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = folder / KEPT / stamp
    moved, removed = [], []
    for name in OWNED:
        p = folder / name
        if name in HUMAN and p.exists():
            kept.mkdir(parents=True, exist_ok=True)
            p.rename(kept / name)
            moved.append(name)
        elif name not in HUMAN and dsio.remove(p):
            removed.append(name)
    log(f"--overwrite: removed {', '.join(removed) or 'nothing'} from {folder}")
    if moved:
        log(f"--overwrite: kept {', '.join(moved)} (people's labels and the cameras solved from them) in {kept}")
    return False


# Key of the shard's Parquet metadata that names the run that wrote it (see :func:`run_id`).
RUN_KEY = b"g3d_run"


def completed_shards(folder: Path, plan: ShardPlan, run: str | None = None, legacy: bool = True) -> dict[int, bool]:
    """Which shards exist whole: readable Parquet with the planned row count and, when ``run`` is given,
    written by that run (its id in the shard's metadata). A shard that names no run (written before
    shards recorded it) passes when ``legacy``; ``g3d synth`` resumes with ``legacy=False``, so it
    redoes such shards rather than adopt what it cannot prove is its own."""
    import pyarrow.parquet as pq

    out = {}
    for k in range(plan.num_shards):
        p = Path(folder) / IMAGES / shard_name(k)
        ok = False
        if p.is_file():
            try:
                f = pq.ParquetFile(p)
                ok = f.metadata.num_rows == plan.rows(k)
                if ok and run is not None:
                    owner = (f.schema_arrow.metadata or {}).get(RUN_KEY)
                    ok = owner == run.encode() or (owner is None and legacy)
            except Exception:  # a damaged shard is simply redone
                ok = False
        out[k] = ok
    return out


def shard_paths(folder: Path) -> list[Path]:
    """The complete shards present in ``folder/images``, in order."""
    return sorted((Path(folder) / IMAGES).glob("part-*.parquet"))
