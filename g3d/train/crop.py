"""Object-centred crops of photos, with the camera that goes with them.

A photo of any size with the object anywhere becomes a ``size`` x ``size`` crop around the object's mask
box (:func:`g3d.cameras.object_box`); the crop's intrinsics follow exactly from the box
(:func:`g3d.cameras.crop_intrinsics`). Pixels outside the photo are filled with the edge colour for
images and 0 for masks.
"""

from __future__ import annotations

import numpy as np

CROP_MARGIN = 0.15  # the square crop's margin round the object's box, each side, as a fraction of its longer side


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
