"""What a neural run is built from, all frozen in stage 1 (:class:`Sources`), and what it does with them:
latents drawn at the dataset's viewpoints or between them (:func:`draw_latents`), their cameras
(:class:`ImageCameras`, :func:`cameras_for`), rendered by the generator, and read back by the inverse-graphics
network. Used by the trainer (:mod:`g3d.neural.train`), the pictures (:mod:`g3d.neural.figures`) and the
evaluation (:mod:`g3d.neural.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from g3d.errors import UsageError
from g3d.neural.mapping import LatentLayout, NeuralMapping, camera_features
from g3d.render.dibr import render
from g3d.runfolder import is_run
from g3d.synth.viewpoints import item_seed

CAMERA_SOURCES = ("auto", "views", "truth", "head")  # where the cameras of latents between the dataset's views come from


class Sources:
    """What a batch is made from, all frozen in stage 1: the generator ``G``, the inverse-graphics network
    and its template, the dataset's viewpoint codes float [V, L, w_dim] and each view's camera at the
    inverse network's resolution (K, R, t float [V, ...]) with its features float [V, 4], the latent layout,
    the truncation of the dataset, the image crop (top, bottom, left, right) or None, and the inverse
    network's input size (H, W)."""

    def __init__(self, G, inverse, tpl, codes, K, R, t, layout: LatentLayout, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None, crop=None, size: tuple[int, int] = (64, 64)) -> None:
        from g3d import cameras as camlib

        self.G, self.inverse, self.tpl = G, inverse, tpl
        self.codes = codes.float()
        self.K, self.R, self.t = K.float(), R.float(), t.float()
        az, el, d = camlib.to_azimuth_elevation(R.double().cpu().numpy(), t.double().cpu().numpy())
        self.azimuth_deg, self.elevation_deg, self.distance = az, el, d
        self.cam_features = camera_features(az, el, d)
        self.layout = layout
        self.psi, self.cutoff = float(truncation_psi), truncation_cutoff
        self.crop = crop
        self.H, self.W = size
        self.dataset: str | None = None  # the inverse run's dataset folder, when loaded from a run
        self.run: str | None = None  # the inverse run's folder, when loaded from a run
        # Cameras between the dataset's views: "views" (none: every latent at a dataset view), "truth" (the
        # built-in generator's own decoding of the viewpoint rows) or "head" (the inverse network's camera head
        # on the render); see :func:`resolve_camera_source`.
        self.camera_source = "views"
        self.off_K = self.K.median(0).values  # the intrinsics of a camera between the views, float [3, 3]
        self.off_distance = float(np.median(d))  # the distance given to a camera whose direction alone is known (the head's)

    @property
    def views(self) -> int:
        return int(self.codes.shape[0])

    @property
    def has_light(self) -> bool:
        """Whether the inverse-graphics network predicts the light (trained with --light): the mapping then has a light code."""
        return getattr(self.inverse, "light_head", None) is not None

    @property
    def has_head(self) -> bool:
        """Whether the inverse-graphics network predicts the camera (trained with --camera-head)."""
        return getattr(self.inverse, "camera_head", None) is not None

    def at_views(self, ids: torch.Tensor) -> "ImageCameras":
        """The cameras of dataset views ``ids`` int64 [B]."""
        return ImageCameras(self.cam_features.to(self.K.device)[ids], self.K[ids], self.R[ids], self.t[ids], ids)


@dataclass
class ImageCameras:
    """The cameras of a batch of photos or generator images (not :class:`g3d.train.model.ViewCameras`, a run's
    learnable camera per dataset view): ``features`` float [B, 4] (:func:`camera_features`, what the
    camera MLP reads), ``K``, ``R``, ``t`` float [B, 3, 3], [B, 3, 3], [B, 3] at the inverse network's input size
    (what the predicted silhouette is rendered with), ``ids`` int64 [B]: the dataset view, or -1 for a camera
    between them."""

    features: torch.Tensor
    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    ids: torch.Tensor

    def __getitem__(self, index) -> "ImageCameras":
        return ImageCameras(self.features[index], self.K[index], self.R[index], self.t[index], self.ids[index])


def as_cameras(src: Sources, cams) -> ImageCameras:
    """``cams`` as :class:`ImageCameras`: dataset view ids int64 [B] are looked up; cameras pass through."""
    return cams if isinstance(cams, ImageCameras) else src.at_views(torch.as_tensor(cams, device=src.K.device))


