"""The photos ``g3d neural swap`` and ``g3d neural render`` read, named by specs: ``PHOTO.png`` (a picture
framed as the dataset's images are, from any viewpoint: its camera from the inverse network's camera head),
``PHOTO.png@VIEW`` (a picture taken from the dataset's view VIEW) or ``SAMPLE:VIEW`` (an image of the inverse
run's dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from g3d.errors import UsageError
from g3d.neural.sources import ImageCameras, Sources, cameras_for
from g3d.train.predict import read_photo


def parse_photo_spec(spec: str, views: int) -> tuple[Path | None, int | None, int | None]:
    """(photo file or None, dataset sample or None, view or None) of ``spec``: a plain file name names no view
    (None: its camera is predicted); a view outside 0..``views``-1 is a :class:`UsageError`."""
    if "@" in spec:
        head, _, v = spec.rpartition("@")
    elif ":" in spec and spec.partition(":")[0].strip().isdigit():
        head, _, v = spec.partition(":")
    else:
        return Path(spec), None, None
    try:
        view = int(v)
        sample = None if "@" in spec else int(head)
    except ValueError:
        raise UsageError(f"{spec!r}: write PHOTO.png@VIEW or SAMPLE:VIEW with whole numbers (views 0..{views - 1})") from None
    if not 0 <= view < views:
        raise UsageError(f"{spec!r}: view {view} is outside the dataset's 0..{views - 1}")
    return (Path(head) if sample is None else None), sample, view


def dataset_image(folder: Path, sample: int, view: int) -> np.ndarray:
    """The image of ``sample`` in ``view`` of dataset ``folder``, uint8 [H, W, 3] RGB (only that row is read)."""
    from g3d.datasets import folder as dsf
    from g3d.datasets.schema import decode_png
    from g3d.datasets.shards import read_shard

    for p in dsf.shard_paths(folder):
        t = read_shard(p, ["image"], filters=[("sample_id", "==", sample), ("view_id", "==", view)])
        if t.num_rows:
            return decode_png(t.column("image")[0].as_py()["bytes"])
    raise UsageError(f"{folder} has no image of sample {sample} in view {view}: see `g3d info {folder}`")


ASPECT_TOLERANCE = 0.02  # a photo whose width / height differs more than this from the dataset's is refused


def read_photos(src: Sources, specs: list[str], device: str = "cpu") -> tuple[torch.Tensor, ImageCameras]:
    """Images float [N, 3, H, W] in [0, 1] at the inverse network's input size and their cameras (the dataset
    view's; for a plain photo, the camera head's), from ``specs`` (see the module docstring). A photo not
    shaped as the dataset's images is a :class:`UsageError` (resizing it would stretch the car)."""
    import cv2

    imgs, views, plain = [], [], []
    for spec in specs:
        path, sample, view = parse_photo_spec(spec, src.views)
        img = read_photo(path) if sample is None else dataset_image(Path(src.dataset), sample, view)
        h, w = img.shape[:2]
        if abs((w / h) / (src.W / src.H) - 1) > ASPECT_TOLERANCE:
            raise UsageError(f"{spec}: the photo is {w}x{h} but the run's images are {src.W}x{src.H} (width x height): crop it "
                             "to that shape, the car framed as in the dataset's images")
        img = cv2.resize(img, (src.W, src.H), interpolation=cv2.INTER_AREA) if img.shape[:2] != (src.H, src.W) else img
        imgs.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255)
        views.append(-1 if view is None else view)
        if view is None:
            plain.append(spec)
    if plain and not src.has_head:
        raise UsageError(f"{plain[0]} names no view, and the inverse-graphics run {src.run or ''} predicts no camera (trained "
                         "without --camera-head): write PHOTO.png@VIEW (the dataset view it was taken from) or SAMPLE:VIEW, "
                         "or use a run trained with --camera-head")
    images = torch.stack(imgs).to(device)
    return images, cameras_for(src, None, torch.tensor(views), images, source="head")
