"""``g3d eval``: held-out objects scored beside the answers they must beat and the truth they approach.

Every figure comes with its degenerate answers, measured on the same images in the same way:

- ``iou``: 2D IoU of the predicted mesh re-projected in the input view against the mask;
  ``swap_iou``: the same images scored with *another held-out object's* prediction (objects paired
  by a fixed derangement, same view where it exists); ``mean_pred_iou``: one average predicted mesh
  for every image; ``template_iou``: the untrained template. A network that ignores its input has
  ``iou == swap_iou == mean_pred_iou``.
- On built-in data (exact truth), the ceilings: ``true_iou`` (the true mesh through the same
  renderer and measurement) and ``mean_true_iou`` (the mean of the *training* objects' true meshes:
  "always answer the average car"); Chamfer distances of the outer surfaces (points seen from 42
  directions around the object, :class:`OuterSurface`), own prediction against its
  own true mesh, against another object's true mesh and against the mean true mesh; correlations over
  the held-out objects of predicted size (extent of the surface along x, y, z: width, height, length,
  as the 2-98% range of surface samples) with the true mesh's, and of the predicted texture colour (the rendered texture averaged inside the
  mask) with the true paint colour, each with its swapped-pairing baseline, and for colour the
  ceiling of the input image's own colour inside the mask (shading, glass and tyres keep it below 1).
  Size and colour are averaged over an object's held-out views first: the truth is per object.
- ``novel``: each answer for image i rendered with the camera of up to NOVEL_VIEWS other images of the same
  object, against their masks: the 3D shape and size, not just the input view's silhouette. On a
  ``--viewpoints random`` test set (each image its own camera) this is the figure a photo from anywhere asks.
- Per body type (built-in version 2 data): each IoU above over the held-out images of one type, so a
  network that answers every pickup with a sedan shows where the average hides it.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from g3d.datasets import folder as dsf
from g3d.datasets.manifest import car_ids, read_manifest
from g3d.errors import UsageError
from g3d.render.dibr import render
from g3d.train.camera import head_to_angles, view_direction
from g3d.train.crop import crop_mode, run_span
from g3d.train.data import PairData, load_cameras
from g3d.train.light import LIGHT_COLUMNS, head_to_light, head_to_specular, lighting_of, true_light
from g3d.train.loop import load_run
from g3d.train.model import ViewCameras

AXES = ("width", "height", "length")  # mesh extent along x, y, z of the object frame
PAINT = ("gt_paint_hue", "gt_paint_saturation", "gt_paint_value")
SPECULAR = "gt_specular"  # the built-in paint's specular strength
BODY_TYPE = "gt_body_type"  # the built-in generator's body type (version 2): an index into BODY_TYPES


@dataclass
class EvalReport:
    images: int
    objects: int
    cameras: str  # "run" (the run's own cameras, as refined, on its own dataset) or "dataset" (another dataset's cameras)
    iou: float  # mean 2D IoU of the predicted mesh re-projected in the input view vs the mask
    swap_iou: float  # the same images scored with another held-out object's prediction
    mean_pred_iou: float  # ... with the mean predicted mesh
    template_iou: float  # ... with the untrained template
    per_view: dict[int, float]
    held_out: list[int] = field(default_factory=list)  # the object (sample) ids scored
    true_iou: float | None = None  # ceiling: the true mesh (built-in data)
    mean_true_iou: float | None = None  # the mean true mesh of the training objects
    chamfer: float | None = None  # prediction vs its own true mesh (object units, outer-surface samples)
    chamfer_other: float | None = None  # prediction vs another held-out object's true mesh
    chamfer_mean_true: float | None = None  # prediction vs the mean true mesh
    mean_true_chamfer: float | None = None  # the mean true mesh vs each true mesh ("always the average car")
    template_chamfer: float | None = None
    true_chamfer: float | None = None  # the true mesh measured against itself from turned directions: the floor
    size_corr: dict[str, float] = field(default_factory=dict)  # Pearson r over objects, predicted vs true extent per axis
    size_corr_swap: dict[str, float] = field(default_factory=dict)
    size_spread: dict[str, float] = field(default_factory=dict)  # std(predicted extent) / std(true extent)
    color_corr: list[float] | None = None  # Pearson r over objects per RGB channel, texture colour in the mask vs paint
    color_corr_swap: list[float] | None = None
    color_corr_image: list[float] | None = None  # ceiling: the input image's colour in the mask vs paint
    truth_frame: str | None = None  # how the true meshes were put in the cameras' frame (None: the same frame)
    per_type: dict[str, dict[str, float]] = field(default_factory=dict)  # built-in body type -> images and each answer's IoU
    # Novel-view IoU: each answer for image i (iou = the prediction, swap, mean_pred, true, mean_true) rendered with the
    # camera of another image j of the same object, against j's mask (up to NOVEL_VIEWS such j per image).
    novel: dict[str, float] = field(default_factory=dict)
    novel_pairs: int = 0
    # The network's own camera (--camera-head): median azimuth / elevation error (deg) and relative distance error, each
    # beside a constant camera (the circular mean azimuth, the median elevation); input-view IoU through the camera it gives.
    camera: dict[str, float] = field(default_factory=dict)
    # The network's light (--light; built-in data): g3d.train.light.light_figures, beside the mean light.
    light: dict = field(default_factory=dict)
    # A set of cars under several lights (g3d synth --lights): albedo consistency and relighting (relight_figures).
    relight: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The report as printed by ``g3d eval``: each figure beside its baselines and ceilings."""
        out = [f"held-out: {self.images} images of {self.objects} objects (cameras: {self.cameras})"]
        ceil = ""
        if self.true_iou is not None:
            ceil = f" | ceilings: true mesh {self.true_iou:.3f}, mean true mesh {self.mean_true_iou:.3f}"
        out.append(f"2D IoU {self.iou:.3f} | swapped pairing {self.swap_iou:.3f}, mean prediction {self.mean_pred_iou:.3f}, "
                   f"template {self.template_iou:.3f}{ceil}")
        if self.novel:
            nv = self.novel
            ceil_n = f" | ceilings: true mesh {nv['true']:.3f}, mean true mesh {nv['mean_true']:.3f}" if "true" in nv else ""
            out.append(f"novel-view IoU {nv['iou']:.3f} ({self.novel_pairs} pairs: one image's answer in another view of its object) | "
                       f"swapped pairing {nv['swap']:.3f}, mean prediction {nv['mean_pred']:.3f}{ceil_n}")
        if self.camera:
            c = self.camera
            h, k = c["head"], c["const_refined"]
            out.append(f"predicted camera (g3d predict's: the head's, refined by render and compare): azimuth error {c['az_deg']:.1f} deg, "
                       f"elevation {c['el_deg']:.1f} deg (median), distance {100 * c['distance_rel']:.1f}%, off by > 90 deg {100 * c['flipped']:.1f}%; "
                       f"input-view IoU through it {c['iou']:.3f} (through the true camera {self.iou:.3f}; {c['images']} images)")
            out.append(f"  the head alone: {h['az_deg']:.1f} / {h['el_deg']:.1f} deg, {100 * h['flipped']:.1f}% off by > 90 deg, IoU {h['iou']:.3f} | "
                       f"a constant camera {c['az_deg_const']:.1f} / {c['el_deg_const']:.1f} deg, refined the same way {k['az_deg']:.1f} / "
                       f"{k['el_deg']:.1f} deg, IoU {k['iou']:.3f}")
        if self.light:
            g = self.light
            out.append(f"light: {g['note']}" if "note" in g else
                       f"light direction error {g['dir_deg']:.1f} deg (median) | the mean light {g['dir_deg_mean']:.1f} deg; "
                       + (f"on the {g['far_images']} photos lit {FAR_LIGHT_DEG:.0f}+ deg from the mean light {g['dir_deg_far']:.1f} | "
                          f"{g['dir_deg_far_mean']:.1f} deg; " if g.get("far_images") else "")
                       + f"ambient r {g['ambient_r']:.2f}, error {g['ambient_err']:.3f} | the mean ambient {g['ambient_err_mean']:.3f}"
                       + (f"; material: shininess {g['shininess']:.1f} (learned)" if "shininess" in g else "")
                       + (f", specular strength r {g['specular_r']:.2f} against the paint's (0: a constant)" if "specular_r" in g else ""))
        if self.relight:
            g = self.relight
            out.append(f"albedo consistency (colour L1 in the mask between the textures from photos of one car and view under two "
                       f"lights, each drawn unshaded; {g['pairs']} pairs) {g['albedo']:.4f} | another car's {g['albedo_other']:.4f}")
            if "relight" in g:
                out.append(f"relighting error (the answer from photo A {'shaded by' if g['lit'] else 'as it is, the light baked in, for'} "
                           f"photo B's true light vs photo B, colour L1 in the mask) {g['relight']:.4f} | the same for photo A itself "
                           f"{g['relight_own']:.4f}")
            else:
                out.append(f"relighting: {g['note']}")
        if self.truth_frame:
            out.append(f"true meshes: {self.truth_frame}")
        if self.chamfer is not None:
            out.append(f"Chamfer (outer surfaces) to own true mesh {self.chamfer:.4f} | to another object's {self.chamfer_other:.4f}, "
                       f"to the mean true mesh {self.chamfer_mean_true:.4f}; mean true mesh itself {self.mean_true_chamfer:.4f}, "
                       f"template {self.template_chamfer:.4f}, true mesh (the measurement's floor) {self.true_chamfer:.4f}")
        if self.size_corr:
            out.append("size r (pred vs true extent) " + ", ".join(
                f"{a} {self.size_corr[a]:.2f} (swap {self.size_corr_swap[a]:.2f}, spread {self.size_spread[a]:.2f})" for a in AXES))
        if self.color_corr is not None:
            f = lambda v: "/".join(f"{x:.2f}" for x in v)  # noqa: E731
            out.append(f"paint colour r (R/G/B) {f(self.color_corr)} | swap {f(self.color_corr_swap)}, "
                       f"ceiling (input image) {f(self.color_corr_image)}")
        if self.per_type:
            out.append("per body type (IoU in the input view):")
        for name, d in self.per_type.items():
            out.append(f"  {name} ({int(d['images'])} images): IoU {d['iou']:.3f} | swapped {d['swap']:.3f}, mean prediction "
                       f"{d['mean_pred']:.3f} | true mesh {d['true']:.3f}, mean true mesh {d['mean_true']:.3f}")
        if self.per_view:
            out.append("per view: " + ", ".join(f"v{v} {i:.3f}" for v, i in self.per_view.items()))
        return out


