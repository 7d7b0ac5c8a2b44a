"""Bad results posted to a real Label Studio (it accepts them all) are reported by name on pull,
and a partial pull does not replace what an earlier pull wrote unless asked."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from g3d.annotate.client import ConnectionConfig, connect
from g3d.annotate.pull import PullConfig, pull
from g3d.annotate.push import PushConfig, push

pytestmark = pytest.mark.slow

W = H = 64


def _choice(name, value):
    return {"from_name": name, "to_name": "image", "type": "choices", "value": {"choices": [value]}}


def _kp(label, x, y, rid, w=W, h=H):
    value = {"x": 100.0 * x / w, "y": 100.0 * y / h, "width": 0.26, "keypointlabels": [label]}
    return {"id": rid, "from_name": "keypoints", "to_name": "image", "type": "keypointlabels", "original_width": w, "original_height": h, "value": value}


@pytest.fixture(scope="module")
def bad(label_studio, small_dataset_factory):
    folder = small_dataset_factory("validation", seed=13)
    cc = ConnectionConfig(url=label_studio.url, api_key=label_studio.personal_access_token)
    poses = push(PushConfig(folder=folder, kind="poses", connection=cc, predictions="none"))
    kps = push(PushConfig(folder=folder, kind="keypoints", connection=cc, predictions="none"))
    conn = connect(cc)
    by_view = lambda pid: {int(t.data["view_id"]): t.id for t in conn.sdk.tasks.list(project=pid, page_size=1000)}  # noqa: E731
    pt, kt = by_view(poses.project_id), by_view(kps.project_id)
    ann = conn.sdk.annotations.create
    # poses: 0 fine; 1 unknown bin; 2 two annotators disagree; 3 only skipped; 4 nobody; 5 unknown control
    ann(id=pt[0], result=[_choice("azimuth", "az030")])
    ann(id=pt[1], result=[_choice("azimuth", "az045")])
    ann(id=pt[2], result=[_choice("azimuth", "az090")])
    ann(id=pt[2], result=[_choice("azimuth", "az120")])
    ann(id=pt[3], result=[_choice("azimuth", "az000")], was_cancelled=True)
    ann(id=pt[5], result=[_choice("azimuth", "az300"), _choice("paint", "red")])
    # keypoints: 0 unknown label + two labels on one point; 1 outside the image; 2 clicked twice;
    # 3 placed on an image of another size; 4 two annotations disagree; 5 nobody
    two = _kp("left_front_wheel", 9, 9, "z")
    two["value"]["keypointlabels"] = ["left_front_wheel", "right_front_wheel"]
    ann(id=kt[0], result=[_kp("hood_ornament", 10, 10, "a"), _kp("left_back_wheel", 20, 30, "b"), two])
    ann(id=kt[1], result=[_kp("left_front_wheel", W * 1.3, 10, "c"), _kp("left_back_wheel", 20, 30, "d")])
    ann(id=kt[2], result=[_kp("left_front_wheel", 10, 10, "e"), _kp("left_front_wheel", 12, 10, "f"), _kp("right_front_wheel", 30, 30, "g")])
    ann(id=kt[3], result=[_kp("left_front_wheel", 10, 10, "h", w=2 * W, h=2 * H)])
    ann(id=kt[4], result=[_kp("left_front_wheel", 10, 10, "i")])
    ann(id=kt[4], result=[_kp("left_front_wheel", 30, 10, "j")])
    report = pull(PullConfig(folder=folder, connection=cc))
    yield folder, cc, conn, pt, report
    conn.close()


def _issues(report, kind):
    return {(i.name, i.view_id) for r in report.kinds if r.kind == kind for i in r.issues}


def test_each_bad_pose_result_is_reported_by_name(bad):
    _, _, _, _, report = bad
    assert _issues(report, "poses") == {
        ("unknown_label", 1),
        ("missing_choice", 1),
        ("conflict", 2),
        ("unannotated_view", 3),
        ("unannotated_view", 4),
        ("unknown_control", 5),
    }
    k = [r for r in report.kinds if r.kind == "poses"][0]
    text = [str(i) for i in k.issues]
    assert any("'az045'" in t for t in text) and any("'paint'" in t for t in text)
    assert any("only skipped" in t for t in text) and any("nobody annotated" in t for t in text)
    df = pq.read_table(k.written).to_pandas().set_index("view_id")
    assert sorted(df.index) == [0, 2, 5]
    assert df.loc[2, "azimuth_bin"] == "az120"  # the latest of the conflicting answers
    assert not k.complete and k.views_annotated == [0, 2, 5]


def test_each_bad_keypoint_result_is_reported_by_name(bad):
    folder, _, _, _, report = bad
    assert _issues(report, "keypoints") == {
        ("unknown_label", 0),
        ("bad_result", 0),
        ("out_of_image", 1),
        ("duplicate_keypoint", 2),
        ("size_mismatch", 3),
        ("unannotated_view", 3),  # its only point was dropped
        ("conflict", 4),
        ("unannotated_view", 5),
    }
    df = pq.read_table(folder / "annotations" / "keypoints.parquet").to_pandas()
    got = sorted((int(r.view_id), r.name, round(r.x, 6)) for r in df.itertuples())
    assert got == [(0, "left_back_wheel", 20.0), (1, "left_back_wheel", 20.0), (2, "right_front_wheel", 30.0), (4, "left_front_wheel", 30.0)]


def test_a_partial_pull_keeps_the_earlier_file_unless_asked(bad):
    folder, cc, conn, pt, _ = bad
    path = folder / "annotations" / "pose_bins.parquet"
    before = path.read_bytes()
    conn.sdk.annotations.create(id=pt[4], result=[_choice("azimuth", "az180")])  # view 4 now answered; 1 and 3 still missing
    r = pull(PullConfig(folder=folder, connection=cc, kinds=("poses",)))
    k = r.kinds[0]
    assert k.written is None and "kept the existing pose_bins.parquet" in k.kept_existing and "1, 3" in k.kept_existing
    assert path.read_bytes() == before
    r = pull(PullConfig(folder=folder, connection=cc, kinds=("poses",), overwrite=True))
    assert r.kinds[0].written == path
    assert sorted(pq.read_table(path).column("view_id").to_pylist()) == [0, 2, 4, 5]
