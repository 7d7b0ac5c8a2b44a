"""Synthetic keypoint annotations with known cameras, from the built-in generator's ground truth.

Tests and ``bench/sfm.py`` measure ``g3d sfm-init`` against truth without rendering images: the 3D
car keypoints come from :class:`g3d.synth.builtin.BuiltinGenerator` shapes, cameras from a random
layout drawn like the generator's (azimuth over the full circle, elevation 2-28 deg, distance
the generator's framing distance, 40 deg horizontal field of view), and visibility from each keypoint's outward directions
(calibrated against the generator's z-buffer: 6-10 of the 12 car keypoints per view, the four roof
corners almost always, the wheels from the side, the lights from the front half).
:func:`write_annotations` writes what ``g3d annotate pull`` would: ``annotations/pose_bins.parquet``
and ``annotations/keypoints.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from g3d import cameras
from g3d.classes import CAR_KEYPOINTS, get_preset

# Outward directions (object frame, left = +x) of each car keypoint, with the cosine above which
# a camera in that direction sees it; a keypoint is visible when any of its directions passes.
_LEFT_VISIBILITY = {
    "front_wheel": (((1.0, 0.0, 0.0), 0.15),),
    "back_wheel": (((1.0, 0.0, 0.0), 0.15),),
    "windshield": (((0.0, 1.0, 0.0), -0.1),),
    "rearwindow": (((0.0, 1.0, 0.0), -0.1),),
    "front_light": (((0.0, 0.0, 1.0), 0.25),),
    "back_trunk": (((1.0, 0.0, 0.0), 0.15), ((0.0, 0.0, -1.0), 0.15)),
}


def _visibility_rules(name: str) -> tuple[tuple[np.ndarray, float], ...]:
    side = 1.0 if "left" in name else -1.0
    for key, rules in _LEFT_VISIBILITY.items():
        if key in name:
            return tuple((np.array([d[0] * side, d[1], d[2]]), thr) for d, thr in rules)
    raise KeyError(name)


@lru_cache(maxsize=1)
def _generator():
    from g3d.synth.builtin import BuiltinGenerator

    return BuiltinGenerator(resolution=32, ssaa=1)


def car_keypoints(seed: int, count: int = 1, truncation: float = 0.7) -> np.ndarray:
    """3D keypoints of ``count`` built-in car shapes, float64 [count, 12, 3] in the object frame."""
    import torch

    G = _generator()
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    with torch.no_grad():
        prm = G.parameters_of(G.mapping(z, truncation))
        _, kps, _ = G.build_mesh(prm)
    return kps.double().numpy()


def random_layout(rng: np.random.Generator, views: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Azimuth (stratified over the circle), elevation (2-28) and distance, each float64 [views].

    The distance is the built-in generator's for that viewpoint (its framing distance times a jitter,
    :func:`g3d.synth.builtin.view_distance`: 2.7-4.3, front and rear views closer than side views).
    """
    import torch

    from g3d.synth.builtin import view_distance

    step = 360.0 / views
    az = np.mod((np.arange(views) + rng.uniform(0.0, 1.0, views)) * step + rng.uniform(0.0, 360.0), 360.0)
    el = rng.uniform(2.0, 28.0, views)
    dist = view_distance(torch.from_numpy(az), torch.from_numpy(el), torch.from_numpy(rng.uniform(0.0, 1.0, views))).numpy()
    return az, el, dist


def visible(points: np.ndarray, centres: np.ndarray, names: tuple[str, ...] = CAR_KEYPOINTS) -> np.ndarray:
    """Which car keypoints each camera sees: points float [P, 3], centres float [V, 3] -> bool [V, P]."""
    out = np.zeros((len(centres), len(names)), dtype=bool)
    for p, name in enumerate(names):
        d = centres - points[p]
        d = d / np.linalg.norm(d, axis=-1, keepdims=True)
        for direction, thr in _visibility_rules(name):
            out[:, p] |= d @ direction > thr
    return out


