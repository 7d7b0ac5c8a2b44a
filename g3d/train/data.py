"""Training data: kept images with masks, each with its camera (one per view, or per image) and optionally cropped
round its mask, served as multi-view pairs of one object.

The split is by object (sample_id), never by image: the last ``holdout`` fraction of the sample ids
is held out. Images are decoded once, resized to the training resolution and kept in memory as
uint8 (4 bytes a pixel with the mask: 64 px x 10,000 images is 160 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from g3d.datasets import cameras as dscam
from g3d.datasets import folder as dsf
from g3d.datasets.shards import read_shard
from g3d.datasets.manifest import Manifest, car_ids, read_manifest
from g3d.datasets.schema import decode_png
from g3d.errors import DatasetError, UsageError
from g3d.synth.viewpoints import item_seed


@dataclass
class ViewSet:
    """Cameras of every view at the training resolution: K, R, t float32 [V, ...], and where they came from.

    ``source``: the origin (:data:`g3d.datasets.cameras.ORIGINS`); ``views`` [V]: each view's source
    (:data:`g3d.datasets.cameras.SOURCES`, ``ground_truth``, or None: no camera); ``usable`` bool [V]:
    False for views without a camera to trust (no camera row, ``usable = false``, a rejected or missing
    pose bin), ``why`` [V] says why; training skips their images. Their K, R, t are placeholders."""

    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    source: str
    views: list[str | None] | None = None
    usable: np.ndarray | None = None
    why: list[str | None] | None = None
    problems: list[str] | None = None  # what the camera reader dropped from its input, one line each

    def skipped(self) -> list[int]:
        """View ids whose images training skips."""
        return [] if self.usable is None else [int(v) for v in np.flatnonzero(~self.usable)]

    def skipped_why(self) -> dict[int, str]:
        """View id -> why training skips it."""
        return {v: (self.why[v] if self.why and self.why[v] else "no usable camera") for v in self.skipped()}

    def freedom(self) -> torch.Tensor:
        """float32 [V]: how far training may move each camera, relative to ``camera_lr`` (:data:`CAMERA_FREEDOM`)."""
        if self.views is None:
            return torch.full((self.K.shape[0],), CAMERA_FREEDOM["pose_bin" if self.source == dscam.FROM_POSE_BINS else "sfm"])
        return torch.tensor([CAMERA_FREEDOM.get(s or "pose_bin", 1.0) for s in self.views], dtype=torch.float32)


# How far training may move a camera, by where it came from (a multiple of camera_lr): cameras solved
# from keypoints are within a degree or two, so they get a quarter of the step, and so does the truth;
# pose-bin cameras (a bin's width off, and their elevation assumed) ten times it -- at 1x they moved
# from 17.5 to 14.8 deg median error in 2000 steps, at 10x to 2.6 deg (bench/pipeline.py, bench/README.md).
# A --between image's camera, interpolated from two frozen views' (g3d.datasets.cameras.with_between), is refined per
# image at 1x: the interpolation itself is off by about a degree where the generator's code is not linear in the camera.
CAMERA_FREEDOM = {**{s: 0.25 for s in dscam.TRUSTED}, dscam.TRUTH: 0.25, "pose_bin": 10.0, "sfm_flagged": 10.0, dscam.INTERPOLATED: 1.0}


class Batch(NamedTuple):
    """Images of one batch: ``images`` float [B, 3, H, W] in [0, 1], ``masks`` float [B, 1, H, W], ``cameras`` int64 [B]
    (rows of the data's cameras), ``crop`` float [B, 3, 3] (an image's K is ``crop @ K`` of its camera)."""

    images: torch.Tensor
    masks: torch.Tensor
    cameras: torch.Tensor
    crop: torch.Tensor

    def cameras_from(self, cams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(K [B, 3, 3], R, t) of these images from a camera module (``ViewCameras``: rows -> K, R, t)."""
        K, R, t = cams(self.cameras)
        return self.crop.to(K.dtype) @ K, R, t


def load_cameras(folder: Path, manifest: Manifest, sx: float, sy: float, per_image: bool = False) -> tuple[ViewSet, dscam.DatasetCameras]:
    """The dataset's cameras (:func:`g3d.datasets.cameras.read_cameras`), K scaled by (sx, sy) to the training size.

    One camera per view by default; ``per_image=True`` (g3d train and eval) also takes a camera per image (a
    ``--viewpoints random`` set), in the reader's order (``DatasetCameras.index`` finds an image's).
    """
    cams = dscam.read_cameras(folder, manifest)
    if cams.per_image and not per_image:
        raise UsageError(f"{folder} has a camera per image, and g3d train learns one camera per view: "
                         "train on a dataset with per-view cameras (g3d synth's fixed viewpoints)")
    K = np.diag([sx, sy, 1.0]) @ cams.K
    f32 = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    views = ViewSet(f32(K), f32(cams.R), f32(cams.t), cams.origin, list(cams.sources), cams.usable.copy(), list(cams.why), list(cams.problems))
    return views, cams