def angle_cameras(src: Sources, azimuth_deg, elevation_deg, distance) -> ImageCameras:
    """Cameras off the dataset's views, looking at the object's origin from (azimuth_deg, elevation_deg, distance)
    (arrays [B]), with the views' median intrinsics."""
    from g3d import cameras as camlib

    az, el, d = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (azimuth_deg, elevation_deg, distance))
    R, t = camlib.from_azimuth_elevation(az, el, d)
    dev = src.K.device
    B = len(az)
    return ImageCameras(camera_features(az, el, d).to(dev), src.off_K.expand(B, 3, 3).clone(), torch.tensor(R, dtype=torch.float32, device=dev),
                       torch.tensor(t, dtype=torch.float32, device=dev), torch.full((B,), -1, dtype=torch.int64, device=dev))


def head_cameras(src: Sources, images: torch.Tensor) -> ImageCameras:
    """The cameras of photos ``images`` float [B, 3, H, W] as the inverse network's camera head predicts them
    (its azimuth and elevation; the dataset's median distance, the object at the centre: the photos are framed
    as the dataset's are)."""
    from g3d.train.camera import head_to_angles

    if not src.has_head:
        raise UsageError(f"the inverse-graphics run {src.run or ''} predicts no camera (trained without --camera-head): "
                         "name each photo's dataset view (PHOTO.png@VIEW), or use a run trained with --camera-head")
    with torch.no_grad():
        az, el = head_to_angles(src.inverse.split(src.inverse(images, with_camera=True), True, False)[3].float())
    az_deg = np.degrees(az.double().cpu().numpy()) % 360.0
    return angle_cameras(src, az_deg, np.degrees(el.double().cpu().numpy()), np.full(len(az_deg), src.off_distance))


def cameras_for(src: Sources, ws: torch.Tensor | None, ids: torch.Tensor, images: torch.Tensor | None = None,
                source: str | None = None) -> ImageCameras:
    """The cameras of images taken at dataset views ``ids`` int64 [B], or between them (-1: a latent of ``ws``
    float [B, num_ws, w_dim] with a viewpoint code of its own, :func:`draw_latents`; or a plain photo). Those come
    from ``source`` (default ``src.camera_source``): "truth", the built-in generator's decoding of ``ws``; "head",
    the camera head on ``images`` (the photos, or the renders of ``ws``)."""
    ids = torch.as_tensor(ids, device=src.K.device)
    off = ids < 0
    if not bool(off.any()):
        return src.at_views(ids)
    cams = src.at_views(ids.clamp(min=0))
    source = source or src.camera_source
    if source == "truth":
        vt = src.G.viewpoint_truth(ws[off][:, list(src.layout.viewpoint_rows)], src.layout.viewpoint_rows)
        new = angle_cameras(src, vt["azimuth_deg"], vt["elevation_deg"], vt["distance"])
    elif source == "head":
        if images is None:
            raise ValueError("cameras from the head need the images")
        new = head_cameras(src, images[off.to(images.device)])
    else:
        raise ValueError(f"images between the dataset's views need a camera source, and this one is {source!r}")
    for k in ("features", "K", "R", "t", "ids"):  # the rows between the views, from their source
        getattr(cams, k)[off] = getattr(new, k).to(getattr(cams, k))
    return cams


def resolve_camera_source(src: Sources, wanted: str, tolerance_deg: float = 2.0) -> str:
    """The camera source of latents between the dataset's views for ``--cameras wanted``:

    - "truth": the built-in generator's decoding of the viewpoint rows; usable when the inverse run's cameras
      are the generator's own (its dataset views' cameras within ``tolerance_deg`` median of the truth: a run on
      sfm-init cameras lives in another frame);
    - "head": the inverse network's camera head (a run trained with --camera-head), for any generator;
    - "views": none, every latent at a dataset view (the camera MLP sees the dataset's cameras only);
    - "auto": truth where usable, else head where there is one, else views.
    A source that cannot be used is a :class:`UsageError` naming the one to pass."""
    if wanted not in CAMERA_SOURCES:
        raise UsageError(f"--cameras {wanted!r}: choose one of {', '.join(CAMERA_SOURCES)}")
    truth_ok, why = False, "its generator is a checkpoint, whose viewpoint codes have no known camera"
    if hasattr(src.G, "viewpoint_truth"):
        vt = src.G.viewpoint_truth(src.codes, src.layout.viewpoint_rows)
        d = np.abs(vt["azimuth_deg"] - src.azimuth_deg) % 360.0
        err = float(np.median(np.minimum(d, 360.0 - d)))
        truth_ok = err <= tolerance_deg
        why = f"its cameras are {err:.1f} deg (median) from the generator's own (cameras from sfm-init live in their own frame)"
    if wanted == "truth" and not truth_ok:
        raise UsageError(f"--cameras truth: the generator's cameras cannot be used for this inverse run: {why}; "
                         "use --cameras head (a run trained with --camera-head) or --cameras views")
    if wanted == "head" and not src.has_head:
        raise UsageError("--cameras head: the inverse-graphics run was trained without --camera-head; "
                         "train it with --camera-head, or use --cameras views")
    if wanted == "auto":
        return "truth" if truth_ok else "head" if src.has_head else "views"
    return wanted

