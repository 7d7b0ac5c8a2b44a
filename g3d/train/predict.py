"""``g3d predict``: one photo of a car from anywhere -> its textured mesh and the photo's own camera.

The photo (any size, the car anywhere in it) is cut round its mask (:func:`g3d.cameras.object_box`) as the
run was trained (``g3d train --fov-crop`` or ``--crop``, with ``--camera-head``); the network gives the mesh, its
texture and the camera's direction; the rest of the camera (distance, and the turn towards where the car stands
in the photo) is solved from the mask's box with the photo's intrinsics (:func:`g3d.train.camera.solve_camera`),
then refined by render and compare against the mask, from the head's direction and the opposite one
(:func:`g3d.train.camera.predicted_cameras`), so K, R, t are the photo's, for its own pixel grid (pixel centres
at +0.5, OpenCV axes, world-to-camera).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from g3d import cameras as camlib
from g3d.datasets import io as dsio
from g3d.errors import UsageError


@dataclass
class Prediction:
    """What ``g3d predict`` wrote for one photo."""

    name: str
    glb: Path
    json: Path
    sheet: Path
    azimuth_deg: float
    elevation_deg: float
    distance: float
    mask_iou: float  # the returned mesh through the returned camera against the mask: the self-check
    touches_border: bool = False  # the mask reaches the photo's border: the car may be cut, its box (and camera) with it


def read_photo(path: Path) -> np.ndarray:
    """A PNG or JPEG file as uint8 [H, W, 3] RGB; a missing or unreadable file is a :class:`UsageError`."""
    import cv2

    if not path.is_file():
        raise UsageError(f"{path}: no such file: pass an image file (PNG or JPEG)")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UsageError(f"{path} is not an image cv2 can read: pass a PNG or JPEG photo")
    return np.ascontiguousarray(img[..., ::-1])


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise UsageError(f"--mask {path}: no such file: pass a PNG whose object pixels are non-zero")
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise UsageError(f"--mask {path} is not a readable image: pass a PNG whose object pixels are non-zero")
    if m.shape != shape:
        raise UsageError(f"--mask {path} is {m.shape[1]}x{m.shape[0]} px but its photo is {shape[1]}x{shape[0]}: give the photo's own mask")
    mask = m > 127
    if not mask.any():
        raise UsageError(f"--mask {path} marks no pixel (none above 127): give the object's mask")
    return mask


def _segment(seg, img: np.ndarray, photo: Path, labels: tuple[str, ...], min_score: float) -> np.ndarray:
    """bool [H, W]: the segmenter's best instance of ``labels`` in ``img`` (uint8 [H, W, 3]), as g3d filter picks it."""
    from g3d.filters.rules import FilterConfig, measure

    m = measure(seg.segment(img[None], [{}])[0], img.shape[:2], FilterConfig(labels=tuple(labels), min_score=min_score))
    if m.mask is None:
        raise UsageError(f"{photo}: the {seg.name} segmenter found no {' or '.join(labels)} scoring >= {min_score}: "
                         "pass --mask MASK.png, or a lower --min-score")
    return np.asarray(m.mask, bool)


def run_fov(cams, resolution: int) -> float:
    """The horizontal field of view (deg) of the run's first camera: what a photo is assumed to have unless told."""
    return camlib.fov_of(cams.K[0].detach().cpu().double().numpy(), resolution)


