"""g3d synth --viewpoints random: every image its own viewpoint, drawn from the generator's own distribution."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from g3d.datasets import folder as dsf
from g3d.datasets.cameras import read_cameras
from g3d.datasets.manifest import read_manifest
from g3d.errors import DatasetError, UsageError
from g3d.synth.sampling import SynthConfig, run_synth

ARGS = dict(samples=24, views=4, resolution=32, batch_size=8, samples_per_shard=8, candidates=16)


def _rows(folder) -> pd.DataFrame:
    df = pd.concat([pq.read_table(p).to_pandas() for p in dsf.shard_paths(folder)], ignore_index=True)
    return df.sort_values(["sample_id", "view_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def random_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("rv") / "car"
    run_synth(SynthConfig(out=out, viewpoints="random", **ARGS))
    return out


def test_every_image_has_its_own_camera_and_the_manifest_says_per_image(random_set):
    df = _rows(random_set)
    man = read_manifest(random_set)
    assert man.viewpoints_source == "random" and man.random_viewpoints and man.extra.get("cameras") == "per_image"
    assert not (random_set / dsf.VIEWPOINTS).exists()  # no shared codes to freeze
    az = df.azimuth_deg.to_numpy()
    # Frozen views (the baseline): 4 distinct azimuths for 96 images. Here: one per image.
    assert len(np.unique(np.round(az, 3))) == len(df) == 96
    # Drawn from the generator's own viewpoint distribution: the full circle, the built-in elevations.
    assert np.histogram(az, bins=6, range=(0, 360))[0].min() >= 6
    assert df.elevation_deg.between(2, 28).all()
    cams = read_cameras(random_set, man)
    assert cams.per_image and cams.usable.all() and len(cams.R) == len(df)
    idx = cams.index(df.sample_id, df.view_id)
    R_rows = np.stack([np.reshape(r, (3, 3)) for r in df.R])
    assert (idx >= 0).all() and np.allclose(cams.R[idx], R_rows)


def test_a_car_and_its_paint_stay_while_the_viewpoint_moves(random_set):
    df = _rows(random_set)
    for _, car in df.groupby("sample_id"):
        assert car.gt_length.nunique() == 1 and car.gt_paint_hue.nunique() == 1 and car.gt_body_type.nunique() == 1
        assert car.azimuth_deg.nunique() == len(car)


def test_an_images_viewpoint_depends_on_its_sample_and_view_only(random_set, tmp_path):
    """Another batch size, sample count and shard set: the same images, byte for byte (as with frozen views,
    a shard's bytes depend on its size, which the fingerprint holds, not on the batches)."""
    other = tmp_path / "other"
    run_synth(SynthConfig(out=other, viewpoints="random", shard="1/2", **{**ARGS, "samples": 16, "batch_size": 3}))
    a, b = _rows(random_set), _rows(other)
    a = a[a.sample_id.between(8, 15)].reset_index(drop=True)
    assert len(a) == len(b) == 32
    assert all(x["bytes"] == y["bytes"] for x, y in zip(a.image, b.image))
    # and another seed moves them
    third = tmp_path / "seed1"
    run_synth(SynthConfig(out=third, viewpoints="random", seed=1, **{**ARGS, "samples": 2}))
    first = _rows(random_set)
    assert not np.allclose(_rows(third).azimuth_deg.to_numpy(), first.azimuth_deg.to_numpy()[:8])


def test_stages_that_need_frozen_views_refuse_in_one_line(random_set, tmp_path):
    from g3d.annotate.dataset import read_dataset_info
    from g3d.datasets.annotations import read_annotations
    from g3d.train.data import PairData

    for call in (lambda: read_dataset_info(random_set), lambda: read_annotations(random_set)):
        with pytest.raises(DatasetError, match=r"its own viewpoint \(g3d synth --viewpoints random\).*without --viewpoints random") as e:
            call()
        assert "\n" not in str(e.value)
    # Per-view training data refuses a camera per image; g3d train takes them (fixed: the generator's truth).
    with pytest.raises(UsageError, match="a camera per image"):
        PairData(random_set, 32)


def test_training_on_random_viewpoints_with_their_exact_cameras(random_set, tmp_path):
    """The built-in-only ceiling of the "any photo" issue: g3d train on a random-view set, each image with its own exact
    camera (never refined), and eval of that run with those cameras; asking to refine them is one line."""
    from g3d.train.evaluate import evaluate
    from g3d.train.loop import TrainConfig, train

    kw = dict(folder=str(random_set), resolution=32, batch_size=2, steps=2, tex_res=16, holdout=0.25, preview_every=1, checkpoint_every=2)
    train(TrainConfig(out=str(tmp_path / "run"), **kw))
    rep = evaluate(tmp_path / "run")
    assert rep.cameras == "run, one per image" and rep.objects == 6 and rep.true_iou > 0.85 and rep.novel["true"] > 0.85
    import shutil

    shutil.copytree(random_set, tmp_path / "other")  # another dataset (a test set): its own cameras, no frame to fit
    other = evaluate(tmp_path / "run", tmp_path / "other")
    assert other.cameras == "dataset, one per image" and other.true_iou == pytest.approx(rep.true_iou, abs=1e-6)
    with pytest.raises(UsageError, match="--fixed-cameras"):
        train(TrainConfig(out=str(tmp_path / "learn"), learn_cameras=True, **kw))


def test_a_resume_of_a_random_run_keeps_its_shards_and_a_frozen_run_is_another_run(random_set, tmp_path):
    import shutil

    from g3d.errors import UsageError

    copy = tmp_path / "copy"
    shutil.copytree(random_set, copy)
    rep = run_synth(SynthConfig(out=copy, viewpoints="random", **ARGS))
    assert rep.rows_written == 0 and len(rep.shards_skipped) == 3
    with pytest.raises(UsageError, match="--overwrite"):
        run_synth(SynthConfig(out=copy, **ARGS))
