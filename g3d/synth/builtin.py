"""The built-in procedural generator: a perfectly disentangled "StyleGAN" of cars that knows its truth.

It has StyleGAN's interface (``mapping``: z -> ws, ``synthesis``: ws -> images in [-1, 1]) and
StyleGAN's layer semantics, made exact:

===========  ==============================================================================
ws rows      what they set (each group reads the mean of its rows through a fixed rotation)
===========  ==============================================================================
0-3          camera only: azimuth (full circle), elevation (about 2-28 deg), distance; roll 0
4-7          shape: length, width, body and cabin height, roof length and position,
             windshield and rear-window rake, hood drop, wheel radius and wheelbase, clearance
8-11         paint hue, saturation and value; specular strength
12-13        background: sky colours, ground colour, ground texture scale and contrast
14-15        light: direction and ambient level
===========  ==============================================================================

Every parameter is a smooth function of ws (a sigmoid or an angle of a projection), so
interpolating ws morphs the car, like a GAN. Images are rendered through
:mod:`g3d.render.rasterize` with supersampling; :meth:`BuiltinGenerator.synthesis_with_truth`
also returns the mask, the camera (:mod:`g3d.cameras` convention) and the 12 Pascal3D+ car
keypoints in 3D and 2D with visibility.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from g3d import cameras
from g3d.classes import CAR_KEYPOINTS
from g3d.errors import DatasetError, UsageError
from g3d.render.mesh import Mesh, MeshBuilder, face_normals
from g3d.render.rasterize import gather_faces, rasterize
from g3d.synth.generator import Generator, GroundTruth

# Row groups of ws (see the module docstring).
CAMERA_ROWS = (0, 1, 2, 3)
SHAPE_ROWS = (4, 5, 6, 7)
PAINT_ROWS = (8, 9, 10, 11)
BACKGROUND_ROWS = (12, 13)
LIGHT_ROWS = (14, 15)

# Materials (labels per face).
PAINT, GLASS, TIRE, RIM, HEADLIGHT, TAILLIGHT, TRIM, PAINT2 = range(8)  # PAINT2: a distractor car's paint

# Codes of the gt_distractor column (built-in generator with --distractors).
DISTRACTOR_KINDS = {0: "none", 1: "second_car", 2: "small", 3: "off_frame"}

# Labels in the mask PNG: the object, and other instances (distractor cars).
MASK_OBJECT, MASK_OTHER = 255, 100

AMBIENT_RANGE = (0.3, 0.55)  # the ambient light level every built-in image draws from (its light rows)
LIGHT_ELEVATION_RANGE = (25.0, 70.0)  # the light's elevation above the ground, degrees (its azimuth: any)
FOV_DEG = 40.0  # horizontal field of view of every built-in camera

# Version of what the generator draws (bump it whenever the same arguments would draw other images):
# 1 = one sedan-like body (before 2026-12), 2 = body types and per-view framing.
GENERATOR_VERSION = 2

# Body types, in their order round the type circle (neighbours blend into each other).
BODY_TYPES = ("sedan", "hatchback", "estate", "suv", "pickup", "van", "coupe")
# The continuous shape parameters (object units: a car is about 2 long), each drawn in its type's range.
SHAPE_KEYS = ("length", "width", "clearance", "body_height", "cabin_height", "hood_fraction", "windshield_run",
              "deck_fraction", "rear_run", "bed_depth", "hood_drop", "wheel_radius", "wheelbase_fraction", "tumblehome")
# (lo, hi) per type, in SHAPE_KEYS order. hood_fraction: windshield base from the front (of the length);
# deck_fraction: trunk deck or pickup bed from the rear (of the length); rear_run: run of the rear window
# (a hatch, estate, SUV or van has a near-vertical one at the very back); bed_depth: the pickup's open bed.
_RANGES = {
    #            length        width       clearance    body         cabin        hood         windshield   deck         rear         bed          hood drop    wheel r      wheelbase    tumblehome
    "sedan":     ((1.95, 2.2), (.8, .9),   (.09, .13),  (.27, .33),  (.24, .3),   (.27, .33),  (.22, .3),   (.13, .18),  (.2, .3),    (0., 0.),    (.02, .07),  (.15, .18),  (.57, .63),  (.8, .9)),
    "hatchback": ((1.62, 1.88), (.76, .86), (.1, .14),  (.28, .34),  (.27, .33),  (.22, .27),  (.2, .28),   (0., 0.),    (.06, .16),  (0., 0.),    (.01, .05),  (.14, .17),  (.6, .67),   (.8, .9)),
    "estate":    ((2.0, 2.28), (.8, .9),   (.1, .14),   (.28, .34),  (.25, .31),  (.26, .31),  (.22, .3),   (0., 0.),    (.04, .1),   (0., 0.),    (.02, .06),  (.15, .18),  (.57, .62),  (.82, .9)),
    "suv":       ((1.9, 2.2), (.84, .94),  (.14, .18),  (.33, .4),   (.27, .32),  (.24, .29),  (.18, .25),  (0., 0.),    (.03, .08),  (0., 0.),    (0., .04),   (.19, .23),  (.57, .62),  (.84, .92)),
    "pickup":    ((2.2, 2.45), (.86, .96), (.15, .19),  (.34, .4),   (.26, .31),  (.27, .32),  (.2, .26),   (.34, .41),  (.02, .05),  (.16, .22),  (0., .04),   (.18, .21),  (.6, .66),   (.86, .94)),
    "van":       ((2.1, 2.35), (.84, .94), (.11, .14),  (.34, .4),   (.36, .42),  (.07, .13),  (.28, .38),  (0., 0.),    (.02, .05),  (0., 0.),    (0., .03),   (.16, .19),  (.6, .68),   (.9, .97)),
    "coupe":     ((1.9, 2.15), (.8, .9),   (.09, .12),  (.26, .31),  (.2, .25),   (.32, .38),  (.3, .4),    (.05, .1),   (.38, .55),  (0., 0.),    (.03, .08),  (.15, .19),  (.56, .62),  (.76, .86)),
}
BODY_RANGES: dict[str, dict[str, tuple[float, float]]] = {t: dict(zip(SHAPE_KEYS, r)) for t, r in _RANGES.items()}
TYPE_BLEND = 0.05  # half-width (in type bins) of the zone where neighbouring types blend: about 10% of cars are blends

# Framing: every view's distance is the one at which the box holding every car of every type fills
# FRAME_FILL of the image's half-width in that view (so nothing is ever cut), times a jitter in
# [1, DISTANCE_JITTER] drawn from the camera rows. Front and rear views come closer than side views,
# as a photographer (or a StyleGAN trained on photos) frames them.
FRAME_FILL = 0.97
DISTANCE_JITTER = 1.04
ENVELOPE = tuple(  # half-extents (x, y, z) of the largest box of each type: every built-in car lies in one of them
    (r["width"][1] / 2 + 0.02,  # + the wheels' outer faces
     (r["clearance"][1] + r["body_height"][1] + r["cabin_height"][1]) / 2,
     r["length"][1] / 2 + 0.01)  # + the lights
    for r in BODY_RANGES.values()
)


def type_weights(a: torch.Tensor) -> torch.Tensor:
    """Blend weights of the body types, float [N, T] summing to 1, from the type angle ``a`` float [N] in [0, 1).

    Each type owns an arc of the circle; within TYPE_BLEND of a boundary two neighbours blend
    (smoothstep), so moving the type angle morphs one body into the next.
    """
    T = len(BODY_TYPES)
    centres = (torch.arange(T, dtype=a.dtype, device=a.device) + 0.5) / T
    d = torch.remainder(a[:, None] - centres[None], 1.0)
    d = torch.minimum(d, 1.0 - d) * T  # distance to each type's centre, in bins
    x = torch.clamp((0.5 + TYPE_BLEND - d) / (2 * TYPE_BLEND), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def framing_distance(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor) -> torch.Tensor:
    """The distance, float [N], at which the boxes of :data:`ENVELOPE` fill FRAME_FILL of a square image seen from
    (azimuth_deg, elevation_deg) (each float [N]) with the built-in field of view: the exact closed form over
    the boxes' corners (a corner p at camera coordinates (x, y, z) + (0, 0, d) fits when
    max(|x|, |y|) <= FRAME_FILL tan(fov/2) (z + d))."""
    az = torch.deg2rad(azimuth_deg.double())
    el = torch.deg2rad(elevation_deg.double())
    back = torch.stack([torch.sin(az) * torch.cos(el), torch.sin(el), torch.cos(az) * torch.cos(el)], -1)  # towards the camera
    fwd = -back
    up = torch.tensor([0.0, 1.0, 0.0], dtype=fwd.dtype, device=fwd.device).expand_as(fwd)
    right = torch.linalg.cross(fwd, up)
    right = right / right.norm(dim=-1, keepdim=True)
    down = torch.linalg.cross(fwd, right)
    signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=fwd.dtype, device=fwd.device)
    corners = (signs[None] * torch.tensor(ENVELOPE, dtype=fwd.dtype, device=fwd.device)[:, None]).reshape(-1, 3)  # [8 T, 3]
    x = corners @ right.unsqueeze(-1)  # [N, 8 T, 1]
    y = corners @ down.unsqueeze(-1)
    z = corners @ fwd.unsqueeze(-1)
    tan_half = math.tan(math.radians(FOV_DEG) / 2) * FRAME_FILL
    need = torch.maximum(x.abs(), y.abs()) / tan_half - z
    return need.amax(dim=(1, 2)).to(azimuth_deg.dtype)


def view_distance(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, jitter01: torch.Tensor) -> torch.Tensor:
    """The camera distance, float [N], of a view at (azimuth_deg, elevation_deg), each float [N]: its framing
    distance times ``1 + (DISTANCE_JITTER - 1) * jitter01`` (``jitter01`` float [N] in [0, 1]), as the generator
    sets it from its camera rows. Tools that draw cameras like the generator's (bench layouts, new cameras for
    StyleGAN-R) use this, so their distances stay in the generator's range for each viewpoint."""
    return framing_distance(azimuth_deg, elevation_deg) * (1.0 + (DISTANCE_JITTER - 1.0) * jitter01.to(azimuth_deg.dtype))


