"""What ``g3d sfm-init`` works with and returns: its config, each route's summary, the cameras in memory
(:class:`Solution`) and the run's report with its text summary. Data only: the runner is
:mod:`g3d.sfm.run`, the picture :mod:`g3d.sfm.report`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from g3d.sfm import checks as chk

METHODS = ("auto", "bins", "sfm")
ROUTES = ("best", "bins_ba", "mapping")


def _views(views: list[int], at_most: int = 12) -> str:
    text = ", ".join(str(v) for v in views[:at_most])
    return text + (f" and {len(views) - at_most} more" if len(views) > at_most else "")


@dataclass
class SfmConfig:
    """Arguments of one ``g3d sfm-init`` run."""

    folder: Path  # dataset folder with annotations/ (written by g3d annotate pull)
    method: Literal["auto", "bins", "sfm"] = "auto"  # bins: pose bins only; sfm: keypoints required; auto: keypoints where enough, bins elsewhere
    focal_guess: float | None = None  # focal length guess in pixels; None = from the class preset's field of view
    max_reproj_px: float = 8.0  # views whose mean reprojection error stays above this are re-estimated, then flagged
    route: Literal["best", "bins_ba", "mapping"] = "best"  # keypoint route(s) to run; best = both, the better kept
    min_keypoints: int = chk.MIN_KEYPOINTS  # views with fewer fitted keypoints keep their pose-bin camera
    bin_tolerance_deg: float | None = None  # allowed refined-vs-bin difference; None = one azimuth bin width
    # (elevation: the same when the bins carry several elevations, else 45 deg)
    distance: float | None = None  # every pose-bin camera's distance (and the scale of the output); None = each view's
    # from its masks (g3d.sfm.posebins.estimate_distances), the preset's where a view has none
    scale: str | float = "distance"  # "distance" (camera distances = the pose-bin ones, median ratio), "unit_box", or an object length
    preview: bool = True  # write previews/sfm_cameras.png
    seed: int = 0  # RANSAC seed


@dataclass
class RouteSummary:
    """One keypoint route's outcome, for the report."""

    route: str
    registered: int  # views it placed
    kept: int  # views that passed every check
    focal: float  # refined focal in pixels (NaN: failed)
    mean_reproj_px: float
    seconds: float
    frame: str  # how the object frame was found
    messages: list[str] = field(default_factory=list)


@dataclass
class Solution:
    """Cameras of every view (object frame, :mod:`g3d.cameras` convention). V views."""

    view_ids: np.ndarray  # int32 [V]
    has_camera: np.ndarray  # bool [V]
    K: np.ndarray  # float64 [3, 3] shared intrinsics
    R: np.ndarray  # float64 [V, 3, 3] (NaN rows: no camera)
    t: np.ndarray  # float64 [V, 3]
    source: list[str | None]  # [V] pose_bin | sfm | sfm_flagged | None
    reproj_px: np.ndarray  # float64 [V] mean reprojection error of the refined camera (NaN: none)
    num_keypoints: np.ndarray  # int [V] annotated keypoints
    flags: list[list[chk.Flag]]  # [V] failed checks of the chosen route
    points: np.ndarray  # float64 [P, 3] keypoints in the object frame (NaN: none)
    routes: list[RouteSummary]
    chosen: str | None  # route whose cameras were used
    focal_guess: float
    problems: list[str]  # input and model-wide problems
    outliers: list[str]  # keypoints ignored as outliers, "view 3 left_front_wheel (41 px)"
    bin_R: np.ndarray  # float64 [V, 3, 3] pose-bin cameras (NaN: no bin)
    bin_t: np.ndarray
    refined_R: np.ndarray  # float64 [V, 3, 3] the chosen route's cameras, object frame, flagged ones included
    refined_t: np.ndarray
    usable: np.ndarray | None = None  # bool [V] False where the written camera is contradicted (see :func:`usable_views`)
    comparison: str | None = None  # how far the two routes' cameras are apart, when both ran
    results: dict = field(default_factory=dict)  # route name -> colmap.RouteResult in the route's own frame ("<name>/again": re-solved without flagged views)