@dataclass
class Scene:
    """One synthetic annotation job with its truth. V views, P keypoints."""

    names: tuple[str, ...]  # keypoint names, preset order
    points: np.ndarray  # float64 [P, 3] true keypoints, object frame
    K: np.ndarray  # float64 [3, 3] true intrinsics
    R: np.ndarray  # float64 [V, 3, 3] true world-to-camera rotations
    t: np.ndarray  # float64 [V, 3]
    azimuth_deg: np.ndarray  # float64 [V] true camera angles
    elevation_deg: np.ndarray  # float64 [V]
    distance: np.ndarray  # float64 [V]
    xy: np.ndarray  # float64 [V, P, 2] annotated pixels (noise added); NaN where not annotated
    bin_azimuth_deg: np.ndarray  # float64 [V] annotated bin centre (after any injected error)
    bin_elevation_deg: np.ndarray  # float64 [V]
    bin_names: list[str]  # [V] preset bin name per view
    width: int
    height: int
    view_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # int32 [V]

    @property
    def focal(self) -> float:
        return float(self.K[0, 0])


def make_scene(
    seed: int,  # seeds shape, layout, noise and dropping
    views: int = 39,
    noise_px: float = 0.0,  # std of Gaussian pixel noise added to every annotated keypoint
    missing: float = 0.0,  # fraction of visible keypoints left unannotated
    width: int = 512,
    height: int = 384,
    fov_deg: float = 40.0,
    points: np.ndarray | None = None,  # float [P, 3]; None = a built-in car drawn from `seed`
    class_name: str = "car",
) -> Scene:
    """A random car, a random layout, its visible keypoints in pixels and its nearest pose bins."""
    rng = np.random.default_rng(seed)
    preset = get_preset(class_name)
    if points is None:
        points = car_keypoints(seed)[0]
    az, el, dist = random_layout(rng, views)
    R, t = cameras.from_azimuth_elevation(az, el, dist)
    K = cameras.intrinsics(width, height, fov_deg)
    uv, z = cameras.project(np.broadcast_to(points, (views,) + points.shape), K, R, t)
    vis = visible(points, cameras.center_of(R, t), preset.keypoints)
    vis &= (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)
    if missing > 0:
        vis &= rng.uniform(size=vis.shape) >= missing
    xy = uv + rng.normal(0.0, noise_px, uv.shape) if noise_px > 0 else uv.copy()
    xy[~vis] = np.nan
    centres = np.array([b.azimuth_deg for b in preset.pose_bins])
    diff = np.abs((az[:, None] - centres[None, :] + 180.0) % 360.0 - 180.0)
    nearest = diff.argmin(axis=1)
    return Scene(
        names=preset.keypoints,
        points=np.asarray(points, np.float64),
        K=K,
        R=R,
        t=t,
        azimuth_deg=az,
        elevation_deg=el,
        distance=dist,
        xy=xy,
        bin_azimuth_deg=centres[nearest],
        bin_elevation_deg=np.array([preset.pose_bins[i].elevation_deg for i in nearest]),
        bin_names=[preset.pose_bins[i].name for i in nearest],
        width=width,
        height=height,
        view_ids=np.arange(views, dtype=np.int32),
    )


def swap_left_right(scene: Scene, view: int) -> None:
    """Swap every left/right label pair in one view (an annotator's mirror mistake), in place."""
    idx = {n: i for i, n in enumerate(scene.names)}
    for left, right in get_preset("car").keypoint_pairs:
        a, b = idx[left], idx[right]
        scene.xy[view, [a, b]] = scene.xy[view, [b, a]]


def shift_bin(scene: Scene, view: int, degrees: float = 180.0, class_name: str = "car") -> None:
    """Move one view's annotated bin by ``degrees`` (a front/back confusion for 180), in place."""
    bins = get_preset(class_name).pose_bins
    centres = np.array([b.azimuth_deg for b in bins])
    target = (scene.bin_azimuth_deg[view] + degrees) % 360.0
    i = int(np.abs((centres - target + 180.0) % 360.0 - 180.0).argmin())
    scene.bin_azimuth_deg[view] = centres[i]
    scene.bin_names[view] = bins[i].name


