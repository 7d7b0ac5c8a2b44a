"""A scripted annotator: answers a dataset's pushed Label Studio tasks from the built-in generator's truth.

It writes, through the server's API, the same result JSON a person writes in the web UI: a pose bin
(the bin nearest the true azimuth, elevation 0) per pose task, and the visible keypoints (true pixel
positions plus Gaussian click noise) per keypoint task, with the typical mistakes a person makes
injected on request: a pose bin 180 deg off, a view whose left/right labels are exchanged, a missed
point. Used by the end-to-end test of ``g3d pipeline`` and by ``bench/pipeline.py``; never by the
stages themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Mistakes:
    """Which views get which mistake (view ids)."""

    flipped_bins: tuple[int, ...] = ()  # pose bin 180 deg off (front/back confusion)
    swapped_labels: tuple[int, ...] = ()  # every left/right keypoint label exchanged in the view
    missed_points: tuple[int, ...] = ()  # one visible keypoint not clicked in the view


def answer_tasks(folder: Path, url: str, api_key: str, noise_px: float = 1.0, mistakes: Mistakes | None = None,
                 seed: int = 0, kinds: tuple[str, ...] = ("poses", "keypoints")) -> dict[str, int]:
    """Answer every unanswered task of ``folder``'s pushed projects; returns {kind: tasks answered}."""
    from g3d.annotate import configs
    from g3d.annotate.client import ConnectionConfig, connect
    from g3d.annotate.dataset import load_record, read_dataset_info, read_rows
    from g3d.annotate.push import keypoint_result, nearest_pose_bin, pose_result
    mistakes = mistakes or Mistakes()
    info = read_dataset_info(folder)
    preset = info.preset
    record = load_record(folder)
    if not info.gt_azimuth:
        raise ValueError(f"{folder} has no generator truth to answer from (the built-in generator's datasets do)")
    rng = np.random.default_rng(seed)
    pairs = {left: right for left, right in preset.keypoint_pairs}
    pairs.update({right: left for left, right in preset.keypoint_pairs})
    done: dict[str, int] = {}
    with connect(ConnectionConfig(url=url, api_key=api_key)) as conn:
        for kind in kinds:
            if kind not in record:
                continue
            pid = int(record[kind]["project_id"])
            tasks = [t for t in conn.sdk.tasks.list(project=pid, page_size=1000, fields="all") if not t.total_annotations]
            done[kind] = 0
            if kind == "poses":
                schema = configs.schema_for("poses", preset)
                for task in tasks:
                    v = int(task.data["view_id"])
                    az = info.gt_azimuth[v] + (180.0 if v in mistakes.flipped_bins else 0.0)
                    a, e = nearest_pose_bin(schema, az, 0.0)
                    conn.sdk.annotations.create(id=task.id, result=pose_result(a, e))
                    done[kind] += 1
            elif kind == "keypoints":
                keys = {(int(t.data["view_id"]), int(t.data["sample_id"])) for t in tasks}
                truth = read_rows(folder, keys, ["keypoints_2d", "keypoints_visible", "width", "height"])
                for task in tasks:
                    v, s = int(task.data["view_id"]), int(task.data["sample_id"])
                    row = truth[(v, s)]
                    w, h = int(row["width"]), int(row["height"])
                    xy = np.asarray(row["keypoints_2d"], np.float64).reshape(-1, 2)
                    pts = []
                    for i, name in enumerate(preset.keypoints):
                        x, y = xy[i] + rng.normal(0.0, noise_px, 2)
                        if row["keypoints_visible"][i] and 0.5 <= x <= w - 0.5 and 0.5 <= y <= h - 0.5:
                            label = pairs.get(name, name) if v in mistakes.swapped_labels else name
                            pts.append((label, float(x), float(y), True))
                    if v in mistakes.missed_points and pts:
                        pts.pop(int(rng.integers(len(pts))))
                    conn.sdk.annotations.create(id=task.id, result=keypoint_result(pts, w, h))
                    done[kind] += 1
    return done
