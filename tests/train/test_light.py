"""The predicted light (``g3d train --light``): the head's parametrisation, its conventions against the built-in
generator's truth, the figures `g3d eval` prints beside the mean light, and the shading path recovering a light
from renders (with the albedo prior) where the baked texture would not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.render.dibr import render
from g3d.train.evaluate import angle_deg, light_figures
from g3d.train.light import AMBIENT_START, SHININESS_START, head_to_light, head_to_specular, light_direction, lighting_of
from g3d.train.losses import albedo_spread
from g3d.train.template import build_template


def test_light_direction_follows_the_generators_convention():
    d = light_direction([0.0, 90.0, 180.0, 37.0], [0.0, 0.0, 0.0, 90.0])
    assert np.allclose(d, [[0, 0, 1], [1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    # the same formula as the built-in generator's shading (synth/builtin.py) and its light rows' truth
    from g3d.synth.builtin import BuiltinGenerator

    G = BuiltinGenerator(resolution=32)
    ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0)), 0.7)
    p = G.parameters_of(ws)
    az, el = p["light_azimuth_deg"].double().numpy(), p["light_elevation_deg"].double().numpy()
    d = light_direction(az, el)
    assert np.allclose(np.linalg.norm(d, axis=1), 1) and (d[:, 1] > 0).all()  # above the horizon: elevation 25-70 deg
    assert np.allclose(np.degrees(np.arcsin(d[:, 1])), el)


def test_head_starts_overhead_at_the_usual_ambient_and_passes_gradients():
    out = torch.zeros(3, 4, requires_grad=True)
    d, a = head_to_light(out)
    assert torch.allclose(d, torch.tensor([[0.0, 1.0, 0.0]] * 3)) and torch.allclose(a, torch.full((3,), AMBIENT_START))
    (d[:, 0].sum() + a.sum()).backward()
    assert out.grad[:, 0].abs().sum() > 0 and out.grad[:, 3].abs().sum() > 0
    assert torch.allclose(head_to_light(torch.tensor([[5.0, -1.0, 0.0, 0.0]]))[0].norm(dim=-1), torch.ones(1))


def test_the_material_term_starts_dull_and_a_head_without_it_has_none():
    out = torch.zeros(3, 5, requires_grad=True)
    s = head_to_specular(out)
    assert torch.allclose(s, torch.full((3,), 0.1)) and head_to_specular(torch.zeros(3, 4)) is None
    s.sum().backward()
    assert out.grad[:, 4].abs().sum() > 0 and out.grad[:, :4].abs().sum() == 0
    assert torch.equal(head_to_light(out)[0], head_to_light(out[:, :4])[0])  # the light reads the first four


def test_light_figures_beside_the_mean_light():
    rng = np.random.default_rng(0)
    true = light_direction(rng.uniform(0, 360, 50), rng.uniform(25, 70, 50))
    amb = rng.uniform(0.3, 0.55, 50)
    exact = light_figures(true, amb, true, amb)
    assert exact["dir_deg"] < 1e-4 and exact["ambient_r"] > 0.999 and exact["ambient_err"] < 1e-12
    mean = true.mean(0) / np.linalg.norm(true.mean(0))
    assert np.isclose(exact["dir_deg_mean"], np.median(angle_deg(np.broadcast_to(mean, true.shape), true)))
    const = light_figures(np.broadcast_to(mean, true.shape), np.full(50, amb.mean()), true, amb)
    assert np.isclose(const["dir_deg"], const["dir_deg_mean"])  # the mean light scores as the mean light
    # The photos lit 45+ deg from the mean light, scored apart: there the mean light is at least 45 deg off.
    far = angle_deg(np.broadcast_to(mean, true.shape), true) >= 45.0
    assert 0 < const["far_images"] == far.sum() < 50 and const["dir_deg_far"] == const["dir_deg_far_mean"] >= 45.0
    assert exact["far_images"] == far.sum() and exact["dir_deg_far"] < 1e-4
    assert abs(const["ambient_r"]) < 1e-6  # a constant ambient correlates with nothing


def _views(n: int = 6, size: int = 32):
    az = np.linspace(0, 360, n, endpoint=False) + 20
    R, t = cameras.from_azimuth_elevation(az, np.full(n, 20.0), np.full(n, 3.2))
    K = np.broadcast_to(cameras.intrinsics(size, size, 40.0), (n, 3, 3))
    f = lambda x: torch.tensor(np.ascontiguousarray(x), dtype=torch.float32)  # noqa: E731
    return f(K), f(R), f(t)


@pytest.mark.parametrize("prior", [1.0, 0.0])
def test_shading_recovers_the_light_from_renders(prior):
    """A one-colour car rendered under a known light from 6 sides; the light (the head's parametrisation, started
    overhead, 55 deg off) and a texture map fitted to the renders through the shading path find the light, with the
    albedo prior and without it (here the light explains every pixel with 4 numbers, before the texture can paint
    the shading in; in a network trained over many cars, measured in bench/README.md)."""
    tpl = build_template(2)
    verts = (tpl.verts * torch.tensor([0.45, 0.3, 1.0]))[None].expand(6, -1, -1)
    K, R, t = _views()
    true_dir = torch.tensor(light_direction([120.0], [35.0]), dtype=torch.float32)
    true_amb = torch.tensor([0.35])
    paint = torch.tensor([0.7, 0.2, 0.15]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    uvs = tpl.face_uvs
    target = render(verts, tpl.faces, K, R, t, 32, 32, face_uvs=uvs, texture=paint.expand(6, -1, -1, -1),
                    lighting=lighting_of(true_dir.expand(6, 3), true_amb.expand(6)), silhouette=False).image
    raw = torch.zeros(1, 4, requires_grad=True)
    tex_logit = torch.zeros(1, 3, 16, 16, requires_grad=True)
    opt = torch.optim.Adam([raw, tex_logit], lr=5e-2)
    for _ in range(250):
        d, a = head_to_light(raw)
        tex = torch.sigmoid(tex_logit)
        img = render(verts, tpl.faces, K, R, t, 32, 32, face_uvs=uvs, texture=tex.expand(6, -1, -1, -1),
                     lighting=lighting_of(d.expand(6, 3), a.expand(6)), silhouette=False).image
        loss = (img - target).abs().mean() * 20 + prior * albedo_spread(tex)
        opt.zero_grad()
        loss.backward()
        opt.step()
    err = float(angle_deg(head_to_light(raw)[0].detach().double().numpy(), true_dir.double().numpy())[0])
    start = float(angle_deg(np.array([[0.0, 1.0, 0.0]]), true_dir.double().numpy())[0])  # the head's start: overhead
    assert err < 5 and start > 45, (err, start)
    if prior > 0:  # the texture came out one colour, seen texels and unseen alike: an albedo
        assert float(albedo_spread(torch.sigmoid(tex_logit)).detach()) < 0.02


def test_a_light_run_trains_its_head_loads_it_back_and_eval_scores_it(tmp_path):
    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.evaluate import evaluate
    from g3d.train.loop import TrainConfig, load_run, train

    data = tmp_path / "car"
    run_synth(SynthConfig(out=data, samples=6, views=4, resolution=32, candidates=16))
    cfg = TrainConfig(folder=str(data), out=str(tmp_path / "run"), resolution=32, batch_size=2, steps=3, tex_res=16, holdout=0.34,
                      preview_every=10**6, light=True, albedo_weight=1.0)
    train(cfg)
    _, model, _, _, _ = load_run(tmp_path / "run")
    start = torch.zeros_like(model.light_head[2].weight)
    assert not torch.equal(model.light_head[2].weight, start)  # the render loss reached the light head
    # the material term (default): a specular strength per photo (the head's 5th output) and one learned shininess
    assert model.light_head[2].out_features == 5 and model.light_head[2].weight[4].abs().sum() > 0
    assert model.shininess is not None and not torch.isclose(model.shininess, torch.tensor(SHININESS_START), rtol=1e-5, atol=0)
    import json

    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "albedo" in last
    rep = evaluate(tmp_path / "run")
    assert set(rep.light) >= {"dir_deg", "dir_deg_mean", "ambient_r", "shininess", "specular_r"} and 0 <= rep.light["dir_deg"] <= 180
    assert rep.light["shininess"] == pytest.approx(model.shininess.item())
    train(TrainConfig(folder=str(data), out=str(tmp_path / "lambert"), resolution=32, batch_size=2, steps=1, tex_res=16, holdout=0.34,
                      preview_every=10**6, light=True, specular=False))
    _, lambert, _, _, _ = load_run(tmp_path / "lambert")
    assert lambert.light_head[2].out_features == 4 and lambert.shininess is None and "shininess" not in evaluate(tmp_path / "lambert").light
    assert any(line.startswith("light direction error") for line in rep.lines())
    train(TrainConfig(folder=str(data), out=str(tmp_path / "plain"), resolution=32, batch_size=2, steps=1, tex_res=16, holdout=0.34,
                      preview_every=10**6))
    _, plain, _, _, _ = load_run(tmp_path / "plain")
    assert plain.light_head is None and not evaluate(tmp_path / "plain").light
    with pytest.raises(ValueError, match="no light head"):
        plain(torch.rand(1, 3, 32, 32), with_light=True)
    # g3d predict writes the light beside the camera (the GLB's texture is then an albedo)
    import cv2
    import pyarrow.parquet as pq

    from g3d.datasets.schema import decode_png
    from g3d.train.predict import predict

    train(TrainConfig(folder=str(data), out=str(tmp_path / "fov"), resolution=32, batch_size=2, steps=2, tex_res=16, holdout=0.34,
                      preview_every=10**6, light=True, crop="fov", camera_head=True))
    row = pq.read_table(sorted((data / "images").glob("part-*.parquet"))[-1], columns=["image", "mask"]).to_pylist()[-1]
    cv2.imwrite(str(tmp_path / "car.png"), decode_png(row["image"]["bytes"])[..., ::-1])
    cv2.imwrite(str(tmp_path / "car_mask.png"), (decode_png(row["mask"]["bytes"], grey=True) == 255).astype(np.uint8) * 255)
    (p,) = predict(tmp_path / "fov", [tmp_path / "car.png"], [tmp_path / "car_mask.png"], tmp_path / "out")
    light = json.loads(p.json.read_text())["light"]
    assert np.isclose(np.linalg.norm(light["direction"]), 1) and 0 < light["ambient"] < 1
    # the material: the photo's specular strength and the run's shininess, the GLB's roughness from it
    import trimesh

    from g3d.train.export import roughness_of

    _, fov, _, _, _ = load_run(tmp_path / "fov")
    assert 0 < light["specular"] < 1 and light["shininess"] == pytest.approx(fov.shininess.item())
    assert light["roughness"] == pytest.approx(roughness_of(light["shininess"])) and 0 < light["roughness"] < 1
    assert roughness_of(16.0) > roughness_of(64.0)  # shinier: smoother
    scene = trimesh.load(p.glb)
    mat = next(iter(scene.geometry.values())).visual.material
    assert mat.roughnessFactor == pytest.approx(light["roughness"], abs=1e-6) and mat.metallicFactor == 0
    # The sheet's second row: the albedo under its own light and 4 new ones, each lit differently.
    sheet = cv2.imread(str(p.sheet))[..., ::-1]
    cell, pad, top = 192, 2, 16
    assert sheet.shape[0] == top + 2 * (cell + pad) + pad
    y = top + 2 * pad + cell
    lit = [sheet[y:y + cell - 20, pad + c * (cell + pad):pad + c * (cell + pad) + cell].astype(int) for c in range(5)]
    assert all(np.abs(lit[a] - lit[b]).mean() > 0.5 for a in range(1, 5) for b in range(a + 1, 5))


def test_true_light_reads_the_generators_columns_and_the_loss_is_zero_only_there():
    from g3d.train.light import LIGHT_COLUMNS, light_loss, true_light

    extra = {LIGHT_COLUMNS[0]: np.array([0.0, 90.0]), LIGHT_COLUMNS[1]: np.array([0.0, 30.0]), LIGHT_COLUMNS[2]: np.array([0.3, 0.5])}
    t = true_light(extra)
    assert t.shape == (2, 4) and np.allclose(t[0], [0, 0, 1, 0.3]) and np.allclose(t[1, :3], light_direction(90.0, 30.0), atol=1e-6)
    assert true_light({k: v for k, v in extra.items() if k != LIGHT_COLUMNS[2]}) is None  # a StyleGAN's data: no truth
    assert true_light({**extra, LIGHT_COLUMNS[2]: np.array([0.3, np.nan])}) is None
    tt = torch.from_numpy(t)
    assert float(light_loss(tt[:, :3], tt[:, 3], tt)) < 1e-6
    opposite = light_loss(-tt[:, :3], tt[:, 3], tt)  # (1 - cos 180) = 2
    assert np.isclose(float(opposite), 2.0) and np.isclose(float(light_loss(tt[:, :3], tt[:, 3] + 0.1, tt)), 0.1, atol=1e-6)
    assert np.isclose(float(light_loss(tt[:, :3], tt[:, 3] + 0.1, tt, ambient_weight=10.0)), 1.0, atol=1e-5)  # --ambient-weight


def _head_errors(run, data) -> tuple[float, float]:
    """Median angle (deg) between the run's light head and the true light on the training images, and the same
    against another image's true light (the shuffled pairing)."""
    from g3d.train.light import true_light
    from g3d.train.loop import load_run

    _, model, _, _, _ = load_run(run)
    truth = true_light(data.extra)[:, :3].astype(np.float64)
    with torch.no_grad():
        out = model(data.batch(torch.arange(len(data)), "cpu").images, with_light=True)
    d = head_to_light(out[-1].float())[0].double().numpy()
    return float(np.median(angle_deg(d, truth))), float(np.median(angle_deg(d, truth[np.roll(np.arange(len(truth)), 5)])))


