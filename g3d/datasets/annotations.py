"""Reading and validating a dataset folder's annotations: the one reader of what ``g3d annotate pull`` writes.

Reads ``g3d.json`` (class, image size, number of views), ``annotations/pose_bins.parquet`` and
``annotations/keypoints.parquet`` (the formats ``g3d annotate pull`` writes), for ``g3d sfm-init``
and for the pose-bin fallback of :func:`g3d.datasets.cameras.read_cameras`. Bad rows are
dropped and named in :attr:`Annotations.problems` (unknown keypoint names, points outside the
image, duplicates, bins for views the dataset does not have, ...); only a folder with no usable
annotation at all is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from g3d.classes import ClassPreset, get_preset
from g3d.datasets.folder import ANNOTATIONS, KEYPOINTS, MASK_POLYGONS, POSE_BINS
from g3d.datasets.manifest import read_manifest
from g3d.errors import DatasetError

POSE_BIN_COLUMNS = ("view_id", "azimuth_bin", "azimuth_deg", "elevation_deg", "rejected")
KEYPOINT_COLUMNS = ("view_id", "sample_id", "name", "x", "y", "visible")


@dataclass
class Annotations:
    """What the annotators gave, per view of the dataset. V views, P preset keypoints."""

    folder: Path
    preset: ClassPreset
    width: int  # stored image size in pixels
    height: int
    view_ids: np.ndarray  # int32 [V] the dataset's views
    xy: np.ndarray  # float64 [V, P, 2] clicked keypoints (pixels, origin top-left); NaN = not clicked
    sample_ids: list[int | None]  # [V] the object whose keypoints each view uses
    bin_azimuth_deg: np.ndarray  # float64 [V] bin centre; NaN = no bin
    bin_elevation_deg: np.ndarray  # float64 [V]
    bin_names: list[str | None]  # [V]
    rejected: np.ndarray  # bool [V] rejected by the annotator ("reject this view")
    has_pose_bins: bool  # annotations/pose_bins.parquet exists
    has_keypoints: bool  # annotations/keypoints.parquet exists
    problems: list[str] = field(default_factory=list)  # input problems, each naming views and the cause
    by_object: dict[int, np.ndarray] = field(default_factory=dict)  # sample id -> float64 [V, P, 2] its keypoints alone (when several objects were annotated)
    # sample ids whose keypoints ``xy`` holds side by side, P columns each ([V, S * P, 2], one 3D point
    # per object and name: sfm-init's joint solve, :meth:`stacked`); empty: xy holds one object per view
    objects: tuple[int, ...] = ()

    @property
    def num_keypoints(self) -> np.ndarray:
        """int [V] clicked keypoints per view."""
        return np.isfinite(self.xy[..., 0]).sum(axis=1)

    def keypoint_label(self, p: int) -> str:
        """The name of column ``p`` of ``xy``, with its object when several are stacked (:meth:`stacked`)."""
        P = len(self.preset.keypoints)
        name = self.preset.keypoints[p % P]
        return f"object {self.objects[p // P]} {name}" if self.objects else name

    def stacked(self) -> "Annotations":
        """Every annotated object's keypoints side by side (``objects``, ``xy`` float64 [V, S * P, 2]):
        the views share one camera, each object and name is one 3D point. Needs ``by_object``."""
        from dataclasses import replace

        objects = tuple(sorted(self.by_object))
        xy = np.concatenate([self.by_object[s] for s in objects], axis=1)
        return replace(self, xy=xy, objects=objects, sample_ids=[None] * len(self.view_ids), problems=list(self.problems))

    @property
    def has_bin(self) -> np.ndarray:
        """bool [V] views with a usable pose bin."""
        return np.isfinite(self.bin_azimuth_deg) & ~self.rejected


def _views_text(views) -> str:
    views = [int(v) for v in views]
    if len(views) > 8:
        return ", ".join(str(v) for v in views[:8]) + f" and {len(views) - 8} more"
    return ", ".join(str(v) for v in views)


def _read(path: Path, columns: tuple[str, ...]):
    import pyarrow.parquet as pq

    try:
        df = pq.read_table(path).to_pandas()
    except Exception as exc:  # a damaged or foreign file
        raise DatasetError(f"{path} is not a readable Parquet file ({exc}): pull the annotations again (g3d annotate pull)") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(f"{path} lacks the column(s) {', '.join(missing)}: it is not in the g3d annotation format; pull it again (g3d annotate pull)")
    return df


def read_annotation_table(folder: Path, name: str):
    """``annotations/<name>`` (one of the pull formats) as a pandas DataFrame, unvalidated rows and all
    (what push shows annotators as their earlier answers); None when the file is absent. A damaged
    file or one without its format's columns is a one-line :class:`DatasetError`."""
    path = Path(folder) / ANNOTATIONS / name
    if not path.is_file():
        return None
    return _read(path, {POSE_BINS: POSE_BIN_COLUMNS, KEYPOINTS: KEYPOINT_COLUMNS}.get(name, ()))


