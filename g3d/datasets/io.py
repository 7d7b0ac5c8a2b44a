"""Atomic file writes: every file g3d writes appears whole under its final name, or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TMP_MARK = ".g3dtmp-"


def tmp_path_for(path: Path) -> Path:
    """A temporary sibling of ``path`` unique to this process (hidden, so readers skip it)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk and rename it to ``path`` (atomic on POSIX)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def fresh_dir(path: Path) -> Path:
    """An empty hidden sibling folder of ``path``, unique to this process, to build a whole folder in
    before :func:`replace_dir` puts it in place (an earlier one of this process is cleared)."""
    import shutil

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp: Path, path: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``path`` (removing what ``path`` held) by a rename."""
    import shutil

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        tmp.write_bytes(data)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path, fix: str) -> Any:
    """The JSON in the state file ``path``; an empty or damaged one (a full disk, a kill while an older g3d
    wrote it) is a one-line :class:`DatasetError` naming it and ``fix``."""
    from g3d.errors import DatasetError

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path} is damaged ({type(exc).__name__}: {exc}): {fix}") from None


CHECKSUM_SUFFIX = ".sha256"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_checksum(path: Path) -> None:
    """Write ``<path>.sha256`` (the file's SHA-256, as ``sha256sum`` prints it) beside a finished file, atomically:
    what ``g3d validate`` recomputes to catch a changed byte."""
    path = Path(path)
    write_bytes(path.with_name(path.name + CHECKSUM_SUFFIX), f"{file_sha256(path)}  {path.name}\n".encode())


def write_table(path: Path, table: Any, **kwargs: Any) -> None:
    """Write a ``pyarrow.Table`` as Parquet to ``path`` atomically."""
    import pyarrow.parquet as pq

    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        pq.write_table(table, tmp, **kwargs)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove(path: Path) -> bool:
    """Delete a file or a whole folder; False when there was nothing at ``path``."""
    import shutil

    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    else:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (True when it exists but belongs to someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files that a killed run left in ``folder`` (those of processes still running on
    this host -- another shard set's writer -- are left alone); returns how many."""
    n = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and TMP_MARK in p.name:
                pid = p.name.rsplit(TMP_MARK, 1)[1]
                if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
                    continue
                p.unlink(missing_ok=True)
                n += 1
    return n