def scene_annotations(scene: Scene, class_name: str = "car", pose_bins: bool = True, keypoints: bool = True):
    """The scene as :class:`g3d.datasets.annotations.Annotations`, in memory (what reading written files gives)."""
    from g3d.datasets.annotations import Annotations

    V = len(scene.view_ids)
    return Annotations(
        folder=Path("."),
        preset=get_preset(class_name),
        width=scene.width,
        height=scene.height,
        view_ids=scene.view_ids.astype(np.int32),
        xy=scene.xy.copy() if keypoints else np.full_like(scene.xy, np.nan),
        sample_ids=[0] * V,
        bin_azimuth_deg=scene.bin_azimuth_deg.copy() if pose_bins else np.full(V, np.nan),
        bin_elevation_deg=scene.bin_elevation_deg.copy() if pose_bins else np.full(V, np.nan),
        bin_names=list(scene.bin_names) if pose_bins else [None] * V,
        rejected=np.zeros(V, bool),
        has_pose_bins=pose_bins,
        has_keypoints=keypoints,
    )


def write_annotations(
    folder: Path,
    scene: Scene,
    class_name: str = "car",
    sample_id: int = 0,
    pose_bins: bool = True,  # write annotations/pose_bins.parquet
    keypoints: bool = True,  # write annotations/keypoints.parquet
    manifest: bool = True,  # write a minimal g3d.json when the folder has none
) -> None:
    """Write the scene's annotations in the agreed format (what ``g3d annotate pull`` writes)."""
    import pyarrow as pa

    from g3d.datasets import folder as dsf
    from g3d.datasets import io as dsio
    from g3d.datasets.manifest import GeneratorRecord, Manifest, has_manifest, write_manifest

    folder = Path(folder)
    (folder / dsf.ANNOTATIONS).mkdir(parents=True, exist_ok=True)
    if manifest and not has_manifest(folder):
        write_manifest(folder, Manifest(class_name=class_name, height=scene.height, width=scene.width, views=int(len(scene.view_ids)),
                                        generator=GeneratorRecord({"format": "synthetic-keypoints"})))
    stamp = "2024-01-01T00:00:00+00:00"
    if pose_bins:
        n = len(scene.view_ids)
        table = pa.table(
            {
                "view_id": pa.array(scene.view_ids, pa.int32()),
                "azimuth_bin": pa.array(scene.bin_names, pa.string()),
                "azimuth_deg": pa.array(scene.bin_azimuth_deg, pa.float64()),
                "elevation_deg": pa.array(scene.bin_elevation_deg, pa.float64()),
                "rejected": pa.array([False] * n, pa.bool_()),
                "annotator": pa.array(["synthetic"] * n, pa.string()),
                "updated_at": pa.array([stamp] * n, pa.string()),
            }
        )
        dsio.write_table(folder / dsf.ANNOTATIONS / dsf.POSE_BINS, table)
    if keypoints:
        vv, pp = np.nonzero(np.isfinite(scene.xy[..., 0]))
        table = pa.table(
            {
                "view_id": pa.array(scene.view_ids[vv], pa.int32()),
                "sample_id": pa.array(np.full(len(vv), sample_id), pa.int64()),
                "name": pa.array([scene.names[p] for p in pp], pa.string()),
                "x": pa.array(scene.xy[vv, pp, 0], pa.float64()),
                "y": pa.array(scene.xy[vv, pp, 1], pa.float64()),
                "visible": pa.array(np.ones(len(vv), bool), pa.bool_()),
            }
        )
        dsio.write_table(folder / dsf.ANNOTATIONS / dsf.KEYPOINTS, table)