def test_the_true_light_supervises_the_head_image_by_image(tmp_path):
    """With the built-in set's gt_light_* columns and the render losses off, 300 steps teach the head each training
    image's own light: far below the mean light (the constant answer) and the shuffled pairing (another image's
    light; also what supervising with misaligned truth would learn). With --light-weight 0 (a StyleGAN's data) the
    run says its light comes from the render alone."""
    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.data import PairData
    from g3d.train.light import LIGHT_COLUMNS, true_light
    from g3d.train.losses import LossWeights
    from g3d.train.loop import TrainConfig, train

    data = tmp_path / "car"
    run_synth(SynthConfig(out=data, samples=12, views=3, resolution=32, candidates=24))
    lines = []
    off = LossWeights(color=0, percept=0, iou=0, flatten=0, laplacian=0, move=0)
    train(TrainConfig(folder=str(data), out=str(tmp_path / "sup"), resolution=32, batch_size=8, steps=300, tex_res=16, holdout=0.1,
                      preview_every=10**6, checkpoint_every=300, light=True, lr=1e-3, weights=off), log=lines.append)
    pd = PairData(data, 32, "train", 0.1, extra_columns=LIGHT_COLUMNS)
    truth = true_light(pd.extra)[:, :3].astype(np.float64)
    mean = truth.mean(0) / np.linalg.norm(truth.mean(0))
    mean_err = float(np.median(angle_deg(np.broadcast_to(mean, truth.shape), truth)))
    err, shuffled = _head_errors(tmp_path / "sup", pd)
    print(f"light direction error on the training images: {err:.1f} | mean light {mean_err:.1f}, shuffled pairing {shuffled:.1f} deg")
    # 10-25 deg seen (the run's thread count moves it); supervising with another image's light lands at the mean's 43
    assert err < 0.7 * mean_err and err < 0.6 * shuffled
    assert any("supervised by each image's true light" in m for m in lines)
    lines = []
    train(TrainConfig(folder=str(data), out=str(tmp_path / "free"), resolution=32, batch_size=2, steps=1, tex_res=16, holdout=0.1,
                      preview_every=10**6, light=True, light_weight=0.0), log=lines.append)
    assert any("from the render alone" in m for m in lines)


