"""Label configs, API-key kinds and the validation of exported results (no server needed)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from g3d.annotate import configs
from g3d.annotate.client import LEGACY, PERSONAL, ConnectionConfig, LabelStudioError, resolve, token_kind
from g3d.annotate.dataset import DatasetInfo
from g3d.annotate.pull import ISSUE_NAMES, convert_export, rows_table
from g3d.classes import get_preset
from g3d.errors import DatasetError

CAR = get_preset("car")
W, H = 64, 48


# -- label configs ----------------------------------------------------------------------------
def test_pose_config_offers_the_preset_bins_elevation_and_reject():
    s = configs.pose_schema(CAR)
    root = ET.fromstring(s.xml)
    choices = {c.get("name"): [x.get("value") for x in c.findall("Choice")] for c in root.iter("Choices")}
    assert choices[configs.AZIMUTH] == [b.name for b in CAR.pose_bins] == [f"az{30 * i:03d}" for i in range(12)]
    assert choices[configs.ELEVATION] == ["el000"]
    assert choices[configs.REJECT] == [configs.REJECT_VALUE]
    assert root.find("Image").get("value") == "$image"
    assert all(c.get("toName") == configs.IMAGE for c in root.iter("Choices"))


def test_keypoint_config_lists_every_keypoint_with_pairs_coloured_alike():
    s = configs.keypoint_schema(CAR)
    root = ET.fromstring(s.xml)
    kp = root.find("KeyPointLabels")
    colour = {lab.get("value"): lab.get("background") for lab in kp.findall("Label")}
    assert list(colour) == list(CAR.keypoints)
    assert len(CAR.keypoint_pairs) == 6
    for left, right in CAR.keypoint_pairs:
        assert colour[left] == colour[right]
    pair_colours = [colour[left] for left, _ in CAR.keypoint_pairs]
    assert len(set(pair_colours)) == len(pair_colours)  # different pairs, different colours
    assert root.find("Choices").get("perRegion") == "true"


def test_mask_config_and_config_comparison():
    s = configs.mask_schema(CAR)
    root = ET.fromstring(s.xml)
    assert [lab.get("value") for lab in root.find("PolygonLabels").findall("Label")] == ["car"]
    a = configs.pose_schema(CAR).xml
    assert configs.same_config(a, "\n\n" + a.replace("\n  ", "\n\t\t"))
    assert not configs.same_config(a, a.replace("az030", "az045"))
    with pytest.raises(Exception, match="unknown annotation kind"):
        configs.schema_for("boxes", CAR)


# -- API keys -----------------------------------------------------------------------------------
def _jwt(payload: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc({'alg': 'HS256', 'typ': 'JWT'})}.{enc(payload)}.c2lnbmF0dXJl"


def test_token_kinds_are_told_apart_and_unusable_jwts_are_named():
    assert token_kind("0123456789abcdef0123456789abcdef01234567") == LEGACY
    assert token_kind(_jwt({"token_type": "refresh", "exp": time.time() + 3600})) == PERSONAL
    with pytest.raises(LabelStudioError, match="expired on 2001-09-09"):
        token_kind(_jwt({"token_type": "refresh", "exp": 1_000_000_000}))
    with pytest.raises(LabelStudioError, match="JWT access token, not a personal access token"):
        token_kind(_jwt({"token_type": "access", "exp": time.time() + 60}))


def test_url_and_key_come_from_options_or_environment(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(LabelStudioError, match="no Label Studio URL: pass --url or set LABEL_STUDIO_URL"):
        resolve(ConnectionConfig())
    with pytest.raises(LabelStudioError, match="no Label Studio API key"):
        resolve(ConnectionConfig(url="http://127.0.0.1:8080"))
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", " abcdefgh ")
    assert resolve(ConnectionConfig()) == ("http://127.0.0.1:9", "abcdefgh")
    assert resolve(ConnectionConfig(url="http://h:1", api_key="k" * 8)) == ("http://h:1", "k" * 8)
    with pytest.raises(LabelStudioError, match="not an http"):
        resolve(ConnectionConfig(url="127.0.0.1:8080", api_key="k" * 8))


# -- conversion and validation -------------------------------------------------------------------
def _info(views=(0, 1, 2, 3)) -> DatasetInfo:
    sizes = {(v, s): (W, H) for v in views for s in range(2)}
    return DatasetInfo(
        folder=Path("."),
        manifest={},
        preset=CAR,
        dataset_id="abc123abc123",
        views=list(views),
        gt_azimuth={},
        gt_elevation={},
        sample_ids=np.array([s for v in views for s in range(2)]),
        view_ids=np.array([v for v in views for s in range(2)]),
        keep=np.ones(2 * len(views), bool),
        sizes=sizes,
        has_truth=True,
    )


def _ann(result, when="2026-01-01T10:00:00Z", who=1, cancelled=False, aid=1):
    return {"id": aid, "completed_by": who, "result": result, "was_cancelled": cancelled, "updated_at": when}


def _choice(name, value):
    return {"from_name": name, "to_name": "image", "type": "choices", "value": {"choices": [value]}}


def _kp(label, x, y, rid="a", w=W, h=H):
    return {
        "id": rid,
        "from_name": "keypoints",
        "to_name": "image",
        "type": "keypointlabels",
        "original_width": w,
        "original_height": h,
        "value": {"x": 100 * x / w, "y": 100 * y / h, "width": 0.5, "keypointlabels": [label]},
    }


def _task(tid, v, anns, s=None):
    data = {"image": "/x.png", "view_id": v, "g3d_dataset": "abc123abc123"}
    if s is not None:
        data["sample_id"] = s
    return {"id": tid, "data": data, "annotations": anns}


def test_pose_export_converts_and_reports_each_bad_result_by_name():
    tasks = [
        _task(1, 0, [_ann([_choice("azimuth", "az030"), _choice("elevation", "el000")])]),
        _task(2, 1, [_ann([_choice("azimuth", "az045")])]),  # unknown bin -> unknown_label (+ missing_choice)
        _task(3, 2, [_ann([_choice("azimuth", "az090")], "2026-01-01T10:00:00Z", 1, aid=3), _ann([_choice("azimuth", "az120")], "2026-01-02T10:00:00Z", 2, aid=4)]),
        _task(4, 3, [_ann([_choice("azimuth", "az000")], cancelled=True)]),  # only skipped
        {"id": 5, "data": {"image": "/y.png"}, "annotations": []},  # not g3d's
    ]
    conv = convert_export("poses", tasks, _info(), {1: "ann@x", 2: "bob@x"})
    names = {(i.name, i.view_id) for i in conv.issues}
    assert ("unknown_label", 1) in names and ("missing_choice", 1) in names
    assert ("conflict", 2) in names and ("unannotated_view", 3) in names and ("unknown_task", None) in names
    assert {i.name for i in conv.issues} <= set(ISSUE_NAMES)
    rows = {r["view_id"]: r for r in conv.rows}
    assert sorted(rows) == [0, 2]
    assert rows[0]["azimuth_bin"] == "az030" and rows[0]["azimuth_deg"] == 30.0 and rows[0]["elevation_deg"] == 0.0
    assert rows[0]["annotator"] == "ann@x" and rows[0]["updated_at"] == "2026-01-01T10:00:00Z"
    assert rows[2]["azimuth_bin"] == "az120" and rows[2]["annotator"] == "bob@x"  # the latest wins
    skipped = [i for i in conv.issues if i.name == "unannotated_view" and i.view_id == 3][0]
    assert "skipped" in skipped.detail and str(skipped).startswith("unannotated_view: poses view 3")
    t = rows_table("poses", conv.rows)
    assert t.schema.names == ["view_id", "azimuth_bin", "azimuth_deg", "elevation_deg", "rejected", "annotator", "updated_at"]
    assert t.schema.field("view_id").type == pa.int32()


def test_rejected_view_and_unknown_control():
    tasks = [
        _task(1, 0, [_ann([_choice("reject", "reject this view")])]),
        _task(2, 1, [_ann([_choice("azimuth", "az330"), _choice("colour", "red")])]),
        _task(3, 2, [_ann([_choice("azimuth", "az000"), _choice("reject", "reject this view")])]),
        _task(4, 3, [_ann([_choice("azimuth", "az000")])]),
    ]
    conv = convert_export("poses", tasks, _info(), {})
    rows = {r["view_id"]: r for r in conv.rows}
    assert rows[0]["rejected"] and rows[0]["azimuth_bin"] is None
    assert rows[2]["rejected"] and rows[2]["azimuth_bin"] == "az000"
    assert rows[1]["azimuth_bin"] == "az330"
    assert [(i.name, i.view_id) for i in conv.issues] == [("unknown_control", 1)]
    t = rows_table("poses", conv.rows)
    assert t.column("azimuth_deg").to_pylist()[0] is None


def test_keypoint_export_converts_percent_to_pixels_and_reports_each_bad_result():
    tasks = [
        _task(1, 0, [_ann([_kp("left_front_wheel", 10.25, 20.5, "a"), _kp("right_back_trunk", 63.9, 0.1, "b"), _choice("visibility", "occluded") | {"id": "b"}])], s=0),
        _task(2, 1, [_ann([_kp("hood_ornament", 5, 5), _kp("left_front_wheel", 80, 5, "c"), _kp("left_back_wheel", 5, 5, "d")])], s=0),
        _task(3, 2, [_ann([_kp("left_front_wheel", 5, 5, "e"), _kp("left_front_wheel", 6, 6, "f"), _kp("right_front_wheel", 7, 7, "g")])], s=0),
        _task(4, 3, [_ann([_kp("left_front_wheel", 5, 5, "h", w=2 * W, h=2 * H)])], s=0),
        _task(5, 3, [], s=1),
    ]
    bad_labels = {"id": "z", "from_name": "keypoints", "to_name": "image", "type": "keypointlabels", "value": {"x": 1, "y": 1, "keypointlabels": ["a", "b"]}}
    tasks[0]["annotations"][0]["result"].append(bad_labels)
    conv = convert_export("keypoints", tasks, _info(), {})
    got = {(i.name, i.view_id) for i in conv.issues}
    assert got == {
        ("bad_result", 0),
        ("unknown_label", 1),
        ("out_of_image", 1),
        ("duplicate_keypoint", 2),
        ("size_mismatch", 3),
        ("unannotated_view", 3),
    }
    rows = [(r["view_id"], r["name"], r["x"], r["y"], r["visible"]) for r in conv.rows]
    assert rows[0][:2] == (0, "left_front_wheel") and rows[0][2] == pytest.approx(10.25, abs=1e-9) and rows[0][3] == pytest.approx(20.5, abs=1e-9)
    assert rows[1][1] == "right_back_trunk" and rows[1][4] is False  # marked occluded
    assert (2, "right_front_wheel") in [(r[0], r[1]) for r in rows]
    assert all(r[1] != "left_front_wheel" or r[0] != 2 for r in rows)  # both duplicates dropped
    t = rows_table("keypoints", conv.rows)
    assert t.schema.names == ["view_id", "sample_id", "name", "x", "y", "visible"]
    assert [t.schema.field(c).type for c in t.schema.names] == [pa.int32(), pa.int64(), pa.string(), pa.float64(), pa.float64(), pa.bool_()]


def test_unannotated_task_beside_an_annotated_one_and_keypoint_conflicts():
    tasks = [
        _task(1, 0, [_ann([_kp("left_front_wheel", 10, 10)])], s=0),
        _task(2, 0, [], s=1),
        _task(3, 1, [_ann([_kp("left_front_wheel", 10, 10)], "2026-01-01T10:00:00Z", aid=1), _ann([_kp("left_front_wheel", 20, 10)], "2026-01-01T11:00:00+00:00", aid=2)], s=0),
        _task(4, 2, [_ann([_kp("left_front_wheel", 10, 10)], aid=5), _ann([_kp("left_front_wheel", 10.5, 10)], aid=6)], s=0),  # agree
    ]
    conv = convert_export("keypoints", tasks, _info(views=(0, 1, 2)), {})
    got = sorted((i.name, i.view_id, i.task_id) for i in conv.issues)
    assert got == [("conflict", 1, 3), ("unannotated_task", 0, 2)]
    x = {r["view_id"]: r["x"] for r in conv.rows}
    assert x[1] == pytest.approx(20) and x[2] == pytest.approx(10.5)


def test_polygons_convert_to_pixels():
    poly = {
        "id": "p",
        "from_name": "mask",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": W,
        "original_height": H,
        "value": {"points": [[10, 10], [50, 10], [50, 50]], "polygonlabels": ["car"]},
    }
    bad = json.loads(json.dumps(poly))
    bad["value"]["points"][0] = [-20, 10]
    conv = convert_export("masks", [_task(1, 0, [_ann([poly, bad])], s=0)], _info(views=(0,)), {})
    assert [i.name for i in conv.issues] == ["out_of_image"]
    assert conv.rows[0]["points"] == pytest.approx([6.4, 4.8, 32.0, 4.8, 32.0, 24.0])


def test_a_dataset_without_views_is_refused_before_connecting(tmp_path):
    from g3d.annotate.push import PushConfig, push

    folder = tmp_path / "car"
    folder.mkdir()
    manifest = {"class": "car", "views": 0, "samples": 1, "rows": 0, "samples_per_shard": 1, "height": 64, "width": 64,
                "generator": {"format": "builtin"}, "seed": 0, "viewpoint_layers": [0], "truncation_psi": 1.0, "fingerprint": {"x": 1}}
    (folder / "g3d.json").write_text(json.dumps(manifest))
    schema = pa.schema([("view_id", pa.int32()), ("gt_azimuth_deg", pa.float64()), ("gt_elevation_deg", pa.float64())])
    pq.write_table(pa.Table.from_pylist([], schema=schema), folder / "viewpoints.parquet")
    cfg = PushConfig(folder=folder, kind="poses", connection=ConnectionConfig(url="http://127.0.0.1:9", api_key="abcdefgh"))
    with pytest.raises(DatasetError, match=r"views = 0 \(at least 1\)"):
        push(cfg)
    with pytest.raises(DatasetError, match="no g3d dataset"):
        push(PushConfig(folder=tmp_path / "nothing", kind="poses"))


def test_package_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, g3d.annotate, g3d.annotate.commands, g3d.annotate.configs; "
        "print(sorted(m for m in ('label_studio_sdk', 'httpx', 'torch', 'pyarrow', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