@dataclass
class SfmReport:
    """What a ``g3d sfm-init`` run did."""

    cameras: Path  # cameras.parquet
    preview: Path | None  # previews/sfm_cameras.png
    method: str
    views: int  # views in the dataset
    written: int  # camera rows written
    sources: dict[str, int]  # rows per source
    focal: float  # shared focal of the output
    focal_guess: float
    chosen_route: str | None
    routes: list[RouteSummary]
    comparison: str | None
    flagged: dict[int, list[str]]  # view_id -> messages of its failed checks
    corrected: dict[int, str]  # view_id -> sfm_bin_corrected | sfm_labels_swapped
    unusable: list[int]  # views with a camera that the keypoints contradict (usable = False)
    no_camera: list[int]  # views without a camera (rejected, or no bin and not refined)
    problems: list[str]
    outliers: list[str]
    seconds: float

    def lines(self, max_flagged: int = 15) -> list[str]:
        """What the CLI prints after a run: counts, routes, flagged views with causes, problems."""
        rep = self
        lines = [
            f"{rep.written} of {rep.views} views have a camera ({', '.join(f'{n} {s}' for s, n in rep.sources.items() if n)}); "
            f"focal {rep.focal:.1f} px (guess {rep.focal_guess:.1f}); method {rep.method}"
            + (f", route {rep.chosen_route}" if rep.chosen_route else ""),
        ]
        for r in rep.routes:
            if np.isfinite(r.focal):
                lines.append(
                    f"  route {r.route}: placed {r.registered}, kept {r.kept}, mean reprojection {r.mean_reproj_px:.2f} px, "
                    f"focal {r.focal:.1f} px, {r.seconds:.2f} s; object frame: {r.frame}"
                )
            else:
                lines.append(f"  route {r.route}: failed ({'; '.join(r.messages) or 'no model'})")
            for m in r.messages if np.isfinite(r.focal) else []:
                lines.append(f"    {m}")
        if rep.comparison:
            lines.append(f"  routes compared: {rep.comparison}")
        corrected = {v: s for v, s in rep.corrected.items()}
        if corrected:
            lines.append(
                f"corrected from the keypoints ({len(corrected)}): "
                + "; ".join(f"view {v} ({'its pose bin was wrong' if s == 'sfm_bin_corrected' else 'its left/right labels were mirrored'})" for v, s in sorted(corrected.items()))
            )
        if rep.unusable:
            lines.append(f"not usable ({len(rep.unusable)}, g3d train skips them): views {_views(rep.unusable)}: keypoints and pose bin disagree and nothing settles which is wrong; fix the annotation and rerun")
        if rep.flagged:
            lines.append(f"flagged views ({len(rep.flagged)}); those not corrected keep their pose-bin camera:")
            # The same cause in several views is printed once, with the views.
            by_text: dict[str, list[int]] = {}
            for v, msgs in sorted(rep.flagged.items()):
                for m in msgs:
                    text = m.split(": ", 1)[1] if m.startswith(f"view {v}: ") else m
                    by_text.setdefault(text, []).append(v)
            shown = 0
            for text, views in by_text.items():
                if shown == max_flagged:
                    lines.append(f"  ... and {len(by_text) - shown} more (all in the report's `flagged`)")
                    break
                which = f"view {views[0]}" if len(views) == 1 else f"views {_views(views)}"
                lines.append(f"  {which}: {text}")
                shown += 1
        if rep.outliers:
            shown = ", ".join(rep.outliers[:10]) + (f" and {len(rep.outliers) - 10} more" if len(rep.outliers) > 10 else "")
            lines.append(f"keypoints ignored as outliers: {shown}")
        if rep.no_camera:
            lines.append(f"no camera for views {', '.join(str(v) for v in rep.no_camera[:20])}")
        for p in rep.problems:
            lines.append(f"note: {p}")
        return lines