class TrueMeshes:
    """True car meshes (object frame) of the built-in generator, rebuilt from the stored latents.

    ``load`` returns None for other generators. Meshes depend on the object only (the camera rows do
    not change them), so they are built per sample id: ``verts(ids)`` float [N, Vt, 3], ``faces`` [Ft, 3]; in a
    ``g3d synth --lights`` set from the car's latent (its group's first sample's), not the sample's own.
    """

    @staticmethod
    def load(folder: Path) -> "TrueMeshes | None":
        manifest = read_manifest(folder)
        return TrueMeshes(folder, manifest) if manifest.generator.is_builtin else None

    def __init__(self, folder: Path, manifest: dict) -> None:
        import pyarrow.parquet as pq

        from g3d.synth.builtin import BuiltinGenerator

        self.G = BuiltinGenerator.from_record(manifest.generator.fields, resolution=32, distractors=0.0)  # meshes only: any size
        self.manifest = manifest
        self.z = pq.read_table(folder / dsf.SAMPLES).to_pandas().set_index("sample_id")
        self.faces = None

    @torch.no_grad()
    def verts(self, sample_ids) -> torch.Tensor:
        m = self.manifest
        zs = torch.tensor(np.stack([self.z.loc[c, "z"] for c in car_ids(sample_ids, m.lights_per_car).tolist()]), dtype=torch.float32)
        ws = self.G.mapping(zs, m.truncation_psi, m.truncation_cutoff)
        mesh, _, _ = self.G.build_mesh(self.G.parameters_of(ws))
        self.faces = mesh.faces
        return mesh.verts.float()


