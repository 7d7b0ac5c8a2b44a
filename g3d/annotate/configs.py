"""Label Studio label configs generated from a class preset, and the schema pull validates against.

Three task kinds, one project each:

``poses``
    One task per view: a grid image of several objects in that view, so the annotator judges the
    viewpoint rather than one odd sample. Single choices for the azimuth bin (the preset's
    ``pose_bins``), the elevation bin, and a "reject this view" choice.
``keypoints``
    One task per (view, reference object): the stored image itself (so Label Studio's percent
    coordinates map back to the stored pixels exactly), KeyPointLabels for the class's keypoint
    names with each left/right pair in one colour, and a per-point "occluded" choice for points
    placed by guess.
``masks``
    Polygon labels on a handful of stored images, for later use.

Every result carries ``from_name`` (the control's name below) and ``to_name`` = ``image``.
Label Studio does not check results against the config; :mod:`g3d.annotate.pull` does, with the
:class:`LabelSchema` returned here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree import ElementTree as ET
from xml.sax.saxutils import quoteattr

from g3d.classes import ClassPreset, PoseBin
from g3d.errors import UsageError

KINDS = ("poses", "keypoints", "masks")

IMAGE = "image"  # name of the Image tag; to_name of every result
AZIMUTH = "azimuth"  # Choices: one azimuth bin per view
ELEVATION = "elevation"  # Choices: one elevation bin per view
REJECT = "reject"  # Choices: the single "reject this view" choice
REJECT_VALUE = "reject this view"
KEYPOINTS = "keypoints"  # KeyPointLabels
VISIBILITY = "visibility"  # per-region Choices on a keypoint
OCCLUDED_VALUE = "occluded"
MASK = "mask"  # PolygonLabels

# Distinct colours (Sasha Trubetskoy's list); a left/right pair shares one.
PALETTE = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
    "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff",
    "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1",
)  # fmt: skip


def elevation_name(elevation_deg: float) -> str:
    """Choice value of an elevation bin, in the style of the azimuth bins: 0 -> "el000"."""
    deg = round(elevation_deg)
    return f"el{deg:03d}" if deg >= 0 else f"el-{-deg:02d}"


@dataclass(frozen=True)
class LabelSchema:
    """One task kind's label config and the values a valid result may hold."""

    kind: str  # "poses" | "keypoints" | "masks"
    class_name: str  # preset name, e.g. "car"
    xml: str  # the Label Studio label config
    azimuth: dict[str, PoseBin] = field(default_factory=dict)  # azimuth choice -> its bin (poses)
    elevation: dict[str, float] = field(default_factory=dict)  # elevation choice -> degrees (poses)
    keypoints: tuple[str, ...] = ()  # keypoint label values, the preset's order (keypoints)
    mask_labels: tuple[str, ...] = ()  # polygon label values (masks)

    @property
    def controls(self) -> tuple[str, ...]:
        """``from_name`` values a result of this kind may carry."""
        return {"poses": (AZIMUTH, ELEVATION, REJECT), "keypoints": (KEYPOINTS, VISIBILITY), "masks": (MASK,)}[self.kind]


def keypoint_colours(preset: ClassPreset) -> dict[str, str]:
    """Keypoint name -> colour; the two keypoints of a left/right pair get the same colour."""
    out: dict[str, str] = {}
    twin = {}
    for left, right in preset.keypoint_pairs:
        twin[left], twin[right] = right, left
    k = 0
    for name in preset.keypoints:
        if name in out:
            continue
        out[name] = PALETTE[k % len(PALETTE)]
        if name in twin:
            out[twin[name]] = out[name]
        k += 1
    return out


def _elevations(preset: ClassPreset) -> dict[str, float]:
    values = sorted({b.elevation_deg for b in preset.pose_bins})
    return {elevation_name(e): e for e in values}


def _choice(value: str, hint: str | None = None) -> str:
    return f"<Choice value={quoteattr(value)}" + (f" hint={quoteattr(hint)}" if hint else "") + "/>"


def _side(az: float) -> str:
    names = {0: "front", 90: "left side", 180: "back", 270: "right side"}
    a = round(az) % 360
    if a in names:
        return names[a]
    lo = max(k for k in names if k < a)
    hi = (lo + 90) % 360
    return f"between {names[lo]} and {names[hi]}"


