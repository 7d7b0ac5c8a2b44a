"""The cameras of a dataset folder: the source vocabulary, ``cameras.parquet``'s schema, and the one reader.

Every consumer (train, eval, export, report, validate, neural, pipeline) calls :func:`read_cameras`,
which applies one fallback policy:

1. ``cameras.parquet`` (written by ``g3d sfm-init``), when it exists;
2. else the generator's truth (built-in datasets: each image row carries its K, R, t);
3. else ``annotations/pose_bins.parquet``, through the same validating reader ``g3d sfm-init`` uses
   (:func:`g3d.datasets.annotations.read_annotations`): a view whose bin is missing or rejected gets no
   camera and is marked unusable, never azimuth 0 or NaN; each camera at its view's distance estimated
   from its mask boxes (:func:`read_mask_boxes`, :func:`g3d.sfm.posebins.estimate_distances`).

A ``g3d synth --between`` dataset has both: frozen views, whose cameras (file or pose bins) are per view, and extra
images between two of them; :func:`with_between` makes such per-view cameras per image, each extra image's
interpolated from its two frozen views' (source ``interpolated``). Its truth is per image.

A camera belongs to a **view** (every image of view v shares camera v: the frozen viewpoint codes of
g3d synth) or to an **image** (one per (sample_id, view_id): datasets whose images have random
viewpoints). :class:`DatasetCameras` holds either; ``sample_ids`` is None for per-view cameras.
``cameras.parquet`` says which by its ``sample_id`` column (absent or all null: per view), the truth
by the manifest's ``cameras`` field (``"per_image"``; absent: per view). :meth:`DatasetCameras.index`
finds the camera of any image either way.

``cameras.parquet``, one row per camera:

==================  ====================  ===================================================
column              type                  meaning
==================  ====================  ===================================================
view_id             int32                 the view (column of the dataset)
sample_id           int64 (optional)      the image's object, for per-image cameras
K, R                list<float64>[9]      intrinsics; world-to-camera rotation (row-major)
t                   list<float64>[3]      world-to-camera translation (:mod:`g3d.cameras`)
azimuth_deg,        float64               the camera centre in the object frame
elevation_deg,
distance
fov_deg             float64               horizontal field of view of K
source              string                one of :data:`SOURCES` (below)
usable              bool                  False: the keypoints contradict this (bin) camera and
                                          nothing settled it; g3d train skips the view
failed_checks       string                the view's failed checks (codes of
                                          :mod:`g3d.sfm.checks`, comma-separated; "" = none)
reprojection_error  float64 | null        mean pixel error of the refined camera over its
                                          inlier keypoints (null for pose_bin)
num_keypoints       int32                 keypoints annotated in the view
==================  ====================  ===================================================

Sources: ``pose_bin``: the bin camera, no keypoints tried; ``sfm``: refined from the keypoints, every
check passed; ``sfm_bin_corrected``: the keypoints fit and contradict the bin (front/back confusion):
their camera; ``sfm_labels_swapped``: the view's left/right labels were mirrored, the camera of the
exchanged labels; ``sfm_flagged``: a check failed, the bin camera is used (the flagged refined one
where the view has no bin). The reader adds ``ground_truth`` for the generator's cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from g3d.datasets.folder import ANNOTATIONS, CAMERAS, POSE_BINS, shard_paths
from g3d.datasets.shards import read_shard
from g3d.datasets.manifest import Manifest, read_manifest
from g3d.errors import DatasetError

SOURCES = ("pose_bin", "sfm", "sfm_bin_corrected", "sfm_labels_swapped", "sfm_flagged")
TRUSTED = ("sfm", "sfm_bin_corrected", "sfm_labels_swapped")  # cameras solved from the keypoints, checks passed
TRUTH = "ground_truth"
INTERPOLATED = "interpolated"  # the reader's camera of a g3d synth --between image, from its two frozen views' (with_between)

# Where a dataset's cameras came from (DatasetCameras.origin), in the order of the fallback.
FROM_FILE, FROM_TRUTH, FROM_POSE_BINS = "cameras.parquet", "ground truth", "pose bins"
ORIGINS = (FROM_FILE, FROM_TRUTH, FROM_POSE_BINS)

COLUMNS = ("view_id", "K", "R", "t", "azimuth_deg", "elevation_deg", "distance", "fov_deg", "source", "reprojection_error",
           "num_keypoints", "usable", "failed_checks")


def schema(per_image: bool = False):
    """The pyarrow schema of ``cameras.parquet`` (with ``sample_id`` second for per-image cameras)."""
    import pyarrow as pa

    f64 = pa.float64()
    cols = [("view_id", pa.int32()), *([("sample_id", pa.int64())] if per_image else []),
            ("K", pa.list_(f64, 9)), ("R", pa.list_(f64, 9)), ("t", pa.list_(f64, 3)),
            ("azimuth_deg", f64), ("elevation_deg", f64), ("distance", f64), ("fov_deg", f64), ("source", pa.string()),
            ("reprojection_error", f64), ("num_keypoints", pa.int32()), ("usable", pa.bool_()), ("failed_checks", pa.string())]
    return pa.schema(cols)


def write_cameras(folder: Path, columns: dict) -> Path:
    """Write ``folder/cameras.parquet`` atomically from ``columns`` (name -> values, as :func:`schema`);
    a source outside :data:`SOURCES` is a ValueError (a bug in the writer, not user input)."""
    import pyarrow as pa

    from g3d.datasets import io as dsio

    bad = sorted(set(columns["source"]) - set(SOURCES))
    if bad:
        raise ValueError(f"camera sources {bad} are not in {SOURCES}")
    table = pa.table(columns, schema=schema("sample_id" in columns))
    path = Path(folder) / CAMERAS
    dsio.write_table(path, table)
    return path


@dataclass
class DatasetCameras:
    """The cameras of a dataset's images at the stored image size. N cameras:

    ``K``, ``R`` float64 [N, 3, 3], ``t`` float64 [N, 3] (OpenCV world-to-camera, :mod:`g3d.cameras`);
    ``view_ids`` int64 [N]; ``sample_ids`` int64 [N] for per-image cameras, None for per-view ones
    (then N = V and camera v is view v's); ``sources`` [N]: each camera's source (:data:`SOURCES`,
    :data:`TRUTH`, or None where there is none); ``usable`` bool [N]: False where no camera can be
    trusted (``why`` says why; K, R, t are then placeholders that nobody may use); ``origin``: one of
    :data:`ORIGINS`; ``problems``: what the reader dropped from its input, one line each."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    view_ids: np.ndarray
    sources: list[str | None]
    usable: np.ndarray
    origin: str
    sample_ids: np.ndarray | None = None
    why: list[str | None] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def per_image(self) -> bool:
        return self.sample_ids is not None

    def index(self, sample_ids, view_ids) -> np.ndarray:
        """int64 [M]: the camera of each image (sample_ids [M], view_ids [M]); -1 where it has none or an unusable one."""
        s = np.asarray(sample_ids, np.int64).reshape(-1)
        v = np.asarray(view_ids, np.int64).reshape(-1)
        if self.sample_ids is None:
            idx = np.where((v >= 0) & (v < len(self.view_ids)), v, -1)
        else:
            at = self._image_index
            idx = np.array([at.get((int(a), int(b)), -1) for a, b in zip(s, v)], np.int64)
        ok = idx >= 0
        ok[ok] = self.usable[idx[ok]]
        return np.where(ok, idx, -1)

    @cached_property
    def _image_index(self) -> dict[tuple[int, int], int]:
        return {(int(a), int(b)): i for i, (a, b) in enumerate(zip(self.sample_ids, self.view_ids))}

    def unusable_views(self) -> dict[int, str]:
        """view id -> why, for per-view cameras that training and export must skip."""
        if self.per_image:
            return {}
        return {int(v): (self.why[i] if i < len(self.why) and self.why[i] else "no usable camera")
                for i, v in enumerate(self.view_ids) if not self.usable[i]}


def _mat(values, n: int) -> np.ndarray:
    return np.stack([np.reshape(np.asarray(x, np.float64), (n,) if n == 3 else (3, 3)) for x in values])


def read_camera_file(folder: Path, manifest: Manifest) -> DatasetCameras:
    """``cameras.parquet`` as :class:`DatasetCameras`; a damaged or inconsistent file is a one-line :class:`DatasetError`."""
    import pyarrow.parquet as pq

    path = Path(folder) / CAMERAS
    try:
        df = pq.read_table(path).to_pandas()
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise DatasetError(f"{path} cannot be read ({type(exc).__name__}): it is damaged; rerun g3d sfm-init {folder}") from None
    missing = [c for c in ("view_id", "K", "R", "t") if c not in df]
    if missing:
        raise DatasetError(f"{path} lacks the column(s) {', '.join(missing)}: it is not a g3d cameras file; rerun g3d sfm-init {folder}")
    V = manifest.frozen_views  # a per-view file holds the frozen views (per image: every image, --between ones too)
    ids = df.view_id.to_numpy().astype(np.int64) if len(df) else np.zeros(0, np.int64)
    per_image = "sample_id" in df and len(df) and df.sample_id.notna().any()
    keys = list(zip(df.sample_id.astype("int64"), ids)) if per_image else list(ids)
    top = manifest.views if per_image else V
    if len(df) == 0 or ids.min() < 0 or ids.max() >= top or len(set(keys)) != len(keys):
        raise DatasetError(f"{path} has {len(df)} cameras with view ids outside 0..{top - 1} or repeated: rerun g3d sfm-init {folder}")
    sources = [str(s) for s in df.source] if "source" in df else ["sfm"] * len(df)  # files before the column: solved
    usable = df.usable.to_numpy().astype(bool) if "usable" in df else np.ones(len(df), bool)  # files before the column: every row
    checks = list(df.failed_checks) if "failed_checks" in df else [""] * len(df)
    why = [None if u else f"the keypoints contradict its {s} camera ({c or 'checks failed'})" for u, s, c in zip(usable, sources, checks)]
    K, R, t = _mat(df.K, 9), _mat(df.R, 9), _mat(df.t, 3)
    if per_image:
        return DatasetCameras(K, R, t, ids, sources, usable, FROM_FILE, df.sample_id.to_numpy().astype(np.int64), why)
    out = _placeholders(V, K[0], FROM_FILE, "g3d sfm-init made no camera for it")
    out.K[ids], out.R[ids], out.t[ids] = K, R, t
    for j, v in enumerate(ids):
        out.sources[v], out.usable[v], out.why[v] = sources[j], bool(usable[j]), why[j]
    return out


def _placeholders(V: int, K: np.ndarray, origin: str, why: str) -> DatasetCameras:
    """V per-view cameras, none usable yet (identity rotation 4 units in front: placeholders only)."""
    return DatasetCameras(np.broadcast_to(K, (V, 3, 3)).copy(), np.broadcast_to(np.eye(3), (V, 3, 3)).copy(),
                          np.tile([0.0, 0.0, 4.0], (V, 1)), np.arange(V, dtype=np.int64), [None] * V, np.zeros(V, bool), origin,
                          why=[why] * V)


def read_true_cameras(folder: Path, manifest: Manifest) -> DatasetCameras | None:
    """The generator's cameras, from the image rows; None for datasets without ground truth.

    Per view (the manifest's default): the first row of each view (the first shard, or all where the
    first lacks a view). Per image (``cameras: per_image``): every row."""
    if not manifest.ground_truth:
        return None
    import pandas as pd

    folder = Path(folder)
    shards = shard_paths(folder)
    if not shards:
        raise DatasetError(f"{folder} has no complete image shards: run or resume `g3d synth --out {folder}`")
    cols = ["sample_id", "view_id", "K", "R", "t"]
    per_image = manifest.extra.get("cameras") == "per_image"
    if per_image:
        df = pd.concat([read_shard(p, cols).to_pandas() for p in shards]).sort_values(["sample_id", "view_id"])
    else:
        df = read_shard(shards[0], cols).to_pandas().drop_duplicates("view_id")
        if len(df) < manifest.views:
            df = pd.concat([read_shard(p, cols).to_pandas() for p in shards]).drop_duplicates("view_id")
        df = df.sort_values("view_id")
    n = len(df)
    ids = df.view_id.to_numpy().astype(np.int64)
    out = DatasetCameras(_mat(df.K, 9), _mat(df.R, 9), _mat(df.t, 3), ids, [TRUTH] * n, np.ones(n, bool), FROM_TRUTH,
                         df.sample_id.to_numpy().astype(np.int64) if per_image else None, [None] * n)
    if not per_image and not np.array_equal(ids, np.arange(manifest.views)):
        raise DatasetError(f"{folder}: the image rows hold {n} of the {manifest.views} views: rerun or resume `g3d synth --out {folder}`")
    return out


@dataclass
class MaskBoxes:
    """Each view's mask box, the median over its objects, from the shards' ``bbox`` column. V views:
    ``boxes`` float64 [V, 4] x0, y0, x1, y1 in pixels (x1, y1 exclusive; NaN rows: no usable mask);
    ``objects`` int64 [V]: the masks each median is over; ``why`` [V]: why a view has none (None: it has)."""

    boxes: np.ndarray
    objects: np.ndarray
    why: list[str | None]


def read_mask_boxes(folder: Path, manifest: Manifest) -> MaskBoxes:
    """The median mask box of every view, reading only ``view_id``, ``bbox`` and ``keep`` of each shard.

    Rows the filters rejected (``keep`` false), rows without a mask and masks that touch the image's
    left or right border (cut: their width says nothing about the distance) or are narrower than
    :data:`g3d.sfm.posebins.MIN_MASK_WIDTH_PX` do not count; a view left with none says why. A folder
    without shards, or whose shards have no ``bbox`` column, gives every view the reason."""
    import pandas as pd

    from g3d.sfm.posebins import MIN_MASK_WIDTH_PX

    folder = Path(folder)
    V, W = manifest.frozen_views, manifest.width
    boxes = np.full((V, 4), np.nan)
    objects = np.zeros(V, np.int64)
    shards = shard_paths(folder)
    if not shards:
        return MaskBoxes(boxes, objects, ["no image shards to measure masks in"] * V)
    parts = []
    for p in shards:
        names = set(read_shard(p, schema_only=True, folder=folder).names)
        if "bbox" not in names:
            return MaskBoxes(boxes, objects, [f"{p.name} has no bbox column (mask boxes)"] * V)
        parts.append(read_shard(p, ["view_id", "bbox"] + (["keep"] if "keep" in names else []), folder=folder).to_pandas())
    df = pd.concat(parts, ignore_index=True)
    df = df[(df.view_id >= 0) & (df.view_id < V)]
    kept = df.keep.fillna(True).astype(bool).to_numpy() if "keep" in df else np.ones(len(df), bool)
    has = df.bbox.notna().to_numpy()
    b = np.full((len(df), 4), np.nan)
    if has.any():
        b[has] = np.stack([np.asarray(x, np.float64) for x in df.bbox[has]])
    cut = has & ((b[:, 0] <= 0) | (b[:, 2] >= W))
    thin = has & ~cut & (b[:, 2] - b[:, 0] < MIN_MASK_WIDTH_PX)
    good = kept & has & ~cut & ~thin
    vid = df.view_id.to_numpy().astype(np.int64)
    why: list[str | None] = [None] * V
    for v in range(V):
        at = vid == v
        if not at.any():
            why[v] = "no image rows"
            continue
        use = at & good
        objects[v] = int(use.sum())
        if objects[v]:
            boxes[v] = np.median(b[use], axis=0)
            continue
        counts = [(int((at & ~kept).sum()), "rejected by the filters"), (int((at & kept & ~has).sum()), "without a mask"),
                  (int((at & kept & cut).sum()), "cut by the left or right border"),
                  (int((at & kept & thin).sum()), f"narrower than {MIN_MASK_WIDTH_PX:g} px")]
        why[v] = f"no usable mask (of {int(at.sum())} images: " + ", ".join(f"{n} {what}" for n, what in counts if n) + ")"
    return MaskBoxes(boxes, objects, why)


def read_pose_bin_cameras(folder: Path, manifest: Manifest) -> DatasetCameras:
    """One camera per view from ``annotations/pose_bins.parquet``, validated as ``g3d sfm-init`` does:
    rejected views and views without a (valid) bin are unusable and say why; bad rows are named in
    ``problems``. The camera: the bin's azimuth and elevation, the preset's fov, and the view's distance
    estimated from its masks (:func:`g3d.sfm.posebins.estimate_distances` over :func:`read_mask_boxes`),
    or the preset's where a view has no usable mask (named in ``problems``)."""
    from g3d import cameras
    from g3d.classes import get_preset
    from g3d.datasets.annotations import read_annotations
    from g3d.sfm.posebins import bin_width_deg, estimate_distances, pose_bin_cameras

    ann = read_annotations(folder, keypoints=False)
    preset = get_preset(manifest.class_name)
    V = manifest.frozen_views
    ok = ann.has_bin
    K = cameras.intrinsics(manifest.width, manifest.height, preset.fov_deg)
    az = np.where(ok, ann.bin_azimuth_deg, np.nan)
    el = np.where(ok, ann.bin_elevation_deg, np.nan)
    masks = read_mask_boxes(folder, manifest)
    dist = estimate_distances(az, el, masks.boxes, K, preset.reference_size, preset.distance, bin_width_deg(preset) / 2.0, masks.why)
    # Views without a bin: placeholders (azimuth 0, the preset distance) that nobody may use.
    R, t = pose_bin_cameras(np.where(ok, az, 0.0), np.where(ok, el, 0.0), np.where(ok, dist.distance, preset.distance))
    why = [None if ok[v] else ("rejected by the annotator" if ann.rejected[v] else "no pose bin") for v in range(V)]
    return DatasetCameras(np.broadcast_to(K, (V, 3, 3)).copy(), R, t,
                          np.arange(V, dtype=np.int64), ["pose_bin" if o else None for o in ok], ok.copy(), FROM_POSE_BINS, None, why,
                          list(ann.problems) + dist.notes())


def read_between(folder: Path, manifest: Manifest):
    """``between.parquet`` (g3d synth --between) as a pandas DataFrame: sample_id, view_id, view_a, view_b, t, one row per
    extra image; a missing or inconsistent file is a one-line :class:`DatasetError`."""
    import pyarrow.parquet as pq

    from g3d.datasets.folder import BETWEEN

    path = Path(folder) / BETWEEN
    try:
        df = pq.read_table(path).to_pandas()
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read ({type(exc).__name__}): resume `g3d synth --out {folder}` with the same options to write it again") from None
    V, M = manifest.frozen_views, manifest.between_views
    cols = {"sample_id", "view_id", "view_a", "view_b", "t"}
    if not cols <= set(df) or len(df) != (manifest.samples or 0) * M or not df.view_id.between(V, V + M - 1).all() \
            or not (df.view_a.between(0, V - 1) & df.view_b.between(0, V - 1) & df.t.between(0.0, 1.0)).all():
        raise DatasetError(f"{path} does not match g3d.json ({manifest.samples} objects x {M} images between {V} frozen views): "
                           f"resume `g3d synth --out {folder}` with the same options to write it again")
    return df


def with_between(folder: Path, manifest: Manifest, cams: DatasetCameras) -> DatasetCameras:
    """Per-view cameras of a ``g3d synth --between`` dataset made per image: every image of frozen view v gets camera v,
    and each extra image the camera between its two frozen views' at its code's weight (:func:`g3d.cameras.interpolate`),
    source :data:`INTERPOLATED`, usable where both are (training refines it per image). Other datasets: ``cams`` unchanged."""
    if not manifest.between_views or cams.per_image:
        return cams
    from g3d import cameras as camlib

    V, M, N = manifest.frozen_views, manifest.between_views, int(manifest.samples or 0)
    df = read_between(folder, manifest).sort_values(["sample_id", "view_id"])
    a, b, w = df.view_a.to_numpy(np.int64), df.view_b.to_numpy(np.int64), df.t.to_numpy(np.float64)
    R_i, t_i = camlib.interpolate(cams.R[a], cams.t[a], cams.R[b], cams.t[b], w)
    K_i = (1.0 - w)[:, None, None] * cams.K[a] + w[:, None, None] * cams.K[b]
    # Every image in (sample, view) order: the frozen views' cameras, then the sample's between ones.
    frozen = np.tile(np.arange(V), N)
    sids = np.concatenate([np.repeat(np.arange(N), V), df.sample_id.to_numpy(np.int64)])
    vids = np.concatenate([frozen, df.view_id.to_numpy(np.int64)])
    order = np.lexsort((vids, sids))
    ok_i = cams.usable[a] & cams.usable[b]
    why_i = [None if ok else f"between views {x} and {y}, not both with a usable camera" for ok, x, y in zip(ok_i, a, b)]
    pick = lambda x, y: np.concatenate([x[frozen], y])[order]  # noqa: E731
    sources = [cams.sources[v] for v in frozen] + [INTERPOLATED if ok else None for ok in ok_i]
    why = [cams.why[v] for v in frozen] + why_i
    return DatasetCameras(pick(cams.K, K_i), pick(cams.R, R_i), pick(cams.t, t_i), vids[order], [sources[j] for j in order],
                          pick(cams.usable, ok_i), cams.origin, sids[order], [why[j] for j in order], list(cams.problems))


def has_pose_bins(folder: Path) -> bool:
    return (Path(folder) / ANNOTATIONS / POSE_BINS).is_file()


def has_camera_file(folder: Path) -> bool:
    return (Path(folder) / CAMERAS).is_file()


def read_cameras(folder: Path, manifest: Manifest | None = None, fallbacks: tuple[str, ...] = (FROM_TRUTH, FROM_POSE_BINS)) -> DatasetCameras:
    """The cameras of ``folder``: ``cameras.parquet``, else (where ``fallbacks`` allow) the generator's
    truth, else the pose bins. A folder with none of them is a :class:`DatasetError` saying what to run."""
    folder = Path(folder)
    manifest = manifest if manifest is not None else read_manifest(folder)
    if has_camera_file(folder):
        return with_between(folder, manifest, read_camera_file(folder, manifest))
    if FROM_TRUTH in fallbacks and manifest.ground_truth:
        return read_true_cameras(folder, manifest)
    if FROM_POSE_BINS in fallbacks and has_pose_bins(folder):
        cams = read_pose_bin_cameras(folder, manifest)
        if not cams.usable.any():
            raise DatasetError(f"{folder / ANNOTATIONS / POSE_BINS} gives no view a usable pose bin ({'; '.join(cams.problems) or 'all rejected'}): "
                               f"annotate the pose bins again (g3d annotate push poses {folder})")
        return with_between(folder, manifest, cams)
    then = " (or `g3d annotate pull` for pose bins)" if FROM_POSE_BINS in fallbacks else ""
    raise DatasetError(f"{folder} has no cameras: run `g3d sfm-init {folder}`{then} first")
