import pytest

from g3d.synth.sampling import SynthConfig, run_synth


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """8 built-in cars x 4 views at 32 px (objects 6 and 7 are held out at holdout 0.25)."""
    out = tmp_path_factory.mktemp("train") / "car"
    run_synth(SynthConfig(out=out, samples=8, views=4, resolution=32, candidates=16))
    return out
