"""``g3d synth --lights N``: each built-in car under N lights, car and views held, only the light rows resampled."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from g3d.datasets.manifest import read_manifest
from g3d.datasets.schema import decode_png
from g3d.errors import UsageError
from g3d.synth.sampling import SynthConfig, run_synth

COLS = ["sample_id", "view_id", "image", "mask", "gt_light_azimuth_deg", "gt_light_elevation_deg", "gt_ambient", "gt_paint_hue",
        "azimuth_deg", "elevation_deg"]


def _rows(folder):
    t = pq.read_table(sorted((folder / "images").glob("part-*.parquet"))[0], columns=COLS).to_pandas()
    return t.set_index(["sample_id", "view_id"])


@pytest.mark.parametrize("viewpoints", [None, "random"])
def test_one_car_under_two_lights(tmp_path, viewpoints):
    base, lit = tmp_path / "one", tmp_path / "two"
    kw = dict(samples=4, views=3, resolution=48, candidates=16, seed=2, viewpoints=viewpoints)
    run_synth(SynthConfig(out=base, **kw))
    run_synth(SynthConfig(out=lit, lights=2, **kw))
    assert read_manifest(lit).extra.get("lights_per_car") == 2 and "lights_per_car" not in read_manifest(base).extra
    a, b = _rows(base), _rows(lit)
    for car in (0, 2):
        for v in range(3):
            first, second = b.loc[(car, v)], b.loc[(car + 1, v)]
            # The group's first sample is the plain run's sample; the second is the same car, camera and paint
            # (mask identical), under its own light (the plain run's sample car+1's light: its own latent's rows).
            assert first.image == a.loc[(car, v)].image
            assert np.array_equal(decode_png(first["mask"]["bytes"], grey=True), decode_png(second["mask"]["bytes"], grey=True))
            assert (first.gt_paint_hue, first.azimuth_deg, first.elevation_deg) == (second.gt_paint_hue, second.azimuth_deg, second.elevation_deg)
            assert second.gt_light_azimuth_deg == a.loc[(car + 1, v)].gt_light_azimuth_deg != first.gt_light_azimuth_deg
            assert second.gt_ambient == a.loc[(car + 1, v)].gt_ambient
            assert np.abs(decode_png(first.image["bytes"]).astype(int) - decode_png(second.image["bytes"]).astype(int)).mean() > 1.0


def test_lights_need_the_builtin_generator_and_a_count(tmp_path):
    from g3d.synth.sampling import check_options

    with pytest.raises(UsageError, match="--lights 0"):
        check_options(SynthConfig(out=tmp_path, lights=0))
    with pytest.raises(UsageError, match="built-in generator"):
        check_options(SynthConfig(out=tmp_path, lights=2, generator="some.pkl"))


def test_the_true_mesh_of_a_car_under_another_light_is_its_cars(tmp_path):
    from g3d.train.evaluate import TrueMeshes

    run_synth(SynthConfig(out=tmp_path / "two", samples=4, views=2, resolution=32, candidates=8, lights=2))
    run_synth(SynthConfig(out=tmp_path / "one", samples=4, views=2, resolution=32, candidates=8))
    lit, plain = TrueMeshes.load(tmp_path / "two").verts([0, 1, 2, 3]), TrueMeshes.load(tmp_path / "one").verts([0, 1, 2, 3])
    assert torch.equal(lit[0], lit[1]) and torch.equal(lit[2], lit[3]) and torch.equal(lit[2], plain[2])
    assert not torch.equal(plain[0], plain[1])  # samples 0 and 1 are two cars without --lights
