"""Light and albedo (the light issue's figures), on the built-in generator, for runs trained with and without
``g3d train --light``.

New cars (latents no dataset drew, seed 7), each at some of its run's dataset views and under two lights: the
generator's light rows alone resampled, car and camera held. For each run:

- light direction error (median, deg) and ambient r against the truth, beside the mean light (light runs only);
- albedo consistency: mean colour difference in the mask between the textures predicted from the two photos of one
  car and view (each rendered flat at that view), beside a different car's texture (the swapped pairing);
- relighting error: the prediction from photo A rendered under B's true light (light runs: the albedo shaded by it;
  runs without light: their texture as it is, and shaded by B's light), against the generator's photo B, colour L1
  in the true mask; beside the same for photo A itself (no relighting: the floor of what the texture can show).

Each photo reaches a run as its training data did (:func:`run_boxes`, :func:`run_view`): a ``--fov-crop`` / ``--crop``
run reads the crop PairData cuts round the car (intrinsics cropped alike), a whole-view run the view.

With ``--ceiling`` (no run needed) it measures, with no network, how far each light model can take a photo back to
its albedo when it is handed the true car and the true light: the generator's own per-pixel albedo, shading, highlight
and normals (:meth:`g3d.synth.builtin.BuiltinGenerator.shading_truth`) for new cars at random viewpoints, each under
two lights. The albedo a model reads from a photo is the photo divided by the model's shading (Lambertian: ambient plus
one direction; Blinn-Phong: the same less the highlight; SH9: the 9 spherical-harmonic coefficients that best explain
the photo, least squares over the car), scored by the same colour L1 in the mask as above, beside the photo itself
(a baked texture). It also reads the ambient back from each photo (:func:`fit_ambient`: the best least-squares ambient
over the pixels wholly on one face, with the true normals and highlight and the albedo's regions known, their colours
not) with the light's direction exact or turned 5, 10, 20 deg, searched over 0.1-0.8 and over the generator's own range;
and the direction and ambient searched together, its car alone known (:func:`fit_light`): how much of the light a photo
of this size holds, and how much of the ambient needs the direction.

    python bench/light.py RUN [RUN ...] [--cars 32] [--views 6] [--threads 1] [--picture docs/light_car.png]
    python bench/light.py --ceiling [--cars 128] [--resolution 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


@torch.no_grad()
def light_pairs(dataset: Path, cars: int, views: int, seed: int = 7):
    """(images A, images B float [N, 3, H, W] in [0, 1], truth A, truth B): ``cars`` new cars at ``views`` of the dataset's
    viewpoints, each under two lights (B: A with the light rows of another latent)."""
    from g3d.datasets import folder as dsf
    from g3d.datasets.manifest import read_manifest
    from g3d.synth.builtin import LIGHT_ROWS, BuiltinGenerator
    from g3d.synth.viewpoints import load_viewpoints

    m = read_manifest(dataset)
    G = BuiltinGenerator.from_record(m.generator.fields, distractors=0.0)
    layers = tuple(m.viewpoint_layers)
    vp = torch.as_tensor(load_viewpoints(str(dataset / dsf.VIEWPOINTS), G.w_dim, layers).codes, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    content = G.mapping(torch.randn(cars, G.z_dim, generator=g), m.truncation_psi)
    other = G.mapping(torch.randn(cars, G.z_dim, generator=g), m.truncation_psi)
    pick = torch.stack([torch.randperm(vp.shape[0], generator=g)[:views] for _ in range(cars)])  # [cars, views]
    ws_a = content[:, None].repeat(1, views, 1, 1)
    ws_a[:, :, list(layers)] = vp[pick]
    ws_a = ws_a.flatten(0, 1)
    ws_b = ws_a.clone()
    rows = list(LIGHT_ROWS)
    ws_b[:, rows] = other[:, None].repeat(1, views, 1, 1).flatten(0, 1)[:, rows]
    (img_a, ta), (img_b, tb) = G.synthesis_with_truth(ws_a), G.synthesis_with_truth(ws_b)
    return (img_a + 1) / 2, (img_b + 1) / 2, ta, tb


def _lighting(truth, specular=None, shininess=None):
    """The true lights of ``truth``'s images, with a run's predicted material (``specular`` float [N], ``shininess``)
    where it has one."""
    from g3d.train.light import light_direction, lighting_of

    e = truth.extra
    d = torch.tensor(light_direction(e["light_azimuth_deg"], e["light_elevation_deg"]), dtype=torch.float32)
    return lighting_of(d, torch.tensor(e["ambient"], dtype=torch.float32), specular, shininess)


def run_boxes(cfg, cams, masks, K) -> list[tuple[int, int, int]] | None:
    """The crop box ``(x0, y0, side)`` the run's training data would take round each photo's object (its mask bool
    [N, H, W], its intrinsics K float [N, 3, 3] in the photo's pixels): ``g3d train --fov-crop`` / ``--crop`` runs
    read crops (:mod:`g3d.train.crop`, as PairData and g3d predict cut them); None for a run on whole views."""
    from g3d.train.crop import crop_box, crop_mode, mask_box, run_span

    mode = crop_mode(cfg.crop)
    if mode == "none":
        return None
    span = run_span(cams.K, cfg.resolution)
    return [crop_box(mode, mask_box(np.asarray(m) > 0.5), span, float(k[0, 0])) for m, k in zip(masks, np.asarray(K))]


def run_view(images: torch.Tensor, K, size: int, boxes) -> tuple[torch.Tensor, torch.Tensor]:
    """Images float [N, C, H, W] as the run reads them, float [N, C, size, size] (each ``boxes`` crop, or the whole
    view resampled where ``boxes`` is None), and their intrinsics float [N, 3, 3] (K float [N, 3, 3], the photos')."""
    import torch.nn.functional as F

    from g3d import cameras as camlib
    from g3d.train.crop import crop_image

    K = np.asarray(K, np.float64)
    if boxes is None:
        scale = size / images.shape[-1]
        out = F.interpolate(images, size=(size, size), mode="area") if images.shape[-1] != size else images
        return out, torch.tensor(K * np.array([scale, scale, 1.0])[:, None], dtype=torch.float32)
    crops = [crop_image(np.ascontiguousarray(x.permute(1, 2, 0).numpy()), box, size) for x, box in zip(images, boxes)]
    out = torch.stack([torch.from_numpy(np.asarray(c, np.float32).reshape(size, size, -1)).permute(2, 0, 1) for c in crops])
    Ks = np.stack([camlib.crop_intrinsics(k, box, size) for k, box in zip(K, boxes)])
    return out, torch.tensor(Ks, dtype=torch.float32)


@torch.no_grad()
def figures(run: Path, img_a, img_b, ta, tb) -> list[str]:
    from g3d.render.dibr import render
    from g3d.train.evaluate import light_figures
    from g3d.train.light import head_to_light, head_to_specular, light_direction
    from g3d.train.loop import load_run

    cfg, model, cams, tpl, _ = load_run(run)
    S = cfg.resolution
    boxes = run_boxes(cfg, cams, ta.masks, ta.K)  # the run's crops (both photos of a pair share the car's mask)
    a, K = run_view(img_a, ta.K, S, boxes)
    b, _ = run_view(img_b, ta.K, S, boxes)
    R, t = torch.tensor(ta.R, dtype=torch.float32), torch.tensor(ta.t, dtype=torch.float32)
    mask = run_view(torch.tensor(np.asarray(ta.masks), dtype=torch.float32)[:, None], ta.K, S, boxes)[0] > 0.5
    outs_a = model(a, with_light=cfg.light)
    outs_b = model(b, with_light=cfg.light)
    verts, tex_a, tex_b = outs_a[0], outs_a[1], outs_b[1]

    def draw(tex, lighting=None):
        return render(verts, tpl.faces, K, R, t, S, S, face_uvs=tpl.face_uvs, texture=tex, lighting=lighting, silhouette=False)

    flat_a, flat_b = draw(tex_a), draw(tex_b)
    both = (flat_a.fragments.mask[:, None] & flat_b.fragments.mask[:, None] & mask).float()

    def in_mask(x, y, m):
        return float(((x - y).abs() * m).sum() / (3 * m.sum()).clamp(min=1))

    n = len(a)
    shift = torch.roll(torch.arange(n), 7)
    lines = [f"{run}: {'light head' if cfg.light else 'no light'}"
             + (f", albedo weight {cfg.albedo_weight}" if cfg.light else "")
             + (f", material term (shininess {model.shininess.item():.1f})" if cfg.light and model.shininess is not None else "")]
    lines.append(f"  albedo consistency (colour L1 in the mask, the same car and view under two lights) {in_mask(flat_a.image, flat_b.image, both):.4f}"
                 f" | another car's {in_mask(flat_a.image, flat_b.image[shift], both * both[shift]):.4f}")
    # where it comes from: each albedo's mean colour in the mask, against what is left about it
    mean_a, mean_b = ((x.image * both).sum((2, 3), keepdim=True) / both.sum((2, 3), keepdim=True).clamp(min=1) for x in (flat_a, flat_b))
    lines.append(f"    of which: the mean colour alone {in_mask(mean_a.expand_as(flat_a.image), mean_b.expand_as(flat_b.image), both):.4f}, "
                 f"the rest about it {in_mask(flat_a.image - mean_a, flat_b.image - mean_b, both):.4f}")
    lb = _lighting(tb)
    m = mask.float()
    if cfg.light:
        spec = head_to_specular(outs_a[-1].float())  # A's material, under either light
        shin = None if model.shininess is None else model.shininess.item()
        relit = draw(tex_a, _lighting(tb, spec, shin)).image
        own = draw(tex_a, _lighting(ta, spec, shin)).image
        d, amb = head_to_light(outs_a[-1].float())
        e = ta.extra
        f = light_figures(d.double().numpy(), amb.double().numpy(), light_direction(e["light_azimuth_deg"], e["light_elevation_deg"]),
                          np.asarray(e["ambient"], np.float64))
        lines.append(f"  light direction error {f['dir_deg']:.1f} deg (median) | the mean light {f['dir_deg_mean']:.1f}; on the "
                     f"{f['far_images']} photos lit 45+ deg from the mean light {f['dir_deg_far']:.1f} | {f['dir_deg_far_mean']:.1f}; "
                     f"ambient r {f['ambient_r']:.2f}")
        amb_b = head_to_light(outs_b[-1].float())[1]
        diff_r = np.corrcoef((amb - amb_b).double().numpy(), np.asarray(e["ambient"], np.float64) - np.asarray(tb.extra["ambient"], np.float64))[0, 1]
        lines.append(f"  a car's two photos: predicted ambients differ by {float((amb - amb_b).abs().mean()):.3f} (the truth by "
                     f"{float(np.abs(np.asarray(e['ambient']) - np.asarray(tb.extra['ambient'])).mean()):.3f}), r {diff_r:.2f} with the true difference")
        lines.append(f"  relighting error (A's albedo under B's true light vs photo B) {in_mask(relit, b, m):.4f} | "
                     f"A under its own true light vs photo A {in_mask(own, a, m):.4f}")
    else:
        lines.append(f"  relighting error (A's baked texture vs photo B) as it is {in_mask(flat_a.image, b, m):.4f}, shaded by B's light "
                     f"{in_mask(draw(tex_a, lb).image, b, m):.4f} | A's texture vs photo A {in_mask(flat_a.image, a, m):.4f}")
    return lines


@torch.no_grad()
def picture(run: Path, path: Path, view: int = 20, lights: int = 4, seed: int = 11) -> None:
    """One new car at dataset view ``view``: its photo, then under ``lights`` new lights (the light rows of other latents) the generator's own
    render (top row) beside the run's answer from the photo, its albedo shaded by that true light (bottom row)."""
    import cv2

    from g3d.datasets import folder as dsf
    from g3d.datasets import io as dsio
    from g3d.datasets.manifest import read_manifest
    from g3d.datasets.previews import grid
    from g3d.datasets.schema import encode_png
    from g3d.render.dibr import render
    from g3d.synth.builtin import LIGHT_ROWS, BuiltinGenerator
    from g3d.synth.viewpoints import load_viewpoints
    from g3d.train.light import head_to_specular
    from g3d.train.loop import load_run

    cfg, model, cams, tpl, _ = load_run(run)
    dataset = Path(cfg.folder)
    m = read_manifest(dataset)
    G = BuiltinGenerator.from_record(m.generator.fields, distractors=0.0)
    layers = tuple(m.viewpoint_layers)
    vp = torch.as_tensor(load_viewpoints(str(dataset / dsf.VIEWPOINTS), G.w_dim, layers).codes, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    ws = G.mapping(torch.randn(1 + lights, G.z_dim, generator=g), m.truncation_psi)
    ws[:, list(layers)] = vp[view % len(vp)]
    ws_all = ws[:1].repeat(1 + lights, 1, 1)
    ws_all[1:, list(LIGHT_ROWS)] = ws[1:, list(LIGHT_ROWS)]  # the same car and view, each under another latent's light
    img, truth = G.synthesis_with_truth(ws_all)
    img = (img + 1) / 2
    S = cfg.resolution
    # every image of the car as the run sees the photo: its crop (one box: one car, one view), or the whole view
    K_all = np.asarray(truth.K)[:1].repeat(len(img), 0)
    boxes = run_boxes(cfg, cams, np.asarray(truth.masks)[:1].repeat(len(img), 0), K_all)
    img, Ks = run_view(img, K_all, S, boxes)
    photo = img[:1]
    outs = model(photo, with_light=cfg.light)
    verts, tex = outs[:2]
    spec = head_to_specular(outs[-1].float()) if cfg.light else None
    shin = None if model.shininess is None else model.shininess.item()
    K = Ks[:1]
    R, t = torch.tensor(truth.R[:1], dtype=torch.float32), torch.tensor(truth.t[:1], dtype=torch.float32)
    light = _lighting(truth)
    size = 128
    up = lambda x: cv2.resize((x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), (size, size),  # noqa: E731
                              interpolation=cv2.INTER_NEAREST)
    top, bottom = [up(img[0])], [np.full((size, size, 3), 255, np.uint8)]
    for k in range(1, 1 + lights):
        from g3d.train.light import lighting_of

        lk = lighting_of(light.direction[k:k + 1], light.ambient[k:k + 1], spec, shin) if cfg.light else None
        o = render(verts, tpl.faces, K, R, t, S, S, face_uvs=tpl.face_uvs, texture=tex, lighting=lk, silhouette=False)
        top.append(up(img[k]))
        bottom.append(up(o.image[0] * o.fragments.mask[0] + photo[0] * ~o.fragments.mask[0]))
    sheet = grid(np.stack([np.stack(top), np.stack(bottom)]),
                 ["photo (its light)"] + [f"new light {k}" for k in range(1, 1 + lights)], ["truth", "g3d"])
    dsio.write_bytes(path, encode_png(np.ascontiguousarray(sheet)))
    print(f"picture: {path}")


def sh9(normals: torch.Tensor) -> torch.Tensor:
    """The 9 real spherical harmonics (bands 0-2, without their constant factors) of unit normals float [..., 3] ->
    float [..., 9]. Any light up to band 2 shades a Lambertian surface as their weighted sum."""
    x, y, z = normals.unbind(-1)
    return torch.stack([torch.ones_like(x), x, y, z, x * y, y * z, z * x, x * x - y * y, 3 * z * z - 1], -1)


CEILING_MODELS = {"lambert": "Lambertian (ambient + one direction, the true light)",
                  "phong": "Blinn-Phong (the same + the true highlight)", "sh9": "SH9 (the best 9 coefficients per photo)"}


@torch.no_grad()
def ceiling(cars: int, resolution: int, seed: int = 7) -> dict[str, tuple[float, float]]:
    """Albedo consistency and relighting (colour L1) of each light model handed the truth (see the module docstring):
    {"baked" and each of :data:`CEILING_MODELS`: (consistency, relighting)}."""
    from g3d.synth.builtin import LIGHT_ROWS, BuiltinGenerator

    G = BuiltinGenerator(resolution=resolution)
    g = torch.Generator().manual_seed(seed)
    ws_a = G.mapping(torch.randn(cars, G.z_dim, generator=g), 1.0)
    other = G.mapping(torch.randn(cars, G.z_dim, generator=g), 1.0)
    ws_b = ws_a.clone()
    ws_b[:, list(LIGHT_ROWS)] = other[:, list(LIGHT_ROWS)]  # the same car and camera under another light
    A, B = G.shading_truth(ws_a), G.shading_truth(ws_b)
    m = ((A["cover"] > 0.999) & (B["cover"] > 0.999)).float()  # pixels wholly on the car in both

    def l1(x, y):
        return float(((x - y).abs() * m).sum() / (3 * m.sum()))

    def sh_fit(T):  # float [N, 1, H, W]: the SH9 shading that best explains the photo, given the true albedo and normals
        Y = sh9(T["normal"].permute(0, 2, 3, 1))  # [N, H, W, 9]
        X = (T["albedo"].permute(0, 2, 3, 1)[..., None] * Y[..., None, :]) * m.permute(0, 2, 3, 1)[..., None]  # [N, H, W, 3, 9]
        y = T["image"].permute(0, 2, 3, 1) * m.permute(0, 2, 3, 1)
        c = torch.linalg.lstsq(X.reshape(cars, -1, 9).double(), y.reshape(cars, -1, 1).double()).solution.float()  # [N, 9, 1]
        return (Y @ c[:, None]).permute(0, 3, 1, 2)

    def albedo(T, model):
        if model == "lambert":
            return T["image"] / T["shade"].clamp(min=1e-3)
        if model == "phong":
            return (T["image"] - T["specular"]) / T["shade"].clamp(min=1e-3)
        return T["image"] / sh_fit(T).clamp(min=1e-3)

    def shaded(alb, T, model):  # an albedo under T's light, as the model draws it
        if model == "lambert":
            return (alb * T["shade"]).clamp(0, 1)
        if model == "phong":
            return (alb * T["shade"] + T["specular"]).clamp(0, 1)
        return (alb * sh_fit(T)).clamp(0, 1)

    baked = l1(A["image"], B["image"])
    out = {"baked": (baked, baked)}
    for model in CEILING_MODELS:
        aa, ab = albedo(A, model), albedo(B, model)
        out[model] = (l1(aa, ab), l1(shaded(aa, B, model), B["image"]))
    # Blinn-Phong handed a light that is off: the direction turned by some degrees, or the ambient off by 0.03 (up or
    # down at random), the true highlight kept: how much of the light's accuracy the albedo needs.
    from g3d.train.light import light_direction

    rng = np.random.default_rng(seed)

    def turned(p, deg):  # float64 [N, 3]: each true light direction of parameters p turned deg about a random axis
        d = light_direction(p["light_azimuth_deg"].numpy(), p["light_elevation_deg"].numpy())
        axis = rng.normal(size=d.shape)
        axis -= (axis * d).sum(1, keepdims=True) * d
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        return d * np.cos(np.radians(deg)) + axis * np.sin(np.radians(deg))

    pa, pb = G.parameters_of(ws_a), G.parameters_of(ws_b)

    def off_shade(T, p, deg, amb_off):
        d = torch.tensor(turned(p, deg), dtype=torch.float32)
        amb = (p["ambient"] + amb_off * torch.tensor(rng.choice([-1.0, 1.0], cars), dtype=torch.float32))[:, None, None, None]
        n = T["normal"] / T["normal"].norm(dim=1, keepdim=True).clamp(min=1e-6)
        s = amb + (1 - amb) * (n * d[:, :, None, None]).sum(1, keepdim=True).clamp(min=0)
        return torch.where(T["shade"] == 1, T["shade"], s).clamp(min=1e-3)  # the lights stay unshaded

    for deg, amb_off in ((0, 0.0), (10, 0.0), (20, 0.0), (0, 0.03)):
        aa = (A["image"] - A["specular"]) / off_shade(A, pa, deg, amb_off)
        ab = (B["image"] - B["specular"]) / off_shade(B, pb, deg, amb_off)
        out[f"phong_off_{deg}_{amb_off}"] = (l1(aa, ab), float("nan"))
    # The ambient read back from the photo: each photo's best ambient (least squares over the pixels wholly on one face,
    # each region of one true albedo given its own unknown colour, the true normals and highlight), with the light's
    # direction exact or turned some degrees: its r with the true ambient, beside the mean ambient's error.
    # Searched over 0.1-0.8, and over the generator's own range (AMBIENT_RANGE: what a network trained on it learns to
    # answer within): a photo whose visible faces all turn alike to the light holds no ambient, and the wide search
    # then answers anywhere in it.
    from g3d.synth.builtin import AMBIENT_RANGE

    photos = ((photo_pixels(A, m), pa), (photo_pixels(B, m), pb))  # each photo's pixels, read once for every fit
    true = np.concatenate([p["ambient"].numpy() for _, p in photos])
    for deg in (0, 5, 10, 20):
        for name, grid in (("", np.linspace(0.1, 0.8, 141)), ("range_", np.linspace(*AMBIENT_RANGE, 51))):
            est = np.concatenate([fit_ambient(px, turned(p, deg), grid) for px, p in photos])
            out[f"ambient_{name}{deg}"] = (float(np.corrcoef(est, true)[0, 1]), float(np.abs(est - true).mean()))
    out["ambient_mean"] = (0.0, float(np.abs(true - true.mean()).mean()))
    # Neither handed: direction and ambient searched together from each photo A, its car alone known.
    d_true = light_direction(pa["light_azimuth_deg"].numpy(), pa["light_elevation_deg"].numpy())
    d_fit, a_fit = fit_light(photos[0][0])
    ang = np.degrees(np.arccos(np.clip((d_fit * d_true).sum(1), -1, 1)))
    out["joint_direction"] = (float(np.median(ang)), float(np.mean(ang > 20)))
    out["joint_ambient"] = (float(np.corrcoef(a_fit, true[:cars])[0, 1]), float(np.abs(a_fit - true[:cars]).mean()))
    return out


def photo_pixels(T: dict, m: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each photo's pixels a light fit reads, one tuple per photo of ``T``: where ``m`` float [N, 1, H, W] is 1, the shade is not the lights' 1, and
    the pixel is one face's (its averaged normal of unit length: where the sub-samples pool faces of several normals
    neither the normal nor the shade is a face's, and least squares bends the light to fit them). -> (colour less the
    true highlight float64 [P, 3], unit normal [P, 3], the albedo's region one-hot [P, R]: the pattern known, its
    colours not)."""
    out = []
    for k in range(m.shape[0]):
        keep = (m[k, 0] > 0.5) & (T["shade"][k, 0] < 1) & (T["normal"][k].norm(dim=0) > 1 - 1e-4)
        img = (T["image"][k] - T["specular"][k]).permute(1, 2, 0)[keep].double().numpy()
        n = T["normal"][k].permute(1, 2, 0)[keep].double().numpy()
        n = n / np.linalg.norm(n, axis=1, keepdims=True).clip(1e-6)
        _, region = np.unique(np.round(T["albedo"][k].permute(1, 2, 0)[keep].numpy(), 3), axis=0, return_inverse=True)
        out.append((img, n, np.eye(int(region.max()) + 1 if region.size else 1)[region.ravel()]))
    return out


def _residuals(img: np.ndarray, n: np.ndarray, onehot: np.ndarray, directions: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """float [M, A]: the least-squares residual of one photo's pixels (:func:`photo_pixels`) under shade = a + (1 - a)
    max(0, n . l) for each direction l of ``directions`` float [M, 3] and ambient a of ``grid`` [A], each region given
    the colour that fits it best."""
    out = []
    for lo in range(0, len(directions), 128):
        c = np.clip(directions[lo:lo + 128] @ n.T, 0, None)  # [m, P]
        s = grid[None, :, None] + (1 - grid[None, :, None]) * c[:, None]  # [m, A, P]
        den = ((s * s) @ onehot).clip(1e-9)  # [m, A, R]
        res = np.full(s.shape[:2], float((img ** 2).sum()))
        for ch in range(3):
            res -= (((s * img[:, ch]) @ onehot) ** 2 / den).sum(-1)
        out.append(res)
    return np.concatenate(out)


def fit_ambient(pixels: list, direction: np.ndarray, grid: np.ndarray = np.linspace(0.1, 0.8, 141)) -> np.ndarray:
    """Each photo's ambient float [N] that best explains it (least squares over its :func:`photo_pixels` of
    :meth:`g3d.synth.builtin.BuiltinGenerator.shading_truth`): shade = a + (1 - a) max(0, n . l) with the true normals
    and ``direction`` float [N, 3], the true highlight taken off, and each region of one true albedo given the colour
    that fits it best (the albedo's pattern known, its colours not); ``a`` searched on ``grid``."""
    return np.array([grid[int(_residuals(*px, np.asarray(d, np.float64)[None], grid)[0].argmin())] for px, d in zip(pixels, direction)])


def fit_light(pixels: list) -> tuple[np.ndarray, np.ndarray]:
    """The light each photo holds when only its car is known (its :func:`photo_pixels`): direction float [N, 3] and
    ambient [N] searched together (least squares, as :func:`fit_ambient` with the direction
    unknown too): the generator's ranges (any azimuth, LIGHT_ELEVATION_RANGE, AMBIENT_RANGE), every 4 deg of azimuth
    and 3 of elevation, then every 0.5 deg round the best."""
    from g3d.synth.builtin import AMBIENT_RANGE, LIGHT_ELEVATION_RANGE
    from g3d.train.light import light_direction

    grid = np.linspace(*AMBIENT_RANGE, 26)
    lo_el, hi_el = LIGHT_ELEVATION_RANGE
    dirs, ambs = np.zeros((len(pixels), 3)), np.zeros(len(pixels))
    for k, px in enumerate(pixels):
        az, el = (x.ravel() for x in np.meshgrid(np.arange(0.0, 360.0, 4.0), np.arange(lo_el, hi_el + 1e-6, 3.0)))
        best = np.unravel_index(_residuals(*px, light_direction(az, el), grid).argmin(), (len(az), len(grid)))
        az, el = (x.ravel() for x in np.meshgrid(az[best[0]] + np.arange(-4.0, 4.01, 0.5), np.clip(el[best[0]] + np.arange(-3.0, 3.01, 0.5), lo_el, hi_el)))
        d = light_direction(az, el)
        best = np.unravel_index(_residuals(*px, d, grid).argmin(), (len(d), len(grid)))
        dirs[k], ambs[k] = d[best[0]], grid[best[1]]
    return dirs, ambs


def ceiling_lines(figs: dict[str, tuple[float, float]], cars: int, resolution: int) -> list[str]:
    baked = figs["baked"][0]
    lines = [f"ceiling: {cars} new cars at random viewpoints, {resolution} px, each under two lights (light rows resampled); "
             f"the true car and the true light, no network; colour L1 over the pixels wholly on the car",
             f"  baked (the photo as its own texture): albedo consistency {baked:.4f}, relighting (photo A for photo B) {baked:.4f}"]
    for model, name in CEILING_MODELS.items():
        cons, rel = figs[model]
        lines.append(f"  {name}: albedo consistency {cons:.4f} ({baked / max(cons, 1e-9):.1f}x below the baked), "
                     f"relighting {rel:.4f} ({100 * (1 - rel / baked):.0f}% below the baked)")
    off = [(k, v[0]) for k, v in figs.items() if k.startswith("phong_off_")]
    if off:
        parts = []
        for k, cons in off:
            deg, amb = k.split("_")[2:]
            parts.append(f"{'exact' if float(deg) == 0 and float(amb) == 0 else (f'direction {deg} deg off' if float(deg) else f'ambient {amb} off')} "
                         f"{cons:.4f} ({baked / max(cons, 1e-9):.1f}x)")
        lines.append("  Blinn-Phong, the light off (normals averaged over each pixel, so exact is not 0): albedo consistency " + ", ".join(parts))
    for name, what in (("", "searched over 0.1-0.8"), ("range_", "searched over the generator's range")):
        amb = [(k[len("ambient_" + name):], v) for k, v in figs.items() if k.startswith("ambient_" + name) and k[len("ambient_" + name):].isdigit()]
        if amb:
            lines.append(f"  the ambient read back from each photo (its best fit {what}; the true normals and highlight, one face's "
                         "pixels, the albedo's regions known, their colours not), the direction " + ", ".join(
                             f"{'exact' if deg == '0' else deg + ' deg off'}: r {r:.2f}, error {e:.3f}" for deg, (r, e) in amb)
                         + f" | the mean ambient: r 0, error {figs['ambient_mean'][1]:.3f}")
    if "joint_ambient" in figs:
        (deg, far), (r, e) = figs["joint_direction"], figs["joint_ambient"]
        lines.append(f"  the light read back from each photo, its car alone known (direction and ambient searched together over the "
                     f"generator's ranges, as above): direction {deg:.1f} deg median ({100 * far:.0f}% of photos 20+ deg off), "
                     f"ambient r {r:.2f}, error {e:.3f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path, help="g3d train runs on one built-in dataset (with and without --light)")
    ap.add_argument("--ceiling", action="store_true", help="also measure each light model handed the truth, no network (no run needed)")
    ap.add_argument("--resolution", type=int, default=64, help="with --ceiling: the photos' side")
    ap.add_argument("--cars", type=int, default=32)
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--picture", type=Path, default=None,
                    help="also write one new car under 4 new lights, the generator's renders beside the first run's answer (PNG)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.ceiling:
        t0 = time.perf_counter()
        for line in ceiling_lines(ceiling(args.cars, args.resolution), args.cars, args.resolution):
            print(line, flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    if not args.runs:
        if not args.ceiling:
            ap.error("give one or more runs, or --ceiling")
        return
    import json

    dataset = Path(json.loads((args.runs[0] / "config.json").read_text())["folder"])
    t0 = time.perf_counter()
    img_a, img_b, ta, tb = light_pairs(dataset, args.cars, args.views)
    print(f"{args.cars} new cars x {args.views} views of {dataset}, each under two lights (light rows resampled): {time.perf_counter() - t0:.0f} s")
    for run in args.runs:
        for line in figures(run, img_a, img_b, ta, tb):
            print(line, flush=True)
    if args.picture:
        picture(args.runs[0], args.picture)


if __name__ == "__main__":
    main()
