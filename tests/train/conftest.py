import pytest

from g3d.synth.sampling import SynthConfig, run_synth


def builtin_cars(n: int, seed: int, resolution: int = 128):
    """(truth, mesh) of ``n`` built-in cars drawn from ``seed``: their pictures' ground truth (masks, K, R, t) and true meshes."""
    import torch

    from g3d.synth.builtin import BuiltinGenerator

    G = BuiltinGenerator(resolution=resolution)
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ws = G.mapping(z, 0.7)
        _, truth = G.synthesis_with_truth(ws)
        mesh, _, _ = G.build_mesh(G.parameters_of(ws))
    return truth, mesh


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """8 built-in cars x 4 views at 32 px (objects 6 and 7 are held out at holdout 0.25)."""
    out = tmp_path_factory.mktemp("train") / "car"
    run_synth(SynthConfig(out=out, samples=8, views=4, resolution=32, candidates=16))
    return out


@pytest.fixture(scope="session")
def any_photo_data(tmp_path_factory):
    """The short "any photo" budget's data: 120 cars x 12 frozen views at 64 px (seed 3), and 60 new cars (seed 7, the
    last 12 held out) x 4 random viewpoints each."""
    root = tmp_path_factory.mktemp("any_photo")
    run_synth(SynthConfig(out=root / "car", samples=120, views=12, resolution=64, seed=3))
    run_synth(SynthConfig(out=root / "rv", samples=60, views=4, resolution=64, seed=7, viewpoints="random"))
    return root


def any_photo_run(root, name: str, **options):
    """1200 steps of --fov-crop --camera-head (and ``options``) on :func:`any_photo_data`'s cars: the run's folder."""
    from g3d.train.loop import TrainConfig, train

    train(TrainConfig(folder=str(root / "car"), out=str(root / name), resolution=64, batch_size=12, steps=1200, holdout=0.2,
                      crop="fov", camera_head=True, preview_every=10**6, checkpoint_every=10**6, **options))
    return root / name


@pytest.fixture(scope="session")
def any_photo(any_photo_data):
    """(run, random-view test set): the short "any photo" run (no light), shared by the any-photo and light tests."""
    return any_photo_run(any_photo_data, "run"), any_photo_data / "rv"


@pytest.fixture(scope="session")
def any_photo_lit(any_photo_data):
    """The same short run with --light (the light head and its material term)."""
    return any_photo_run(any_photo_data, "lit", light=True)