def _sig(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.sigmoid(x)


def _angle01(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle of (a, b) as a fraction of the full turn, in [0, 1)."""
    return torch.remainder(torch.atan2(a, b) / (2 * math.pi), 1.0)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """h, s, v float [N] in [0, 1] -> rgb float [N, 3] in [0, 1] (smooth in h)."""
    k = torch.stack([torch.full_like(h, 5.0), torch.full_like(h, 3.0), torch.full_like(h, 1.0)], -1)
    kk = torch.remainder(k + h[:, None] * 6.0, 6.0)
    f = torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)
    return v[:, None] * (1.0 - s[:, None] * f)


def paint_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The paint albedo of built-in cars, float [N, 3] in [0, 1], from their ``gt_paint_*`` values (each float [N])."""
    return _hsv_to_rgb(hue.float(), saturation.float(), value.float())


class BuiltinGenerator(Generator):
    """Procedural car generator with StyleGAN's interface and exact ground truth."""

    batch_invariant = True  # every image is drawn on its own: the bytes do not depend on --batch-size
    # The rows each scene factor reads (camera, shape, paint, background, light): style mixing at these
    # boundaries changes one factor alone (g3d.neural draws its training latents so).
    row_groups = (CAMERA_ROWS, SHAPE_ROWS, PAINT_ROWS, BACKGROUND_ROWS, LIGHT_ROWS)

    def __init__(
        self,
        resolution: int = 256,  # side of the square images, 32 to 1024
        z_dim: int = 64,  # size of z (and of each ws row)
        num_ws: int = 16,  # rows of ws, as a 512 px StyleGAN2 has
        ssaa: int = 2,  # supersampling factor per side (anti-aliasing); 1 = off
        seed: int = 20210503,  # seed of the fixed rotations that define the latent layout
        class_name: str = "car",  # only "car" is built in
        distractors: float = 0.0,  # fraction of objects drawn broken (second car, shrunk, off-frame), for testing filters
    ):
        super().__init__()
        if class_name != "car":
            raise UsageError(
                f"the built-in generator draws cars only, not {class_name!r}: use --class car or pass --generator CHECKPOINT"
            )
        if not 32 <= int(resolution) <= 1024:
            raise UsageError(f"--resolution {resolution} is outside the built-in generator's 32-1024 px: choose e.g. 128, 256 or 512")
        if num_ws < 16:
            raise UsageError(f"the built-in generator needs num_ws >= 16 (its row groups), got {num_ws}")
        self.z_dim = self.w_dim = int(z_dim)
        self.num_ws = int(num_ws)
        self.resolution = int(resolution)
        self.ssaa = int(ssaa)
        self.class_name = class_name
        self.seed = int(seed)
        if not 0.0 <= distractors <= 1.0:
            raise UsageError(f"--distractors {distractors} is outside 0..1 (the fraction of broken objects)")
        self.distractors = float(distractors)
        g = torch.Generator().manual_seed(self.seed)
        # Mapping: a fixed rotation, so w is standard normal like z. w_avg = 0.
        self.register_buffer("map_rot", torch.linalg.qr(torch.randn(z_dim, z_dim, generator=g))[0])
        self.register_buffer("w_avg", torch.zeros(z_dim))
        # One fixed rotation per row group: parameters read its first components.
        self.register_buffer("group_rot", torch.linalg.qr(torch.randn(5, z_dim, z_dim, generator=g))[0])

    # ---------------------------------------------------------------- mapping
    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> torch.Tensor:
        """z float32 [N, z_dim] -> ws float32 [N, num_ws, w_dim], truncated towards w_avg (= 0)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise UsageError(f"z must be [N, {self.z_dim}], got {list(z.shape)}")
        w = z.to(self.map_rot) @ self.map_rot
        ws = w[:, None, :].repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            ws[:, :cutoff] = self.w_avg + (ws[:, :cutoff] - self.w_avg) * truncation_psi
        return ws

    def _group(self, ws: torch.Tensor, rows: tuple[int, ...], gi: int) -> torch.Tensor:
        """Projection of the mean of ``rows``, float [N, w_dim], computed one sample at a time.

        Row by row on purpose: a batched matmul may round differently for different batch sizes,
        and the same code must give bit-identical parameters wherever it sits in a batch.
        """
        rot = self.group_rot[gi]
        return torch.stack([ws[n, list(rows)].mean(dim=0) @ rot for n in range(ws.shape[0])])

    # ---------------------------------------------------------------- parameters
    def parameters_of(self, ws: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every scene parameter, each float [N], from ws float [N, num_ws, w_dim]."""
        ws = ws.to(self.map_rot)
        c = self._group(ws, CAMERA_ROWS, 0)
        s = self._group(ws, SHAPE_ROWS, 1)
        p = self._group(ws, PAINT_ROWS, 2)
        b = self._group(ws, BACKGROUND_ROWS, 3)
        li = self._group(ws, LIGHT_ROWS, 4)
        out = {
            # camera
            "azimuth_deg": 360.0 * _angle01(c[:, 0], c[:, 1]),
            "elevation_deg": _sig(1.3 * c[:, 2], 2.0, 28.0),
            "distance": torch.zeros_like(c[:, 3]),  # set below: the view's framing distance times a jitter
            # shape: the body type and its proportions (see BODY_RANGES)
            **self._shape_of(s),
            # paint
            "paint_hue": _angle01(p[:, 0], p[:, 1]),
            "paint_saturation": _sig(1.5 * p[:, 2], 0.05, 0.9),
            "paint_value": _sig(1.5 * p[:, 3], 0.2, 0.95),
            "specular": _sig(p[:, 4], 0.15, 0.6),
            # background
            "sky_hue": _angle01(b[:, 0], b[:, 1]),
            "sky_saturation": _sig(b[:, 2], 0.05, 0.5),
            "sky_value": _sig(b[:, 3], 0.55, 0.95),
            "ground_hue": _angle01(b[:, 4], b[:, 5]),
            "ground_saturation": _sig(b[:, 6], 0.0, 0.35),
            "ground_value": _sig(b[:, 7], 0.25, 0.6),
            "texture_scale": _sig(b[:, 8], 1.5, 6.0),
            "texture_contrast": _sig(b[:, 9], 0.02, 0.18),
            # light
            "light_azimuth_deg": 360.0 * _angle01(li[:, 0], li[:, 1]),
            "light_elevation_deg": _sig(li[:, 2], *LIGHT_ELEVATION_RANGE),
            "ambient": _sig(li[:, 3], *AMBIENT_RANGE),
        }
        prm = out
        prm["distance"] = view_distance(prm["azimuth_deg"], prm["elevation_deg"], torch.sigmoid(c[:, 3]))
        return prm

    @staticmethod
    def _shape_of(s: torch.Tensor) -> dict[str, torch.Tensor]:
        """The shape parameters, each float [N], from the shape group's projection ``s`` float [N, w_dim].

        Components 0-13 place each parameter in its range (the same position whatever the type),
        the angle of components 14-15 picks the type; ranges blend near type boundaries.
        """
        w = type_weights(_angle01(s[:, 14], s[:, 15]))  # [N, T]
        out = {"body_type": w.argmax(dim=1).to(s.dtype)}  # the dominant type (index into BODY_TYPES)
        for i, key in enumerate(SHAPE_KEYS):
            lo = torch.tensor([BODY_RANGES[t][key][0] for t in BODY_TYPES], dtype=s.dtype, device=s.device)
            hi = torch.tensor([BODY_RANGES[t][key][1] for t in BODY_TYPES], dtype=s.dtype, device=s.device)
            u = torch.sigmoid(s[:, i])[:, None]
            out[key] = (w * (lo + (hi - lo) * u)).sum(dim=1)
        return out

    @staticmethod
    def reference_shapes(device=None) -> dict[str, torch.Tensor]:
        """The middle car of each body type: shape parameters, each float [T] (T = len(BODY_TYPES))."""
        out = {key: torch.tensor([sum(BODY_RANGES[t][key]) / 2 for t in BODY_TYPES], device=device) for key in SHAPE_KEYS}
        out["body_type"] = torch.arange(len(BODY_TYPES), dtype=torch.float32, device=device)
        return out

    def distractors_of(self, ws: torch.Tensor) -> dict[str, torch.Tensor]:
        """Which objects are drawn broken, and how; read from the background rows (scene clutter).

        ``kind`` int64 [N] (0 none, 1 second car, 2 shrunk, 3 off-frame), ``offset`` float [N, 3]
        (second car's or the pushed car's displacement in the object frame), ``scale`` float [N].
        The same in every view of an object. About ``distractors`` of all objects are broken,
        whatever the truncation (the draw is an angle, which truncation does not change).
        """
        b = self._group(ws.to(self.map_rot), BACKGROUND_ROWS, 3)
        on = _angle01(b[:, 10], b[:, 11]) < self.distractors
        kind = torch.where(on, 1 + torch.clamp((_angle01(b[:, 12], b[:, 13]) * 3).long(), max=2), torch.zeros_like(on, dtype=torch.long))
        ang = 2 * math.pi * _angle01(b[:, 14], b[:, 15])
        zero = torch.zeros_like(ang)
        side = torch.where(torch.cos(ang) >= 0, 1.0, -1.0)
        second = torch.stack([side * _sig(b[:, 16], 1.2, 1.6), zero, _sig(b[:, 17], -0.8, 0.8)], -1)
        push = torch.stack([torch.cos(ang), zero, torch.sin(ang)], -1) * _sig(b[:, 18], 1.9, 2.4)[:, None]
        offset = torch.where((kind == 1)[:, None], second, torch.where((kind == 3)[:, None], push, torch.zeros_like(push)))
        scale = torch.where(kind == 2, _sig(b[:, 19], 0.3, 0.42), torch.ones_like(ang))
        return {"kind": kind, "offset": offset, "scale": scale}

    def _apply_distractors(self, ws, mesh: Mesh, kps: torch.Tensor, ground_y: torch.Tensor) -> tuple[Mesh, torch.Tensor, dict]:
        """Shrink / push the car and add a second one (always present in the topology; collapsed when unused)."""
        dis = self.distractors_of(ws)
        foot = torch.stack([torch.zeros_like(ground_y), ground_y, torch.zeros_like(ground_y)], -1)[:, None]
        s = dis["scale"][:, None, None]
        main = (mesh.verts - foot) * s + foot + torch.where((dis["kind"] == 3)[:, None, None], dis["offset"][:, None], 0.0)
        kps = (kps - foot) * s + foot + torch.where((dis["kind"] == 3)[:, None, None], dis["offset"][:, None], 0.0)
        other = mesh.verts + dis["offset"][:, None]
        collapsed = torch.full_like(other, 0.0) + foot  # zero-area faces: never rasterized
        other = torch.where((dis["kind"] == 1)[:, None, None], other, collapsed)
        V = mesh.verts.shape[1]
        material2 = torch.where(mesh.material == PAINT, torch.full_like(mesh.material, PAINT2), mesh.material)
        both = Mesh(
            verts=torch.cat([main, other], 1),
            faces=torch.cat([mesh.faces, mesh.faces + V]),
            material=torch.cat([mesh.material, material2]),
        )
        return both, kps, dis

    # ---------------------------------------------------------------- geometry
    def build_mesh(self, prm: dict[str, torch.Tensor]) -> tuple[Mesh, torch.Tensor, torch.Tensor]:
        """Car meshes in the object frame (see :mod:`g3d.cameras`), their 12 keypoints, and ground height.

        One topology for every body type (parts a type lacks, such as a pickup's bed, collapse to
        zero area), so meshes of different types average vertex by vertex. Face winding is decided
        on the middle car of each type (:meth:`reference_shapes`), never on the batch, so a car's
        mesh is the same wherever it sits in a batch.

        Returns ``(mesh, keypoints float [N, 12, 3], ground_y float [N])``.
        """
        N = prm["length"].shape[0]
        ref = self.reference_shapes(prm["length"].device)
        both = {k: torch.cat([prm[k].float(), ref[k].float()]) for k in SHAPE_KEYS}
        mesh, kps, ground_y = self._build(both, orient_with=list(range(N, N + len(BODY_TYPES))))
        mesh.verts = mesh.verts[:N]
        return mesh, kps[:N], ground_y[:N]

    def _build(self, prm: dict[str, torch.Tensor], orient_with) -> tuple[Mesh, torch.Tensor, torch.Tensor]:
        L, W = prm["length"], prm["width"]
        zero = torch.zeros_like(L)
        yb = prm["clearance"]
        yt = yb + prm["body_height"]  # belt line
        yr = yt + prm["cabin_height"]  # roof
        yd = yt - prm["bed_depth"]  # deck: the pickup's bed floor (the belt line for the others)
        yf = yt - prm["hood_drop"]
        half = L / 2
        z_ws = half - prm["hood_fraction"] * L  # windshield base
        zr1 = z_ws - prm["windshield_run"]  # roof front
        z_rw = -half + 0.03 + prm["deck_fraction"] * L  # rear window base (the pickup's cab back)
        zr0 = torch.minimum(z_rw + prm["rear_run"], zr1 - 0.15)  # roof rear
        z_deck = torch.minimum(-half + 0.1, z_rw)  # rear edge of the deck (trunk lid, tailgate top)
        hw = W / 2
        tw = hw * prm["tumblehome"]

        def P(x, y, z):
            return torch.stack([x, y, z], dim=-1)

        mb = MeshBuilder()
        # Lower body: a prism of its side profile (z, y), from the rear bottom round to the front. The
        # step p4 -> p5 is the front wall of a pickup's bed (zero height for the others); the profile is
        # star-shaped from a point ahead of the cab back and below the deck, the caps' fan centre.
        prof = [
            (-half + 0.05, yb),  # p0 rear bottom
            (-half, yb + 0.07),  # p1 rear bumper
            (-half + 0.02, yd - 0.04),  # p2 rear top
            (z_deck, yd),  # p3 deck rear edge
            (z_rw, yd),  # p4 deck front (bed floor front)
            (z_rw, yt),  # p5 cab back at the belt line
            (z_ws, yt),  # p6 cowl
            (half - 0.07, yf),  # p7 hood front
            (half, yf - 0.07),  # p8 front bumper
            (half - 0.02, yb + 0.03),  # p9 front bottom
        ]
        left = [P(hw, y, z) for z, y in prof]
        right = [P(-hw, y, z) for z, y in prof]
        mats = [TRIM, PAINT, PAINT, PAINT, PAINT, PAINT, PAINT, PAINT, PAINT, TRIM]
        kernel = P(zero, (yb + yd) / 2, z_rw + 0.1)
        mb.prism(left, right, mats, cap_material=PAINT, inside=kernel,
                 cap_centres=(P(hw, (yb + yd) / 2, z_rw + 0.1), P(-hw, (yb + yd) / 2, z_rw + 0.1)))
        # The pickup's bed: two side rails and a tailgate from the deck up to the belt line (flat slabs
        # on the deck of the other types), and a dark liner on the floor (zero width without a bed).
        rail = 0.045
        bot = yd - 0.01
        for sgn in (1.0, -1.0):
            xo, xi = sgn * hw, sgn * (hw - rail)
            ring = [(z_deck, bot), (z_deck, yt), (z_rw, yt), (z_rw, bot)]
            mb.prism([P(xo, y, z) for z, y in ring], [P(xi, y, z) for z, y in ring], PAINT,
                     inside=P(sgn * (hw - rail / 2), (bot + yt) / 2, (z_deck + z_rw) / 2))
        ring = [(-half + 0.02, bot - 0.03), (-half + 0.02, yt), (z_deck, yt), (z_deck, bot - 0.03)]
        mb.prism([P(hw, y, z) for z, y in ring], [P(-hw, y, z) for z, y in ring], PAINT,
                 inside=P(zero, (bot + yt) / 2, (z_deck - half + 0.02) / 2))
        open_ = torch.clamp(prm["bed_depth"] / 0.05, 0.0, 1.0)  # 0 without a bed: the liner collapses
        lx = (hw - rail - 0.005) * open_
        ly = yd + 0.004
        ids = [mb.vertex(P(lx, ly, z_deck + 0.005)), mb.vertex(P(-lx, ly, z_deck + 0.005)),
               mb.vertex(P(-lx, ly, z_rw - 0.005)), mb.vertex(P(lx, ly, z_rw - 0.005))]
        mb.quad(*ids, TRIM, P(zero, yd - 0.05, (z_deck + z_rw) / 2))
        # Greenhouse: rear window, roof, windshield; sits on the belt line.
        cab = [(z_rw, yt, hw * 0.97), (zr0, yr, tw), (zr1, yr, tw), (z_ws, yt, hw * 0.97)]
        cl = [P(x, y, z) for z, y, x in cab]
        cr = [P(-x, y, z) for z, y, x in cab]
        roof_c = (zr0 + zr1) / 2
        cab_inside = P(zero, (yt + yr) / 2, roof_c)
        mb.prism(cl, cr, [GLASS, PAINT, GLASS, PAINT], cap_material=PAINT, inside=cab_inside)
        # Side windows (two per side, split by a pillar), just outside the greenhouse sides.
        for sgn in (1.0, -1.0):
            pts = [P(sgn * x, y, z) for z, y, x in cab]
            nrm = torch.linalg.cross(pts[1] - pts[0], pts[3] - pts[0])
            nrm = nrm / nrm.norm(dim=-1, keepdim=True)
            nrm = nrm * torch.where(nrm[:, :1] * sgn < 0, -1.0, 1.0)  # outward: x component towards this side
            centre = sum(pts) / 4
            def inset(p, f=0.86):
                return centre + (p - centre) * f + nrm * 0.006
            q = [inset(p) for p in pts]
            mid_lo = (q[0] + q[3]) / 2
            mid_hi = (q[1] + q[2]) / 2
            gap_lo = (q[3] - q[0]) / (q[3] - q[0]).norm(dim=-1, keepdim=True) * 0.025
            gap_hi = (q[2] - q[1]) / (q[2] - q[1]).norm(dim=-1, keepdim=True) * 0.025
            ids = [mb.vertex(v) for v in (q[0], q[1], mid_hi - gap_hi, mid_lo - gap_lo)]
            mb.quad(*ids, GLASS, cab_inside)
            ids = [mb.vertex(v) for v in (mid_lo + gap_lo, mid_hi + gap_hi, q[2], q[3])]
            mb.quad(*ids, GLASS, cab_inside)
        # Lights and grille on the front and rear faces.
        def face_point(p0, p1, frac, x, out):
            (za, ya), (zb, yb_) = p0, p1
            return P(x, ya + (yb_ - ya) * frac, za + (zb - za) * frac + out)

        front0, front1 = prof[7], prof[8]  # hood front -> front bumper top
        rear0, rear1 = prof[2], prof[1]  # rear top -> rear bumper
        kp_lights = []
        for sgn in (1.0, -1.0):
            xo, xi = sgn * (hw - 0.04), sgn * (hw - 0.2)
            ids = [
                mb.vertex(face_point(front0, front1, 0.15, xo, 0.004)),
                mb.vertex(face_point(front0, front1, 0.15, xi, 0.004)),
                mb.vertex(face_point(front0, front1, 0.7, xi, 0.004)),
                mb.vertex(face_point(front0, front1, 0.7, xo, 0.004)),
            ]
            mb.quad(*ids, HEADLIGHT, kernel)
            kp_lights.append(face_point(front0, front1, 0.42, (xo + xi) / 2, 0.004))
            ids = [
                mb.vertex(face_point(rear0, rear1, 0.1, xo, -0.004)),
                mb.vertex(face_point(rear0, rear1, 0.1, xi, -0.004)),
                mb.vertex(face_point(rear0, rear1, 0.45, xi, -0.004)),
                mb.vertex(face_point(rear0, rear1, 0.45, xo, -0.004)),
            ]
            mb.quad(*ids, TAILLIGHT, kernel)
        gx = hw - 0.26
        ids = [
            mb.vertex(face_point(front0, front1, 0.3, gx, 0.004)),
            mb.vertex(face_point(front0, front1, 0.3, -gx, 0.004)),
            mb.vertex(face_point(front0, front1, 0.85, -gx, 0.004)),
            mb.vertex(face_point(front0, front1, 0.85, gx, 0.004)),
        ]
        mb.quad(*ids, TRIM, kernel)
        # Wheels: cylinders along x, tyre with a rim disc on the outer face.
        r = prm["wheel_radius"]
        wb = prm["wheelbase_fraction"] * L / 2
        tyre = 0.17
        segs = 18
        kp_wheels = []
        for sgn in (1.0, -1.0):
            for zc in (wb, -wb):
                x_out = sgn * (hw + 0.015)
                x_in = sgn * (hw + 0.015 - tyre)
                centre_in = P(x_in + zero, r, zc)
                ring_in, ring_out, ring_rim = [], [], []
                for k in range(segs):
                    a = 2 * math.pi * k / segs
                    dz, dy = math.cos(a), math.sin(a)
                    ring_in.append(mb.vertex(P(x_in + zero, r + r * dy, zc + r * dz)))
                    ring_out.append(mb.vertex(P(x_out + zero, r + r * dy, zc + r * dz)))
                    ring_rim.append(mb.vertex(P(x_out + sgn * 0.004 + zero, r + 0.62 * r * dy, zc + 0.62 * r * dz)))
                wheel_inside = P(sgn * (hw + 0.015 - tyre / 2) + zero, r, zc)
                ci = mb.vertex(centre_in)
                co = mb.vertex(P(x_out + sgn * 0.004 + zero, r, zc))
                for k in range(segs):
                    k1 = (k + 1) % segs
                    mb.quad(ring_in[k], ring_in[k1], ring_out[k1], ring_out[k], TIRE, wheel_inside)
                    mb.tri(ci, ring_in[k], ring_in[k1], TIRE, wheel_inside)
                    mb.quad(ring_out[k], ring_out[k1], ring_rim[k1], ring_rim[k], TIRE, wheel_inside)
                    mb.tri(co, ring_rim[k], ring_rim[k1], RIM, wheel_inside)
                kp_wheels.append(P(x_out + sgn * 0.004 + zero, r, zc))
        mesh = mb.build(orient_with=orient_with)
        # Keypoints in the preset's order (left = +x).
        lfw, lbw, rfw, rbw = kp_wheels
        kps = torch.stack(
            [
                lfw,
                lbw,
                rfw,
                rbw,
                P(tw, yr, zr1),
                P(-tw, yr, zr1),
                P(tw, yr, zr0),
                P(-tw, yr, zr0),
                kp_lights[0],
                kp_lights[1],
                P(hw, yt, z_deck),
                P(-hw, yt, z_deck),
            ],
            dim=1,
        )
        # Object frame: origin at the bounding-box centre (x and z are symmetric about 0 already).
        shift = torch.stack([zero, yr / 2, zero], dim=-1)[:, None, :]
        mesh.verts = mesh.verts - shift
        kps = kps - shift
        return mesh, kps, -yr / 2

    # ---------------------------------------------------------------- rendering
    def cameras_of(self, prm: dict[str, torch.Tensor], height: int, width: int):
        """``(K [N,3,3], R [N,3,3], t [N,3])`` float64 numpy for the images' size, camera rows only."""
        az = prm["azimuth_deg"].detach().double().cpu().numpy()
        el = prm["elevation_deg"].detach().double().cpu().numpy()
        d = prm["distance"].detach().double().cpu().numpy()
        R, t = cameras.from_azimuth_elevation(az, el, d)
        K = np.broadcast_to(cameras.intrinsics(width, height, FOV_DEG), (len(az), 3, 3)).copy()
        return K, R, t

    def _background(self, prm, K, R, t, ground_y, H, W, dis=None) -> torch.Tensor:
        """Sky gradient and textured ground seen by each camera, float [N, H, W, 3] in [0, 1]."""
        dev = self.map_rot.device
        N = K.shape[0]
        Kt = torch.as_tensor(K, dtype=torch.float32, device=dev)
        Rt = torch.as_tensor(R, dtype=torch.float32, device=dev)
        c = torch.as_tensor(cameras.center_of(R, t), dtype=torch.float32, device=dev)  # [N, 3]
        u = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5)[None, None, :].expand(N, H, W)
        v = (torch.arange(H, device=dev, dtype=torch.float32) + 0.5)[None, :, None].expand(N, H, W)
        x = (u - Kt[:, 0, 2, None, None]) / Kt[:, 0, 0, None, None]
        y = (v - Kt[:, 1, 2, None, None]) / Kt[:, 1, 1, None, None]
        d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [N, H, W, 3]
        d = torch.einsum("nji,nhwj->nhwi", Rt, d_cam)
        d = d / d.norm(dim=-1, keepdim=True)
        sky_top = _hsv_to_rgb(prm["sky_hue"], prm["sky_saturation"], prm["sky_value"])
        sky_low = _hsv_to_rgb(prm["sky_hue"], prm["sky_saturation"] * 0.3, torch.clamp(prm["sky_value"] + 0.08, max=1.0))
        ground = _hsv_to_rgb(prm["ground_hue"], prm["ground_saturation"], prm["ground_value"])
        dy = d[..., 1]
        tsky = torch.clamp(dy * 2.5, 0.0, 1.0)[..., None]
        sky = sky_low[:, None, None] * (1 - tsky) + sky_top[:, None, None] * tsky
        # Ground plane y = ground_y: where each downward ray meets it.
        cy = c[:, 1, None, None]
        s = (ground_y[:, None, None] - cy) / torch.clamp(dy, max=-1e-4)
        hit_x = c[:, 0, None, None] + s * d[..., 0]
        hit_z = c[:, 2, None, None] + s * d[..., 2]
        sc = prm["texture_scale"][:, None, None]
        tex = torch.sin(hit_x * sc) * torch.sin(hit_z * sc) + 0.5 * torch.sin((hit_x + 0.7 * hit_z) * sc * 2.3)
        tex = 1.0 + prm["texture_contrast"][:, None, None] * tex
        sx, sz, ss = 0.0, 0.0, 1.0
        if dis is not None:  # the shadow follows a pushed or shrunk car
            moved = (dis["kind"] == 3).to(hit_x.dtype)[:, None, None]
            sx = dis["offset"][:, 0, None, None] * moved
            sz = dis["offset"][:, 2, None, None] * moved
            ss = dis["scale"][:, None, None]
        shadow = 1.0 - 0.55 * torch.exp(
            -(((hit_x - sx) / (prm["width"][:, None, None] * 0.62 * ss)) ** 4 + ((hit_z - sz) / (prm["length"][:, None, None] * 0.55 * ss)) ** 4)
        )
        fog = torch.exp(-s.clamp(min=0) / 25.0)[..., None]
        gcol = ground[:, None, None] * (tex * shadow)[..., None]
        gcol = gcol * fog + sky_low[:, None, None] * (1 - fog)
        is_ground = (dy < 0)[..., None]
        return torch.where(is_ground, gcol, sky).clamp(0.0, 1.0)

    def _shading_terms(self, prm, mesh: Mesh, R, t) -> dict[str, torch.Tensor]:
        """The per-face terms of the generator's flat Blinn-Phong shading: ``albedo`` float [N, F, 3], ``diffuse`` (the
        albedo times ambient + (1 - ambient) max(0, n . l)) float [N, F, 3], ``shade`` (that factor) and ``specular``
        (the white highlight added on top) float [N, F], ``emissive`` bool [F] (lights: drawn as their albedo),
        ``normals`` float [N, F, 3]."""
        dev = self.map_rot.device
        N = mesh.verts.shape[0]
        normals = face_normals(mesh.verts, mesh.faces)  # [N, F, 3]
        paint = _hsv_to_rgb(prm["paint_hue"], prm["paint_saturation"], prm["paint_value"])
        table = torch.zeros(N, 8, 3, device=dev)
        table[:, PAINT] = paint
        table[:, PAINT2] = _hsv_to_rgb(torch.remainder(prm["paint_hue"] + 0.5, 1.0), torch.clamp(prm["paint_saturation"] + 0.3, max=0.9), prm["paint_value"])
        table[:, GLASS] = torch.tensor([0.1, 0.13, 0.17], device=dev)
        table[:, TIRE] = torch.tensor([0.06, 0.06, 0.065], device=dev)
        table[:, RIM] = torch.tensor([0.62, 0.63, 0.65], device=dev)
        table[:, HEADLIGHT] = torch.tensor([1.0, 0.97, 0.85], device=dev)
        table[:, TAILLIGHT] = torch.tensor([0.75, 0.05, 0.04], device=dev)
        table[:, TRIM] = torch.tensor([0.08, 0.08, 0.09], device=dev)
        albedo = table[:, mesh.material]  # [N, F, 3]
        laz = torch.deg2rad(prm["light_azimuth_deg"])
        lel = torch.deg2rad(prm["light_elevation_deg"])
        light = torch.stack([torch.sin(laz) * torch.cos(lel), torch.sin(lel), torch.cos(laz) * torch.cos(lel)], -1)
        c = torch.as_tensor(cameras.center_of(R, t), dtype=torch.float32, device=dev)
        fc = mesh.verts[:, mesh.faces].mean(dim=2)  # [N, F, 3]
        view = c[:, None] - fc
        view = view / view.norm(dim=-1, keepdim=True)
        ndl = (normals * light[:, None]).sum(-1).clamp(min=0)
        half = light[:, None] + view
        half = half / half.norm(dim=-1, keepdim=True)
        ndh = (normals * half).sum(-1).clamp(min=0)
        amb = prm["ambient"][:, None]
        shade = amb + (1 - amb) * ndl
        diffuse = albedo * shade[..., None]
        spec_w = torch.full_like(amb.expand(-1, mesh.faces.shape[0]), 0.1)
        is_paint = (mesh.material == PAINT) | (mesh.material == PAINT2)
        spec_w = torch.where(is_paint[None], prm["specular"][:, None], spec_w)
        spec_w = torch.where(mesh.material[None] == GLASS, torch.full_like(spec_w, 0.5), spec_w)
        spec = spec_w * ndh.pow(24)
        emissive = (mesh.material == HEADLIGHT) | (mesh.material == TAILLIGHT)
        return {"albedo": albedo, "diffuse": diffuse, "shade": shade, "specular": spec, "emissive": emissive, "normals": normals}

    @staticmethod
    def _face_colours(s: dict[str, torch.Tensor]) -> torch.Tensor:
        """float [N, F, 3]: each face's colour from :meth:`_shading_terms` (the lights drawn as their albedo)."""
        col = s["diffuse"] + s["specular"][..., None]
        return torch.where(s["emissive"][None, :, None], s["albedo"], col).clamp(0, 1)

    def _shade(self, prm, mesh: Mesh, frags, R, t) -> torch.Tensor:
        """Flat Blinn-Phong shading of the visible faces, float [N, H, W, 3] (0 on background)."""
        return gather_faces(self._face_colours(self._shading_terms(prm, mesh, R, t)), frags)

    def _rasterize(self, prm, mesh: Mesh):
        """(K, R, t of the output size, fragments at ``ssaa`` x the size): the meshes through their cameras."""
        H = W = self.resolution
        S = self.ssaa
        K, R, t = self.cameras_of(prm, H, W)
        Ks = K.copy()
        Ks[:, :2] *= S  # the same camera at S x the resolution
        dev = self.map_rot.device
        Rt = torch.as_tensor(R, dtype=torch.float32, device=dev)
        tt = torch.as_tensor(t, dtype=torch.float32, device=dev)
        verts_cam = torch.einsum("nij,nvj->nvi", Rt, mesh.verts) + tt[:, None]
        frags = rasterize(verts_cam, mesh.faces, torch.as_tensor(Ks, dtype=torch.float32, device=dev), H * S, W * S, cull_backfaces=True)
        return K, R, t, frags

    @torch.no_grad()
    def shading_truth(self, ws: torch.Tensor) -> dict[str, torch.Tensor]:
        """What each pixel of the car is made of, for ws float32 [N, num_ws, w_dim] (the images
        :meth:`synthesis_with_truth` draws; no distractors), each float [N, C, H, W] at the output size: ``image`` the car's
        colour (0 off it), ``albedo`` [3], ``shade`` [1] (ambient + (1 - ambient) max(0, n . l); 1 on the lights),
        ``specular`` [1] (0 on the lights), ``normal`` [3] (object frame) and ``cover`` [1] (the car's coverage, 0-1).
        image = min(1, albedo * shade + specular) where cover is 1: the measurement of how far a light model can
        take a photo back to its albedo (bench/light.py --ceiling)."""
        prm = self.parameters_of(ws)
        S = self.ssaa
        mesh, _, _ = self.build_mesh(prm)
        _, R, t, frags = self._rasterize(prm, mesh)
        s = self._shading_terms(prm, mesh, R, t)
        em = s["emissive"][None]
        layers = {"image": self._face_colours(s), "albedo": s["albedo"], "shade": torch.where(em, torch.ones_like(s["shade"]), s["shade"])[..., None],
                  "specular": torch.where(em, torch.zeros_like(s["specular"]), s["specular"])[..., None], "normal": s["normals"]}
        out = {k: F.avg_pool2d(gather_faces(v, frags).permute(0, 3, 1, 2), S) for k, v in layers.items()}
        out["cover"] = F.avg_pool2d(frags.mask[:, None].float(), S)
        return out

    @torch.no_grad()
    def synthesis_with_truth(self, ws: torch.Tensor, noise_mode: str = "const") -> tuple[torch.Tensor, GroundTruth]:
        """ws float32 [N, num_ws, w_dim] -> (images float32 [N, 3, H, W] in [-1, 1], :class:`GroundTruth`)."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise UsageError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        prm = self.parameters_of(ws)
        H = W = self.resolution
        S = self.ssaa
        mesh, kps, ground_y = self.build_mesh(prm)
        F_main = mesh.faces.shape[0]
        dis = None
        if self.distractors > 0:
            mesh, kps, dis = self._apply_distractors(ws, mesh, kps, ground_y)
        K, R, t, frags = self._rasterize(prm, mesh)
        fg = self._shade(prm, mesh, frags, R, t).permute(0, 3, 1, 2)  # [N, 3, HS, WS], 0 off the car
        main_cover = (frags.face_id >= 0) & (frags.face_id < F_main)
        layers = torch.stack([frags.mask, main_cover], 1).float()  # [N, 2, HS, WS]: any car, the object
        if S > 1:  # box-filter the car; the smooth background is drawn at the output size
            fg = F.avg_pool2d(fg, S)
            layers = F.avg_pool2d(layers, S)
        cover = layers[:, :1]
        bg = self._background(prm, K, R, t, ground_y, H, W, dis).permute(0, 3, 1, 2)
        img = fg + bg * (1.0 - cover)
        masks = (layers[:, 1] >= 0.5).cpu().numpy()
        others = ((layers[:, 0] - layers[:, 1]) >= 0.5).cpu().numpy()
        labels = np.where(masks, MASK_OBJECT, np.where(others, MASK_OTHER, 0)).astype(np.uint8)
        # Keypoints: project, then visible if in the image and not behind the rendered surface.
        kp = kps.double().cpu().numpy()
        uv, z = cameras.project(kp, K, R, t)
        uvs = uv * S
        xi = np.clip(np.floor(uvs[..., 0]).astype(np.int64), 0, W * S - 1)
        yi = np.clip(np.floor(uvs[..., 1]).astype(np.int64), 0, H * S - 1)
        depth = frags.depth.cpu().numpy()
        zs = depth[np.arange(len(kp))[:, None], yi, xi]
        inside = (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)
        visible = inside & ((zs == 0) | (z <= zs + 0.03))
        extra = {k: v.double().cpu().numpy() for k, v in prm.items() if k not in ("azimuth_deg", "elevation_deg", "distance")}
        if dis is not None:
            # Per-image truth of what a filter should catch.
            verts = mesh.verts[:, : mesh.verts.shape[1] // 2].double().cpu().numpy()
            vuv, _ = cameras.project(verts, K, R, t)
            cut = (vuv[..., 0] < 0) | (vuv[..., 0] > W) | (vuv[..., 1] < 0) | (vuv[..., 1] > H)
            n_other = others.reshape(len(others), -1).mean(1) >= 0.005
            extra["distractor"] = dis["kind"].double().cpu().numpy()
            extra["instances"] = masks.reshape(len(masks), -1).any(1).astype(np.float64) + n_other
            extra["cut"] = cut.any(1).astype(np.float64)
            extra["area"] = masks.reshape(len(masks), -1).mean(1).astype(np.float64)
        truth = GroundTruth(
            masks=masks,
            labels=labels,
            K=K,
            R=R,
            t=t,
            azimuth_deg=prm["azimuth_deg"].double().cpu().numpy(),
            elevation_deg=prm["elevation_deg"].double().cpu().numpy(),
            distance=prm["distance"].double().cpu().numpy(),
            keypoints_3d=kp,
            keypoints_2d=uv,
            keypoints_visible=visible,
            extra=extra,
        )
        return img * 2.0 - 1.0, truth

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws float32 [N, num_ws, w_dim] -> images float32 [N, 3, H, W] in [-1, 1]."""
        return self.synthesis_with_truth(ws, noise_mode)[0]

    @property
    def truth_extra_names(self) -> list[str]:
        """Names of the per-image scene parameters recorded as ``gt_<name>`` columns."""
        ws = torch.zeros(1, self.num_ws, self.w_dim, device=self.map_rot.device)
        names = [k for k in self.parameters_of(ws) if k not in ("azimuth_deg", "elevation_deg", "distance")]
        if self.distractors > 0:
            names += ["distractor", "instances", "cut", "area"]  # per image: see synthesis_with_truth
        return names

    @torch.no_grad()
    def viewpoint_truth(self, codes: torch.Tensor, layers: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Camera of each viewpoint code float [V, L, w_dim] placed in ws rows ``layers``.

        Returns azimuth_deg, elevation_deg, distance, each float64 [V]. The content rows do not
        matter: only rows 0-3 set the camera.
        """
        ws = torch.zeros(codes.shape[0], self.num_ws, self.w_dim, device=self.map_rot.device)
        ws[:, list(layers)] = codes.to(ws)
        prm = self.parameters_of(ws)
        return {k: prm[k].double().cpu().numpy() for k in ("azimuth_deg", "elevation_deg", "distance")}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], **overrides: Any) -> "BuiltinGenerator":
        """The generator a manifest's generator record (:meth:`describe`) names: the one way back from
        ``g3d.json`` to the built-in generator. ``overrides`` replace recorded arguments (e.g. a
        smaller ``resolution`` for meshes only). A record of another generator is a :class:`DatasetError`."""
        if record.get("format") != "builtin":
            raise DatasetError(f"the dataset was made with a {record.get('format')} generator, not the built-in one: "
                               "pass --generator CHECKPOINT, the checkpoint g3d synth used")
        version = record.get("version", 1)  # records before versioning are version 1
        if version != GENERATOR_VERSION:
            raise DatasetError(
                f"the dataset was drawn by built-in generator version {version} (an older g3d); this g3d draws version "
                f"{GENERATOR_VERSION}, whose cars differ: make the dataset again with this g3d's `g3d synth` into a new folder"
            )
        names = ("resolution", "z_dim", "num_ws", "ssaa", "seed", "class_name", "distractors")
        kwargs = {n: record.get("class" if n == "class_name" else n) for n in names}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        missing = [n for n in ("resolution", "z_dim", "num_ws", "seed") if n not in kwargs]
        if missing:
            raise DatasetError(f"the manifest's generator record lacks {', '.join(missing)}: rerun the g3d synth command that made the dataset")
        return cls(**{**kwargs, **overrides})

    def describe(self) -> dict[str, Any]:
        return {
            "format": "builtin",
            "version": GENERATOR_VERSION,
            "class": self.class_name,
            "resolution": self.resolution,
            "z_dim": self.z_dim,
            "num_ws": self.num_ws,
            "ssaa": self.ssaa,
            "seed": self.seed,
            "keypoints": list(CAR_KEYPOINTS),
            "distractors": self.distractors,
        }
