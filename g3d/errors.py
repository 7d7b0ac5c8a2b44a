"""The one exception family of g3d.

Library code raises a :class:`G3DError` subclass whose message is one line: what failed, the
offending value, and the fix. The CLI prints the message and exits non-zero; it never shows a
traceback for these.
"""

from __future__ import annotations


class G3DError(Exception):
    """Base class of every error g3d raises on purpose (bad input, missing extra, refused file)."""

    exit_code = 2


class UsageError(G3DError):
    """An argument or option value that cannot work (unknown class, ``--shard 3/2``, ...)."""


class DatasetError(G3DError):
    """A dataset folder that is missing, foreign, incomplete or corrupt."""


class CheckpointError(G3DError):
    """A generator checkpoint that cannot be read safely or does not describe a known network."""


class MissingDependencyError(G3DError):
    """An optional dependency (an extra) that the requested feature needs is not installed."""

    def __init__(self, package: str, extra: str | None = None, feature: str = "this feature", hint: str | None = None):
        if hint is None:
            hint = "run " + (f"pip install 'g3d[{extra}]'" if extra else f"pip install {package}")
        super().__init__(f"{feature} needs {package}, which is not installed: {hint}")
        self.package = package
        self.extra = extra


def one_line(text: object, limit: int = 240) -> str:
    """``text`` with its white space folded to single spaces, cut to ``limit`` characters (``...``)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def checkpoint_error(path: object, problem: str, fix: str | None = None) -> CheckpointError:
    """The refusal of a file read as untrusted weights, in one line: ``PATH: problem; fix``."""
    msg = f"{path}: {problem}"
    if fix:
        msg += f"; {fix}"
    return CheckpointError(one_line(msg, limit=600))
