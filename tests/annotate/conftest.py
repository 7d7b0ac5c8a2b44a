"""Fixtures of the annotate tests: small built-in datasets. The Label Studio server (one per test
session, shared with the pipeline tests) is ``label_studio`` in ``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

# A small built-in dataset: 6 views so that the pose bins of the round trip cover several bins.
SMALL = dict(samples=4, views=6, resolution=64, batch_size=8, samples_per_shard=2, candidates=24)


@pytest.fixture(scope="session")
def small_dataset_factory(tmp_path_factory):
    """make(name, **overrides) -> folder of a small built-in dataset (cached per name)."""
    from g3d.synth.sampling import SynthConfig, run_synth

    made: dict[str, Path] = {}

    def make(name: str, **kw) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp(f"ds-{name}") / "car"
            args = dict(SMALL)
            args.update(kw)
            run_synth(SynthConfig(out=out, **args))
            made[name] = out
        return made[name]

    return make