def draw_latents(src: Sources, seed: int, step: int, batch: int, mix: float = 1.0, stream: int = 0,
                 between: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ws float [batch, num_ws, w_dim], view ids int64 [batch]): a pure function of (seed, step, stream, between).

    Each content row group comes from its own latent with chance ``mix`` (else from the first group's),
    truncated as the dataset was; the viewpoint rows are the dataset's code of a random view, or, with chance
    ``between``, a viewpoint code of their own drawn from the generator's viewpoint distribution (its mapping of
    a fresh z, truncated as the dataset was, as `g3d synth --viewpoints random` draws them): view id -1, a
    camera between the dataset's views (:func:`cameras_for`)."""
    L, G = src.layout, src.G
    g = torch.Generator().manual_seed(item_seed(seed, step, stream=2000 + stream))
    views = torch.randint(src.views, (batch,), generator=g)
    z = torch.randn(len(L.groups), batch, G.z_dim, generator=g)
    own = torch.rand(len(L.groups), batch, generator=g) < mix
    z = torch.where(own[..., None], z, z[:1])
    dev = src.codes.device
    ws = G.mapping(z[0].to(dev), src.psi, src.cutoff)
    for k, rows in enumerate(L.groups[1:], start=1):
        ws[:, list(rows)] = G.mapping(z[k].to(dev), src.psi, src.cutoff)[:, list(rows)]
    ws[:, list(L.viewpoint_rows)] = src.codes[views.to(dev)]
    if between > 0:  # drawn after the rest, so between = 0 keeps the latents of earlier runs
        off = torch.rand(batch, generator=g) < between
        zv = torch.randn(batch, G.z_dim, generator=g)
        rows = list(L.viewpoint_rows)
        own_vp = G.mapping(zv.to(dev), src.psi, src.cutoff)[:, rows]
        ws[:, rows] = torch.where(off.to(dev)[:, None, None], own_vp, ws[:, rows])
        views = torch.where(off, torch.full_like(views, -1), views)
    return ws, views.to(dev)


