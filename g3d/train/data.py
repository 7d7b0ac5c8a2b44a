"""Training data: kept images with masks, one camera per view, multi-view pairs of one object.

The split is by object (sample_id), never by image: the last ``holdout`` fraction of the sample ids
is held out. Images are decoded once, resized to the training resolution and kept in memory as
uint8 (4 bytes a pixel with the mask: 64 px x 10,000 images is 160 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from g3d.datasets import folder as dsf
from g3d.datasets.schema import decode_png
from g3d.datasets.shards import read_shard
from g3d.errors import DatasetError
from g3d.sfm.pipeline import TRUSTED  # the cameras.parquet sources solved from keypoints
from g3d.synth.viewpoints import item_seed


@dataclass
class ViewSet:
    """Cameras of every view at the training resolution: K, R, t float32 [V, ...], and their source.

    ``views`` (cameras.parquet only): each view's ``source`` as g3d sfm-init wrote it (None: no row).
    ``usable`` bool [V]: False for views without a camera row or marked ``usable = false`` (the keypoints
    contradict the written camera); training skips their images. Their K, R, t are placeholders."""

    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    source: str
    views: list[str | None] | None = None
    usable: np.ndarray | None = None

    def skipped(self) -> list[int]:
        """View ids whose images training skips."""
        return [] if self.usable is None else [int(v) for v in np.flatnonzero(~self.usable)]

    def freedom(self) -> torch.Tensor:
        """float32 [V]: how far training may move each camera, relative to ``camera_lr`` (:data:`CAMERA_FREEDOM`)."""
        if self.views is None:
            return torch.full((self.K.shape[0],), CAMERA_FREEDOM["pose_bin" if self.source == "pose bins" else "sfm"])
        return torch.tensor([CAMERA_FREEDOM.get(s or "pose_bin", 1.0) for s in self.views], dtype=torch.float32)


# How far training may move a camera, by where it came from (a multiple of camera_lr): cameras solved
# from keypoints are within a degree or two, so they get a quarter of the step; pose-bin cameras (a
# bin's width off, and their elevation assumed) ten times it -- at 1x they moved from 17.5 to 14.8 deg
# median error in 2000 steps, at 10x to 2.6 deg (bench/pipeline.py, bench/README.md).
CAMERA_FREEDOM = {**{s: 0.25 for s in TRUSTED}, "pose_bin": 10.0, "sfm_flagged": 10.0}


def true_cameras(folder: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The generator's cameras of every view, (K [V, 3, 3], R [V, 3, 3], t [V, 3]) float64 at the stored
    size, from the image rows; None for datasets without ground truth."""
    if not manifest.get("ground_truth"):
        return None
    V = manifest["views"]
    first = read_shard(dsf.shard_paths(folder)[0], folder, ["view_id", "K", "R", "t"]).to_pandas().drop_duplicates("view_id")
    if len(first) < V:
        import pandas as pd

        first = pd.concat([read_shard(p, folder, ["view_id", "K", "R", "t"]).to_pandas() for p in dsf.shard_paths(folder)]).drop_duplicates("view_id")
    first = first.sort_values("view_id")
    K = np.stack([np.reshape(k, (3, 3)) for k in first.K])
    R = np.stack([np.reshape(r, (3, 3)) for r in first.R])
    return K, R, np.stack(list(first.t))


def load_cameras(folder: Path, manifest: dict, width: int, height: int, sx: float, sy: float) -> ViewSet:
    """One camera per view: ``cameras.parquet`` (g3d sfm-init), else the generator's truth, else pose bins."""
    import pyarrow.parquet as pq

    from g3d import cameras
    from g3d.classes import get_preset

    V = manifest["views"]
    scale = np.diag([sx, sy, 1.0])
    views = usable = None
    if (folder / dsf.CAMERAS).is_file():
        t = pq.read_table(folder / dsf.CAMERAS).to_pandas().sort_values("view_id")
        ids = t.view_id.to_numpy().astype(np.int64)
        if len(t) == 0 or ids.min() < 0 or ids.max() >= V or len(np.unique(ids)) != len(ids):
            raise DatasetError(f"{folder / dsf.CAMERAS} has {len(t)} cameras with view ids outside 0..{V - 1} or repeated: rerun g3d sfm-init")
        K = np.broadcast_to(np.reshape(t.K.iloc[0], (3, 3)), (V, 3, 3)).copy()
        R = np.broadcast_to(np.eye(3), (V, 3, 3)).copy()
        tt = np.tile([0.0, 0.0, 4.0], (V, 1))
        K[ids] = np.stack([np.reshape(k, (3, 3)) for k in t.K])
        R[ids] = np.stack([np.reshape(r, (3, 3)) for r in t.R])
        tt[ids] = np.stack(list(t.t))
        views = [None] * V
        for v, s in zip(ids, t.source if "source" in t else ["sfm"] * len(t)):
            views[v] = str(s)
        usable = np.zeros(V, bool)
        usable[ids] = t.usable.to_numpy().astype(bool) if "usable" in t else True  # files before the column: every row
        source = "cameras.parquet"
    elif manifest.get("ground_truth"):
        K, R, tt = true_cameras(folder, manifest)
        source = "ground truth"
    elif (folder / dsf.ANNOTATIONS / "pose_bins.parquet").is_file():
        pb = pq.read_table(folder / dsf.ANNOTATIONS / "pose_bins.parquet").to_pandas().sort_values("view_id")
        preset = get_preset(manifest["class"])
        az = np.zeros(V)
        el = np.zeros(V)
        az[pb.view_id.to_numpy()] = pb.azimuth_deg.to_numpy()
        el[pb.view_id.to_numpy()] = pb.elevation_deg.to_numpy()
        R, tt = cameras.from_azimuth_elevation(az, el, np.full(V, preset.distance))
        K = np.broadcast_to(cameras.intrinsics(manifest["width"], manifest["height"], preset.fov_deg), (V, 3, 3))
        source = "pose bins"
    else:
        raise DatasetError(
            f"{folder} has no cameras: run `g3d sfm-init {folder}` (or `g3d annotate pull` for pose bins) first"
        )
    K = scale @ K
    return ViewSet(torch.tensor(K, dtype=torch.float32), torch.tensor(R, dtype=torch.float32), torch.tensor(tt, dtype=torch.float32), source,
                   views, usable)


