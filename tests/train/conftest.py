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