def test_relight_pairs_join_one_car_and_view_across_its_lights():
    from g3d.datasets.manifest import car_ids
    from g3d.train.evaluate import relight_pairs

    sids = np.array([4, 4, 5, 5, 6, 7, 7])
    vids = np.array([0, 1, 0, 1, 0, 0, 2])
    assert car_ids(sids, 2).tolist() == [4, 4, 4, 4, 6, 6, 6] and car_ids(sids, 1).tolist() == sids.tolist()
    pairs = {tuple(p) for p in relight_pairs(car_ids(sids, 2), vids).tolist()}
    assert pairs == {(0, 2), (2, 0), (1, 3), (3, 1), (4, 5), (5, 4)}  # car 4 (samples 4, 5), car 6 (6, 7) in view 0
    assert len(relight_pairs(car_ids(sids, 1), vids)) == 0  # one image per car and view: no pairs


def test_eval_on_cars_under_two_lights_scores_albedo_and_relighting(tmp_path, monkeypatch):
    import g3d.train.evaluate as ev
    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.evaluate import evaluate
    from g3d.train.loop import TrainConfig, load_run, train

    data = tmp_path / "car"
    run_synth(SynthConfig(out=data, samples=8, views=3, resolution=32, candidates=16, lights=2))
    seen = []
    real = ev.relight_figures

    def relight_figures(*args, **kw):  # what eval hands the relighting: each answer's own material
        seen.append(kw)
        out = real(*args, **kw)
        if kw.get("specular") is not None:  # the same answers relit without their highlight differ
            plain = real(*args, **{**kw, "specular": None, "shininess": None})
            assert plain["albedo"] == out["albedo"] and plain["relight"] != out["relight"] and plain["relight_own"] != out["relight_own"]
        return out

    monkeypatch.setattr(ev, "relight_figures", relight_figures)
    for name, light in (("lit", True), ("baked", False)):
        train(TrainConfig(folder=str(data), out=str(tmp_path / name), resolution=32, batch_size=2, steps=2, tex_res=16, holdout=0.5,
                          preview_every=10**6, light=light))
        rep = evaluate(tmp_path / name)
        _, model, _, _, _ = load_run(tmp_path / name)
        if light:  # the run's learned shininess and one strength per held-out image
            assert seen[-1]["shininess"] == pytest.approx(model.shininess.item()) and seen[-1]["specular"].shape == (rep.images,)
        else:
            assert seen[-1]["specular"] is None and seen[-1]["shininess"] is None
        g = rep.relight
        assert g["pairs"] == 2 * 2 * 3 and g["lit"] is light  # 2 held-out cars x 3 views x 2 orders
        assert all(0 <= g[k] < 1 for k in ("albedo", "albedo_other", "relight", "relight_own"))
        if not light:  # a baked texture is drawn as it is for both photos: B's error differs from A's by the light alone
            assert g["relight"] != g["relight_own"]
        text = "\n".join(rep.lines())
        assert "albedo consistency" in text and "relighting error" in text


