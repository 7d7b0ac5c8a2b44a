"""Object-level splits shared by every export format: an object's images never straddle two splits."""

from __future__ import annotations

import numpy as np

from g3d.errors import UsageError

DEFAULT_SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}


def parse_split(spec: str | None) -> dict[str, float]:
    """``"train=0.8,val=0.1,test=0.1"`` -> {name: fraction}; one-line UsageError naming the fix."""
    if spec is None:
        return dict(DEFAULT_SPLIT)
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            frac = float(value)
        except ValueError:
            frac = float("nan")
        if not sep or not name or not np.isfinite(frac) or frac < 0 or not name.isidentifier():
            raise UsageError(f"--split {spec!r}: write NAME=FRACTION pairs, e.g. train=0.8,val=0.1,test=0.1")
        if name in out:
            raise UsageError(f"--split {spec!r} names {name!r} twice: give each split once")
        out[name] = frac
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise UsageError(f"--split {spec!r}: the fractions sum to {sum(out.values()):g}, not 1; adjust them")
    return out


def assign_splits(sample_ids: np.ndarray, fractions: dict[str, float], seed: int) -> dict[int, str]:
    """{sample id: split} for the distinct ``sample_ids`` (int [N]): a seeded permutation of the objects cut
    by the fractions (rounded; the first split takes the remainder), the same for every format."""
    objects = np.unique(np.asarray(sample_ids, np.int64))
    order = objects[np.random.default_rng(seed).permutation(len(objects))]
    names = list(fractions)
    counts = [int(round(fractions[n] * len(objects))) for n in names]
    counts[0] = len(objects) - sum(counts[1:])
    if counts[0] < 0:
        raise UsageError(f"{len(objects)} objects cannot be split as {fractions}: lower the other splits' fractions")
    out: dict[int, str] = {}
    start = 0
    for name, n in zip(names, counts):
        for s in order[start: start + n]:
            out[int(s)] = name
        start += n
    return out
