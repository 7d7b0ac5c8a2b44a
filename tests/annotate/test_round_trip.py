"""Round trip on a real Label Studio: push, annotate through the API as a person would, pull.

The simulated annotator writes exactly the JSON the web UI writes (choices; keypointlabels with
x/y in percent of original_width/original_height), from the built-in generator's ground truth
plus small noise. Every keypoint must come back within 0.5 px, every pose bin exactly.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from g3d.annotate.client import ConnectionConfig, connect
from g3d.annotate.dataset import read_rows
from g3d.annotate.pull import PullConfig, pull
from g3d.annotate.push import MODEL_TRUTH, PushConfig, push
from g3d.classes import get_preset

pytestmark = pytest.mark.slow

CAR = get_preset("car")
KP_NOISE_PX = 0.3  # the annotator's click error
AZ_NOISE_DEG = 3.0  # the annotator's judgement error


def _nearest_bin(az: float) -> str:
    d = [min(abs(az % 360 - b.azimuth_deg), 360 - abs(az % 360 - b.azimuth_deg)) for b in CAR.pose_bins]
    return CAR.pose_bins[int(np.argmin(d))].name


def _tasks(conn, project_id):
    return list(conn.sdk.tasks.list(project=project_id, page_size=1000, fields="all"))


@pytest.fixture(scope="module")
def round_trip(label_studio, small_dataset_factory):
    """Push poses (personal access token) and keypoints (legacy token), annotate, pull."""
    folder = small_dataset_factory("roundtrip", seed=11)
    pat = ConnectionConfig(url=label_studio.url, api_key=label_studio.personal_access_token)
    legacy = ConnectionConfig(url=label_studio.url, api_key=label_studio.legacy_token)
    poses = push(PushConfig(folder=folder, kind="poses", connection=pat))
    keypoints = push(PushConfig(folder=folder, kind="keypoints", connection=legacy))
    rng = np.random.default_rng(0)
    vp = pq.read_table(folder / "viewpoints.parquet").to_pandas().set_index("view_id")
    chosen, clicked = {}, {}
    with connect(legacy) as conn:
        for task in _tasks(conn, poses.project_id):
            v = int(task.data["view_id"])
            seen = float(vp.loc[v, "gt_azimuth_deg"]) + rng.uniform(-AZ_NOISE_DEG, AZ_NOISE_DEG)
            chosen[v] = _nearest_bin(seen)
            result = [
                {"from_name": "azimuth", "to_name": "image", "type": "choices", "value": {"choices": [chosen[v]]}},
                {"from_name": "elevation", "to_name": "image", "type": "choices", "value": {"choices": ["el000"]}},
            ]
            conn.sdk.annotations.create(id=task.id, result=result)
        kp_tasks = _tasks(conn, keypoints.project_id)
        truth = read_rows(folder, {(int(t.data["view_id"]), int(t.data["sample_id"])) for t in kp_tasks}, ["keypoints_2d", "keypoints_visible", "width", "height"])
        for task in kp_tasks:
            v, s = int(task.data["view_id"]), int(task.data["sample_id"])
            row = truth[(v, s)]
            w, h = row["width"], row["height"]
            xy = np.asarray(row["keypoints_2d"]).reshape(-1, 2)
            result = []
            for i, name in enumerate(CAR.keypoints):
                x, y = xy[i]
                if not (row["keypoints_visible"][i] and 1 <= x <= w - 1 and 1 <= y <= h - 1):
                    continue
                x += rng.uniform(-KP_NOISE_PX, KP_NOISE_PX)
                y += rng.uniform(-KP_NOISE_PX, KP_NOISE_PX)
                rid = f"r{v}x{i}"
                value = {"x": x / w * 100.0, "y": y / h * 100.0, "width": 0.26, "keypointlabels": [name]}
                common = {"id": rid, "to_name": "image", "original_width": w, "original_height": h, "image_rotation": 0}
                result.append({**common, "from_name": "keypoints", "type": "keypointlabels", "value": value})
                occluded = len(clicked) % 7 == 3  # now and then the annotator marks a guessed point
                if occluded:
                    result.append({**common, "from_name": "visibility", "type": "choices", "value": {**value, "choices": ["occluded"]}})
                clicked[(v, s, name)] = (x, y, not occluded, xy[i])
            conn.sdk.annotations.create(id=task.id, result=result)
    report = pull(PullConfig(folder=folder, connection=pat))
    return folder, poses, keypoints, chosen, clicked, report


def test_push_makes_one_pose_task_per_view_and_keypoint_tasks_with_local_files(round_trip, label_studio):
    folder, poses, keypoints, *_ = round_trip
    views = pq.read_table(folder / "viewpoints.parquet").column("view_id").to_pylist()
    assert poses.created and poses.tasks_imported == len(views) == 6 and poses.images == "local-files"
    assert keypoints.tasks_imported == len(views) and keypoints.images == "local-files"
    assert poses.predictions == {MODEL_TRUTH: 6} and keypoints.predictions == {MODEL_TRUTH: 6}
    assert sorted(p.name for p in (folder / "annotate" / "poses").iterdir()) == [f"view_{v:03d}.png" for v in views]
    with connect(ConnectionConfig(url=label_studio.url, api_key=label_studio.legacy_token)) as conn:
        tasks = _tasks(conn, poses.project_id)
        vp = pq.read_table(folder / "viewpoints.parquet").to_pandas().set_index("view_id")
        for t in tasks:
            v = t.data["view_id"]
            assert t.data["image"].startswith("/data/local-files/?d=") and len(t.data["samples"]) == 4
            # the ground-truth pre-annotation is the bin nearest to the generator's azimuth
            pred = t.predictions[0]
            pred = pred if isinstance(pred, dict) else pred.dict()
            az = [r for r in pred["result"] if r["from_name"] == "azimuth"][0]["value"]["choices"][0]
            assert az == _nearest_bin(vp.loc[v, "gt_azimuth_deg"]) and pred["model_version"] == MODEL_TRUTH
            img = conn.request("GET", t.data["image"])  # the server serves the grid image itself
            assert img.content == (folder / "annotate" / "poses" / f"view_{v:03d}.png").read_bytes()
        kp = _tasks(conn, keypoints.project_id)[0]
        stored = read_rows(folder, {(kp.data["view_id"], kp.data["sample_id"])}, ["image"])
        assert conn.request("GET", kp.data["image"]).content == next(iter(stored.values()))["image"]["bytes"]


def test_every_pose_bin_comes_back_exactly(round_trip, label_studio):
    folder, _, _, chosen, _, report = round_trip
    k = {r.kind: r for r in report.kinds}["poses"]
    assert k.complete and k.issues == [] and k.written == folder / "annotations" / "pose_bins.parquet"
    t = pq.read_table(k.written)
    assert t.schema.names == ["view_id", "azimuth_bin", "azimuth_deg", "elevation_deg", "rejected", "annotator", "updated_at"]
    assert [t.schema.field(c).type for c in t.schema.names] == [pa.int32(), pa.string(), pa.float64(), pa.float64(), pa.bool_(), pa.string(), pa.string()]
    df = t.to_pandas().set_index("view_id")
    assert sorted(df.index) == sorted(chosen)
    vp = pq.read_table(folder / "viewpoints.parquet").to_pandas().set_index("view_id")
    for v, name in chosen.items():
        assert df.loc[v, "azimuth_bin"] == name
        assert df.loc[v, "azimuth_deg"] == float(name[2:]) and df.loc[v, "elevation_deg"] == 0.0 and not df.loc[v, "rejected"]
        assert df.loc[v, "annotator"] == label_studio.username and df.loc[v, "updated_at"].endswith("Z")
        gt = vp.loc[v, "gt_azimuth_deg"] % 360
        if abs((gt % 30) - 15) > AZ_NOISE_DEG:  # not within the noise of a bin boundary: the ground-truth bin
            assert name == _nearest_bin(gt)


def test_every_keypoint_comes_back_within_half_a_pixel(round_trip):
    folder, _, _, _, clicked, report = round_trip
    k = {r.kind: r for r in report.kinds}["keypoints"]
    assert k.complete and k.issues == [] and k.rows == len(clicked) > 6 * 4
    t = pq.read_table(folder / "annotations" / "keypoints.parquet")
    assert t.schema.names == ["view_id", "sample_id", "name", "x", "y", "visible"]
    assert [t.schema.field(c).type for c in t.schema.names] == [pa.int32(), pa.int64(), pa.string(), pa.float64(), pa.float64(), pa.bool_()]
    df = t.to_pandas()
    assert len(df) == len(clicked)
    assert any(not vis for _, _, vis, _ in clicked.values())
    for r in df.itertuples():
        x, y, visible, gt = clicked[(r.view_id, r.sample_id, r.name)]
        assert abs(r.x - x) < 1e-6 and abs(r.y - y) < 1e-6  # exactly what the annotator clicked
        assert abs(r.x - gt[0]) <= 0.5 and abs(r.y - gt[1]) <= 0.5  # and within 0.5 px of the truth
        assert r.visible == visible


def test_pushing_again_adds_nothing(round_trip, label_studio):
    folder, poses, *_ = round_trip
    again = push(PushConfig(folder=folder, kind="poses", connection=ConnectionConfig(url=label_studio.url, api_key=label_studio.legacy_token)))
    assert not again.created and again.project_id == poses.project_id
    assert again.tasks_imported == 0 and again.tasks_existing == 6


def test_upload_when_the_server_does_not_share_the_disk(label_studio, small_dataset_factory, tmp_path_factory):
    """Outside the server's document root: auto falls back to upload; the pull sees the same pixels."""
    import shutil
    import tempfile
    from pathlib import Path

    from g3d.annotate.client import LabelStudioError

    src = small_dataset_factory("upload", seed=12, views=3)
    outside = Path(tempfile.mkdtemp(prefix="g3d-annotate-outside-"))
    try:
        folder = outside / "car"
        shutil.copytree(src, folder)
        cc = ConnectionConfig(url=label_studio.url, api_key=label_studio.personal_access_token)
        with pytest.raises(LabelStudioError, match="cannot serve .* as local files"):
            push(PushConfig(folder=folder, kind="keypoints", connection=cc, images="local-files"))
        r = push(PushConfig(folder=folder, kind="keypoints", connection=cc))
        assert r.images == "upload" and "local files unavailable" in r.images_note and r.tasks_imported == 3
        with connect(cc) as conn:
            tasks = _tasks(conn, r.project_id)
            assert all(t.data["image"].startswith("/data/upload/") for t in tasks)
            t0 = tasks[0]
            stored = read_rows(folder, {(t0.data["view_id"], t0.data["sample_id"])}, ["image"])
            assert conn.request("GET", t0.data["image"]).content == next(iter(stored.values()))["image"]["bytes"]
            # An annotator who accepts every pre-annotation in bulk (the web UI's action).
            conn.sdk.actions.create(id="predictions_to_annotations", project=r.project_id, selected_items={"all": True, "excluded": []})
        report = pull(PullConfig(folder=folder, connection=cc))
        assert report.kinds[0].complete and report.kinds[0].issues == []
        df = pq.read_table(folder / "annotations" / "keypoints.parquet").to_pandas()
        truth = read_rows(folder, {(int(a), int(b)) for a, b in zip(df.view_id, df.sample_id)}, ["keypoints_2d"])
        idx = CAR.keypoint_index
        for row in df.itertuples():
            gt = np.asarray(truth[(row.view_id, row.sample_id)]["keypoints_2d"]).reshape(-1, 2)[idx[row.name]]
            assert abs(row.x - gt[0]) < 1e-9 and abs(row.y - gt[1]) < 1e-9
    finally:
        shutil.rmtree(outside, ignore_errors=True)
