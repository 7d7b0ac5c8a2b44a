"""Per-class presets: views, viewpoint layers, COCO category, pose bins, keypoint schema.

A preset is the knowledge a researcher would otherwise pass by hand to every stage. The numbers of
views follow the paper (cars 39, horses 22, birds 8). Keypoint names follow Pascal3D+ (car), CUB-200
(bird) and a common quadruped set (horse); "left" and "right" are the object's own sides (see
:mod:`g3d.cameras`: the object's left is +x).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from g3d.errors import UsageError


@dataclass(frozen=True)
class PoseBin:
    """One annotation choice: an azimuth bin centred on ``azimuth_deg`` at ``elevation_deg``."""

    name: str  # label shown to annotators, e.g. "az030"
    azimuth_deg: float  # bin centre, degrees in [0, 360); 0 = front, 90 = left side
    elevation_deg: float = 0.0


@dataclass(frozen=True)
class ClassPreset:
    """Everything g3d assumes about one object class."""

    name: str  # "car", "horse", "bird"
    views: int  # default number of viewpoint codes (the paper's count)
    viewpoint_layers: tuple[int, ...]  # rows of ws that form the viewpoint code
    coco_category: str  # COCO class name the segmenter looks for
    coco_id: int  # contiguous id in the 80-class COCO order (detectron2 / torchvision minus 1)
    keypoints: tuple[str, ...]  # semantic keypoint names, in a fixed order
    keypoint_pairs: tuple[tuple[str, str], ...]  # (left, right) name pairs, mirror images of each other
    pose_bins: tuple[PoseBin, ...]  # azimuth bins offered to annotators
    distance: float  # default camera distance for pose-bin cameras, in object-frame units
    fov_deg: float  # default horizontal field of view for pose-bin cameras
    crop: tuple[int, int, int, int] | None = None  # (top, bottom, left, right) rows/cols kept from
    # a real checkpoint's square output; None keeps the full image
    extra_coco_categories: tuple[str, ...] = field(default=())  # accepted on request (car: truck)
    # (width along x, height along y, length along z) of a typical object in object-frame units (the
    # units of `distance`), centred on the origin: the box whose projection estimates each view's
    # pose-bin distance from its masks (g3d.sfm.posebins.estimate_distances); None = the preset distance
    reference_size: tuple[float, float, float] | None = None

    @property
    def keypoint_index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.keypoints)}

    def flip_permutation(self) -> list[int]:
        """Index permutation that swaps every left keypoint with its right twin (for mirroring)."""
        idx = self.keypoint_index
        perm = list(range(len(self.keypoints)))
        for left, right in self.keypoint_pairs:
            perm[idx[left]], perm[idx[right]] = idx[right], idx[left]
        return perm


def azimuth_bins(count: int = 12, elevation_deg: float = 0.0) -> tuple[PoseBin, ...]:
    """``count`` equal azimuth bins, the first centred on the front (0 deg)."""
    step = 360.0 / count
    return tuple(PoseBin(f"az{round(i * step):03d}", i * step, elevation_deg) for i in range(count))


def _pairs(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for n in names:
        for a, b in (("left", "right"),):
            if a in n:
                twin = n.replace(a, b)
                if twin in names:
                    out.append((n, twin))
    return tuple(out)


CAR_KEYPOINTS = (
    "left_front_wheel",
    "left_back_wheel",
    "right_front_wheel",
    "right_back_wheel",
    "upper_left_windshield",
    "upper_right_windshield",
    "upper_left_rearwindow",
    "upper_right_rearwindow",
    "left_front_light",
    "right_front_light",
    "left_back_trunk",
    "right_back_trunk",
)

BIRD_KEYPOINTS = (
    "back",
    "beak",
    "belly",
    "breast",
    "crown",
    "forehead",
    "left_eye",
    "left_leg",
    "left_wing",
    "nape",
    "right_eye",
    "right_leg",
    "right_wing",
    "tail",
    "throat",
)

HORSE_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "withers",
    "tail_base",
    "left_front_elbow",
    "right_front_elbow",
    "left_back_knee",
    "right_back_knee",
    "left_front_hoof",
    "right_front_hoof",
    "left_back_hoof",
    "right_back_hoof",
)

PRESETS: dict[str, ClassPreset] = {
    "car": ClassPreset(
        name="car",
        views=39,
        viewpoint_layers=(0, 1, 2, 3),
        coco_category="car",
        coco_id=2,
        keypoints=CAR_KEYPOINTS,
        keypoint_pairs=_pairs(CAR_KEYPOINTS),
        pose_bins=azimuth_bins(12),
        distance=4.0,
        fov_deg=40.0,
        crop=(64, 448, 0, 512),
        extra_coco_categories=("truck",),
        # About the built-in car's median box over its seven body types (g3d.synth.builtin v2; bench/shapes.py
        # prints the medians at truncation 0.7: width 0.90 with the wheels, height 0.74, length 2.09), the width a
        # little under the mesh's as the masks' edges are (bench/posebins.py): what pose-bin distances are fitted to.
        reference_size=(0.86, 0.74, 2.09),
    ),
    "horse": ClassPreset(
        name="horse",
        views=22,
        viewpoint_layers=(0, 1, 2, 3),
        coco_category="horse",
        coco_id=17,
        keypoints=HORSE_KEYPOINTS,
        keypoint_pairs=_pairs(HORSE_KEYPOINTS),
        pose_bins=azimuth_bins(12),
        distance=4.0,
        fov_deg=40.0,
        reference_size=(0.5, 1.8, 2.0),  # rough proportions (head and legs included), length 2 as the car's
    ),
    "bird": ClassPreset(
        name="bird",
        views=8,
        viewpoint_layers=(0, 1, 2, 3),
        coco_category="bird",
        coco_id=14,
        keypoints=BIRD_KEYPOINTS,
        keypoint_pairs=_pairs(BIRD_KEYPOINTS),
        pose_bins=azimuth_bins(12),
        distance=4.0,
        fov_deg=40.0,
        reference_size=(0.6, 1.1, 1.6),  # rough proportions of a perched songbird, tail included
    ),
}


def get_preset(name: str) -> ClassPreset:
    """The preset called ``name``; an unknown name is a :class:`UsageError` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown class {name!r}: choose one of {', '.join(sorted(PRESETS))}") from None