def surface_points(verts: torch.Tensor, faces: torch.Tensor, n: int = 1024, seed: int = 0) -> torch.Tensor:
    """Area-weighted surface samples float [B, n, 3] of meshes ``verts`` [B, V, 3] sharing ``faces`` [F, 3].

    A fixed generator, so the same mesh always gives the same points.
    """
    g = torch.Generator().manual_seed(seed)
    a, b, c = verts[:, faces[:, 0]], verts[:, faces[:, 1]], verts[:, faces[:, 2]]
    area = torch.linalg.cross(b - a, c - a).norm(dim=-1)  # [B, F]
    u = torch.rand(verts.shape[0], n, 2, generator=g).to(verts)
    choice = torch.multinomial(area.cpu() + 1e-12, n, replacement=True, generator=g).to(verts.device)  # [B, n]
    flip = u.sum(-1, keepdim=True) > 1
    u = torch.where(flip, 1 - u, u)
    pick = lambda x: torch.gather(x, 1, choice[..., None].expand(-1, -1, 3))  # noqa: E731
    pa, pb, pc = pick(a), pick(b), pick(c)
    return pa + u[..., :1] * (pb - pa) + u[..., 1:] * (pc - pa)


def outer_directions(level: int = 1, max_elevation: float = 85.0, min_elevation: float = -90.0) -> tuple[np.ndarray, np.ndarray]:
    """Viewing directions spread over the whole sphere (the vertices of a level-``level`` icosphere:
    42 at level 1) as (azimuth_deg, elevation_deg) float64 [D] each, elevation clipped to +-``max_elevation``
    (a camera looking straight down has no up direction). Directions below ``min_elevation`` are left
    out (0: only what a camera above the ground sees; the 25 of 42 with elevation >= 0)."""
    from g3d.train.template import icosphere

    d, _ = icosphere(level)
    az = np.degrees(np.arctan2(d[:, 0], d[:, 2]))
    el = np.degrees(np.arcsin(np.clip(d[:, 1], -1, 1)))
    keep = el >= min_elevation - 1e-9
    return az[keep], np.clip(el[keep], -max_elevation, max_elevation)


@functools.lru_cache(maxsize=8)
def _outer_cameras(resolution: int, distance: float, fov_deg: float, azimuth_offset: float,
                   min_elevation: float = -90.0) -> tuple[torch.Tensor, ...]:
    """(K [D, 3, 3], R [D, 3, 3], t [D, 3]) float32 of the :func:`outer_directions` cameras, made once per setting."""
    from g3d import cameras as camlib

    az, el = outer_directions(min_elevation=min_elevation)
    R, t = camlib.from_azimuth_elevation(az + azimuth_offset, el, distance)
    K = np.broadcast_to(camlib.intrinsics(resolution, resolution, fov_deg), R.shape)
    return tuple(torch.tensor(np.ascontiguousarray(x), dtype=torch.float32) for x in (K, R, t))


def outer_pool(verts: torch.Tensor, faces: torch.Tensor, resolution: int = 64, distance: float = 4.0,
               fov_deg: float = 40.0, azimuth_offset: float = 0.0, min_elevation: float = -90.0) -> torch.Tensor:
    """Points float [P, 3] on the surface *seen from outside* of one mesh ``verts`` [V, 3], ``faces`` [F, 3].

    The mesh is rasterized from the 42 directions of :func:`outer_directions` (turned by
    ``azimuth_offset`` degrees; ``resolution`` px, ``distance`` from the object-frame origin); every covered
    pixel gives the surface point under it (its visible face, barycentric weights). Faces no camera
    outside can see -- the inner halves of the built-in cars' tyres, the greenhouse floor inside the
    body -- give none, so a closed surface is not charged for structure that no image could show.
    Surfaces count by how much of the views they fill, the same way for every mesh measured.
    ``min_elevation`` 0 keeps only the cameras above the ground: the surface a photo of an object standing
    on the ground can show (not the underside).
    """
    from g3d.render.dibr import to_camera
    from g3d.render.rasterize import rasterize

    K, R, t = (x.to(verts.device) for x in _outer_cameras(resolution, distance, fov_deg, azimuth_offset, min_elevation))
    D = R.shape[0]
    frags = rasterize(to_camera(verts[None].expand(D, -1, -1), R, t), faces, K, resolution, resolution)
    hit = frags.face_id >= 0
    if not bool(hit.any()):
        raise ValueError("outer_pool: the mesh covers no pixel in any view (empty, or far from the origin)")
    return (frags.bary[hit][..., None] * verts[faces[frags.face_id[hit]]]).sum(1)


class OuterSurface:
    """The outer surface of one mesh (:func:`outer_pool`): all its points in a KD-tree, for exact nearest
    distances to it, and ``n`` of them drawn with a fixed generator (``seed``), to measure from it.

    ``verts`` float [V, 3], ``faces`` int64 [F, 3]. ``samples`` float64 [n, 3]."""

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor, n: int = 2048, seed: int = 0, azimuth_offset: float = 0.0,
                 min_elevation: float = -90.0) -> None:
        from scipy.spatial import cKDTree

        pool = outer_pool(verts.detach().float(), faces, azimuth_offset=azimuth_offset, min_elevation=min_elevation).cpu().double().numpy()
        self.tree = cKDTree(pool)
        self.samples = pool[np.random.default_rng(seed).integers(0, len(pool), n)]

    def distance_from(self, points: np.ndarray) -> np.ndarray:
        """Distance float64 [P] of each of ``points`` [P, 3] to the nearest point of this surface."""
        return self.tree.query(points)[0]


def outer_chamfer(a: OuterSurface, b: OuterSurface) -> float:
    """Symmetric Chamfer distance of two outer surfaces: the mean distance of a's samples to b's surface
    and of b's samples to a's, averaged (object units; 0 for the same mesh measured twice)."""
    return 0.5 * float(b.distance_from(a.samples).mean() + a.distance_from(b.samples).mean())


def extent(points: torch.Tensor, q: float = 0.02) -> torch.Tensor:
    """Size of point sets [B, P, 3] along x, y, z: the ``q`` to ``1 - q`` quantile range, float [B, 3].

    Robust to thin slivers that no image pixel sees (a mesh's max - min is not)."""
    return torch.quantile(points, 1 - q, dim=1) - torch.quantile(points, q, dim=1)



