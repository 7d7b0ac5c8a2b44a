"""``g3d neural eval``: how well the neural renderer follows its inputs, against the built-in generator's truth.

For held-out latents (drawn as training draws them, from a stream no training batch uses) the mapped ws
is decoded into scene parameters by the built-in generator itself (:meth:`BuiltinGenerator.parameters_of`)
and compared with the parameters the photo was drawn from:

- camera: azimuth and elevation error in degrees, at the dataset's views and at new cameras between them;
  and for photos taken between the views (viewpoint codes drawn as `g3d synth --viewpoints random` draws
  them), re-rendered at their own camera as the run gets it (the generator's truth) and as a plain photo
  gets it (the camera head's, `g3d neural render PHOTO.png`);
- shape, paint and background: mean error of each parameter group, in units of that parameter's spread
  over the held-out latents (1 = as far as two random cars);
- swaps: taking one source (shape, texture or background) from another photo must move that group's
  parameters and leave the other two: leakage ratio = how far its own group moves / how far the others do;
- silhouette IoU of the re-rendered object against the generator's render of the intended latent.

Beside them, measured in the same call: the identity (the true latents, swapped by row group: the
ceiling), the mapping with its gate ignored (every source weighs 1/3), and the average latent (the mapped
camera with every content row at w_avg: the average car, the degenerate answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from g3d.errors import UsageError
from g3d.neural.figures import swap_ws
from g3d.neural.mapping import NeuralMapping, camera_features
from g3d.neural.sources import Sources, cameras_for, draw_latents, synthesize

from g3d.synth.builtin import SHAPE_KEYS, view_distance  # the continuous shape parameters; the distance of a view
PAINT_KEYS = ("paint_hue", "paint_saturation", "paint_value", "specular")
BACKGROUND_KEYS = ("sky_hue", "sky_saturation", "sky_value", "ground_hue", "ground_saturation", "ground_value", "texture_scale", "texture_contrast")
LIGHT_KEYS = ("light_azimuth_deg", "light_elevation_deg", "ambient")
GROUPS = {"shape": SHAPE_KEYS, "paint": PAINT_KEYS, "background": BACKGROUND_KEYS}
LIGHT_GROUPS = {**GROUPS, "light": LIGHT_KEYS}  # a mapping with a light code: the light is a group of its own
CIRCULAR = {"paint_hue": 1.0, "sky_hue": 1.0, "ground_hue": 1.0, "azimuth_deg": 360.0, "light_azimuth_deg": 360.0}
# which parameters each source should carry
SOURCE_GROUP = {"shape": "shape", "texture": "paint", "background": "background", "light": "light"}


def _diff(key: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b)
    period = CIRCULAR.get(key)
    return np.minimum(d, period - d) if period else d


def group_moves(p: dict[str, np.ndarray], q: dict[str, np.ndarray], spread: dict[str, float], groups=None) -> dict[str, np.ndarray]:
    """Per group (``groups``: name -> parameter names, default :data:`GROUPS`), the mean over its parameters of
    |p - q| / spread, float [N] each. A parameter that does not vary in the truth (spread ~0, e.g. the bed depth
    where no pickup was drawn) is left out of its group."""
    return {g: np.mean([_diff(k, p[k], q[k]) / spread[k] for k in keys if spread[k] > 1e-6], 0)
            for g, keys in (GROUPS if groups is None else groups).items()}


@dataclass
class NeuralEvalReport:
    n: int
    camera: dict[str, float] = field(default_factory=dict)  # median errors in degrees
    errors: dict[str, dict[str, float]] = field(default_factory=dict)  # predictor -> group -> mean error (spread units)
    leakage: dict[str, dict[str, float]] = field(default_factory=dict)  # predictor -> source -> ratio
    moves: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # predictor -> source -> (own, others)
    iou: dict[str, float] = field(default_factory=dict)  # predictor -> mean silhouette IoU
    # swapped source -> (error of its group against the source photo's truth, spread units; silhouette IoU
    # against the generator's render of the intended latent: the photo's with that row group from the source)
    swaps: dict[str, tuple[float, float]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        c = self.camera
        out = [f"held-out latents: {self.n}",
               f"camera error (median deg): azimuth {c['az_views']:.1f}, elevation {c['el_views']:.1f} at the dataset's views; "
               f"azimuth {c['az_new']:.1f}, elevation {c['el_new']:.1f} at new cameras; a constant camera: azimuth {c['az_const']:.1f}"]
        for key, how in (("truth", "the generator's truth"), ("head", "the camera head's, as for a plain photo")):
            if f"az_between_{key}" in c:
                out.append(f"photos between the views, re-rendered at their own camera ({how}): azimuth {c[f'az_between_{key}']:.1f}, "
                           f"elevation {c[f'el_between_{key}']:.1f}" + (f" (the head itself: azimuth {c['az_head_alone']:.1f}, "
                                                                        f"elevation {c['el_head_alone']:.1f})" if key == "head" else ""))
        for name in self.errors:
            e = self.errors[name]
            out.append(f"{name:>14}: parameter error (spread units) shape {e['shape']:.2f}, paint {e['paint']:.2f}, background "
                       f"{e['background']:.2f}" + (f", light {e['light']:.2f}" if "light" in e else "") + f"; silhouette IoU {self.iou[name]:.3f}")
        if self.swaps:
            out.append("    swapped: error of the swapped group against its source / silhouette IoU against the intended latent: "
                       + ", ".join(f"{k} {e:.2f} / {i:.3f}" for k, (e, i) in self.swaps.items()))
        for name in self.leakage:
            parts = [f"{s} {_ratio(r)} ({self.moves[name][s][0]:.2f} / {self.moves[name][s][1]:.3f})" for s, r in self.leakage[name].items()]
            out.append(f"{name:>14}: swap leakage ratio (own move / others' move): " + ", ".join(parts))
        return out


def _params(G, ws: torch.Tensor) -> dict[str, np.ndarray]:
    """The built-in generator's exact decoding of ws [N, num_ws, w_dim]: each parameter float64 [N]."""
    return {k: v.double().cpu().numpy() for k, v in G.parameters_of(ws).items()}