@pytest.mark.slow
def test_the_light_head_makes_the_texture_an_albedo_that_relights(any_photo, any_photo_lit, any_photo_data):
    """The short "any photo" budget with --light against the same run without (its baked texture), on new cars from
    random viewpoints each under two lights: relit under the other photo's true light the albedo does better than the
    baked texture and loses almost nothing against its own light, where the baked texture loses the change of light. A light head the renderer ignores in training (a baked texture shaded again) fails here."""
    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.evaluate import evaluate

    lt = any_photo_data / "lt"  # the random-view test set's cars, each under two lights
    run_synth(SynthConfig(out=lt, samples=60, views=4, resolution=64, seed=7, viewpoints="random", lights=2))
    lit = evaluate(any_photo_lit, lt)
    baked = evaluate(any_photo[0], lt)
    g, b = lit.relight, baked.relight
    print(f"light run {g}\nbaked run {b}")  # pytest -s shows them
    assert g["pairs"] == b["pairs"] == 12 // 2 * 4 * 2 and g["lit"] and not b["lit"]
    # The albedo against the baked texture is left out: at this budget it is within noise of it (0.0300 vs 0.0332 on one
    # machine, 0.0321 vs 0.0322 on another, the same code); the relighting below separates them on both.
    assert g["albedo"] < 0.5 * g["albedo_other"], (g, b)  # not one texture for all cars
    assert g["relight"] < b["relight"] - 0.005, (g, b)
    assert g["relight"] - g["relight_own"] < 0.5 * (b["relight"] - b["relight_own"]), (g, b)
    # Measured (one core, 2026-12-07): albedo 0.0300 (another car's 0.157) | baked 0.0332; relighting 0.0859 (own light
    # 0.0859) | baked 0.1003 (0.0875). With the renderer ignoring the light head in training: albedo 0.0336, relighting
    # 0.1154 (0.1131): it fails.