def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of two 1-D arrays; 0 where either is constant (a constant answer carries no information)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    sx, sy = x.std(), y.std()
    if sx < 1e-12 or sy < 1e-12:
        return 0.0
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles in degrees between unit vectors a, b float [N, 3]."""
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


FAR_LIGHT_DEG = 45.0  # photos whose light is this far from the mean light are scored apart (the bar)


def light_figures(pred_dir: np.ndarray, pred_amb: np.ndarray, true_dir: np.ndarray, true_amb: np.ndarray) -> dict[str, float]:
    """The predicted light against the truth, beside the mean light (the degenerate answer: the mean true
    direction, normalised, for every photo): median angular error of the direction (deg), over every photo and
    over those whose light is :data:`FAR_LIGHT_DEG` or more from the mean light (``*_far``, ``far_images`` of
    them: there the mean light is no answer), and the ambient's Pearson r and mean absolute error beside the
    mean ambient's error."""
    mean_dir = true_dir.mean(0)
    mean_dir = mean_dir / max(np.linalg.norm(mean_dir), 1e-12)
    r = pearson(pred_amb, true_amb)
    err, err_mean = angle_deg(pred_dir, true_dir), angle_deg(np.broadcast_to(mean_dir, true_dir.shape), true_dir)
    far = err_mean >= FAR_LIGHT_DEG  # the photos where answering the mean light is badly wrong
    return {"dir_deg": float(np.median(err)), "dir_deg_mean": float(np.median(err_mean)),
            "far_images": int(far.sum()), "dir_deg_far": float(np.median(err[far])) if far.any() else float("nan"),
            "dir_deg_far_mean": float(np.median(err_mean[far])) if far.any() else float("nan"),
            "ambient_r": r, "ambient_err": float(np.abs(pred_amb - true_amb).mean()),
            "ambient_err_mean": float(np.abs(true_amb.mean() - true_amb).mean())}


def per_type_iou(scores: dict[str, np.ndarray], body_type: np.ndarray | None) -> dict[str, dict[str, float]]:
    """Each answer's mean IoU per built-in body type, in BODY_TYPES order ({} without a ``gt_body_type`` column).

    ``scores``: answer -> float [N] per-image IoU (``iou``, ``swap``, ``mean_pred``, ``true``, ``mean_true``);
    ``body_type``: float [N] type index per image. A type no held-out image has is left out.
    """
    if body_type is None:
        return {}
    from g3d.synth.builtin import BODY_TYPES

    kinds = np.asarray(body_type).round().astype(int)
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(BODY_TYPES):
        sel = kinds == k
        if sel.any():
            out[name] = {"images": float(sel.sum()), **{a: float(scores[a][sel].mean()) for a in ("iou", "swap", "mean_pred", "true", "mean_true")}}
    return out


def camera_figures(pred: np.ndarray, true: np.ndarray, K: np.ndarray, verts: torch.Tensor, faces: torch.Tensor, data: PairData,
                   batch: int = 32, max_images: int = 400) -> dict:
    """The figures of the network's camera. ``pred`` float [N, 2] (azimuth, elevation rad) from the head, ``true`` [N, 3]
    (azimuth, elevation rad, distance) of each image's camera, ``K`` [N, 3, 3] each image's intrinsics, ``verts`` [N, V, 3]
    the predicted meshes. The camera g3d predict returns (:func:`g3d.train.camera.predicted_cameras`: the head's direction
    completed from the mask box, then render and compare from it and from the opposite azimuth) at the top level; the
    head's alone (completed, not refined) under ``head``; the same render and compare started from a constant direction
    (the circular mean azimuth, the median elevation: what the refinement does without the head) under ``const_refined``;
    the constant direction's errors as ``az_deg_const`` / ``el_deg_const``. Render and compare costs about 0.1 s an image
    and start on one CPU core: over ``max_images`` images, an evenly spaced subset of them is scored (``images``)."""
    from g3d import cameras as camlib
    from g3d.sfm.align import angle_difference_deg
    from g3d.train.camera import predicted_cameras

    keep = np.unique(np.linspace(0, len(pred) - 1, min(len(pred), max_images)).round().astype(np.int64))
    pred, true, K, verts, masks = pred[keep], true[keep], K[keep], verts[torch.as_tensor(keep)], data.masks[torch.as_tensor(keep)]

    const_az = np.angle(np.exp(1j * true[:, 0]).mean())  # the circular mean direction: the constant answer
    const_el = float(np.median(true[:, 1]))

    def figures(az_deg: np.ndarray, el_deg: np.ndarray, refine: bool) -> dict[str, float]:
        Rs, ts, ious = [], [], []
        for lo in range(0, len(az_deg), batch):
            sl = slice(lo, lo + batch)
            R, t, iou = predicted_cameras(verts[sl].detach().float().cpu(), faces.cpu(), az_deg[sl], el_deg[sl],
                                          torch.as_tensor(K[sl], dtype=torch.float32), masks[sl], refine=refine)
            Rs.append(R), ts.append(t), ious.append(iou)
        R, t = torch.cat(Rs).double().numpy(), torch.cat(ts).double().numpy()
        az, el, dist = camlib.to_azimuth_elevation(R, t)
        d_az = np.abs(angle_difference_deg(az, np.rad2deg(true[:, 0])))
        d_el = np.abs(el - np.rad2deg(true[:, 1]))
        return {"az_deg": float(np.median(d_az)), "el_deg": float(np.median(d_el)), "iou": float(torch.cat(ious).mean()),
                "distance_rel": float(np.median(np.abs(dist / true[:, 2] - 1.0))), "flipped": float(np.mean(d_az > 90.0))}

    p_az, p_el = np.rad2deg(pred[:, 0]), np.rad2deg(pred[:, 1])
    c_az, c_el = np.full(len(pred), np.rad2deg(const_az)), np.full(len(pred), np.rad2deg(const_el))
    out: dict = figures(p_az, p_el, refine=True)
    out["head"] = figures(p_az, p_el, refine=False)
    out["const_refined"] = figures(c_az, c_el, refine=True)
    out["images"] = len(keep)
    out["az_deg_const"] = float(np.median(np.abs(angle_difference_deg(c_az, np.rad2deg(true[:, 0])))))
    out["el_deg_const"] = float(np.median(np.abs(np.rad2deg(const_el - true[:, 1]))))
    return out