@torch.no_grad()
def predict(run: str | Path, photos: list[str | Path], masks: list[str | Path] | None, out: str | Path,
            fov_deg: float | None = None, device: str = "cpu", refine: bool = True, segmenter=None,
            segmenter_weights: str | None = None, segmenter_config: str | None = None, labels: tuple[str, ...] = ("car",),
            min_score: float = 0.5) -> list[Prediction]:
    """Predict the car in each photo and write ``NAME.glb``, ``NAME.json``, ``NAME_mask.png`` (the mask used) and
    ``NAME_sheet.png`` into ``out``. Each photo's mask is given (``masks``, one per photo) or found by ``segmenter``
    (``torchvision`` or ``detectron2``, :func:`g3d.filters.segmenters.make_segmenter`, or any
    :class:`g3d.filters.segmenters.Segmenter`: its best instance of ``labels`` scoring at least ``min_score``, as g3d
    filter picks it). See the module docstring."""
    from g3d.devices import check_device
    from g3d.train.camera import head_to_angles, predicted_cameras
    from g3d.datasets.schema import encode_png
    from g3d.filters.rules import border_pixels
    from g3d.train.crop import crop_box, crop_image, crop_mode, mask_box, run_span
    from g3d.train.export import write_glb
    from g3d.train.export import roughness_of
    from g3d.train.light import head_to_light, head_to_specular
    from g3d.train.loop import load_run

    check_device(device)
    photos = [Path(p) for p in photos]
    if not masks and not segmenter:
        raise UsageError(f"{photos[0]}: no mask: pass --mask MASK.png for each photo (the car's pixels non-zero), in the photos' order, "
                         "or --segmenter torchvision (or detectron2) to find it")
    if masks and segmenter:
        raise UsageError("--mask and --segmenter both give the masks: pass one of them")
    if segmenter == "ground-truth":
        raise UsageError("--segmenter ground-truth reads g3d synth's own masks, and a photo has none: use torchvision or detectron2, or pass --mask")
    if masks and len(masks) != len(photos):
        raise UsageError(f"{len(photos)} photos but {len(masks)} --mask files: give one mask per photo, in the same order")
    if fov_deg is not None and not (0 < fov_deg < 180):
        raise UsageError(f"--fov {fov_deg}: give the photo's horizontal field of view in degrees, between 0 and 180")
    cfg, model, cams, tpl, _ = load_run(run, device)
    if not (cfg.crop and cfg.camera_head):
        raise UsageError(f"{run} was trained without {' and '.join(o for o, on in (('--crop or --fov-crop', cfg.crop), ('--camera-head', cfg.camera_head)) if not on)}: "
                         "g3d predict needs a run trained with g3d train --fov-crop (or --crop) --camera-head")
    mode, span = crop_mode(cfg.crop), run_span(cams.K, cfg.resolution)
    fov = fov_deg if fov_deg is not None else run_fov(cams, cfg.resolution)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create it ({exc.strerror}): choose a writable folder") from None
    res = cfg.resolution
    seg = segmenter
    if isinstance(segmenter, str):
        from g3d.filters.segmenters import make_segmenter

        seg = make_segmenter(segmenter, weights=segmenter_weights, config_file=segmenter_config, device=device)
    results = []
    for k, photo in enumerate(photos):
        img = read_photo(photo)
        H, W = img.shape[:2]
        mpath = masks[k] if masks else None
        mask = _read_mask(Path(mpath), (H, W)) if mpath else _segment(seg, img, photo, labels, min_score)
        box_m = mask_box(mask)
        K = camlib.intrinsics(W, H, fov)  # the photo's: principal point at its centre
        box = crop_box(mode, box_m, span, float(K[0, 0]))
        crop = crop_image(img, box, res)
        crop_mask = torch.from_numpy(crop_image(mask, box, res, mask=True))[None]
        K_crop = torch.as_tensor(camlib.crop_intrinsics(K, box, res), dtype=torch.float32)[None]
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float().to(device) / 255.0
        verts, tex, _, cam_out, light_out = model.split(model(x, with_camera=True, with_light=cfg.light), True, cfg.light)
        az, el = (float(np.rad2deg(a.item())) for a in head_to_angles(cam_out))
        v = verts[0].double().cpu().numpy()
        # the head's direction completed from the mask box, then render and compare in the crop (same R, t as the photo's)
        R, t, _ = predicted_cameras(verts.float().cpu(), tpl.faces.cpu(), [az], [el], K_crop, crop_mask, refine=refine)
        R, t = R[0].double().numpy(), t[0].double().numpy()
        hard = _silhouette(verts[0], tpl.faces, K, R, t, H, W)
        iou = float((hard & mask).sum() / max(1, (hard | mask).sum()))
        texture = (tex[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
        name = photo.stem
        dsio.write_bytes(out / f"{name}_mask.png", encode_png(mask.astype(np.uint8) * 255))
        edge = border_pixels(mask)
        glb = out / f"{name}.glb"
        spec = head_to_specular(light_out.float()) if cfg.light else None
        shininess = None if model.shininess is None else model.shininess.item()
        write_glb(glb, v.astype(np.float32), tpl.faces.cpu().numpy(), tpl.face_uvs.cpu().numpy(), texture,
                  roughness=1.0 if shininess is None else roughness_of(shininess))
        az_c, el_c, dist = camlib.to_azimuth_elevation(R, t)
        lo, hi = np.percentile(v, 2, axis=0), np.percentile(v, 98, axis=0)
        record = {
            "photo": str(photo), "mask": str(mpath) if mpath else f"{seg.name} segmenter: {name}_mask.png", "width": W, "height": H,
            "K": K.tolist(), "R": R.tolist(), "t": t.tolist(),
            "azimuth_deg": float(az_c), "elevation_deg": float(el_c), "distance": float(dist),
            "size": {"width": float(hi[0] - lo[0]), "height": float(hi[1] - lo[1]), "length": float(hi[2] - lo[2])},
            "fov_deg": float(fov), "fov_assumed": fov_deg is None,
            "head": {"azimuth_deg": az, "elevation_deg": el}, "refined": bool(refine),
            "mask_iou": iou, "run": str(run),
            # a car cut by the photo's border: its box (and so distance and aim) is the visible part's, not the car's
            "mask_touches_border": edge > 0,
            "convention": "world-to-camera, OpenCV axes, object frame (y up, front +z), pixel centres at +0.5",
        }
        if cfg.light:  # the texture in the GLB is then an albedo, shaded in training by this light
            l_dir, l_amb = head_to_light(light_out.float())
            record["light"] = {"direction": l_dir[0].double().cpu().tolist(), "ambient": float(l_amb[0]),
                               "model": "shade = ambient + (1 - ambient) * max(0, n . direction); direction towards the light, object frame"}
            if spec is not None:  # the material term
                record["light"].update(specular=float(spec[0]), shininess=shininess, roughness=roughness_of(shininess),
                                       model="colour = albedo * (ambient + (1 - ambient) * max(0, n . direction)) + specular * "
                                             "max(0, n . h) ** shininess; h the half-vector of the direction and the view; "
                                             "direction towards the light, object frame")
        js = out / f"{name}.json"
        dsio.write_json(js, record)
        sheet = out / f"{name}_sheet.png"
        _write_sheet(sheet, img, mask, hard, verts[0], tex[0], tpl,
                     light=(l_dir[0].float().cpu(), l_amb[0].float().cpu(), None if spec is None else spec[:1].float().cpu(), shininess)
                     if cfg.light else None)
        results.append(Prediction(name, glb, js, sheet, float(az_c), float(el_c), float(dist), iou, edge > 0))
    return results


def _silhouette(verts: torch.Tensor, faces: torch.Tensor, K: np.ndarray, R: np.ndarray, t: np.ndarray, H: int, W: int) -> np.ndarray:
    """bool [H, W]: the mesh ``verts`` [V, 3] through the camera (K, R, t) in an H x W photo."""
    from g3d.render.dibr import render

    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
    return render(verts[None].float().cpu(), faces.cpu(), f(K), f(R), f(t), H, W, silhouette=False).fragments.mask[0].numpy()


# (label, azimuth deg, elevation deg) of the new lights a light run's sheet shows its car under (ambient NEW_AMBIENT)
NEW_LIGHTS = (("lit from az 45", 45.0, 35.0), ("lit from az 135", 135.0, 35.0), ("lit from az 270", 270.0, 20.0), ("lit from above", 0.0, 85.0))
NEW_AMBIENT = 0.35


def _write_sheet(path: Path, img: np.ndarray, mask: np.ndarray, hard: np.ndarray, verts, tex, tpl, size: int = 192,
                 light: tuple | None = None) -> None:
    """The photo, the predicted silhouette over it (outline), and the mesh turned round in 4 views. ``light``: the
    predicted (direction float [3], ambient float [], specular float [1] or None, shininess or None) of a ``--light``
    run, whose texture is an albedo: a second row shows the car at azimuth 30 under that light and under the 4
    :data:`NEW_LIGHTS` (its material, where it has one, under each)."""
    import cv2

    from g3d.datasets.previews import grid
    from g3d.datasets.schema import encode_png
    from g3d.render.dibr import render

    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
    H, W = mask.shape
    over = img.copy()
    edge = hard ^ cv2.erode(hard.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    over[edge] = (255, 40, 40)
    over[mask & ~hard] = (over[mask & ~hard] * 0.5 + np.array([0, 0, 255]) * 0.5).astype(np.uint8)
    side = max(H, W)
    def fit(a):  # noqa: E306
        canvas = np.full((side, side, 3), 255, np.uint8)
        canvas[(side - H) // 2:(side - H) // 2 + H, (side - W) // 2:(side - W) // 2 + W] = a
        return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    cells = [fit(img), fit(over)]
    Kv = camlib.intrinsics(size, size, 40.0)

    def turned(az: float, lighting=None) -> np.ndarray:  # the mesh at azimuth az on white, uint8 [size, size, 3]
        Rv, tv = camlib.from_azimuth_elevation(az, 15.0, 4.5)
        o = render(verts[None].float().cpu(), tpl.faces.cpu(), f(Kv), f(Rv), f(tv), size, size, face_uvs=tpl.face_uvs.cpu(),
                   texture=tex[None].float().cpu(), silhouette=False, lighting=lighting)
        rgb = o.image[0].permute(1, 2, 0).numpy() + (1 - o.fragments.mask[0].numpy()[..., None])
        return np.ascontiguousarray((rgb.clip(0, 1) * 255).round().astype(np.uint8))

    rows = [cells + [turned(az) for az in (30.0, 120.0, 210.0, 300.0)]]
    if light is not None:
        from g3d.train.light import light_direction, lighting_of

        lights = [("its predicted light", light[0], light[1])] + [
            (label, torch.as_tensor(light_direction(az, el), dtype=torch.float32), torch.tensor(NEW_AMBIENT)) for label, az, el in NEW_LIGHTS]
        lit = []
        for label, d, a in lights:
            cell = turned(30.0, lighting_of(d.reshape(1, 3), a.reshape(1), light[2], light[3]))
            cv2.putText(cell, label, (4, size - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
            lit.append(cell)
        rows.append(lit + [np.full((size, size, 3), 255, np.uint8)])
    sheet = grid(np.stack([np.stack(r) for r in rows]), ["photo", "predicted silhouette", "az 30", "az 120", "az 210", "az 300"])
    dsio.write_bytes(path, encode_png(np.ascontiguousarray(sheet)))
