"""The ``g3d sfm-init`` picture of the cameras around the keypoint cloud (the text summary is
:meth:`g3d.sfm.solution.SfmReport.lines`).

The picture (``previews/sfm_cameras.png``) has two panels in the object frame: seen from above
(front up, the object's left on the left) and from its right side (front to the right, up up).
Keypoints are dots (left side blue, right side red, others black); each camera is a dot with a
short line along its viewing direction, coloured by source (green ``sfm``, teal the corrected
``sfm_bin_corrected`` and ``sfm_labels_swapped``, orange ``sfm_flagged``, grey ``pose_bin``) and labelled with its view id; where a flagged view's
refined camera exists it is drawn as a red cross joined to the pose-bin camera used instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from g3d import cameras

if TYPE_CHECKING:  # pragma: no cover
    from g3d.datasets.annotations import Annotations
    from g3d.sfm.solution import Solution

COLOURS = {  # BGR for OpenCV
    "sfm": (60, 160, 40),
    "sfm_bin_corrected": (160, 160, 0),
    "sfm_labels_swapped": (160, 160, 0),
    "sfm_flagged": (0, 140, 255),
    "pose_bin": (140, 140, 140),
    "refined": (40, 40, 220),
    "left": (200, 90, 30),
    "right": (40, 40, 210),
    "other": (20, 20, 20),
}


def _panel(canvas, origin, size, title, project, sol: "Solution", ann: "Annotations") -> None:
    import cv2

    x0, y0 = origin
    w, h = size
    cv2.rectangle(canvas, (x0, y0), (x0 + w - 1, y0 + h - 1), (200, 200, 200), 1)
    cv2.putText(canvas, title, (x0 + 6, y0 + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    V = len(sol.view_ids)
    have = sol.has_camera
    centres = cameras.center_of(sol.R[have], sol.t[have]) if have.any() else np.zeros((0, 3))
    refined_ok = np.isfinite(sol.refined_R).all(axis=(1, 2))
    refined_c = cameras.center_of(sol.refined_R[refined_ok], sol.refined_t[refined_ok]) if refined_ok.any() else np.zeros((0, 3))
    pts = sol.points[np.isfinite(sol.points).all(axis=1)]
    every = np.concatenate([centres, refined_c, pts, np.zeros((1, 3))])
    uv_all = project(every)
    lo, hi = uv_all.min(axis=0), uv_all.max(axis=0)
    span = max(float((hi - lo).max()), 1e-6)
    margin = 28
    s = (min(w, h - 20) - 2 * margin) / span
    mid = (lo + hi) / 2

    def to_px(p3):
        uv = project(np.atleast_2d(p3))
        px = (uv - mid) * s
        return np.stack([x0 + w / 2 + px[:, 0], y0 + 10 + h / 2 - px[:, 1]], axis=1)

    # keypoints
    if len(pts):
        names = [ann.preset.keypoints[p % len(ann.preset.keypoints)] for p in range(len(sol.points))]  # S objects: S sets
        ok = np.isfinite(sol.points).all(axis=1)
        xy = to_px(sol.points[ok])
        for (u, v), name in zip(xy, [n for n, o in zip(names, ok) if o]):
            side = "left" if "left" in name else "right" if "right" in name else "other"
            cv2.circle(canvas, (int(u), int(v)), 3, COLOURS[side], -1, cv2.LINE_AA)
    # cameras
    for i in range(V):
        if not have[i]:
            continue
        c = cameras.center_of(sol.R[i], sol.t[i])
        fwd = sol.R[i][2]  # viewing direction in world coordinates
        a, b = to_px(np.stack([c, c + 0.6 * fwd]))
        col = COLOURS[sol.source[i]]
        cv2.line(canvas, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), col, 1, cv2.LINE_AA)
        cv2.circle(canvas, (int(a[0]), int(a[1])), 4, col, -1, cv2.LINE_AA)
        cv2.putText(canvas, str(int(sol.view_ids[i])), (int(a[0]) + 5, int(a[1]) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, col, 1, cv2.LINE_AA)
        if sol.source[i] == "sfm_flagged" and refined_ok[i]:
            r = to_px(cameras.center_of(sol.refined_R[i], sol.refined_t[i]))[0]
            cv2.line(canvas, (int(a[0]), int(a[1])), (int(r[0]), int(r[1])), COLOURS["refined"], 1, cv2.LINE_AA)
            cv2.drawMarker(canvas, (int(r[0]), int(r[1])), COLOURS["refined"], cv2.MARKER_TILTED_CROSS, 9, 1, cv2.LINE_AA)


def write_preview(path: Path, sol: "Solution", ann: "Annotations") -> Path:
    """Draw the cameras around the keypoint cloud (top and side views) to ``path`` (PNG), atomically."""
    import cv2

    from g3d.datasets import io as dsio

    W, H = 1000, 540
    canvas = np.full((H, W, 3), 255, np.uint8)
    _panel(canvas, (0, 0), (W // 2, H - 40), "top: front up, object's left on the left", lambda p: np.stack([-p[:, 0], p[:, 2]], axis=1), sol, ann)
    _panel(canvas, (W // 2, 0), (W // 2, H - 40), "side (from its right): front right, up up", lambda p: np.stack([p[:, 2], p[:, 1]], axis=1), sol, ann)
    legend = [("sfm", "refined"), ("sfm_bin_corrected", "corrected"), ("sfm_flagged", "flagged: pose-bin camera"), ("pose_bin", "pose bin"), ("refined", "flagged refined camera"),
              ("left", "left keypoints"), ("right", "right keypoints")]
    x = 10
    for key, text in legend:
        cv2.circle(canvas, (x + 5, H - 18), 5, COLOURS[key], -1, cv2.LINE_AA)
        cv2.putText(canvas, text, (x + 14, H - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x += 26 + 7 * len(text)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", canvas)
    if not ok:  # pragma: no cover - cv2 fails only on impossible shapes
        raise ValueError("PNG encoding of the preview failed")
    dsio.write_bytes(path, buf.tobytes())
    return path
