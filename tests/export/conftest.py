"""Small built-in datasets the export tests write from (one per test module, made once)."""

from __future__ import annotations

import pytest

from g3d.synth.sampling import SynthConfig, run_synth


@pytest.fixture(scope="module")
def make_cars(tmp_path_factory):
    """make(samples, views, samples_per_shard) -> folder of built-in cars at 64 px."""

    def make(samples: int, views: int, per_shard: int):
        out = tmp_path_factory.mktemp("export") / "car"
        run_synth(SynthConfig(out=out, samples=samples, views=views, resolution=64, candidates=4 * views, samples_per_shard=per_shard))
        return out

    return make
