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


def test_shading_truth_takes_the_photo_apart_and_the_light_models_ceilings():
    """BuiltinGenerator.shading_truth: the car's pixels are min(1, albedo * shade + highlight) of the images
    synthesis_with_truth draws; and bench/light.py's ceiling (each light model handed the truth): the Lambertian albedo
    changes across two lights less than the photo does, the Blinn-Phong one (the generator's own model) far less."""
    import importlib.util
    from pathlib import Path

    from g3d.synth.builtin import LIGHT_ROWS, BuiltinGenerator

    G = BuiltinGenerator(resolution=48)
    ws = G.mapping(torch.randn(6, G.z_dim, generator=torch.Generator().manual_seed(1)), 1.0)
    img, truth = G.synthesis_with_truth(ws)
    st = G.shading_truth(ws)
    on = (st["cover"] > 0.999) & torch.from_numpy(truth.masks[:, None] > 0)
    assert on.float().mean() > 0.1
    assert ((st["image"] - (img + 1) / 2).abs() * on).max() < 1e-5  # the car's own pixels
    rec = (st["albedo"] * st["shade"] + st["specular"]).clamp(0, 1)
    assert float(((rec - st["image"]).abs() * on).sum() / (3 * on.sum())) < 0.003  # exact inside faces, pooled at their edges
    assert (st["specular"] > 0.05).any() and (st["shade"][on] < 1).any()
    other = ws.clone()
    other[:, list(LIGHT_ROWS)] = torch.roll(ws, 1, 0)[:, list(LIGHT_ROWS)]
    st2 = G.shading_truth(other)
    assert torch.equal(st["albedo"], st2["albedo"]) and not torch.equal(st["shade"], st2["shade"])  # only the light moved

    spec = importlib.util.spec_from_file_location("bench_light", Path(__file__).resolve().parents[2] / "bench" / "light.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figs = bench.ceiling(cars=16, resolution=48)
    assert figs["phong"][0] < 0.2 * figs["lambert"][0] and figs["lambert"][0] < 0.6 * figs["baked"][0]
    assert figs["phong"][1] < figs["lambert"][1] < 0.5 * figs["baked"][1]  # relit under the other light
    off = {k: v[0] for k, v in figs.items() if k.startswith("phong_off_")}
    assert off["phong_off_0_0.0"] < off["phong_off_10_0.0"] < off["phong_off_20_0.0"] and off["phong_off_0_0.0"] < off["phong_off_0_0.03"]
    assert figs["ambient_0"][0] > figs["ambient_20"][0] and figs["ambient_0"][1] < figs["ambient_20"][1]  # the ambient needs the direction
    # ... and the photo holds it: with the exact direction, over the generator's range, read at r > 0.8 with under a
    # third of the mean ambient's error (pixels pooling faces left out; with them in, r 0.65 at 64 px)
    assert figs["ambient_range_0"][0] > 0.8 and figs["ambient_range_0"][1] < figs["ambient_mean"][1] / 3
    assert figs["ambient_range_0"][0] > figs["ambient_range_10"][0]
    # and with neither handed, searched together from the photo and its car, the light comes back: the direction
    # within 10 deg (median; the mean light is about 45 off), the ambient correlated with the truth
    assert figs["joint_direction"][0] < 10 and figs["joint_ambient"][0] > 0.3
    assert len(bench.ceiling_lines(figs, 16, 48)) == 9
    # The ambient fit itself: on photos that are exactly albedo times the shade of their normals (no pixel pooling
    # albedos and normals), it finds each photo's ambient; with the direction 20 deg off it does not.
    from g3d.train.light import light_direction

    p = G.parameters_of(ws)
    d = light_direction(p["light_azimuth_deg"].numpy(), p["light_elevation_deg"].numpy())
    n = st["normal"] / st["normal"].norm(dim=1, keepdim=True).clamp(min=1e-6)
    amb = p["ambient"][:, None, None, None]
    shade = amb + (1 - amb) * (n * torch.tensor(d, dtype=torch.float32)[:, :, None, None]).sum(1, keepdim=True).clamp(min=0)
    shade = torch.where(st["shade"] == 1, st["shade"], shade)
    exact = {**st, "image": st["albedo"] * shade + st["specular"], "shade": shade}
    m = (st["cover"] > 0.999).float()
    # (a photo holds its ambient where its faces turn differently to the light: the shade's spread on the pixels read)
    pixels = bench.photo_pixels(exact, m)
    spread = np.array([np.ptp(np.clip(px[1] @ d[k], 0, None)) for k, px in enumerate(pixels)])
    held = spread > 0.3
    assert held.sum() >= 4
    err = np.abs(bench.fit_ambient(pixels, d) - p["ambient"].numpy())[held]
    turned = np.roll(d, 1, 0)  # another car's light
    assert err.max() < 0.01 and np.abs(bench.fit_ambient(pixels, turned) - p["ambient"].numpy())[held].mean() > 3 * err.mean() + 0.01