def _ratio(r: float) -> str:
    return "inf" if not np.isfinite(r) else f"{r:.1f}"


def _truth_iou(G, ws_a: torch.Tensor, ws_b: torch.Tensor) -> np.ndarray:
    ma = torch.as_tensor(G.synthesis_with_truth(ws_a)[1].masks)
    mb = torch.as_tensor(G.synthesis_with_truth(ws_b)[1].masks)
    inter = (ma & mb).flatten(1).sum(1).float()
    union = (ma | mb).flatten(1).sum(1).float().clamp(min=1)
    return (inter / union).numpy()


@torch.no_grad()
def evaluate_neural(mapping: NeuralMapping, src: Sources, seed: int = 0, n: int = 64) -> NeuralEvalReport:
    """The figures of the module docstring for ``n`` held-out latents (built-in generator only)."""
    if n < 2:
        raise UsageError(f"--n {n}: give at least 2 held-out latents (each swap takes a source from another of them)")
    G = src.G
    if not hasattr(G, "parameters_of"):
        raise UsageError("g3d neural eval needs the built-in generator's truth: this run's generator is a checkpoint; "
                         "look at `g3d neural swap` and `g3d neural render` pictures instead")
    mapping.eval()
    ws, views = draw_latents(src, seed, 0, n, stream=2)
    images = synthesize(src, ws)
    truth = _params(G, ws)
    spread = {k: float(np.std(v)) + 1e-9 for k, v in truth.items()}
    rep = NeuralEvalReport(n)

    mapped = swap_ws(mapping, src, images, views)
    pm = _params(G, mapped)
    rep.camera["az_views"] = float(np.median(_diff("azimuth_deg", pm["azimuth_deg"], truth["azimuth_deg"])))
    rep.camera["el_views"] = float(np.median(np.abs(pm["elevation_deg"] - truth["elevation_deg"])))
    # New cameras: uniform azimuth and elevation, the generator's distance for each, read by the camera MLP alone.
    g = torch.Generator().manual_seed(seed + 17)
    az = torch.rand(n, generator=g).double().numpy() * 360
    el = 2 + 26 * torch.rand(n, generator=g).double().numpy()
    d = view_distance(torch.from_numpy(az), torch.from_numpy(el), torch.rand(n, generator=g).double()).numpy()  # the generator's distance there
    ws_new = swap_ws(mapping, src, images, views, camera=camera_features(az, el, d).to(images.device))
    pn = _params(G, ws_new)
    rep.camera["az_new"] = float(np.median(_diff("azimuth_deg", pn["azimuth_deg"], az)))
    rep.camera["el_new"] = float(np.median(np.abs(pn["elevation_deg"] - el)))
    rep.camera["az_const"] = float(np.median(_diff("azimuth_deg", np.full(n, float(np.median(az))), az)))
    # Photos between the dataset's views, re-rendered at their own camera.
    ws_b, ids_b = draw_latents(src, seed, 0, n, stream=5, between=1.0)
    img_b = synthesize(src, ws_b)
    tb = _params(G, ws_b)
    for key in ("truth", "head"):
        if (key == "head" and not src.has_head) or (key == "truth" and src.camera_source != "truth"):
            continue
        cams = cameras_for(src, ws_b, ids_b, img_b, source=key)
        pb = _params(G, swap_ws(mapping, src, img_b, cams))
        rep.camera[f"az_between_{key}"] = float(np.median(_diff("azimuth_deg", pb["azimuth_deg"], tb["azimuth_deg"])))
        rep.camera[f"el_between_{key}"] = float(np.median(np.abs(pb["elevation_deg"] - tb["elevation_deg"])))
        if key == "head":
            from g3d import cameras as camlib

            a, e, _ = camlib.to_azimuth_elevation(cams.R.double().cpu().numpy(), cams.t.double().cpu().numpy())
            rep.camera["az_head_alone"] = float(np.median(_diff("azimuth_deg", a % 360.0, tb["azimuth_deg"] % 360.0)))
            rep.camera["el_head_alone"] = float(np.median(np.abs(e - tb["elevation_deg"])))

    groups = LIGHT_GROUPS if mapping.has_light else GROUPS
    avg = mapped.clone()  # the mapped camera, every content row at the average latent: the average car
    avg[:, list(src.layout.content_rows)] = mapping.w_avg
    uniform = swap_ws(mapping, src, images, views, gate="uniform")
    for name, w in (("identity", ws), ("mapped", mapped), ("gate ignored", uniform), ("average latent", avg)):
        p = _params(G, w)
        rep.errors[name] = {g_: float(v.mean()) for g_, v in group_moves(p, truth, spread, groups).items()}
        rep.iou[name] = float(_truth_iou(G, w, ws).mean())

    other = torch.roll(torch.arange(n), 1).to(images.device)  # each photo takes the source of the previous one
    truth_other = {k: v[other.cpu().numpy()] for k, v in truth.items()}
    for name, base in (("identity", ws), ("mapped", mapped), ("gate ignored", uniform)):
        rep.leakage[name], rep.moves[name] = {}, {}
        pb = _params(G, base)
        for k, source in enumerate(mapping.sources):
            # the built-in generator's row groups are shape, paint, background, light: group k is source k's
            rows = list(src.layout.groups[k])
            if name == "identity":
                sw = ws.clone()
                sw[:, rows] = ws[other][:, rows]
            else:
                pick = [None] * 4
                pick[k] = other
                sw = swap_ws(mapping, src, images, views, *pick[:3], light_from=pick[3], gate="learned" if name == "mapped" else "uniform")
            ps = _params(G, sw)
            mv = group_moves(ps, pb, spread, groups)
            own_g = SOURCE_GROUP[source]
            own = float(mv[own_g].mean())
            others = float(np.mean([mv[g_].mean() for g_ in groups if g_ != own_g]))
            rep.moves[name][source] = (own, others)
            rep.leakage[name][source] = own / others if others > 1e-6 else float("inf")
            if name == "mapped":
                intended = mapped.clone()  # the photo's mapping with the source's true rows of that group
                intended[:, rows] = ws[other][:, rows]
                err = float(group_moves(ps, truth_other, spread, groups)[own_g].mean())
                rep.swaps[source] = (err, float(_truth_iou(G, sw, intended).mean()))
    return rep