def zoom_factor(zoom: float, seed: int, sample_id: int, view_id: int) -> float:
    """The factor, log-uniform in ``[1 / (1 + zoom), 1 + zoom]``, by which one image's fov crop side is multiplied
    (see :class:`PairData`): a pure function of ``(seed, sample_id, view_id)``, so a resumed run crops alike."""
    u = np.random.default_rng([int(seed), int(sample_id), int(view_id), 0x200D]).uniform(-1.0, 1.0)
    return float(np.exp(u * np.log1p(zoom)))


def first_test_sample(samples: int, holdout: float) -> int:
    """The split: objects ``[0, first)`` train, ``[first, samples)`` are held out (at least one when holdout > 0)."""
    n_test = max(1, int(round(samples * holdout))) if samples > 1 and holdout > 0 else 0
    return samples - n_test


def twin_indices(sample_ids, view_ids, lights: int) -> np.ndarray:
    """int64 [N]: for each image (``sample_ids``, ``view_ids`` int [N]) the index of its twin, the same car and view under
    the car's next light in a set of ``lights`` lights per car (g3d synth --lights: samples in groups of ``lights``
    consecutive ids, one car each, :func:`g3d.datasets.manifest.car_ids`), cyclically; -1 where there is none (one light
    per car, or the twin not kept)."""
    s = np.asarray(sample_ids, np.int64)
    v = np.asarray(view_ids, np.int64)
    out = np.full(len(s), -1, np.int64)
    if lights < 2 or not len(s):
        return out
    where = {(a, b): i for i, (a, b) in enumerate(zip(s.tolist(), v.tolist()))}
    first = car_ids(s, lights)
    nxt = first + (s - first + 1) % lights
    for i, (a, b) in enumerate(zip(nxt.tolist(), v.tolist())):
        out[i] = where.get((a, b), -1)
    return out


