"""Bad input: clear messages naming views and causes; exit non-zero only when no camera can be made."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from g3d.errors import DatasetError, MissingDependencyError, UsageError
from g3d.sfm.commands import sfm_init
from g3d.datasets.annotations import read_annotations
from g3d.sfm.run import SfmConfig, run_sfm_init
from g3d.sfm.synthetic import make_scene, write_annotations

from .conftest import needs_pycolmap


def _cli():
    from g3d.reporting import CommandGroup

    app = typer.Typer(cls=CommandGroup)  # as g3d registers it: the group reports a G3DError in one line, exit 2
    app.command("sfm-init")(sfm_init)
    app.command("noop")(lambda: None)  # two commands, so Typer keeps the sub-command name
    return app


def _invoke(*args):
    return CliRunner().invoke(_cli(), ["sfm-init", *map(str, args)])


def test_no_annotations_is_an_error_with_the_fix(tmp_path):
    scene = make_scene(seed=1, views=8)
    write_annotations(tmp_path, scene, pose_bins=False, keypoints=False)
    with pytest.raises(DatasetError, match="no annotations.*g3d annotate pull"):
        run_sfm_init(SfmConfig(folder=tmp_path))
    res = _invoke(tmp_path)
    assert res.exit_code == 2 and "no annotations" in res.output
    res = _invoke(tmp_path / "missing")
    assert res.exit_code == 2 and "not a folder" in res.output


def test_unknown_keypoint_names_are_named_and_ignored(tmp_path):
    scene = make_scene(seed=2, views=8)
    write_annotations(tmp_path, scene)
    path = tmp_path / "annotations" / "keypoints.parquet"
    df = pq.read_table(path).to_pandas()
    df.loc[df.index[:3], "name"] = "left_mirror"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    ann = read_annotations(tmp_path)
    assert any("'left_mirror' (3 rows)" in p and "valid names" in p for p in ann.problems)
    assert ann.num_keypoints.sum() == np.isfinite(scene.xy[..., 0]).sum() - 3


def test_points_outside_the_image_duplicates_and_unknown_views_are_reported(tmp_path):
    scene = make_scene(seed=3, views=8)
    write_annotations(tmp_path, scene)
    path = tmp_path / "annotations" / "keypoints.parquet"
    df = pq.read_table(path).to_pandas()
    df.loc[df.index[0], "x"] = 9999.0
    extra = df.iloc[[1]].copy()
    extra["x"] = extra["x"] + 5
    other_view = df.iloc[[2]].copy()
    other_view["view_id"] = 42
    df = pa.Table.from_pandas(pd_concat([df, extra, other_view]), preserve_index=False)
    pq.write_table(df, path)
    ann = read_annotations(tmp_path)
    text = " | ".join(ann.problems)
    assert "outside the 512x384 image" in text and "duplicate keypoints" in text and "views the dataset does not have" in text and "42" in text


def pd_concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def test_rejected_views_get_no_camera_and_are_named(tmp_path):
    scene = make_scene(seed=4, views=8)
    write_annotations(tmp_path, scene, keypoints=False)
    path = tmp_path / "annotations" / "pose_bins.parquet"
    df = pq.read_table(path).to_pandas()
    df.loc[2, "rejected"] = True
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    rep = run_sfm_init(SfmConfig(folder=tmp_path, preview=False))
    assert rep.no_camera == [2] and rep.written == 7
    assert any("rejected by the annotator" in p and "2" in p for p in rep.problems)


def test_method_needs_its_annotation(tmp_path):
    scene = make_scene(seed=5, views=8)
    write_annotations(tmp_path, scene, keypoints=False)
    with pytest.raises(UsageError, match="--method sfm needs .*keypoints.parquet"):
        run_sfm_init(SfmConfig(folder=tmp_path, method="sfm"))
    res = _invoke(tmp_path, "--method", "colmap")
    assert res.exit_code == 2 and "--method 'colmap'" in res.output


@needs_pycolmap
def test_one_point_collinear_points_and_colmap_producing_nothing(tmp_path):
    scene = make_scene(seed=6, views=22, noise_px=1.0)
    rng = np.random.default_rng(0)
    for v in range(22):  # every view's clicks on one line: no pose can be trusted
        seen = np.isfinite(scene.xy[v, :, 0])
        s = rng.uniform(0.0, 1.0, seen.sum())
        scene.xy[v, seen] = np.stack([100 + 300 * s, 80 + 200 * s], axis=1)
    write_annotations(tmp_path, scene)
    res = _invoke(tmp_path)
    assert res.exit_code == 0, res.output  # the pose bins are still there
    df = pq.read_table(tmp_path / "cameras.parquet").to_pandas()
    assert len(df) == 22 and "sfm" not in set(df.source)
    assert "the whole model was rejected" in res.output and "on one line" in res.output


@needs_pycolmap
def test_no_camera_at_all_exits_non_zero(tmp_path):
    scene = make_scene(seed=7, views=22, noise_px=1.0)
    for v in range(22):  # two points per view and no bins: nothing can be placed
        seen = np.flatnonzero(np.isfinite(scene.xy[v, :, 0]))
        scene.xy[v, seen[2:]] = np.nan
    write_annotations(tmp_path, scene, pose_bins=False)
    with pytest.raises(DatasetError, match="no camera could be made"):
        run_sfm_init(SfmConfig(folder=tmp_path))
    res = _invoke(tmp_path)
    assert res.exit_code == 2 and "no camera could be made" in res.output
    assert not (tmp_path / "cameras.parquet").exists()


@needs_pycolmap
def test_cli_success_prints_the_report(tmp_path):
    scene = make_scene(seed=8, views=8, noise_px=1.0)
    write_annotations(tmp_path, scene)
    res = _invoke(tmp_path, "--max-reproj-px", "6", "--focal-guess", f"{scene.focal:.3f}")
    assert res.exit_code == 0, res.output
    assert "8 of 8 views have a camera" in res.output and "cameras.parquet" in res.output and "sfm_cameras.png" in res.output


def test_missing_pycolmap_falls_back_to_bins_in_auto_and_fails_in_sfm(tmp_path, monkeypatch):
    scene = make_scene(seed=9, views=8, noise_px=1.0)
    write_annotations(tmp_path, scene)
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # as if the sfm extra were not installed
    rep = run_sfm_init(SfmConfig(folder=tmp_path, preview=False))
    assert rep.sources == {"pose_bin": 8, "sfm": 0, "sfm_bin_corrected": 0, "sfm_labels_swapped": 0, "sfm_flagged": 0}
    assert any("pip install 'g3d[sfm]'" in p for p in rep.problems)
    with pytest.raises(MissingDependencyError, match="g3d\\[sfm\\]"):
        run_sfm_init(SfmConfig(folder=tmp_path, method="sfm"))


def test_pose_bin_rows_with_nulls_and_duplicates(tmp_path):
    scene = make_scene(seed=10, views=6)
    write_annotations(tmp_path, scene, keypoints=False)
    n = 6
    table = pa.table(
        {
            "view_id": pa.array([0, 1, 2, 3, 3, 4, None], pa.int32()),
            "azimuth_bin": pa.array(["az090", "az180", "az999", "az000", "az030", None, "az000"]),
            "azimuth_deg": pa.array([None, 180.0, None, 0.0, 30.0, 60.0, 0.0], pa.float64()),
            "elevation_deg": pa.array([None, 0.0, None, 0.0, 0.0, 0.0, 0.0], pa.float64()),
            "rejected": pa.array([None, False, False, False, False, None, False], pa.bool_()),
            "annotator": pa.array(["a"] * 7),
            "updated_at": pa.array(["2024-01-01T00:00:00"] * 3 + ["2024-01-01T00:00:00", "2024-02-01T00:00:00"] + ["2024-01-01T00:00:00"] * 2),
        }
    )
    pq.write_table(table, tmp_path / "annotations" / "pose_bins.parquet")
    ann = read_annotations(tmp_path)
    np.testing.assert_allclose(ann.bin_azimuth_deg[:5], [90.0, 180.0, np.nan, 30.0, 60.0])  # name fills a null angle; latest row wins
    assert not ann.rejected.any() and n == len(ann.view_ids)
    text = " | ".join(ann.problems)
    assert "views 2: pose bin with neither an angle nor a known bin name" in text
    assert "several pose-bin rows for views 3" in text and "null" in text
    rep = run_sfm_init(SfmConfig(folder=tmp_path, preview=False))
    assert rep.no_camera == [2, 5] and rep.sources["pose_bin"] == 4