def pose_schema(preset: ClassPreset) -> LabelSchema:
    """Label config of the pose-bin tasks (one per view, a grid of objects in that view)."""
    azimuth = {b.name: b for b in preset.pose_bins}
    elevation = _elevations(preset)
    lines = [
        "<View>",
        '  <Header value="View $view_id: which way do these objects face? (azimuth 0 = the front faces you, 90 = the object\'s left side)"/>',
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true"/>',
        '  <Header value="Azimuth bin" size="5"/>',
        f'  <Choices name="{AZIMUTH}" toName="{IMAGE}" choice="single-radio" showInline="true">',
        *(f"    {_choice(b.name, f'{b.azimuth_deg:g} deg: {_side(b.azimuth_deg)}')}" for b in preset.pose_bins),
        "  </Choices>",
        '  <Header value="Elevation bin" size="5"/>',
        f'  <Choices name="{ELEVATION}" toName="{IMAGE}" choice="single-radio" showInline="true">',
        *(f"    {_choice(n, f'{e:g} deg above the object')}" for n, e in elevation.items()),
        "  </Choices>",
        f'  <Choices name="{REJECT}" toName="{IMAGE}" choice="single">',
        f"    {_choice(REJECT_VALUE, 'the objects in this view are not seen from one viewpoint, or not the class at all')}",
        "  </Choices>",
        "</View>",
    ]
    return LabelSchema("poses", preset.name, "\n".join(lines) + "\n", azimuth=azimuth, elevation=elevation)


def keypoint_schema(preset: ClassPreset) -> LabelSchema:
    """Label config of the keypoint tasks (one per view and reference object)."""
    colours = keypoint_colours(preset)
    lines = [
        "<View>",
        '  <Header value="View $view_id, object $sample_id: click every keypoint you can place; left/right = the object\'s own sides"/>',
        f'  <KeyPointLabels name="{KEYPOINTS}" toName="{IMAGE}" strokeWidth="2">',
        *(f"    <Label value={quoteattr(n)} background={quoteattr(colours[n])}/>" for n in preset.keypoints),
        "  </KeyPointLabels>",
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true"/>',
        f'  <Choices name="{VISIBILITY}" toName="{IMAGE}" perRegion="true" choice="single" visibleWhen="region-selected">',
        f"    {_choice(OCCLUDED_VALUE, 'hidden behind the object: position guessed')}",
        "  </Choices>",
        "</View>",
    ]
    return LabelSchema("keypoints", preset.name, "\n".join(lines) + "\n", keypoints=tuple(preset.keypoints))


def mask_schema(preset: ClassPreset) -> LabelSchema:
    """Label config of the mask tasks (polygons on a handful of stored images)."""
    labels = (preset.name,)
    lines = [
        "<View>",
        f'  <Header value="View $view_id, object $sample_id: outline the {preset.name}"/>',
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true"/>',
        f'  <PolygonLabels name="{MASK}" toName="{IMAGE}" strokeWidth="2" pointSize="small" opacity="0.4">',
        *(f"    <Label value={quoteattr(n)} background={quoteattr(PALETTE[3])}/>" for n in labels),
        "  </PolygonLabels>",
        "</View>",
    ]
    return LabelSchema("masks", preset.name, "\n".join(lines) + "\n", mask_labels=labels)


def schema_for(kind: str, preset: ClassPreset) -> LabelSchema:
    """The :class:`LabelSchema` of ``kind`` ("poses", "keypoints" or "masks")."""
    if kind == "poses":
        return pose_schema(preset)
    if kind == "keypoints":
        return keypoint_schema(preset)
    if kind == "masks":
        return mask_schema(preset)
    raise UsageError(f"unknown annotation kind {kind!r}: choose one of {', '.join(KINDS)}")


def _canonical(el: ET.Element) -> tuple:
    return (el.tag, tuple(sorted(el.attrib.items())), tuple(_canonical(c) for c in el))


def same_config(a: str, b: str) -> bool:
    """True when two label configs have the same tags and attributes (whitespace ignored)."""
    try:
        return _canonical(ET.fromstring(a)) == _canonical(ET.fromstring(b))
    except ET.ParseError:
        return a.strip() == b.strip()