def test_twins_are_the_same_car_and_view_under_the_cars_next_light():
    from g3d.train.data import twin_indices

    sids = [4, 4, 5, 5, 6, 7, 8, 9, 10, 11]
    vids = [0, 1, 0, 1, 0, 1, 0, 0, 0, 0]
    # car 4 (samples 4, 5): both views paired; car 6: view 0 has no twin under light 7, view 1 none under 6
    assert twin_indices(sids, vids, 2).tolist() == [2, 3, 0, 1, -1, -1, 7, 6, 9, 8]
    # three lights per car (samples 9, 10, 11 are car 9): each image's twin is the next light's, cyclically
    assert twin_indices(sids, vids, 3).tolist()[7:] == [8, 9, 7]
    assert (twin_indices(sids, vids, 1) == -1).all()  # one light per car: no twins


class _Table(torch.nn.Module):
    """A stand-in network that answers each photo from a table (the photo's exact pixels are its key): a shape, a
    texture and the head's raw light output."""

    shininess = None  # no material term

    def __init__(self, rows):
        super().__init__()
        self.rows = rows  # [(image float [3, H, W], verts [V, 3], texture [3, T, T], raw light [4])]

    def forward(self, images, with_camera=False, with_light=False):
        hit = [next(r for r in self.rows if torch.equal(r[0], x)) for x in images]
        verts = torch.stack([r[1] for r in hit])
        return verts, torch.stack([r[2] for r in hit]), torch.zeros_like(verts), torch.stack([r[3] for r in hit])