def first_test_sample(samples: int, holdout: float) -> int:
    """The split: objects ``[0, first)`` train, ``[first, samples)`` are held out (at least one when holdout > 0)."""
    n_test = max(1, int(round(samples * holdout))) if samples > 1 and holdout > 0 else 0
    return samples - n_test


class PairData:
    """Kept images of one split, in memory at the training resolution, served as multi-view pairs."""

    def __init__(self, folder: str | Path, resolution: int = 64, split: str = "train", holdout: float = 0.1,
                 max_images: int | None = None, extra_columns: tuple[str, ...] = ()) -> None:
        import cv2

        self.folder = Path(folder)
        manifest = dsf.read_manifest(self.folder)
        H0, W0 = manifest["height"], manifest["width"]
        self.width = int(resolution)
        self.height = max(1, round(resolution * H0 / W0))
        sx, sy = self.width / W0, self.height / H0
        self.cameras = load_cameras(self.folder, manifest, self.width, self.height, sx, sy)
        self.manifest = manifest
        self.first_test = first_test_sample(manifest["samples"], holdout)
        want = (lambda s: s < self.first_test) if split == "train" else (lambda s: s >= self.first_test)
        imgs, masks, sids, vids = [], [], [], []
        extra: dict[str, list] = {c: [] for c in extra_columns}
        for path in dsf.shard_paths(self.folder):
            if max_images and len(imgs) >= max_images:
                break
            cols = ["sample_id", "view_id", "keep", "image", "mask"]
            names = set(read_shard(path, self.folder, schema_only=True).names)
            cols += [c for c in extra_columns if c in names]
            t = read_shard(path, self.folder, cols)
            if t.column("mask").null_count == t.num_rows:
                raise DatasetError(f"{path.name} has no masks: run `g3d filter {self.folder}` first")
            usable = self.cameras.usable
            for r in t.to_pylist():
                if not r["keep"] or not want(r["sample_id"]) or r["mask"] is None:
                    continue
                if usable is not None and not usable[r["view_id"]]:  # no camera to trust: see ViewSet
                    continue
                try:
                    img = decode_png(r["image"]["bytes"])
                    m = decode_png(r["mask"]["bytes"], grey=True) == 255  # the object (other labels: other instances)
                except ValueError:
                    raise DatasetError(f"{path.name}: the image or mask of sample {r['sample_id']} view {r['view_id']} does not "
                                       f"decode: run `g3d filter {self.folder}` (it rejects corrupt images)") from None
                if img.shape[:2] != (self.height, self.width):
                    img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
                    m = cv2.resize(m.astype(np.float32), (self.width, self.height), interpolation=cv2.INTER_AREA) >= 0.5
                imgs.append(img)
                masks.append(m)
                sids.append(r["sample_id"])
                vids.append(r["view_id"])
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
        # Extra columns (e.g. gt_* truth) as float64 [N] arrays; absent columns are left out.
        self.extra = {c: np.asarray(v, dtype=np.float64) for c, v in extra.items() if v and v[0] is not None}
        by_sample: dict[int, list[int]] = {}
        for i, s in enumerate(sids):
            by_sample.setdefault(s, []).append(i)
        self.groups = [v for v in by_sample.values() if len(v) >= 2]
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

    def batch(self, idx: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images float [B, 3, H, W] in [0, 1], masks float [B, 1, H, W], view ids int64 [B])."""
        img = self.images[idx].to(device).permute(0, 3, 1, 2).float() / 255.0
        return img, self.masks[idx].to(device)[:, None].float(), self.view_ids[idx].to(device)