NOVEL_VIEWS = 5  # other images of its object each image's answer is rendered in (the next ones, cyclically)


def novel_view_pairs(sample_ids: np.ndarray, k: int = NOVEL_VIEWS) -> np.ndarray:
    """int64 [M, 2]: (i, j) image pairs of one object, i != j, each image i with up to ``k`` others: the ones after it in
    its object's list, cyclically (deterministic; every image is a source and a target equally often)."""
    by: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(np.asarray(sample_ids).tolist()):
        by[int(s)].append(i)
    out = [(g[a], g[(a + d) % len(g)]) for g in by.values() for a in range(len(g)) for d in range(1, min(k, len(g) - 1) + 1)]
    return np.asarray(out, np.int64).reshape(-1, 2)


def relight_pairs(cars: np.ndarray, view_ids: np.ndarray) -> np.ndarray:
    """int64 [M, 2]: (i, j) images of one car in one view under two lights, every ordered pair; ``cars`` int [N] each
    image's car (:func:`g3d.datasets.manifest.car_ids`: in a ``g3d synth --lights`` set, samples come in groups, one
    car each; elsewhere a car has one image per view, so there are none)."""
    by: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (c, v) in enumerate(zip(np.asarray(cars).tolist(), np.asarray(view_ids).tolist())):
        by[(int(c), int(v))].append(i)
    out = [(a, b) for g in by.values() for a in g for b in g if a != b]
    return np.asarray(out, np.int64).reshape(-1, 2)


