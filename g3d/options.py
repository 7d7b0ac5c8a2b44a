"""Option values that come typed from a file (the ``g3d pipeline`` TOML): checked against the type of the
config dataclass field the CLI fills from the same option, strictly (a string where a number goes, a float
for a whole number, a table where a number goes are refused, never coerced), in one line naming where."""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any

from g3d.errors import UsageError


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {_describe(args[0])}s" if len(args) == 2 and args[1] is Ellipsis else f"a list of {len(args)} values"
    if origin is dict:
        return "a table"
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false", Path: "a path (a string)"}.get(hint, str(hint))


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` wants it; raises ValueError when it is not of that type."""
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is not type(None):
                try:
                    return _convert(value, a)
                except ValueError:
                    pass
        raise ValueError
    if origin is typing.Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise ValueError
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0]) for v in value)
        if len(value) != len(args):
            raise ValueError
        return tuple(_convert(v, a) for v, a in zip(value, args))
    if origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
        raise ValueError
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ValueError
    if hint in (str, Path):
        if isinstance(value, str):
            return value if hint is str else Path(value)
        raise ValueError
    return value  # a type the file cannot spell: the stage's own check applies


def check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to the field type ``hint`` (lists to tuples, strings to paths, whole numbers to
    floats); a :class:`UsageError` ``"<where> = <value>: give <type>"`` when it is of another type."""
    try:
        return _convert(value, hint)
    except ValueError:
        shown = "a table" if isinstance(value, dict) else repr(value)
        raise UsageError(f"{where} = {shown}: give {_describe(hint)}") from None
