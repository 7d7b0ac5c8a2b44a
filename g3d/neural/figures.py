"""Pictures of the neural renderer: training previews, the paper's swap figure (Fig. 10) and turntables,
as arrays and as the files ``g3d neural swap`` and ``g3d neural render`` write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from g3d.neural.mapping import NeuralMapping, camera_features
from g3d.neural.sources import Sources, ImageCameras, as_cameras, draw_latents, read_image, synthesize


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [0, 1] -> uint8 [N, H, W, 3]."""
    return (images.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def swap_ws(mapping: NeuralMapping, src: Sources, images: torch.Tensor, views,
            shape_from=None, texture_from=None, background_from=None, camera: torch.Tensor | None = None,
            gate: str = "learned", light_from=None) -> torch.Tensor:
    """ws float [N, num_ws, w_dim] for photos ``images`` float [N, 3, H, W] in [0, 1] taken with cameras ``views``
    (:class:`~g3d.neural.sources.ImageCameras`, or dataset view ids int64 [N]); ``*_from`` int64 [N] (index of the photo each row takes that source from; None: its
    own); ``camera`` float [N, 4] (:func:`camera_features`; None: each photo's own view). ``light_from`` likewise, for
    a mapping with a light code."""
    cam, verts, tex, bg, _, light = read_image(src, images, views)
    codes = mapping.codes(verts, tex, bg, light)
    if light_from is not None and not mapping.has_light:
        raise ValueError("this mapping has no light code (its inverse-graphics run was trained without --light)")
    for k, pick in enumerate((shape_from, texture_from, background_from, light_from)):
        if pick is not None:
            codes[k] = codes[k][torch.as_tensor(pick, device=codes.device)]
    return mapping.assemble(cam if camera is None else camera, codes, gate)


@torch.no_grad()
def swap_grid(mapping: NeuralMapping, src: Sources, images: torch.Tensor, views, a: int, b: int, c: int,
              d: int = -1) -> tuple[np.ndarray, list[str]]:
    """The paper's Fig. 10 for every photo: columns input, its re-rendering, shape from photo ``a``, texture
    from ``b``, background from ``c``, light from ``d`` (a mapping with a light code; each alone), and all of them
    together. A negative index keeps each photo's own source (no column for it alone): ``c = -1`` swaps shape and
    texture only. uint8 [N, C, H, W, 3] and the column labels."""
    N = images.shape[0]
    picks = [[k] * N if k >= 0 else None for k in (a, b, c, d)]
    cols = [images, synthesize(src, swap_ws(mapping, src, images, views))]
    labels = ["input", "re-rendered"]
    for k, name in enumerate(("shape", "texture", "bg", "light")):
        if picks[k] is not None:
            one = [None] * 4
            one[k] = picks[k]
            cols.append(synthesize(src, swap_ws(mapping, src, images, views, *one[:3], light_from=one[3])))
            labels.append(f"{name} of {(a, b, c, d)[k]}")
    if sum(p is not None for p in picks) > 1:
        cols.append(synthesize(src, swap_ws(mapping, src, images, views, *picks[:3], light_from=picks[3])))
        labels.append("together")
    return np.stack([to_uint8(x) for x in cols], 1), labels


def write_swap_figure(path: Path, mapping: NeuralMapping, src: Sources, images: torch.Tensor, views,
                      a: int, b: int, c: int, d: int = -1) -> Path:
    """:func:`swap_grid` as a PNG at ``path``, cells enlarged 2x, rows numbered by photo. ``a``, ``b``, ``c``, ``d``
    (shape, texture, background and light from; -1: each photo its own) outside the photos are a :class:`UsageError`,
    and so is a light swap on a mapping without a light code."""
    from g3d.datasets import io as dsio
    from g3d.datasets.previews import grid
    from g3d.datasets.schema import encode_png
    from g3d.errors import UsageError

    n = len(images)
    for name, k in (("--shape-from", a), ("--texture-from", b), ("--background-from", c), ("--light-from", d)):
        if not -1 <= k < n:
            raise UsageError(f"{name} {k}: there are {n} photos, so give 0..{n - 1} (or -1: each its own)")
    if d >= 0 and not mapping.has_light:
        raise UsageError(f"--light-from {d}: this neural run has no light code (its inverse run was trained without --light); "
                         "train the inverse run with --light and the neural run on it, or drop --light-from")
    cells, labels = swap_grid(mapping, src, images, views, a, b, c, d)
    sheet = grid(np.repeat(np.repeat(cells, 2, 2), 2, 3), labels, [str(i) for i in range(n)])
    path.parent.mkdir(parents=True, exist_ok=True)
    dsio.write_bytes(path, encode_png(np.ascontiguousarray(sheet)))
    return path


@torch.no_grad()
def turntable(mapping: NeuralMapping, src: Sources, image: torch.Tensor, view, azimuths, elevation: float, distance: float):
    """One photo float [3, H, W] taken with camera ``view`` (a dataset view id, or :class:`ImageCameras` of one)
    re-rendered by the generator at each of ``azimuths`` (degrees) and by its textured mesh at the same cameras:
    (gan uint8 [A, H, W, 3], mesh uint8 [A, H, W, 3])."""
    from g3d import cameras as camlib

    A = len(azimuths)
    img = image[None].expand(A, -1, -1, -1)
    one = as_cameras(src, torch.tensor([int(view)]) if isinstance(view, int) else view)
    views = one[torch.zeros(A, dtype=torch.int64, device=one.ids.device)]
    cam = camera_features(np.asarray(azimuths, float), np.full(A, elevation), np.full(A, distance)).to(img.device)
    gan = synthesize(src, swap_ws(mapping, src, img, views, camera=cam))
    verts, tex, _ = src.inverse(image[None])
    R, t = camlib.from_azimuth_elevation(np.asarray(azimuths, float), np.full(A, elevation), np.full(A, distance))
    K = one.K[0].expand(A, 3, 3)
    from g3d.render.dibr import render

    o = render(verts.expand(A, -1, -1).float(), src.tpl.faces, K, torch.tensor(R, dtype=torch.float32, device=img.device),
               torch.tensor(t, dtype=torch.float32, device=img.device), src.H, src.W, face_uvs=src.tpl.face_uvs,
               texture=tex.expand(A, -1, -1, -1).float(), silhouette=False)
    mesh = o.image + (1 - o.fragments.mask[:, None].float())
    return to_uint8(gan), to_uint8(mesh)


def _pillow_image():
    """Pillow's ``Image`` module (the ``gif`` extra), or a :class:`MissingDependencyError` naming it."""
    try:
        from PIL import Image
    except ImportError:
        from g3d.errors import MissingDependencyError

        raise MissingDependencyError("Pillow", "gif", "g3d neural render's turntable.gif") from None
    return Image


def encode_gif(frames: np.ndarray, milliseconds: int = 120) -> bytes:
    """An animated GIF (looping) of ``frames`` uint8 [A, H, W, 3], ``milliseconds`` per frame (Pillow: the ``gif`` extra)."""
    import io

    Image = _pillow_image()
    buf = io.BytesIO()
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=milliseconds, loop=0)
    return buf.getvalue()