def _in_mask_l1(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """float [B]: mean colour L1 of images x, y float [B, 3, H, W] over mask m float [B, 1, H, W]."""
    return ((x - y).abs() * m).sum((1, 2, 3)) / (3 * m.sum((1, 2, 3))).clamp(min=1)


@torch.no_grad()
def relight_figures(pairs: np.ndarray, verts: torch.Tensor, tex: torch.Tensor, data: PairData, cams, tpl, lit: bool,
                    true_light: np.ndarray | None, other: np.ndarray, batch: int = 32, specular: torch.Tensor | None = None,
                    shininess: float | None = None) -> dict:
    """Albedo and relighting on a set of cars under several lights (:func:`relight_pairs`), ``verts`` [N, V, 3] and
    ``tex`` [N, 3, T, T] the answers for every image:

    - ``albedo``: colour L1 in the mask between the textures from photos A and B (one car and view, two lights), both
      drawn unshaded on A's mesh at A's camera; ``albedo_other``: the same with another car's texture (``other``,
      the swapped pairing). A texture that bakes the light in changes with it; an albedo does not.
    - ``relight``: A's answer under B's true light (``lit``: a light run shades its albedo; otherwise the texture as
      it is, the light baked in) against photo B in its mask; ``relight_own``: A's under A's own light against photo A
      (what the texture can show at all). ``true_light`` float [N, 4] (direction, ambient) from
      :func:`g3d.train.light.true_light`; None: no relighting figures. ``specular`` float [N] (and ``shininess``): each
      answer's predicted material (a light run with the material term), its highlight drawn under either light."""
    acc: dict[str, list[torch.Tensor]] = defaultdict(list)
    faces = tpl.faces
    for lo in range(0, len(pairs), batch):
        i, j = (torch.as_tensor(x) for x in pairs[lo:lo + batch].T)
        bi, bj = data.batch(i, verts.device), data.batch(j, verts.device)
        K, R, t = bi.cameras_from(cams)
        H, W = bi.images.shape[-2:]
        v = verts[i]

        def draw(texture, light=None):
            f = lambda x: torch.as_tensor(x, dtype=v.dtype, device=v.device)  # noqa: E731
            lighting = None if light is None else lighting_of(f(light[:, :3]), f(light[:, 3]), None if specular is None else f(specular[i]),
                                                               None if shininess is None else float(shininess))
            return render(v, faces, K, R, t, H, W, face_uvs=tpl.face_uvs, texture=texture, lighting=lighting, silhouette=False)

        a, b, o = draw(tex[i]), draw(tex[j]), draw(tex[torch.as_tensor(other[j.numpy()])])
        m = (a.fragments.mask[:, None] & (bi.masks > 0.5)).float()
        acc["albedo"].append(_in_mask_l1(a.image, b.image, m))
        acc["albedo_other"].append(_in_mask_l1(a.image, o.image, m * o.fragments.mask[:, None].float()))
        if true_light is not None:
            mb, ma = (bj.masks > 0.5).float(), (bi.masks > 0.5).float()
            relit = draw(tex[i], true_light[j.numpy()]).image if lit else a.image
            own = draw(tex[i], true_light[i.numpy()]).image if lit else a.image
            acc["relight"].append(_in_mask_l1(relit, bj.images, mb))
            acc["relight_own"].append(_in_mask_l1(own, bi.images, ma))
    out = {k: float(torch.cat(x).mean()) for k, x in acc.items()}
    return {**out, "pairs": int(len(pairs)), "lit": bool(lit)}


def derangement(sample_ids: np.ndarray, view_ids: np.ndarray) -> np.ndarray:
    """For each image, the index of an image of *another* object (the next held-out object in id order),
    in the same view where that object has one, else its first image. Identity when there is one object."""
    objs = np.unique(sample_ids)
    nxt = {int(o): int(objs[(k + 1) % len(objs)]) for k, o in enumerate(objs)}
    where = {(int(s), int(v)): i for i, (s, v) in enumerate(zip(sample_ids, view_ids))}
    first = {}
    for i, s in enumerate(sample_ids):
        first.setdefault(int(s), i)
    return np.array([where.get((nxt[int(s)], int(v)), first[nxt[int(s)]]) for s, v in zip(sample_ids, view_ids)])


def _hard_iou(verts: torch.Tensor, faces: torch.Tensor, K, R, t, H: int, W: int, mask: torch.Tensor) -> torch.Tensor:
    hard = render(verts, faces, K, R, t, H, W, silhouette=False).fragments.mask
    m = mask[:, 0] > 0.5
    inter = (hard & m).flatten(1).sum(1).float()
    union = (hard | m).flatten(1).sum(1).float().clamp(min=1)
    return inter / union


def _fit_frame(folder: Path, manifest, view_ids, viewset, cams: ViewCameras):
    """(similarity or None, views): the least-squares similarity taking the generator's camera centres of ``view_ids``
    (those solved from keypoints, where the cameras came from a file) onto ``cams``' centres; None where fewer than 3."""
    from g3d import cameras as camlib
    from g3d.sfm.align import umeyama
    from g3d.datasets import cameras as dscam

    tc = dscam.read_true_cameras(folder, manifest)
    views = np.unique(np.asarray(view_ids))
    if viewset.source == dscam.FROM_FILE:  # only cameras solved from keypoints have a frame of their own
        views = np.array([v for v in views if viewset.views[v] in dscam.TRUSTED], dtype=np.int64)
    if tc is None or len(views) < 3:
        return None, views
    with torch.no_grad():
        _, R, t = cams(torch.as_tensor(views).to(cams.K.device))
    c_run = camlib.center_of(R.cpu().double().numpy(), t.cpu().double().numpy())
    c_true = camlib.center_of(tc.R[views], tc.t[views])
    sim = umeyama(c_true, c_run)
    sim.rms = float(np.sqrt(((sim.points(c_true) - c_run) ** 2).sum(1).mean()))
    return sim, views


def truth_to_camera_frame(folder: Path, data: PairData, cams: ViewCameras):
    """Cameras from g3d sfm-init (or pose bins) live in a frame of their own: the object frame found
    from the keypoints, scaled to the preset's camera distance, not the generator's. Returns
    (map float [..., 3] -> float [..., 3], description): the similarity that brings the generator's
    camera centres of the evaluated views solved from keypoints onto these cameras' centres (least
    squares), applied to the true meshes so the oracles and the Chamfer distances compare like with
    like. Pose-bin cameras are left in the object frame they assume."""
    sim, views = _fit_frame(folder, data.manifest, data.view_ids.numpy(), data.cameras, cams)
    if sim is None:
        # Pose-bin cameras are in the object frame by construction (azimuth about the object, elevation 0):
        # a fit to their centres would tilt the truth to meet the bins' assumed elevation.
        return (lambda v: v), "in the generator's frame (fewer than 3 cameras solved from keypoints to align a frame of their own)"
    return _frame_map(sim), (f"put in the cameras' frame by a similarity fitted to {len(views)} camera centres "
                             f"(scale {sim.scale:.3f}, residual {sim.rms:.3f} rms)")


def _frame_map(sim):
    def to_frame(v: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(sim.points(v.double().numpy()), dtype=v.dtype)

    return to_frame


def run_frame(cfg, cams: ViewCameras):
    """The similarity from the generator's frame to the frame of a run's cameras (None where they are the truth's or
    pose bins'), fitted on the run's own dataset: what puts another dataset's true cameras and meshes (a random-view
    test set) in the frame the run's meshes and camera head live in. Evaluation only: it needs the generator's truth."""
    from g3d.datasets import cameras as dscam

    folder = Path(cfg.folder)
    if not folder.is_dir():
        return None
    manifest = read_manifest(folder)
    viewset, found = load_cameras(folder, manifest, 1.0, 1.0, per_image=True)
    if found.origin != dscam.FROM_FILE or cams.K.shape[0] != len(viewset.K):
        return None
    return _fit_frame(folder, manifest, np.flatnonzero(found.usable), viewset, cams)[0]


def cameras_in_frame(sim, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor):
    """Cameras (K [N, 3, 3], R, t: world-to-camera) moved into the frame ``sim`` maps points into: the same pixels."""
    R2, t2 = sim.cameras(R.double().numpy(), t.double().numpy())
    return K, torch.as_tensor(R2, dtype=R.dtype), torch.as_tensor(t2, dtype=t.dtype)


def _cameras_for(run: Path, cfg, cams: ViewCameras, folder: Path, data: PairData, device, sim=None) -> tuple[ViewCameras, str]:
    """The run's cameras (as refined in training) on its own dataset; the dataset's own cameras on any other, put in the
    run's frame by ``sim`` (:func:`run_frame`) where it has one."""
    own = Path(cfg.folder).resolve() == folder.resolve()
    if not own:
        c = data.cameras
        K, R, t = c.K, c.R, c.t
        kind = "dataset, one per image" if data.per_image else "dataset"
        if sim is not None:  # a run on sfm-init cameras: the truth put in their frame
            K, R, t = cameras_in_frame(sim, K, R, t)
            kind += f", put in the run's camera frame (similarity fitted on its dataset, scale {sim.scale:.3f})"
        return ViewCameras(K, R, t, learn=False).to(device), kind
    V = cams.K.shape[0]
    if data.per_image:  # a camera per image, the run's as it trained (never refined)
        if len(data.cameras.K) != V:
            raise UsageError(f"{folder} has {len(data.cameras.K)} images with cameras but run {run} trained with {V}: "
                             f"the dataset changed since training; train again")
        return cams, "run, one per image"
    if int(data.view_ids.max()) >= V or data.manifest.views != V:
        raise UsageError(f"{folder} has {data.manifest.views} views but run {run} learned cameras for {V}: "
                         f"the dataset changed since training; train again, or evaluate a copy of it under another path")
    return cams, "run"


@torch.no_grad()
def evaluate(run: str | Path, folder: str | Path | None = None, device: str = "cpu", batch: int = 32) -> EvalReport:
    """Evaluate the run on the held-out objects of its dataset (or of ``folder``, with that dataset's cameras)."""
    from g3d.devices import check_device

    check_device(device)
    run = Path(run)
    cfg, model, cams, tpl, _ = load_run(run, device)
    folder = Path(folder or cfg.folder)
    span = run_span(cams.K, cfg.resolution) if crop_mode(cfg.crop) == "fov" else None  # crops as the run's, on any data
    data = PairData(folder, cfg.resolution, "test", cfg.holdout, cfg.max_images, extra_columns=PAINT + (BODY_TYPE, SPECULAR) + LIGHT_COLUMNS,
                    per_image_cameras=True, crop=cfg.crop, span=span)  # a --viewpoints random set: a camera per image
    # Another dataset with the generator's cameras, scored for a run on sfm-init cameras: both put in the run's frame.
    other = Path(cfg.folder).resolve() != folder.resolve()
    sim = run_frame(cfg, cams) if other and data.cameras.source == "ground truth" else None
    cams, cam_kind = _cameras_for(run, cfg, cams, folder, data, device, sim)
    H, W = data.height, data.width
    N = len(data)
    sids, vids = data.sample_ids.numpy(), data.view_ids.numpy()
    objs, obj_of = np.unique(sids, return_inverse=True)  # held-out objects; image -> its object's row
    lights = data.manifest.lights_per_car  # g3d synth --lights: samples in groups, one car each
    cars = car_ids(sids, lights)
    other = derangement(cars, vids)  # another car (not the same car under another light)

    # 1. Predictions for every held-out image.
    P_verts, P_col, I_col, P_cam, T_dir, T_K, P_light, P_tex = [], [], [], [], [], [], [], []
    for lo in range(0, N, batch):
        idx = torch.arange(lo, min(N, lo + batch))
        b = data.batch(idx, device)
        img, mask = b.images, b.masks
        K, R, t = b.cameras_from(cams)
        verts, tex, _, cam_out, light_out = model.split(model(img, with_camera=cfg.camera_head, with_light=cfg.light),
                                                        cfg.camera_head, cfg.light)
        if cfg.light:
            P_light.append(light_out.float().cpu())
        if cfg.camera_head:
            P_cam.append(torch.stack(head_to_angles(cam_out), -1).cpu())
            c = -(R.transpose(1, 2) @ t[..., None])[..., 0]
            T_dir.append(torch.stack([*view_direction(R, t), c.norm(dim=-1)], -1).cpu())  # true az, el (rad), distance
            T_K.append(K.cpu())
        o = render(verts, tpl.faces, K, R, t, H, W, face_uvs=tpl.face_uvs, texture=tex, silhouette=False)
        both = (o.fragments.mask[:, None] & (mask > 0.5)).float()
        P_col.append((o.image * both).sum((2, 3)) / both.sum((2, 3)).clamp(min=1))
        m = (mask > 0.5).float()
        I_col.append((img * m).sum((2, 3)) / m.sum((2, 3)).clamp(min=1))
        P_verts.append(verts)
        if lights > 1:
            P_tex.append(tex)
    verts_all = torch.cat(P_verts)  # [N, V, 3]
    pred_col = torch.cat(P_col).cpu().numpy()
    img_col = torch.cat(I_col).cpu().numpy()
    mean_pred = verts_all.mean(0, keepdim=True)

    truth = TrueMeshes.load(folder)
    true_v = mean_true = None
    truth_frame = None
    if truth is not None:
        true_obj = truth.verts(objs)  # [O, Vt, 3]: a mesh depends on its object only
        mean_true = truth.verts(range(data.first_test)).mean(0, keepdim=True)
        if data.cameras.source != "ground truth":  # cameras from sfm-init or pose bins: their own frame
            to_frame, truth_frame = truth_to_camera_frame(folder, data, cams)
            true_obj, mean_true = to_frame(true_obj), to_frame(mean_true)
        elif sim is not None:
            to_frame = _frame_map(sim)  # another dataset's truth, put in the run's camera frame like its cameras
            true_obj, mean_true = to_frame(true_obj), to_frame(mean_true)
            truth_frame = f"put in the run's camera frame (similarity fitted on its own dataset, scale {sim.scale:.3f})"
        true_obj, mean_true = true_obj.to(device), mean_true.to(device)
        true_v = true_obj[torch.as_tensor(obj_of)]  # [N, Vt, 3], one per image
        tfaces = truth.faces.to(device)

    # 2. IoU of each answer on the same images.
    scores: dict[str, list[torch.Tensor]] = defaultdict(list)
    for lo in range(0, N, batch):
        idx = torch.arange(lo, min(N, lo + batch))
        b = data.batch(idx, device)
        mask = b.masks
        K, R, t = b.cameras_from(cams)
        B = len(idx)
        answers = {"iou": (verts_all[idx], tpl.faces), "swap": (verts_all[torch.as_tensor(other[idx.numpy()])], tpl.faces),
                   "mean_pred": (mean_pred.expand(B, -1, -1), tpl.faces), "template": (model.template_verts(B), tpl.faces)}
        if true_v is not None:
            answers["true"] = (true_v[idx], tfaces)
            answers["mean_true"] = (mean_true.expand(B, -1, -1), tfaces)
        for k, (v, f) in answers.items():
            scores[k].append(_hard_iou(v.contiguous(), f, K, R, t, H, W, mask).cpu())
    s = {k: torch.cat(v).numpy() for k, v in scores.items()}
    per_view: dict[int, list[float]] = defaultdict(list)
    if not data.per_image:  # a random-view test set has no views to group by
        for v, i in zip(vids, s["iou"]):
            per_view[int(v)].append(float(i))
    rep = EvalReport(
        images=N, objects=len(objs), cameras=cam_kind,
        iou=float(s["iou"].mean()), swap_iou=float(s["swap"].mean()), mean_pred_iou=float(s["mean_pred"].mean()),
        template_iou=float(s["template"].mean()),
        per_view={v: float(np.mean(x)) for v, x in sorted(per_view.items())},
        held_out=[int(o) for o in objs],
        truth_frame=truth_frame,
    )
    # 2a. The camera the network gives (--camera-head): its direction against the image's camera, the rest solved from
    #     the mask box (train/camera.solve_camera), and the input-view IoU through that camera.
    if P_cam:
        rep.camera = camera_figures(torch.cat(P_cam).double().numpy(), torch.cat(T_dir).double().numpy(), torch.cat(T_K).double().numpy(),
                                    verts_all, tpl.faces, data)

    # 2b. Novel views: the answer for image i rendered with the cameras of other images of the same object.
    pairs = novel_view_pairs(sids)
    # 2c. One car under several lights (g3d synth --lights): albedo consistency and relighting.
    # each answer's material (the light head's specular strength; None without the material term), relighting and scored
    spec = head_to_specular(torch.cat(P_light)) if P_light else None
    lit_pairs = relight_pairs(cars, vids)
    if len(lit_pairs):
        truth_light = true_light(data.extra) if data.cameras.source == "ground truth" and sim is None else None
        rep.relight = relight_figures(lit_pairs, verts_all, torch.cat(P_tex), data, cams, tpl, cfg.light, truth_light, other, batch,
                                      specular=spec, shininess=None if model.shininess is None else model.shininess.item())
        if truth_light is None:
            rep.relight["note"] = "not scored: no true light in the run's camera frame (its cameras are not the generator's)"
    if len(pairs):
        ns: dict[str, list[torch.Tensor]] = defaultdict(list)
        for lo in range(0, len(pairs), batch):
            i, j = (torch.as_tensor(x) for x in pairs[lo:lo + batch].T)
            b = data.batch(j, device)
            mask = b.masks
            K, R, t = b.cameras_from(cams)  # image j's camera, in j's crop when the run crops
            B = len(i)
            answers = {"iou": (verts_all[i], tpl.faces), "swap": (verts_all[torch.as_tensor(other[i.numpy()])], tpl.faces),
                       "mean_pred": (mean_pred.expand(B, -1, -1), tpl.faces)}
            if true_v is not None:
                answers["true"] = (true_v[i], tfaces)
                answers["mean_true"] = (mean_true.expand(B, -1, -1), tfaces)
            for k, (v, f) in answers.items():
                ns[k].append(_hard_iou(v.contiguous(), f, K, R, t, H, W, mask).cpu())
        rep.novel = {k: float(torch.cat(v).mean()) for k, v in ns.items()}
        rep.novel_pairs = len(pairs)
    if true_v is None:
        return rep
    rep.true_iou, rep.mean_true_iou = float(s["true"].mean()), float(s["mean_true"].mean())
    rep.per_type = per_type_iou(s, data.extra.get(BODY_TYPE))

    # 3. Chamfer distances of the outer surfaces (built-in data): per image for the prediction, per
    #    object for the truths (a true mesh depends on its object only).
    pp = surface_points(verts_all, tpl.faces)  # for the extents (size correlations)
    tp_obj = surface_points(true_obj, tfaces, seed=1)  # [O, n, 3]
    true_s = [OuterSurface(true_obj[k], tfaces, seed=1) for k in range(len(objs))]
    mean_s = OuterSurface(mean_true[0], tfaces, seed=2)
    tmpl_s = OuterSurface(model.template_verts(1)[0], tpl.faces, seed=3)
    # The measurement's own floor: each true mesh seen from directions turned by half their spacing.
    floor = [outer_chamfer(OuterSurface(true_obj[k], tfaces, seed=4, azimuth_offset=18.0), true_s[k]) for k in range(len(objs))]
    to_mean = [outer_chamfer(mean_s, t) for t in true_s]
    to_tmpl = [outer_chamfer(tmpl_s, t) for t in true_s]
    obj_other = obj_of[other]
    cd = defaultdict(list)
    for i in range(N):
        ps = OuterSurface(verts_all[i], tpl.faces, seed=0)
        cd["own"].append(outer_chamfer(ps, true_s[obj_of[i]]))
        cd["other"].append(outer_chamfer(ps, true_s[obj_other[i]]))
        cd["pred_mean_true"].append(outer_chamfer(ps, mean_s))
        cd["mean_true"].append(to_mean[obj_of[i]])
        cd["template"].append(to_tmpl[obj_of[i]])
        cd["floor"].append(floor[obj_of[i]])
    c = {k: float(np.mean(v)) for k, v in cd.items()}
    rep.chamfer, rep.chamfer_other = c["own"], c["other"]
    rep.chamfer_mean_true, rep.mean_true_chamfer, rep.template_chamfer = c["pred_mean_true"], c["mean_true"], c["template"]
    rep.true_chamfer = c["floor"]

    # 4. Size and colour, per object (each averaged over its held-out views), against the truth.
    per_obj = lambda x: np.stack([x[obj_of == k].mean(0) for k in range(len(objs))])  # noqa: E731
    # object k scored against the next object's answer that is another car (not the same car under another light)
    obj_car = car_ids(objs, lights)
    shift = np.array([next(((k + d) % len(objs) for d in range(1, len(objs)) if obj_car[(k + d) % len(objs)] != obj_car[k]), k)
                      for k in range(len(objs))], np.int64)
    pe = per_obj(extent(pp).cpu().numpy())  # [O, 3]
    te = extent(tp_obj).cpu().numpy()
    for a, name in enumerate(AXES):
        rep.size_corr[name] = pearson(pe[:, a], te[:, a])
        rep.size_corr_swap[name] = pearson(pe[shift, a], te[:, a])
        rep.size_spread[name] = float(pe[:, a].std() / max(te[:, a].std(), 1e-12))
    if all(c in data.extra for c in PAINT):
        from g3d.synth.builtin import paint_rgb

        first = np.array([int(np.flatnonzero(obj_of == k)[0]) for k in range(len(objs))])  # an image of each object
        paint = paint_rgb(*(torch.tensor(data.extra[c][first]) for c in PAINT)).numpy()  # [O, 3]
        pc, ic = per_obj(pred_col), per_obj(img_col)
        rep.color_corr = [pearson(pc[:, c], paint[:, c]) for c in range(3)]
        rep.color_corr_swap = [pearson(pc[shift, c], paint[:, c]) for c in range(3)]
        rep.color_corr_image = [pearson(ic[:, c], paint[:, c]) for c in range(3)]
    truth = true_light(data.extra) if P_light else None
    if truth is not None:
        if data.cameras.source == "ground truth" and sim is None:  # the truth's frame is the run's
            d, a = head_to_light(torch.cat(P_light))
            truth = truth.astype(np.float64)
            rep.light = light_figures(d.double().numpy(), a.double().numpy(), truth[:, :3], truth[:, 3])
            if spec is not None:  # the material term: its strength against the paint's, and the learned shininess
                rep.light["shininess"] = model.shininess.item()
                if SPECULAR in data.extra and np.isfinite(data.extra[SPECULAR]).all():
                    rep.light["specular_r"] = pearson(spec.double().numpy(), np.asarray(data.extra[SPECULAR], np.float64))
        else:
            rep.light = {"note": "not scored: the run's cameras are not the generator's, so its light lives in another frame"}
    return rep
