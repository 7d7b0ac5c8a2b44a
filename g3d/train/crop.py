"""Object-centred crops of photos, with the camera that goes with them.

A photo of any size with the object anywhere becomes a ``size`` x ``size`` crop around the object's mask
box; the crop's intrinsics follow exactly from the box (:func:`g3d.cameras.crop_intrinsics`). Pixels
outside the photo are filled with the edge colour for images and 0 for masks. Two ways to size the box
(:data:`CROP_MODES`): ``box``, the mask's box plus a margin (:func:`g3d.cameras.object_box`: every object
fills the crop alike, so its apparent size is gone), and ``fov``, a fixed field of view, the training
views' own, centred on the mask (:func:`g3d.cameras.fov_box`: a car twice as far looks half as big, as
in the training views, and the crop's focal length in pixels is the training one).
"""

from __future__ import annotations

import numpy as np

CROP_MARGIN = 0.15  # the square crop's margin round the object's box, each side, as a fraction of its longer side
FOV_MARGIN = 0.03  # the fov crop widens only where the car would not fit with this margin (whole views frame cars up to ~85%)
CROP_MODES = ("none", "box", "fov")  # whole views; crops of the mask's box; crops of the views' field of view round the mask


def crop_mode(value) -> str:
    """A run's ``crop`` setting (False / True from older runs, or one of :data:`CROP_MODES`) -> one of CROP_MODES."""
    if value is True:
        return "box"
    if value is False or value is None:
        return "none"
    if value not in CROP_MODES:
        raise ValueError(f"crop {value!r}: choose one of {', '.join(CROP_MODES)}")
    return str(value)


def crop_box(mode: str, bbox, span: float, fx: float) -> tuple[int, int, int]:
    """The square crop ``(x0, y0, side)`` round an object's mask box ``bbox = (x0, y0, x1, y1)`` for crop ``mode``
    ("box" or "fov"). ``span``: the fov crop's side over the focal length (the training views' width / fx);
    ``fx``: this image's focal length in its own pixels."""
    from g3d import cameras as camlib

    if mode == "fov":
        return camlib.fov_box(bbox, span * fx, FOV_MARGIN)
    return camlib.object_box(bbox, CROP_MARGIN)


def crop_image(image: np.ndarray, box: tuple[int, int, int], size: int, mask: bool = False) -> np.ndarray:
    """The square ``box = (x0, y0, side)`` of ``image`` (uint8 [H, W, 3], or bool/uint8 [H, W] with ``mask``)
    resampled to ``size`` x ``size`` by area averaging (masks: area fraction >= 0.5). Pixel centres map to pixel
    centres as :func:`g3d.cameras.crop_intrinsics` assumes."""
    import cv2

    x0, y0, side = (int(v) for v in box)
    H, W = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - W, y0 + side - H)
    src = image.astype(np.float32) if mask else image
    if pad:
        border = dict(borderType=cv2.BORDER_CONSTANT, value=0) if mask else dict(borderType=cv2.BORDER_REPLICATE)
        src = cv2.copyMakeBorder(src, pad, pad, pad, pad, **border)
    patch = src[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    out = cv2.resize(patch, (size, size), interpolation=interp)
    return out >= 0.5 if mask else out


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (x1, y1 exclusive) of a bool mask [H, W]; a ValueError where it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("the mask is empty")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def run_span(K, resolution: int) -> float:
    """A run's fov-crop span (crop side over focal length) from its cameras' intrinsics ``K`` float [V, 3, 3] at the
    training ``resolution``: the training crops' width over their (median) focal length."""
    import torch

    return float(resolution / torch.median(torch.as_tensor(K)[:, 0, 0].double()))