class PairData:
    """Kept images of one split, in memory at the training resolution, served as multi-view pairs.

    ``crop``: False (whole views), True or "box", or "fov" (:mod:`g3d.train.crop`); ``span``: the fov crop's side
    over the focal length (default: this dataset's width over its focal length; a run's own when it reads other data).
    ``zoom``: with fov crops, each image's crop side is also multiplied by its own factor, log-uniform in
    ``[1 / (1 + zoom), 1 + zoom]`` and drawn from ``(seed, sample, view)`` (:func:`zoom_factor`), its intrinsics changed to
    match exactly: a car's apparent size at one viewpoint then no longer tells its size (training augmentation; 0: off).
    """

    def __init__(self, folder: str | Path, resolution: int = 64, split: str = "train", holdout: float = 0.1,
                 max_images: int | None = None, extra_columns: tuple[str, ...] = (), per_image_cameras: bool = False,
                 crop: bool | str = False, span: float | None = None, zoom: float = 0.0, seed: int = 0) -> None:
        import cv2

        from g3d import cameras as camlib
        from g3d.train.crop import crop_box, crop_image, crop_mode, mask_box

        self.folder = Path(folder)
        manifest = read_manifest(self.folder)
        H0, W0 = manifest.height, manifest.width
        self.width = int(resolution)
        self.crop_mode = crop_mode(crop)
        self.crop = crop = self.crop_mode != "none"
        if zoom and self.crop_mode != "fov":
            raise ValueError("zoom changes the fov crop's side: it needs crop 'fov'")
        self.height = self.width if crop else max(1, round(resolution * H0 / W0))
        sx, sy = self.width / W0, self.height / H0
        self.cameras, found = load_cameras(self.folder, manifest, sx, sy, per_image=per_image_cameras)
        # The fov crop's side over the focal length: the views' own width over their (median usable) focal length.
        fx = found.K[:, 0, 0][found.usable] if found.usable.any() else found.K[:, 0, 0]
        self.span = float(W0 / np.median(fx)) if span is None else float(span)  # a run's own (eval, on other data)
        self.per_image = found.per_image  # cameras per image (a --viewpoints random test set): camera_ids index them
        self.manifest = manifest
        self.first_test = first_test_sample(manifest.samples, holdout)
        want = (lambda s: s < self.first_test) if split == "train" else (lambda s: s >= self.first_test)
        imgs, masks, sids, vids, cids, crops = [], [], [], [], [], []
        # Crops: each image's square box around its mask, resampled to resolution; its intrinsics are
        # M_i @ K with K the camera's at the training scale (sx, sy) and M_i the box's (cameras.crop_intrinsics).
        unscale = np.diag([1.0 / sx, 1.0 / sy, 1.0])
        extra: dict[str, list] = {c: [] for c in extra_columns}
        for path in dsf.shard_paths(self.folder):
            if max_images and len(imgs) >= max_images:
                break
            cols = ["sample_id", "view_id", "keep", "image", "mask"]
            names = set(read_shard(path, schema_only=True).names)
            cols += [c for c in extra_columns if c in names]
            t = read_shard(path, cols)
            if t.column("mask").null_count == t.num_rows:
                raise DatasetError(f"{path.name} has no masks: run `g3d filter {self.folder}` first")
            for r in t.to_pylist():
                if not r["keep"] or not want(r["sample_id"]) or r["mask"] is None:
                    continue
                cam = int(found.index([r["sample_id"]], [r["view_id"]])[0])  # -1: no usable camera
                if cam < 0:  # no camera to trust: see ViewSet
                    continue
                try:
                    img = decode_png(r["image"]["bytes"])
                    m = decode_png(r["mask"]["bytes"], grey=True) == 255  # the object (other labels: other instances)
                except ValueError:
                    raise DatasetError(f"{path.name}: the image or mask of sample {r['sample_id']} view {r['view_id']} does not "
                                       f"decode: run `g3d filter {self.folder}` (it rejects corrupt images)") from None
                if crop:
                    if not m.any():  # nothing to centre on
                        continue
                    fx = float(found.K[cam][0, 0]) * (zoom_factor(zoom, seed, r["sample_id"], r["view_id"]) if zoom else 1.0)
                    box = crop_box(self.crop_mode, mask_box(m), self.span, fx)
                    img, m = crop_image(img, box, self.width), crop_image(m, box, self.width, mask=True)
                    crops.append(camlib.crop_intrinsics(np.eye(3), box, self.width) @ unscale)
                elif img.shape[:2] != (self.height, self.width):
                    img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
                    m = cv2.resize(m.astype(np.float32), (self.width, self.height), interpolation=cv2.INTER_AREA) >= 0.5
                imgs.append(img)
                masks.append(m)
                sids.append(r["sample_id"])
                vids.append(r["view_id"])
                cids.append(cam)
                for c in extra:
                    extra[c].append(r.get(c))
                if max_images and len(imgs) >= max_images:
                    break
        if not imgs:
            raise DatasetError(f"{self.folder} has no kept images with masks in the {split} split: check `g3d info {self.folder}`")
        self.images = torch.from_numpy(np.stack(imgs))  # uint8 [N, H, W, 3]
        self.masks = torch.from_numpy(np.stack(masks))  # bool [N, H, W]
        self.sample_ids = torch.tensor(sids)
        self.view_ids = torch.tensor(vids)
        self.camera_ids = torch.tensor(cids)  # each image's row in self.cameras (its view id, for per-view cameras)
        # float32 [N, 3, 3]: each image's intrinsics are crop_mats[i] @ its camera's K (identity without crops).
        self.crop_mats = torch.tensor(np.stack(crops), dtype=torch.float32) if crop else torch.eye(3).expand(len(imgs), 3, 3)
        # Extra columns (e.g. gt_* truth) as float64 [N] arrays; absent columns are left out.
        self.extra = {c: np.asarray(v, dtype=np.float64) for c, v in extra.items() if v and v[0] is not None}
        by_sample: dict[int, list[int]] = {}
        for i, s in enumerate(sids):
            by_sample.setdefault(s, []).append(i)
        self.groups = [v for v in by_sample.values() if len(v) >= 2]
        # int64 [N]: each image's twin, the same car and view under the car's next light (g3d synth --lights), -1: none
        self.twins = torch.from_numpy(twin_indices(sids, vids, manifest.lights_per_car))
        if not self.groups and split == "train":
            raise DatasetError(f"{self.folder}: no object has two kept views, so no multi-view pairs: synthesise more views or filter less")
        self.resized = (H0, W0) != (self.height, self.width)

    def __len__(self) -> int:
        return len(self.images)

    def pairs(self, seed: int, step: int, rank: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (i [batch], j [batch]): two different kept views of the same object.

        A pure function of (seed, step, rank), so a resumed run sees exactly the batches it would have.
        """
        g = torch.Generator().manual_seed(item_seed(seed, step, stream=1000 + rank))
        gi = torch.randint(len(self.groups), (batch,), generator=g)
        i_idx, j_idx = [], []
        for k in gi.tolist():
            grp = self.groups[k]
            a, b = torch.randperm(len(grp), generator=g)[:2].tolist()
            i_idx.append(grp[a])
            j_idx.append(grp[b])
        return torch.tensor(i_idx), torch.tensor(j_idx)

    def batch(self, idx: torch.Tensor, device) -> "Batch":
        """(images float [B, 3, H, W] in [0, 1], masks float [B, 1, H, W], camera ids int64 [B]: rows of ``self.cameras``,
        the view ids for per-view cameras; crop float [B, 3, 3]: K of image i is crop[i] @ its camera's K)."""
        img = self.images[idx].to(device).permute(0, 3, 1, 2).float() / 255.0
        return Batch(img, self.masks[idx].to(device)[:, None].float(), self.camera_ids[idx].to(device), self.crop_mats[idx].to(device))
