"""The dataset folder's manifest, ``g3d.json``: one typed record, one reader, one writer.

``g3d synth`` writes the full manifest (class, image size, views, samples, shard plan, generator record,
fingerprint, ...); ``g3d filter`` adds its ``filter`` record; folders made only of annotations (the
keypoint fixtures of ``g3d.sfm.synthetic``) hold the four fields every manifest has: class, views,
height and width. Every stage reads the file through :func:`read_manifest` and writes it through
:func:`write_manifest` (atomically); nothing else opens ``g3d.json``.

Keys the reader does not know are kept in :attr:`Manifest.extra` and written back unchanged, so a
manifest written by a newer g3d survives a round trip through an older one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from g3d.datasets import io as dsio
from g3d.errors import DatasetError

MANIFEST = "g3d.json"


@dataclass(frozen=True)
class GeneratorRecord:
    """What the manifest records of the generator that made the images (``Generator.describe()``).

    ``format``: ``"builtin"``, a StyleGAN2 checkpoint format (``"nvlabs-pkl"``, ``"rosinality"``, ...)
    or ``"synthetic-keypoints"`` (annotation-only fixtures). ``fields``: the whole record as written;
    the built-in generator is rebuilt from it by ``BuiltinGenerator.from_record`` (the one way back).
    """

    fields: dict[str, Any]

    @property
    def format(self) -> str | None:
        f = self.fields.get("format")
        return str(f) if f is not None else None

    @property
    def is_builtin(self) -> bool:
        return self.format == "builtin"

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """``g3d.json``, typed, its fields in the file's order. ``class_name`` (the key ``class``), ``views``,
    ``height`` and ``width`` are in every manifest; the rest are None (or empty) where absent
    (annotation-only folders). ``fingerprint``: the arguments a resume must match; ``filter``: what
    ``g3d filter`` did (segmenter, rules, kept / rows)."""

    schema_version: int | None = None
    g3d_version: str | None = None
    class_name: str
    generator: GeneratorRecord = GeneratorRecord({})
    height: int
    width: int
    views: int
    samples: int | None = None
    rows: int | None = None
    viewpoint_layers: tuple[int, ...] = ()
    viewpoints_source: str | None = None
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    seed: int | None = None
    num_shards: int | None = None
    samples_per_shard: int | None = None
    keypoints: tuple[str, ...] = ()
    ground_truth: bool = False
    fingerprint: dict[str, Any] | None = None
    filter: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def random_viewpoints(self) -> bool:
        """True for ``g3d synth --viewpoints random``: every image its own viewpoint, no view shared by two objects."""
        return self.viewpoints_source == "random"

    @property
    def lights_per_car(self) -> int:
        """``g3d synth --lights N``: samples come in groups of N consecutive ids, one car each; 1 otherwise."""
        return int(self.extra.get("lights_per_car", 1))

    @property
    def frozen_views(self) -> int:
        """The views every object shares (view ids 0 .. frozen_views - 1): all of them but ``g3d synth --between``'s."""
        return int(self.extra.get("frozen_views", self.views))

    @property
    def between_views(self) -> int:
        """``g3d synth --between M``: each object's images ``frozen_views .. views - 1`` have codes of their own between
        two frozen ones (``between.parquet`` says which); 0 otherwise."""
        return int(self.extra.get("between_views", 0))

    def require_frozen_views(self, folder, what: str) -> None:
        """A one-line :class:`DatasetError` where ``what`` (e.g. "pose bins") needs views shared by every object."""
        if self.random_viewpoints:
            raise DatasetError(f"{folder} gives every image its own viewpoint (g3d synth --viewpoints random), and {what} "
                               "need frozen views that every object shares: use a dataset made without --viewpoints random")

    @property
    def has_images(self) -> bool:
        """True for a folder g3d synth wrote (a shard plan and a generator), not an annotation-only one."""
        return self.samples is not None and self.samples_per_shard is not None and self.rows is not None

    def shard_plan(self):
        """The :class:`ShardPlan` of the images; a :class:`DatasetError` for a folder without images."""
        if not self.has_images:
            raise DatasetError("this folder holds annotations or cameras but no images written by g3d synth (its g3d.json has no "
                               "samples, samples_per_shard or rows): pass the dataset folder g3d synth wrote")
        return ShardPlan(self.samples, self.views, self.samples_per_shard)

    @property
    def run_id(self) -> str | None:
        """The id of the run that wrote the images (see :func:`run_id`); None without a fingerprint."""
        return run_id(self.fingerprint) if self.fingerprint is not None else None

    def with_filter(self, record: dict[str, Any]) -> "Manifest":
        return replace(self, filter=record)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``g3d.json`` (absent fields left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            key = _JSON_KEY.get(f.name, f.name)
            if f.name == "generator":
                if v.fields:
                    out[key] = dict(v.fields)
            elif f.name in ("viewpoint_layers", "keypoints"):
                if v or self.has_images:
                    out[key] = list(v)
            elif f.name == "ground_truth":
                if v or self.has_images:
                    out[key] = v
            elif f.name == "truncation_psi":
                if self.has_images:
                    out[key] = v
            elif v is not None or (f.name == "truncation_cutoff" and self.has_images):
                out[key] = v
        out.update(self.extra)
        return out


_JSON_KEY = {"class_name": "class"}
# Each JSON key's accepted types; ints where an int goes (a bool or a float there is damage, not a value).
_TYPES: dict[str, tuple[type, ...]] = {
    "class": (str,), "views": (int,), "height": (int,), "width": (int,),
    "schema_version": (int,), "g3d_version": (str,), "generator": (dict,), "samples": (int,), "rows": (int,),
    "viewpoint_layers": (list,), "viewpoints_source": (str,), "truncation_psi": (int, float), "truncation_cutoff": (int,),
    "seed": (int,), "num_shards": (int,), "samples_per_shard": (int,), "keypoints": (list,), "ground_truth": (bool,),
    "fingerprint": (dict,), "filter": (dict,),
}
REQUIRED = ("class", "views", "height", "width")
# The least each count may be (0 samples is no dataset; 0 samples per shard would divide by zero).
_AT_LEAST = {"views": 1, "height": 1, "width": 1, "samples": 1, "rows": 1, "num_shards": 1, "samples_per_shard": 1, "seed": 0}
_NULLABLE = ("truncation_cutoff",)


def _problems(m: Any) -> list[str]:
    if not isinstance(m, dict):
        return ["not a JSON object"]
    bad = [k for k in REQUIRED if k not in m]
    for k, types in _TYPES.items():
        if k not in m or (m[k] is None and k in _NULLABLE):
            continue
        v = m[k]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            bad.append(f"{k} ({type(v).__name__})")
        elif k in _AT_LEAST and v < _AT_LEAST[k]:
            bad.append(f"{k} = {v} (at least {_AT_LEAST[k]})")
        elif k == "truncation_psi" and not math.isfinite(v):
            bad.append(f"{k} = {v}")
    return bad


def car_ids(sample_ids, lights: int) -> np.ndarray:
    """int64 [N]: each sample's car in a set of ``lights`` lights per car (:attr:`Manifest.lights_per_car`): its group's
    first sample id, whose latent holds the car (the sample's own latent gives only its light rows)."""
    s = np.asarray(sample_ids, np.int64)
    return s - s % int(lights)


def from_json(m: dict[str, Any], where: str = MANIFEST) -> Manifest:
    """A :class:`Manifest` from its JSON object; a :class:`DatasetError` naming every bad key."""
    bad = _problems(m)
    if bad:
        raise DatasetError(f"{where} is not a g3d manifest ({'missing or wrong: ' + ', '.join(bad) if isinstance(m, dict) else bad[0]}): "
                           "rerun the g3d synth command that made it, with --overwrite")
    known = {_JSON_KEY.get(f.name, f.name): f.name for f in fields(Manifest) if f.name != "extra"}
    kw: dict[str, Any] = {}
    for key, name in known.items():
        if key in m and not (m[key] is None and key not in _NULLABLE):
            kw[name] = m[key]
    if "generator" in kw:
        kw["generator"] = GeneratorRecord(dict(kw["generator"]))
    for name in ("viewpoint_layers", "keypoints"):
        if name in kw:
            kw[name] = tuple(kw[name])
    if "truncation_psi" in kw:
        kw["truncation_psi"] = float(kw["truncation_psi"])
    return Manifest(**kw, extra={k: v for k, v in m.items() if k not in known})


@dataclass(frozen=True)
class ShardPlan:
    """Which samples each shard holds."""

    samples: int
    views: int
    samples_per_shard: int

    @property
    def num_shards(self) -> int:
        return max(1, math.ceil(self.samples / self.samples_per_shard))

    def sample_range(self, shard: int) -> range:
        lo = shard * self.samples_per_shard
        return range(lo, min(self.samples, lo + self.samples_per_shard))

    def rows(self, shard: int) -> int:
        return len(self.sample_range(shard)) * self.views

    def mine(self, shard_index: int, shard_count: int) -> list[int]:
        """Shards written by worker ``shard_index`` of ``shard_count``."""
        return [k for k in range(self.num_shards) if k % shard_count == shard_index]


def run_id(fingerprint: dict[str, Any]) -> str:
    """A short stable id of a run's fingerprint (the arguments its bytes depend on), 16 hex digits."""
    import hashlib

    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(folder: Path) -> Manifest:
    """``folder/g3d.json``; a :class:`DatasetError` when it is missing, unreadable or not a g3d manifest."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{folder} holds no g3d dataset (no {MANIFEST}): run `g3d synth --out {folder}` first")
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is unreadable ({exc}): rerun the g3d synth command that made it, with --overwrite") from None
    return from_json(m, str(path))


def has_manifest(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def write_manifest(folder: Path, manifest: Manifest, exclusive: bool = False) -> bool:
    """Write ``folder/g3d.json`` atomically (the whole file appears at once, or the old one stays); True.

    ``exclusive``: only when there is none yet (a temporary file hard-linked to the final name, which
    fails when it exists; an exclusive create where the file system has no hard links); False when one
    was there, which is then left as it was."""
    import os

    path = Path(folder) / MANIFEST
    data = (json.dumps(manifest.to_json(), indent=2) + "\n").encode()
    if not exclusive:
        dsio.write_bytes(path, data)
        return True
    tmp = dsio.tmp_path_for(path)
    try:
        tmp.write_bytes(data)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some FUSE or FAT mounts)
            try:
                with open(path, "xb") as fh:
                    fh.write(data)
            except FileExistsError:
                return False
        return True
    finally:
        tmp.unlink(missing_ok=True)