def write_turntable(out: Path, mapping: NeuralMapping, src: Sources, image: torch.Tensor, view, azimuths,
                    elevation: float, distance: float) -> tuple[Path, Path, Path]:
    """:func:`turntable` written into folder ``out``: ``frames/NNN.png`` (the generator's), ``turntable.gif``
    (those enlarged 2x) and ``sheet.png`` (the generator's row above the textured mesh's). Returns the three paths."""
    from g3d.datasets import io as dsio
    from g3d.datasets.previews import grid
    from g3d.datasets.schema import encode_png

    _pillow_image()  # missing: one line before anything is computed or written
    gan, mesh = turntable(mapping, src, image, view, azimuths, elevation, distance)
    frames = dsio.fresh_dir(out / "frames")
    for k, f in enumerate(gan):
        (frames / f"{k:03d}.png").write_bytes(encode_png(np.ascontiguousarray(f)))
    dsio.replace_dir(frames, out / "frames")
    dsio.write_bytes(out / "turntable.gif", encode_gif(np.repeat(np.repeat(gan, 2, 1), 2, 2)))
    sheet = grid(np.stack([gan, mesh]), [f"{a:.0f}" for a in azimuths], ["GAN", "mesh"])
    dsio.write_bytes(out / "sheet.png", encode_png(np.ascontiguousarray(sheet)))
    return out / "frames", out / "turntable.gif", out / "sheet.png"


@torch.no_grad()
def preview(path: Path, mapping: NeuralMapping, src: Sources, seed: int, n: int = 4) -> None:
    """Rows: ``n`` fixed latents no training batch draws; columns: the generator's image, its re-rendering
    through the mapping, and shape / texture / background taken from the next row's image."""
    from g3d.datasets import io as dsio
    from g3d.datasets.previews import grid
    from g3d.datasets.schema import encode_png

    was = mapping.training
    mapping.eval()
    try:
        ws, views = draw_latents(src, seed, 0, n, stream=1)
        images = synthesize(src, ws)
        nxt = [(i + 1) % n for i in range(n)]
        cols = [images, synthesize(src, swap_ws(mapping, src, images, views))]
        for k in range(len(mapping.sources)):
            pick = [None] * 4
            pick[k] = nxt
            cols.append(synthesize(src, swap_ws(mapping, src, images, views, *pick[:3], light_from=pick[3])))
    finally:
        mapping.train(was)
    sheet = grid(np.stack([to_uint8(x) for x in cols], 1), ["gan", "mapped", "shape+1", "tex+1", "bg+1", "light+1"][: 2 + len(mapping.sources)])
    path.parent.mkdir(parents=True, exist_ok=True)
    dsio.write_bytes(path, encode_png(np.ascontiguousarray(sheet)))