def draw_viewpoints(src: Sources, seed: int, step: int, n: int, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(viewpoint rows float [n, L, w_dim], their camera features float [n, 4]): ``n`` viewpoint codes drawn from
    the generator's viewpoint distribution (as :func:`draw_latents` draws those between the views) with the
    built-in generator's true camera of each; no image is rendered. A pure function of (seed, step, stream)."""
    G, rows = src.G, list(src.layout.viewpoint_rows)
    g = torch.Generator().manual_seed(item_seed(seed, step, stream=3000 + stream))
    with torch.no_grad():
        vp = G.mapping(torch.randn(n, G.z_dim, generator=g).to(src.codes.device), src.psi, src.cutoff)[:, rows]
        vt = G.viewpoint_truth(vp, src.layout.viewpoint_rows)
    return vp, camera_features(vt["azimuth_deg"], vt["elevation_deg"], vt["distance"]).to(vp.device)


def synthesize(src: Sources, ws: torch.Tensor) -> torch.Tensor:
    """ws [B, num_ws, w_dim] -> images float [B, 3, H, W] in [0, 1] as the inverse network sees them
    (the dataset's crop, resized to its input size). Differentiable in ws and the generator's weights."""
    img = (src.G.synthesis(ws, noise_mode="const").float().clamp(-1, 1) + 1) / 2
    if src.crop is not None:
        top, bottom, left, right = src.crop
        img = img[:, :, top:bottom, left:right]
    if img.shape[-2:] != (src.H, src.W):
        img = F.interpolate(img, size=(src.H, src.W), mode="area")
    return img


def read_image(src: Sources, images: torch.Tensor, cams):
    """What the mapping reads from photos taken with cameras ``cams`` (:class:`ImageCameras`, or dataset view ids
    int64 [B]): (camera features [B, 4], verts [B, V, 3], texture [B, 3, T, T], background [B, 3, H, W], mask
    float [B, 1, H, W], light float [B, 4] or None). The background is the photo with the predicted mesh's silhouette
    (rendered at the photo's camera) blacked out; the light (a ``--light`` inverse run's: the unit direction towards
    it in the object frame, then the ambient) is None where the inverse network predicts none."""
    cams = as_cameras(src, cams)
    light = None
    if src.has_light:
        from g3d.train.light import head_to_light

        verts, tex, _, _, raw = src.inverse.split(src.inverse(images, with_light=True), False, True)
        direction, ambient = head_to_light(raw)
        light = torch.cat([direction, ambient[:, None]], 1)
    else:
        verts, tex, _ = src.inverse(images)
    out = render(verts.float(), src.tpl.faces, cams.K, cams.R, cams.t, src.H, src.W, silhouette=False)
    mask = out.fragments.mask[:, None].float()
    return cams.features, verts, tex, images * (1 - mask), mask, light


def load_sources(inverse_run: str | Path, generator: str = "builtin", device: str = "cpu") -> Sources:
    """The frozen parts of a neural run: the inverse-graphics run, its dataset's viewpoint codes and
    cameras, and the generator the dataset was made with (rebuilt for "builtin")."""
    from g3d.datasets import folder as dsf
    from g3d.datasets.manifest import read_manifest
    from g3d.synth.checkpoints import load_generator
    from g3d.synth.viewpoints import load_viewpoints
    from g3d.train.loop import load_run

    run = Path(inverse_run)
    if not is_run(run):
        raise UsageError(f"--inverse {run} is not an inverse-graphics run (no config.json or checkpoints/last.pt): "
                         f"pass a folder written by `g3d train DATASET --out RUN`")
    cfg, inverse, cams, tpl, _ = load_run(run, device)
    if cfg.crop:
        raise UsageError(f"--inverse {run} was trained on crops round each object's mask (g3d train --crop), and the neural renderer "
                         "reads whole views: pass a run trained without --crop")
    folder = Path(cfg.folder)
    manifest = read_manifest(folder)
    gen = manifest.generator
    if generator == "builtin":
        if not gen.is_builtin:
            raise UsageError(f"the dataset of {run} ({folder}) was made with a {gen.format} generator, not the built-in one: "
                             "pass --generator CHECKPOINT, the checkpoint g3d synth used")
        from g3d.synth.builtin import BuiltinGenerator

        G = BuiltinGenerator.from_record(gen.fields, distractors=0.0).to(device)
    else:
        G = load_generator(generator, device=device)
    vp_path = folder / dsf.VIEWPOINTS
    if not vp_path.is_file():
        raise UsageError(f"{folder} has no {dsf.VIEWPOINTS}: the neural renderer needs a dataset written by g3d synth")
    layers = tuple(manifest.viewpoint_layers)
    if G.num_ws <= max(layers) or (gen.get("num_ws") and gen.get("num_ws") != G.num_ws):
        raise UsageError(f"--generator has {G.num_ws} ws rows but the dataset of {run} was made with {gen.get('num_ws')}: "
                         "pass the generator that made the dataset")
    vp = load_viewpoints(str(vp_path), G.w_dim, layers)
    layout = LatentLayout.of(G, layers)
    with torch.no_grad():
        K, R, t = cams(torch.arange(cams.K.shape[0], device=cams.K.device))
    if manifest.between_views:  # a camera per image (g3d synth --between): the frozen views' are those of car 0's frozen images
        from g3d.datasets.cameras import read_cameras

        V = manifest.frozen_views
        rows = read_cameras(folder, manifest).index(np.zeros(V, np.int64), np.arange(V))
        if len(rows) != V or (rows < 0).any() or int(rows.max()) >= K.shape[0]:
            raise UsageError(f"the cameras of {run} do not hold every frozen view of {folder} (car 0's): train it again on this dataset")
        idx = torch.as_tensor(rows, device=K.device)
        K, R, t = K[idx], R[idx], t[idx]
    crop = (manifest.fingerprint or {}).get("crop")
    inverse.requires_grad_(False).eval()
    G.requires_grad_(False)
    src = Sources(G, inverse, tpl, torch.as_tensor(vp.codes, dtype=torch.float32, device=device), K, R, t, layout, manifest.truncation_psi,
                   manifest.truncation_cutoff, tuple(crop) if crop else None, (max(1, round(cfg.resolution * manifest.height / manifest.width)), int(cfg.resolution)))
    src.dataset, src.run = str(folder), str(run)
    return src


def build_mapping(src: Sources, hidden: int, shape_modes: int = 8, gate_per: str = "row") -> NeuralMapping:
    """A fresh (uncalibrated) mapping network for ``src``'s latent layout and template."""
    return NeuralMapping(src.layout, src.tpl.verts.shape[0], src.G.w_avg.reshape(-1)[: src.layout.w_dim], hidden, shape_modes, gate_per,
                         light=src.has_light)