def annotations_from_dataset(
    folder: Path,
    sample_id: int | Sequence[int] = 0,  # the object(s) whose keypoints are clicked (several: each in every view)
    noise_px: float = 0.0,  # std of Gaussian click noise, pixels
    seed: int = 0,
    flip_bins: Sequence[int] = (),  # views whose pose bin is given 180 deg off (front/back confusion)
    swap_labels: Sequence[int] = (),  # views whose left/right keypoint labels are exchanged (on every object)
) -> None:
    """Annotate a built-in dataset from its ground truth, as a scripted annotator would: pose bins
    nearest the true azimuth, the keypoints of one or more objects, click noise and typical mistakes.

    Reads ``images/part-*.parquet`` (the rows of the objects) and the manifest; writes
    ``annotations/pose_bins.parquet`` and ``annotations/keypoints.parquet``.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from g3d.datasets import folder as dsf
    from g3d.datasets import io as dsio
    from g3d.datasets.manifest import read_manifest

    folder = Path(folder)
    man = read_manifest(folder)
    preset = get_preset(man.class_name)
    ids = [int(sample_id)] if isinstance(sample_id, (int, np.integer)) else [int(s) for s in sample_id]
    rows = []
    for part in dsf.shard_paths(folder):
        df = pq.read_table(part, columns=["sample_id", "view_id", "keypoints_2d", "keypoints_visible", "azimuth_deg"]).to_pandas()
        rows.append(df[df.sample_id.isin(ids) & (df.view_id < man.frozen_views)])  # (--between images are nobody's view)
    df = pd.concat(rows)
    P = len(preset.keypoints)
    rng = np.random.default_rng(seed)
    tables = []
    for k, sid in enumerate(ids):
        one = df[df.sample_id == sid].sort_values("view_id")
        if one.empty:
            raise ValueError(f"sample {sid} is not in {folder}")
        xy = np.stack([np.asarray(v, np.float64).reshape(P, 2) for v in one.keypoints_2d])
        vis = np.stack([np.asarray(v, bool) for v in one.keypoints_visible])
        if noise_px > 0:
            xy = xy + rng.normal(0.0, noise_px, xy.shape)
        xy[~vis] = np.nan
        az = one.azimuth_deg.to_numpy(np.float64)
        centres = np.array([b.azimuth_deg for b in preset.pose_bins])
        nearest = np.abs((az[:, None] - centres[None, :] + 180.0) % 360.0 - 180.0).argmin(axis=1)
        scene = Scene(
            names=preset.keypoints,
            points=np.zeros((P, 3)),
            K=np.eye(3),
            R=np.zeros((len(one), 3, 3)),
            t=np.zeros((len(one), 3)),
            azimuth_deg=az,
            elevation_deg=np.zeros(len(one)),
            distance=np.zeros(len(one)),
            xy=xy,
            bin_azimuth_deg=centres[nearest],
            bin_elevation_deg=np.array([preset.pose_bins[i].elevation_deg for i in nearest]),
            bin_names=[preset.pose_bins[i].name for i in nearest],
            width=int(man.width),
            height=int(man.height),
            view_ids=one.view_id.to_numpy(np.int32),
        )
        row_of = {int(v): r for r, v in enumerate(scene.view_ids)}
        for v in swap_labels:
            swap_left_right(scene, row_of[int(v)])
        for v in flip_bins:
            shift_bin(scene, row_of[int(v)], 180.0, man.class_name)
        write_annotations(folder, scene, class_name=man.class_name, sample_id=sid, pose_bins=k == 0, manifest=False)
        tables.append(pq.read_table(folder / dsf.ANNOTATIONS / dsf.KEYPOINTS))
    if len(tables) > 1:
        dsio.write_table(folder / dsf.ANNOTATIONS / dsf.KEYPOINTS, pa.concat_tables(tables))


__all__ = [
    "Scene",
    "annotations_from_dataset",
    "car_keypoints",
    "make_scene",
    "random_layout",
    "scene_annotations",
    "shift_bin",
    "swap_left_right",
    "visible",
    "write_annotations",
]