def _raw_light(direction, ambient: float) -> torch.Tensor:
    """The light head's raw output float [4] that head_to_light reads as this (unit) direction and ambient."""
    up = torch.tensor([0.0, 1.0, 0.0])
    logit = float(np.log(ambient / (1 - ambient)) - np.log(AMBIENT_START / (1 - AMBIENT_START)))
    return torch.cat([torch.as_tensor(direction, dtype=torch.float32) - up, torch.tensor([logit])])


def test_the_twin_loss_lights_the_twins_albedo_with_this_photos_light():
    """One car in one view under two lights (photos A and B, rendered from a two-colour albedo). A stand-in network
    answers A with a grey texture and A's true light, B with the true albedo and B's true light. The twin term of the
    pair (i = A, twin B) renders B's texture on A's shape under A's light against A: zero. The pair (i = B, twin A)
    renders A's grey texture under B's light against B: far from zero. Lighting the twin with its own light, comparing
    with the twin's photo, or using photo i's texture would each break the first figure."""
    from g3d.train.data import Batch
    from g3d.train.loop import TrainConfig, pair_losses
    from g3d.train.model import ViewCameras

    tpl = build_template(2)
    verts = tpl.verts * torch.tensor([0.45, 0.3, 1.0])
    K, R, t = _views(2)
    albedo = torch.zeros(3, 16, 16)
    albedo[:, :8] = torch.tensor([0.8, 0.15, 0.1])[:, None, None]
    albedo[:, 8:] = torch.tensor([0.3, 0.35, 0.4])[:, None, None]
    grey = torch.full((3, 16, 16), 0.5)
    lights = [(light_direction([60.0], [40.0])[0], 0.35), (light_direction([240.0], [30.0])[0], 0.5)]

    def photo(view: int, light) -> tuple[torch.Tensor, torch.Tensor]:
        d, a = torch.tensor(light[0], dtype=torch.float32)[None], torch.tensor([light[1]])
        o = render(verts[None], tpl.faces, K[view:view + 1], R[view:view + 1], t[view:view + 1], 32, 32, face_uvs=tpl.face_uvs,
                   texture=albedo[None], lighting=lighting_of(d, a), silhouette=False)
        return o.image[0], o.fragments.mask[0][None].float()

    (a0, m0), (b0, _), (a1, m1), (b1, _) = photo(0, lights[0]), photo(0, lights[1]), photo(1, lights[0]), photo(1, lights[1])
    net = _Table([(a0, verts, grey, _raw_light(*lights[0])), (b0, verts, albedo, _raw_light(*lights[1]))])
    cams = ViewCameras(K, R, t, learn=False)
    cfg = TrainConfig(folder="", out="", light=True, specular=False, camera_head=False, sigma=1e-5)
    truth = [torch.tensor([*light[0], light[1]], dtype=torch.float32)[None] for light in lights]

    def twin_terms(i_img, j_img, twin_img, i_light, twin_light):
        one = lambda img, m, v: Batch(img[None], m[None], torch.tensor([v]), torch.eye(3)[None])  # noqa: E731
        _, terms, _ = pair_losses(net, cams, tpl, one(i_img, m0, 0), one(j_img, m1, 1), cfg, None, 10**6, 32, 32, light_i=i_light,
                                  twin=(torch.tensor([0]), one(twin_img, m0, 0), twin_light))
        return terms

    ab = twin_terms(a0, a1, b0, truth[0], truth[1])
    ba = twin_terms(b0, b1, a0, truth[1], truth[0])
    assert float(ab["twin"]) < 2e-3 < 0.05 < float(ba["twin"]), (float(ab["twin"]), float(ba["twin"]))
    assert float(ab["light_twin"]) < 1e-5 and float(ab["light"]) < 1e-5  # both photos' lights are the true ones
    assert float(twin_terms(a0, a1, b0, truth[0], truth[0])["light_twin"]) > 0.1  # the twin's light is B's, not A's
    # the albedo consistency loss (on by default): the two texture maps' L1, whichever photo is i (grey vs the albedo),
    # 0 for one map, absent at weight 0
    assert cfg.consistency_weight > 0
    gap = float((grey - albedo).abs().mean())
    for terms in (twin_terms(a0, a1, b0, truth[0], truth[1]), twin_terms(b0, b1, a0, truth[1], truth[0])):
        assert abs(float(terms["consistency"]) - gap) < 1e-6, (float(terms["consistency"]), gap)
    assert float(twin_terms(b0, b1, b0, truth[1], truth[1])["consistency"]) == 0.0
    cfg.consistency_weight = 0.0
    assert "consistency" not in twin_terms(a0, a1, b0, truth[0], truth[1])
    cfg.consistency_weight, cfg.twin_weight = 20.0, 0.0  # either pair loss runs without the other
    only = twin_terms(a0, a1, b0, truth[0], truth[1])
    assert "consistency" in only and "light_twin" in only and "twin" not in only
    cfg.consistency_weight = 0.0
    assert not {"twin", "consistency", "light_twin"} & set(twin_terms(a0, a1, b0, truth[0], truth[1]))


