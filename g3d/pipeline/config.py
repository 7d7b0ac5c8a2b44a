"""The ``g3d pipeline`` config file: one TOML file naming every stage's options.

::

    folder = "g3d-data/car"          # the dataset folder every stage works on

    [synth]                          # g3d synth (SynthConfig fields; out is `folder`)
    samples = 60
    views = 12
    resolution = 128

    [filter]                         # g3d filter (FilterRun fields; [filter.rules] for FilterConfig)

    [annotate]                       # leave the table out to skip annotation and sfm-init
    kinds = ["poses", "keypoints"]   # task kinds pushed, then pulled once answered
    url = "http://127.0.0.1:8080"    # or $LABEL_STUDIO_URL
    objects_per_view = 2             # keypoint tasks per view (the same reference objects everywhere)

    [sfm]                            # g3d sfm-init (SfmConfig fields)

    [train]                          # g3d train (TrainConfig fields; [train.weights] for LossWeights)
    out = "runs/car"
    steps = 2000

    [eval]                           # g3d eval: device, batch

The API key is never in the file: ``$LABEL_STUDIO_API_KEY`` (or ``api_key_env`` naming another
variable). Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g3d.errors import UsageError
from g3d.options import check_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package (a dependency there)
    import tomli as tomllib

STAGES = ("synth", "filter", "annotate", "sfm", "train", "eval")


@dataclass
class AnnotateStage:
    """The ``[annotate]`` table."""

    kinds: tuple[str, ...] = ("poses", "keypoints")
    url: str | None = None  # None: $LABEL_STUDIO_URL
    api_key_env: str = "LABEL_STUDIO_API_KEY"  # the environment variable holding the token
    objects_per_view: int = 1
    grid_objects: int = 6
    images: str = "auto"
    document_root: str | None = None


@dataclass
class EvalStage:
    """The ``[eval]`` table."""

    device: str = "cpu"
    batch: int = 32


@dataclass
class PipelineConfig:
    """A parsed config file: each stage's arguments (None: the stage is not run)."""

    path: Path
    folder: Path
    synth: Any  # SynthConfig
    filter: Any  # FilterRun
    annotate: AnnotateStage | None
    sfm: Any | None  # SfmConfig, None without [annotate]
    train: Any | None  # TrainConfig, None without [train]
    eval: EvalStage | None
    raw: dict[str, Any] = field(default_factory=dict)  # each stage's table as written (what the freshness tokens hash)


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def build(cls, table: dict[str, Any], where: str, fixed: dict[str, Any] | None = None, path: Path | None = None):
    """``cls(**table)`` with nested dataclass tables, each value checked against its field's type
    (:func:`g3d.options.check_value`), and a one-line error for an unknown key or a value of the wrong
    kind (naming the file, its table, the key and the valid keys)."""
    fixed = dict(fixed or {})
    names = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    file = f"{path}: " if path is not None else ""
    kw: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names or key in fixed:
            valid = ", ".join(n for n in names if n not in fixed)
            raise UsageError(f"{file}[{where}] has no option {key!r}: valid options are {valid}")
        hint = hints[key]
        sub = next((a for a in typing.get_args(hint) + (hint,) if dataclasses.is_dataclass(a)), None)
        if sub is not None:
            if not isinstance(value, dict):
                raise UsageError(f"{file}[{where}] {key} = {value!r}: give a table ([{where}.{key}])")
            value = build(sub, value, f"{where}.{key}", path=path)
        else:
            value = check_value(value, hint, f"{file}[{where}] {key}")
        kw[key] = value
    try:
        return cls(**kw, **fixed)
    except TypeError as exc:
        raise UsageError(f"{file}[{where}]: {exc}") from None


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def load(path: str | Path) -> PipelineConfig:
    """Read and check a config file; every mistake is a one-line :class:`UsageError` naming the fix."""
    from g3d.filters.run import FilterRun
    from g3d.filters.run import check_options as check_filter
    from g3d.sfm.run import SfmConfig
    from g3d.synth.sampling import SynthConfig
    from g3d.synth.sampling import check_options as check_synth
    from g3d.train.loop import TrainConfig

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} is not a file: write a pipeline config (see `g3d pipeline --help` for an example)")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML ({exc}): fix the line it names") from None
    unknown = sorted(set(doc) - set(STAGES) - {"folder"})
    if unknown:
        raise UsageError(f"{path}: unknown table(s) {', '.join(unknown)}: the tables are folder, {', '.join(STAGES)}")
    if not isinstance(doc.get("folder"), str):
        raise UsageError(f"{path} needs folder = \"...\" (the dataset folder every stage works on)")
    base = path.resolve().parent
    folder = Path(_resolve(base, doc["folder"]))
    for name in STAGES:
        if name in doc and not isinstance(doc[name], dict):
            raise UsageError(f"{path}: {name} must be a table ([{name}]), not a value")
    synth = build(SynthConfig, doc.get("synth", {}), "synth", {"out": folder}, path=path)
    filt = build(FilterRun, doc.get("filter", {}), "filter", {"folder": folder}, path=path)
    annotate = build(AnnotateStage, doc["annotate"], "annotate", path=path) if "annotate" in doc else None
    if annotate is not None and annotate.document_root:
        annotate.document_root = _resolve(base, annotate.document_root)
    if "sfm" in doc and annotate is None:
        raise UsageError(f"{path}: [sfm] needs [annotate] (sfm-init reads the pulled annotations): add [annotate] or remove [sfm]")
    sfm = build(SfmConfig, doc.get("sfm", {}), "sfm", {"folder": folder}, path=path) if annotate is not None else None
    train = None
    if "train" in doc:
        t = dict(doc["train"])
        if "out" not in t:
            raise UsageError(f"{path}: [train] needs out = \"...\" (the run folder)")
        t["out"] = _resolve(base, t["out"])
        train = build(TrainConfig, t, "train", {"folder": str(folder)}, path=path)
    ev = build(EvalStage, doc.get("eval", {}), "eval", path=path) if train is not None else None
    if "eval" in doc and train is None:
        raise UsageError(f"{path}: [eval] needs [train] (it evaluates the trained run)")
    for stage, cfg, check in (("synth", synth, check_synth), ("filter", filt, check_filter)):
        try:
            check(cfg)  # the same range checks the command runs, before any stage does
        except UsageError as exc:
            raise UsageError(f"{path}: [{stage}] {exc}") from None
    raw = {k: doc.get(k) for k in STAGES}
    return PipelineConfig(path=path, folder=folder, synth=synth, filter=filt, annotate=annotate, sfm=sfm, train=train, eval=ev, raw=raw)
