"""Segmenter backends behind one interface: RGB images in, instances (mask, label, score) out.

========================  ======================================================================
name                      what it runs
========================  ======================================================================
``ground-truth``          the built-in generator's exact instance masks, read from the rows
``torchvision``           torchvision's Mask R-CNN (ResNet-50 FPN v2), COCO weights or ``--weights``
``detectron2``            Mask R-CNN / PointRend from a detectron2 config and weights (installed
                          from detectron2's source; it is not on the package registry)
========================  ======================================================================

Every backend returns, per image, a list of :class:`Instance` with COCO class names as labels, so
the rules never care which backend ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from g3d.errors import MissingDependencyError, UsageError
from g3d.weights import load_state_dict

# The 80 COCO classes in detectron2's contiguous order (car 2, bird 14, horse 17).
COCO80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass
class Instance:
    """One detected object: ``mask`` bool [H, W], COCO class name ``label``, confidence ``score``."""

    mask: np.ndarray
    label: str
    score: float


class Segmenter:
    """Interface: ``segment(images uint8 [N, H, W, 3] RGB, rows) -> N lists of Instance``.

    ``rows`` are the dataset rows of the images (dicts); only the ground-truth backend reads them.
    """

    name = "segmenter"

    def segment(self, images: np.ndarray, rows: Sequence[dict[str, Any]]) -> list[list[Instance]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"segmenter": self.name}


class GroundTruthSegmenter(Segmenter):
    """The generator's own instance masks: every non-zero value of the row's mask PNG is one instance."""

    name = "ground-truth"

    def __init__(self, label: str = "car") -> None:
        self.label = label

    def segment(self, images: np.ndarray, rows: Sequence[dict[str, Any]]) -> list[list[Instance]]:
        from g3d.datasets.schema import decode_png

        out = []
        for row in rows:
            if row.get("mask") is None:
                raise UsageError(
                    f"row sample {row['sample_id']} view {row['view_id']} has no ground-truth mask: use --segmenter torchvision or detectron2"
                )
            labels = decode_png(row["mask"]["bytes"], grey=True)
            insts = [Instance(mask=labels == v, label=self.label, score=1.0) for v in sorted(np.unique(labels), reverse=True) if v != 0]
            out.append(insts)
        return out


class TorchvisionSegmenter(Segmenter):
    """torchvision's Mask R-CNN ResNet-50 FPN v2, batched, on CPU or CUDA.

    ``weights``: ``"coco"`` (torchvision's COCO weights through its weights API; needs them cached or
    a network), a path to a state dict saved with ``torch.save``, or ``"random"`` (random
    initialisation, for plumbing tests only). Images are not rescaled (the model sees them at their
    own size).
    """

    name = "torchvision"

    def __init__(self, weights: str = "coco", device: str = "cpu", min_score: float = 0.05) -> None:
        try:
            import torch
            from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, maskrcnn_resnet50_fpn_v2
        except ImportError:  # pragma: no cover - torchvision is a core dependency
            raise MissingDependencyError("torchvision", None, "the torchvision segmenter") from None
        self.device = torch.device(device)
        self.weights = weights
        self.categories = list(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"])
        kw = dict(box_score_thresh=min_score)
        if weights == "coco":
            try:
                model = maskrcnn_resnet50_fpn_v2(weights=MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1, **kw)
            except Exception as exc:
                raise UsageError(
                    f"cannot load torchvision's COCO Mask R-CNN weights ({type(exc).__name__}): download them once or pass --weights PATH"
                ) from None
        else:
            model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=len(self.categories), **kw)
            if weights != "random":
                model.load_state_dict(load_state_dict(weights))
        self.model = model.to(self.device).eval()

    def segment(self, images: np.ndarray, rows: Sequence[dict[str, Any]]) -> list[list[Instance]]:
        import torch

        if len(images) == 0:
            return []
        h, w = images.shape[1:3]
        self.model.transform.min_size = (min(h, w),)
        self.model.transform.max_size = max(h, w)
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            outputs = self.model(list(x))
        result = []
        for o in outputs:
            masks = (o["masks"][:, 0] > 0.5).cpu().numpy()
            labels = o["labels"].cpu().tolist()
            scores = o["scores"].cpu().tolist()
            result.append([Instance(m, self.categories[c], float(s)) for m, c, s in zip(masks, labels, scores)])
        return result

    def describe(self) -> dict[str, Any]:
        return {"segmenter": self.name, "weights": self.weights}


# ---------------------------------------------------------------------------- detectron2


def detectron2_inputs(images: np.ndarray) -> list[dict[str, Any]]:
    """RGB uint8 [N, H, W, 3] -> detectron2 model inputs: CHW uint8 BGR tensors with height/width.

    No resizing: ``model(inputs)`` keeps the images' size (``DefaultPredictor`` would resize and
    takes one image at a time).
    """
    import torch

    out = []
    for im in images:
        bgr = np.ascontiguousarray(im[..., ::-1].transpose(2, 0, 1))
        out.append({"image": torch.from_numpy(bgr), "height": im.shape[0], "width": im.shape[1]})
    return out


def detectron2_instances(outputs: Sequence[dict[str, Any]], class_names: Sequence[str]) -> list[list[Instance]]:
    """detectron2 outputs (``{"instances": Instances}`` per image) -> lists of :class:`Instance`.

    Reads ``pred_masks`` bool [K, H, W], ``scores`` float [K] and ``pred_classes`` int64 [K]
    (contiguous class ids into ``class_names``).
    """
    result = []
    for out in outputs:
        inst = out["instances"].to("cpu")
        masks = inst.pred_masks.numpy().astype(bool)
        scores = inst.scores.numpy().tolist()
        classes = inst.pred_classes.numpy().tolist()
        if any(not 0 <= c < len(class_names) for c in classes):
            raise UsageError(f"the segmenter predicted class id {max(classes)}, beyond the {len(class_names)} COCO classes g3d names: "
                             "use a COCO-trained model")
        result.append([Instance(m, class_names[c], float(s)) for m, c, s in zip(masks, classes, scores)])
    return result


class Detectron2Segmenter(Segmenter):
    """Mask R-CNN or PointRend through detectron2 (``--config-file`` and ``--weights``), batched."""

    name = "detectron2"

    def __init__(self, config_file: str | None, weights: str | None, device: str = "cpu", min_score: float = 0.05) -> None:
        try:
            import detectron2  # noqa: F401
            from detectron2.checkpoint import DetectionCheckpointer
            from detectron2.config import get_cfg
            from detectron2.modeling import build_model
        except ImportError:
            raise MissingDependencyError(
                "detectron2",
                None,
                "the detectron2 segmenter",
                hint="it is not on the package registry; build it from its source repository "
                "(pip install --no-build-isolation -e <detectron2 checkout>) or use --segmenter torchvision",
            ) from None
        if config_file is None or weights is None:
            raise UsageError("the detectron2 segmenter needs --config-file FILE and --weights PATH (e.g. a Mask R-CNN R50-FPN config and its model_final.pkl)")
        file_shapes = read_detectron2_weights(config_file, weights)  # read once, safely, before detectron2 does
        cfg = get_cfg()
        if "PointRend" in Path(config_file).read_text(errors="ignore"):
            try:
                from detectron2.projects import point_rend

                point_rend.add_pointrend_config(cfg)
            except ImportError:
                raise UsageError("this config needs PointRend: install detectron2 editable from its source so detectron2.projects.point_rend imports") from None
        try:
            cfg.merge_from_file(config_file)
        except Exception as exc:  # YAML syntax, unknown keys
            raise UsageError(f"--config-file {config_file} is not a detectron2 config ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]}): pass a config from detectron2's configs/ folder") from None
        n_classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        if n_classes != len(COCO80):
            raise UsageError(f"--config-file {config_file} predicts {n_classes} classes, not COCO's 80 (an LVIS or Cityscapes model?): "
                             "g3d names detections by the COCO classes; use a COCO-trained Mask R-CNN or PointRend")
        cfg.MODEL.WEIGHTS = weights
        cfg.MODEL.DEVICE = device
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = min_score
        self.model = build_model(cfg).eval()
        model_shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        missing, share = weight_coverage(model_shapes, file_shapes)
        if share > MAX_MISSING_SHARE:
            raise UsageError(f"--weights {weights} leaves {share:.0%} of the model's parameters of --config-file {config_file} "
                             f"unset (e.g. {', '.join(missing[:3])}): they would run as random layers; pass the weights made for this config")
        DetectionCheckpointer(self.model).load(weights)
        self.class_names = list(COCO80)
        self.weights = weights
        self.config_file = config_file

    def segment(self, images: np.ndarray, rows: Sequence[dict[str, Any]]) -> list[list[Instance]]:
        import torch

        with torch.no_grad():
            outputs = self.model(detectron2_inputs(images))
        return detectron2_instances(outputs, self.class_names)

    def describe(self) -> dict[str, Any]:
        """What the segmentation cache is keyed on: the weights and the config, each by path and content."""
        return {"segmenter": self.name, "weights": self.weights, "weights_sha256": _file_digest(self.weights),
                "config_file": self.config_file, "config_sha256": _file_digest(self.config_file)}


# A weights file may leave at most this share of a model's parameter values unset (detectron2 itself
# only logs missing keys and runs those layers with random values).
MAX_MISSING_SHARE = 0.05


def weight_coverage(model: dict[str, tuple[int, ...]], weights: dict[str, tuple[int, ...]]) -> tuple[list[str], float]:
    """(names of the model's parameters a weights file does not set with the right shape, largest first;
    their share of all the model's parameter values). ``model`` and ``weights`` map names to shapes."""
    import math

    size = {k: math.prod(s) for k, s in model.items()}
    missing = sorted((k for k, s in model.items() if weights.get(k) != s), key=lambda k: -size[k])
    total = sum(size.values())
    return missing, (sum(size[k] for k in missing) / total if total else 0.0)


def read_detectron2_weights(config_file: str, weights: str) -> dict[str, tuple[int, ...]]:
    """Before detectron2 sees them: both paths exist, and the weights hold only data. Returns parameter
    name -> shape of the weights (under their ``model`` key if they have one).

    detectron2 itself unpickles model-zoo ``.pkl`` weights with Python's unrestricted unpickler; g3d reads
    them first with its restricted one (:func:`g3d.safepickle.read_data_pickle`), so a pickle that
    would run code is refused before detectron2 opens it. Other weights go through ``torch.load(weights_only=True)``."""
    if not Path(config_file).is_file():
        raise UsageError(f"--config-file {config_file}: no such file")
    if not Path(weights).is_file():
        raise UsageError(f"--weights {weights}: no such file")
    if str(weights).endswith(".pkl"):
        from g3d.safepickle import read_data_pickle

        obj = read_data_pickle(weights, "detectron2 weights file", encoding="latin1")
    else:
        from g3d.weights import load_state_dict

        obj = load_state_dict(weights, "--weights")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise UsageError(f"--weights {weights} holds a {type(obj).__name__}, not detectron2 weights (a dict with 'model')")
    return {str(k): tuple(getattr(v, "shape", ())) for k, v in obj.items()}


def _file_digest(path: str | None) -> str | None:
    """sha256 of a file's bytes (None when there is no such file), so a changed file is a changed key."""
    from g3d.datasets.io import file_sha256

    return None if path is None or not Path(path).is_file() else file_sha256(Path(path))


SEGMENTERS = ("ground-truth", "torchvision", "detectron2")


def make_segmenter(
    name: str,
    label: str = "car",  # class name the ground-truth backend reports
    weights: str | None = None,
    config_file: str | None = None,
    device: str = "cpu",
    min_score: float = 0.05,  # detections below this are not returned at all
) -> Segmenter:
    """The backend called ``name``; an unknown name lists the valid ones."""
    if name == "ground-truth":
        return GroundTruthSegmenter(label)
    if name == "torchvision":
        return TorchvisionSegmenter(weights or "coco", device, min_score)
    if name == "detectron2":
        return Detectron2Segmenter(config_file, weights, device, min_score)
    raise UsageError(f"unknown segmenter {name!r}: choose one of {', '.join(SEGMENTERS)}")