def test_the_light_encoder_reads_the_light_alone():
    """With light_encoder, the light head reads its own encoder: its output's gradient reaches that encoder and not
    the shared one (which shape and texture read); without it, the shared one."""
    from g3d.train.model import InverseGraphicsNet

    tpl = build_template(2)
    img = torch.rand(2, 3, 32, 32)
    for own in (True, False):
        net = InverseGraphicsNet(tpl, tex_res=16, light_head=True, specular=True, light_encoder=own)
        torch.nn.init.normal_(net.light_head[2].weight)  # (it starts at zero: no gradient past it)
        net(img, with_light=True)[-1].sum().backward()
        shared = sum(float(p.grad.abs().sum()) for p in net.encoder.parameters() if p.grad is not None)
        assert (net.light_encoder is not None) == own
        if own:
            assert shared == 0 and sum(float(p.grad.abs().sum()) for p in net.light_encoder.parameters()) > 0
        else:
            assert shared > 0


def test_a_run_on_cars_under_two_lights_trains_the_twin_loss_and_its_own_light_encoder(tmp_path):
    import json

    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.evaluate import evaluate
    from g3d.train.loop import TrainConfig, load_run, train, upgrade_config

    data = tmp_path / "car"
    run_synth(SynthConfig(out=data, samples=8, views=3, resolution=32, candidates=16, lights=2))
    opts = dict(folder=str(data), resolution=32, batch_size=2, steps=2, tex_res=16, holdout=0.25, preview_every=10**6, light=True)
    log: list[str] = []
    train(TrainConfig(out=str(tmp_path / "twin"), light_encoder=True, **opts), log=log.append)
    assert any("twin losses on 18 images" in m for m in log), log  # 6 training samples x 3 views
    last = json.loads((tmp_path / "twin" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["twin"] > 0 and last["light_twin"] > 0 and last["consistency"] > 0
    cfg, model, _, _, _ = load_run(tmp_path / "twin")
    assert cfg.light_encoder and model.light_encoder is not None
    assert evaluate(tmp_path / "twin").relight["pairs"] == 3 * 2  # the held-out car (samples 6, 7), 3 views, both ways
    train(TrainConfig(out=str(tmp_path / "off"), twin_weight=0.0, consistency_weight=0.0, **opts))
    last = json.loads((tmp_path / "off" / "metrics.jsonl").read_text().splitlines()[-1])
    assert not {"twin", "consistency", "light_twin"} & set(last) and load_run(tmp_path / "off")[1].light_encoder is None
    # a light run from before these options trained without either
    old = upgrade_config({"folder": "x", "out": "y", "light": True, "weights": {}})
    assert old["twin_weight"] == 0.0 and old["light_encoder"] is False and old["consistency_weight"] == 0.0
    with pytest.raises(Exception, match="--twin-weight -1"):
        TrainConfig(out=str(tmp_path / "bad"), twin_weight=-1.0, **opts).validate()
    with pytest.raises(Exception, match="--consistency-weight nan"):
        TrainConfig(out=str(tmp_path / "bad"), consistency_weight=float("nan"), **opts).validate()


def test_bench_light_feeds_a_crop_run_the_crops_it_trained_on(tmp_path):
    """bench/light.py's photos (whole generator views) reach a --fov-crop run as PairData cut them in training: the
    same pixels and intrinsics; the whole view, resampled, is another picture (what the bench fed such runs before)."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.data import PairData

    spec = importlib.util.spec_from_file_location("bench_light", Path(__file__).resolve().parents[2] / "bench" / "light.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = tmp_path / "car"
    run_synth(SynthConfig(out=data, samples=3, views=4, resolution=32, candidates=16))
    whole = PairData(data, 32, "train")
    crops = PairData(data, 32, "train", crop="fov")
    assert torch.equal(whole.sample_ids, crops.sample_ids) and torch.equal(whole.view_ids, crops.view_ids)
    K = whole.cameras.K[whole.camera_ids].numpy()  # the photos' own (32 px: the training size)
    photos = whole.images.permute(0, 3, 1, 2).float() / 255
    cfg, cams = SimpleNamespace(crop="fov", resolution=32), SimpleNamespace(K=crops.cameras.K)
    boxes = bench.run_boxes(cfg, cams, whole.masks.numpy(), K)
    seen, K_seen = bench.run_view(photos, K, 32, boxes)
    trained = crops.images.permute(0, 3, 1, 2).float() / 255
    assert (seen - trained).abs().max() < 1.5 / 255  # the same crop (uint8 rounding apart)
    assert torch.allclose(K_seen, crops.crop_mats @ crops.cameras.K[crops.camera_ids], atol=1e-3)
    plain, _ = bench.run_view(photos, K, 32, bench.run_boxes(SimpleNamespace(crop=False, resolution=32), cams, whole.masks.numpy(), K))
    assert torch.equal(plain, photos) and (plain - trained).abs().mean() > 0.02  # a whole-view run reads the view itself