def annotation_counts(folder: Path) -> dict[str, tuple[int, int]]:
    """file name -> (rows, distinct views) of each annotation file present (pose bins, keypoints, mask polygons)."""
    out = {}
    for name in (POSE_BINS, KEYPOINTS, MASK_POLYGONS):
        path = Path(folder) / ANNOTATIONS / name
        if path.is_file():
            df = _read(path, ())
            out[name] = (len(df), int(df.view_id.nunique()) if "view_id" in df else 0)
    return out


def read_annotations(folder: Path, keypoints: bool = True) -> Annotations:
    """The folder's manifest and annotations, validated; bad rows dropped and named in ``problems``.
    ``keypoints=False`` reads the pose bins alone (the camera fallback needs nothing else)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder: pass a dataset folder written by g3d synth")
    man = read_manifest(folder)
    man.require_frozen_views(folder, "pose bins and keypoints (annotated per view)")
    preset = get_preset(man.class_name)
    width, height, views = man.width, man.height, man.frozen_views  # (--between images are nobody's view)
    ann_dir = folder / ANNOTATIONS
    bins_path, kp_path = ann_dir / POSE_BINS, ann_dir / KEYPOINTS
    if not bins_path.is_file() and not kp_path.is_file():
        raise DatasetError(
            f"{ann_dir} holds no annotations (neither {POSE_BINS} nor {KEYPOINTS}): annotate the views and run `g3d annotate pull {folder}` first"
        )
    V, P = views, len(preset.keypoints)
    view_ids = np.arange(V, dtype=np.int32)
    ann = Annotations(
        folder=folder,
        preset=preset,
        width=width,
        height=height,
        view_ids=view_ids,
        xy=np.full((V, P, 2), np.nan),
        sample_ids=[None] * V,
        bin_azimuth_deg=np.full(V, np.nan),
        bin_elevation_deg=np.full(V, np.nan),
        bin_names=[None] * V,
        rejected=np.zeros(V, bool),
        has_pose_bins=bins_path.is_file(),
        has_keypoints=keypoints and kp_path.is_file(),
    )
    if ann.has_pose_bins:
        _read_bins(ann, _read(bins_path, POSE_BIN_COLUMNS))
    if ann.has_keypoints:
        _read_keypoints(ann, _read(kp_path, KEYPOINT_COLUMNS))
    dropped = [int(v) for v in np.flatnonzero(ann.rejected & (ann.num_keypoints > 0))]
    if dropped:
        ann.xy[ann.rejected] = np.nan
        for xy in ann.by_object.values():
            xy[ann.rejected] = np.nan
        ann.problems.append(f"keypoints of the rejected views {_views_text(dropped)} are not used")
    return ann


def _true(x) -> bool:
    """A Parquet bool that may be null (None or NaN): null is False."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return False
    return bool(x)


def _valid_view_ids(ann: Annotations, df, what: str):
    """Rows whose view_id is a view of the dataset; the others are named in ``problems``."""
    V = len(ann.view_ids)
    ids = df.view_id.astype("float64")
    ok = ids.notna() & ids.between(0, V - 1) & (ids == ids.round())
    if (~ok).any():
        bad = sorted({str(int(v)) if v == v else "null" for v in ids[~ok]}, key=lambda x: (len(x), x))
        ann.problems.append(f"{what} for views the dataset does not have ignored: {', '.join(bad[:8])}" + (f" and {len(bad) - 8} more" if len(bad) > 8 else ""))
    df = df[ok].copy()
    df["view_id"] = df.view_id.astype("int64")
    return df


