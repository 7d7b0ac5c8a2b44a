"""g3d synth --between: extra images per car whose viewpoint codes lie between two alike frozen ones, their cameras
interpolated from the frozen views' by the one camera reader, and refined per image by g3d train."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from g3d import cameras as camlib
from g3d.datasets import folder as dsf
from g3d.datasets.cameras import FROM_FILE, INTERPOLATED, DatasetCameras, read_cameras, read_true_cameras, with_between
from g3d.datasets.manifest import read_manifest
from g3d.errors import DatasetError, UsageError
from g3d.synth.sampling import SynthConfig, run_synth

V, M = 24, 4
ARGS = dict(samples=12, views=V, resolution=32, batch_size=16, samples_per_shard=6, seed=3)


def _rows(folder) -> pd.DataFrame:
    df = pd.concat([pq.read_table(p).to_pandas() for p in dsf.shard_paths(folder)], ignore_index=True)
    return df.sort_values(["sample_id", "view_id"]).reset_index(drop=True)


def _angle_deg(Ra, Rb) -> np.ndarray:
    cos = (np.trace(np.transpose(Ra, (0, 2, 1)) @ Rb, axis1=1, axis2=2) - 1.0) / 2.0
    return np.rad2deg(np.arccos(np.clip(cos, -1.0, 1.0)))


def _write_frozen_truth_as_sfm(folder: Path, usable=lambda v: True) -> None:
    """sfm-init's cameras are per view: the frozen views' truth written as such a file (view ``v`` usable as ``usable(v)``)."""
    from g3d.datasets.cameras import write_cameras

    truth = read_true_cameras(folder, read_manifest(folder))
    pv = np.flatnonzero(truth.view_ids < V)[:V]
    az, el, d = camlib.to_azimuth_elevation(truth.R[pv], truth.t[pv])
    write_cameras(folder, {"view_id": list(range(V)), "K": [k.reshape(9).tolist() for k in truth.K[pv]],
                           "R": [r.reshape(9).tolist() for r in truth.R[pv]], "t": [t.tolist() for t in truth.t[pv]],
                           "azimuth_deg": az.tolist(), "elevation_deg": el.tolist(), "distance": d.tolist(), "fov_deg": [40.0] * V,
                           "source": ["sfm"] * V, "reprojection_error": [0.5] * V, "num_keypoints": [8] * V,
                           "usable": [bool(usable(v)) for v in range(V)], "failed_checks": [""] * V})


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("between")
    run_synth(SynthConfig(out=root / "between", between=M, **ARGS))
    run_synth(SynthConfig(out=root / "frozen", **ARGS))
    return root / "between", root / "frozen"


def test_the_frozen_views_are_the_same_and_the_extra_images_have_their_own_viewpoints(sets):
    between, frozen = sets
    man = read_manifest(between)
    assert (man.views, man.frozen_views, man.between_views, man.rows) == (V + M, V, M, 12 * (V + M))
    assert man.extra["cameras"] == "per_image" and read_manifest(frozen).frozen_views == V and read_manifest(frozen).between_views == 0
    b, f = _rows(between), _rows(frozen)
    # The frozen views of every car are byte for byte the dataset made without --between.
    first = b[b.view_id < V].reset_index(drop=True)
    assert first.image.map(lambda x: x["bytes"]).equals(f.image.map(lambda x: x["bytes"]))
    # The extra images: a viewpoint of their own (no two alike), the car and its paint kept.
    extra = b[b.view_id >= V]
    assert len(extra) == 12 * M and len(np.unique(np.round(extra.azimuth_deg, 4))) == 12 * M
    assert not np.isin(np.round(extra.azimuth_deg, 4), np.round(first.azimuth_deg, 4)).any()
    for col in ("gt_length", "gt_paint_hue"):
        if col in b:
            assert b.groupby("sample_id")[col].nunique().max() == 1
    table = pq.read_table(between / dsf.BETWEEN).to_pandas()
    assert len(table) == 12 * M and table.view_a.between(0, V - 1).all() and (table.view_a != table.view_b).all()


def test_an_extra_images_camera_is_between_its_two_frozen_views(sets):
    """Interpolating the two frozen cameras at the code's weight lands near the generator's own camera of the blended
    code; a random pair of views at the same weight (the degenerate answer) lands far from it; and no pair is a car
    seen from the front and from behind (alike to the probe images, but their blend is a side view)."""
    between, _ = sets
    man = read_manifest(between)
    truth = read_true_cameras(between, man)
    pv = truth.view_ids < V
    per_view = DatasetCameras(truth.K[pv][:V], truth.R[pv][:V], truth.t[pv][:V], np.arange(V), ["sfm"] * V, np.ones(V, bool), FROM_FILE,
                              None, [None] * V)
    assert np.array_equal(truth.view_ids[pv][:V], np.arange(V))
    got = with_between(between, man, per_view)
    assert np.array_equal(got.sample_ids, truth.sample_ids) and np.array_equal(got.view_ids, truth.view_ids)
    extra = got.view_ids >= V
    assert set(got.sources[i] for i in np.flatnonzero(extra)) == {INTERPOLATED} and got.usable.all()
    assert np.allclose(got.R[~extra], truth.R[~extra]) and np.allclose(got.t[~extra], truth.t[~extra])  # frozen: their view's
    err = _angle_deg(got.R[extra], truth.R[extra])
    table = pq.read_table(between / dsf.BETWEEN).to_pandas().sort_values(["sample_id", "view_id"])
    span = _angle_deg(per_view.R[table.view_a.to_numpy()], per_view.R[table.view_b.to_numpy()])
    rng = np.random.default_rng(0)
    ra, rb = rng.integers(V, size=len(table)), rng.integers(V, size=len(table))
    R_rand, _ = camlib.interpolate(per_view.R[ra], per_view.t[ra], per_view.R[rb], per_view.t[rb], table.t.to_numpy())
    err_rand = _angle_deg(R_rand, truth.R[extra])
    assert np.median(err) < 2.0 and np.median(err_rand) > 20.0, (np.median(err), np.median(err_rand))
    assert span.max() < 90.0, span.max()  # the blend-looks-between test: no front/back pairs
    # Each extra image's true camera is nearer its pair than the pair's ends are to each other (it lies between them).
    ta = _angle_deg(per_view.R[table.view_a.to_numpy()], truth.R[extra])
    tb = _angle_deg(per_view.R[table.view_b.to_numpy()], truth.R[extra])
    assert (np.maximum(ta, tb) <= span + 1.0).mean() > 0.9


def test_interpolated_cameras_follow_their_frozen_views_and_their_usability(sets, tmp_path):
    """A per-view cameras.parquet (sfm-init's) is read per image; a view without a usable camera leaves the extra images
    next to it without one too (training skips them), never a placeholder used as a camera."""
    import shutil

    between, _ = sets
    folder = tmp_path / "car"
    shutil.copytree(between, folder)
    man = read_manifest(folder)
    table = pq.read_table(folder / dsf.BETWEEN).to_pandas().sort_values(["sample_id", "view_id"])
    bad = int(pd.concat([table.view_a, table.view_b]).mode()[0])  # the frozen view most extra images sit next to
    _write_frozen_truth_as_sfm(folder, usable=lambda v: v != bad)
    cams = read_cameras(folder, man)
    assert cams.origin == FROM_FILE and cams.per_image and len(cams.K) == 12 * (V + M)
    near = ((table.view_a == bad) | (table.view_b == bad)).to_numpy()
    extra = cams.view_ids >= V
    assert near.any() and not near.all()
    assert not cams.usable[cams.view_ids == bad].any() and (cams.usable[extra] == ~near).all()
    idx = cams.index(table.sample_id, table.view_id)
    assert ((idx < 0) == near).all()
    # A damaged between.parquet is one line naming the fix.
    pq.write_table(pa.table({"sample_id": [0]}), folder / dsf.BETWEEN)
    with pytest.raises(DatasetError, match="resume `g3d synth") as e:
        read_cameras(folder, man)
    assert "\n" not in str(e.value)


def test_training_refines_each_extra_images_camera_and_eval_uses_them(sets, tmp_path):
    import json
    import shutil

    from g3d.train.evaluate import evaluate
    from g3d.train.loop import TrainConfig, train

    between, _ = sets
    folder = tmp_path / "car"
    shutil.copytree(between, folder)
    _write_frozen_truth_as_sfm(folder)
    man = read_manifest(folder)
    cfg = TrainConfig(folder=str(folder), out=str(tmp_path / "run"), resolution=32, batch_size=4, steps=6, tex_res=16, holdout=0.25,
                      preview_every=10**6, checkpoint_every=6)
    train(cfg)
    used = json.loads((tmp_path / "run" / "cameras_used.json").read_text())
    assert used["refined"] and used["sources"] == {"sfm": 12 * V, INTERPOLATED: 12 * M}
    learned = json.loads((tmp_path / "run" / "cameras_learned.json").read_text())
    dw = np.abs(np.asarray(learned["dw"])).sum(1)
    assert len(dw) == 12 * (V + M) and (dw > 0).sum() >= 4 and (dw == 0).sum() > len(dw) // 2  # only the images it trained on moved
    freedom = np.asarray(learned["freedom"])
    cams = read_cameras(folder, man)
    assert freedom[cams.view_ids >= V].min() > freedom[cams.view_ids < V].max()  # an interpolated camera may move further
    rep = evaluate(tmp_path / "run")
    assert rep.cameras == "run, one per image" and rep.objects == 3


def test_between_needs_frozen_views(tmp_path):
    with pytest.raises(UsageError, match="--between interpolates between frozen viewpoints"):
        run_synth(SynthConfig(out=tmp_path / "a", between=2, viewpoints="random", samples=2, views=2, resolution=32))
    with pytest.raises(UsageError, match="at least 2 frozen views"):
        run_synth(SynthConfig(out=tmp_path / "b", between=2, samples=2, views=1, resolution=32))
    with pytest.raises(UsageError, match="--between -1"):
        run_synth(SynthConfig(out=tmp_path / "c", between=-1, samples=2, views=2, resolution=32))


def test_sfm_init_solves_the_frozen_views_and_the_extra_images_get_cameras_between_them(tmp_path):
    """The StyleGAN user's path: keypoints clicked on the frozen views of two cars (1 px noise), g3d sfm-init, and the
    camera reader: every image gets a camera, an extra image's near its true one after the best similarity (the
    generator's truth, which sfm-init never saw), nearer than the camera of the nearer of its two frozen views (interpolation, not snapping)."""
    from g3d.sfm.align import compare_cameras
    from g3d.sfm.run import SfmConfig, run_sfm_init
    from g3d.sfm.synthetic import annotations_from_dataset

    folder = tmp_path / "car"
    run_synth(SynthConfig(out=folder, samples=6, views=16, between=3, resolution=128, seed=2, batch_size=16))
    annotations_from_dataset(folder, sample_id=[0, 1], noise_px=1.0, seed=1)
    ann = pq.read_table(folder / dsf.ANNOTATIONS / dsf.KEYPOINTS).to_pandas()
    assert ann.view_id.max() < 16  # only the frozen views are anybody's to click
    rep = run_sfm_init(SfmConfig(folder=folder, preview=False))
    assert rep.views == 16 and rep.written >= 14
    man = read_manifest(folder)
    cams, truth = read_cameras(folder, man), read_true_cameras(folder, man)
    assert cams.per_image and np.array_equal(cams.sample_ids, truth.sample_ids) and np.array_equal(cams.view_ids, truth.view_ids)
    ok = cams.usable
    extra = (cams.view_ids >= 16) & ok
    assert extra.sum() >= 12
    f = float(cams.K[0, 0, 0])
    err = compare_cameras(cams.R[ok], cams.t[ok], f, truth.R[ok], truth.t[ok], float(truth.K[0, 0, 0])).rotation_deg
    err_extra = err[extra[ok]]
    # The degenerate answer: no interpolation, the camera of the frozen view nearer in the code (t < 0.5: a, else b).
    table = pq.read_table(folder / dsf.BETWEEN).to_pandas().set_index(["sample_id", "view_id"])
    rows = table.loc[list(zip(cams.sample_ids[extra], cams.view_ids[extra]))]
    nearer = np.where(rows.t < 0.5, rows.view_a, rows.view_b)
    snapped = cams.R.copy()
    snapped[extra] = cams.R[cams.index(cams.sample_ids[extra], nearer)]
    err_snapped = compare_cameras(snapped[ok], cams.t[ok], f, truth.R[ok], truth.t[ok], float(truth.K[0, 0, 0])).rotation_deg[extra[ok]]
    print(f"extra images: camera error median {np.median(err_extra):.2f} deg, the nearer frozen view's {np.median(err_snapped):.2f}")
    assert np.median(err_extra) < 3.0 and np.median(err_snapped) > 1.5 * np.median(err_extra), (np.median(err_extra), np.median(err_snapped))


def test_the_neural_renderer_takes_the_frozen_views_cameras_of_a_between_run(sets, tmp_path):
    """g3d neural reads a run's cameras per frozen view; a --between run has one per image, and it takes the frozen
    views' own (car 0's frozen images), not the first V rows of whatever order."""
    import shutil

    from g3d.neural.sources import load_sources
    from g3d.train.loop import TrainConfig, train

    between, _ = sets
    folder = tmp_path / "car"
    shutil.copytree(between, folder)
    _write_frozen_truth_as_sfm(folder)
    train(TrainConfig(folder=str(folder), out=str(tmp_path / "run"), resolution=32, batch_size=2, steps=2, tex_res=16, holdout=0.25,
                      preview_every=10**6, checkpoint_every=2, learn_cameras=False))
    src = load_sources(tmp_path / "run")
    assert src.views == V and src.K.shape[0] == V
    truth = read_true_cameras(folder, read_manifest(folder))
    frozen0 = (truth.sample_ids == 0) & (truth.view_ids < V)
    assert np.allclose(src.R.double().cpu().numpy(), truth.R[frozen0], atol=1e-5)