def _read_bins(ann: Annotations, df) -> None:
    by_name = {b.name: b for b in ann.preset.pose_bins}
    df = _valid_view_ids(ann, df, "pose bins")
    if "updated_at" in df.columns:
        df = df.assign(_at=df.updated_at.astype("string")).sort_values("_at", kind="stable", na_position="first")
    dup = sorted({int(v) for v in df.view_id[df.view_id.duplicated()]})
    if dup:
        ann.problems.append(f"several pose-bin rows for views {_views_text(dup)}: kept the latest")
    df = df.drop_duplicates("view_id", keep="last")
    bad_bins = []
    for row in df.itertuples(index=False):
        v = int(row.view_id)
        if _true(row.rejected):
            ann.rejected[v] = True
            continue
        name = row.azimuth_bin if isinstance(row.azimuth_bin, str) else None
        az = None if row.azimuth_deg is None else float(row.azimuth_deg)
        el = None if row.elevation_deg is None else float(row.elevation_deg)
        preset_bin = by_name.get(name) if name else None
        if az is None or not np.isfinite(az):
            if preset_bin is None:
                bad_bins.append(v)
                continue
            az = preset_bin.azimuth_deg
        if el is None or not np.isfinite(el):
            el = preset_bin.elevation_deg if preset_bin is not None else 0.0
        ann.bin_azimuth_deg[v] = float(az) % 360.0
        ann.bin_elevation_deg[v] = float(el)
        ann.bin_names[v] = name
    if bad_bins:
        ann.problems.append(f"views {_views_text(bad_bins)}: pose bin with neither an angle nor a known bin name, ignored")
    if ann.rejected.any():
        ann.problems.append(f"views rejected by the annotator get no camera: {_views_text(np.flatnonzero(ann.rejected))}")


def _read_keypoints(ann: Annotations, df) -> None:
    index = ann.preset.keypoint_index
    df = _valid_view_ids(ann, df, "keypoints")
    df = df[df.visible.map(_true).astype(bool)]
    df = df.assign(sample_id=df.sample_id.astype("float64").fillna(-1).astype("int64"))
    names = df.name.astype(str)
    unknown = names[~names.isin(list(index))]
    if len(unknown):
        counts = unknown.value_counts()
        listed = ", ".join(f"{n!r} ({c} rows)" for n, c in counts.head(5).items())
        ann.problems.append(
            f"keypoint names not in the {ann.preset.name} preset ignored: {listed}; valid names: {', '.join(ann.preset.keypoints)}"
        )
    df = df[names.isin(list(index))]
    x = df.x.astype("float64").to_numpy()
    y = df.y.astype("float64").to_numpy()
    finite = np.isfinite(x) & np.isfinite(y)
    inside = finite & (x >= 0) & (x <= ann.width) & (y >= 0) & (y <= ann.height)
    if (~inside).any():
        bad = sorted({int(v) for v in df.view_id[~inside]})
        ann.problems.append(
            f"keypoints outside the {ann.width}x{ann.height} image (or not numbers) ignored in views {_views_text(bad)}: check the pull's pixel conversion"
        )
    df = df[inside]
    # One object per view: the sample annotated in the most views, else the one with most points.
    samples_per_view = df.groupby("view_id").sample_id.unique()
    views_per_sample = df.groupby("sample_id").view_id.nunique()
    mixed = []
    for v, samples in samples_per_view.items():
        v = int(v)
        if len(samples) == 1:
            chosen = int(samples[0])
        else:
            counts = df[df.view_id == v].sample_id.value_counts()
            chosen = int(max(samples, key=lambda s: (views_per_sample.get(s, 0), counts.get(s, 0), -int(s))))
            mixed.append(v)
        ann.sample_ids[v] = chosen
    objects = sorted(int(s) for s in views_per_sample.index)
    if len(objects) > 1:  # each object's keypoints alone too: g3d sfm-init solves each and keeps the best
        ann.by_object = {s: np.full_like(ann.xy, np.nan) for s in objects}
        for row in df.itertuples(index=False):
            xy = ann.by_object[int(row.sample_id)]
            p = index[str(row.name)]
            if not np.isfinite(xy[int(row.view_id), p, 0]):
                xy[int(row.view_id), p] = (float(row.x), float(row.y))
    dups = []
    for row in df.itertuples(index=False):
        v = int(row.view_id)
        if int(row.sample_id) != ann.sample_ids[v]:
            continue
        p = index[str(row.name)]
        if np.isfinite(ann.xy[v, p, 0]):
            dups.append(v)
            continue
        ann.xy[v, p] = (float(row.x), float(row.y))
    if dups:
        ann.problems.append(f"duplicate keypoints (same name twice on one object) in views {_views_text(sorted(set(dups)))}: kept the first")
