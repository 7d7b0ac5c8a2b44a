import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.classes import CAR_KEYPOINTS
from g3d.errors import DatasetError, UsageError
from g3d.render.rasterize import rasterize
from g3d.synth.builtin import BODY_TYPES, CAMERA_ROWS, FOV_DEG, GENERATOR_VERSION, TRIM, BuiltinGenerator, framing_distance


@pytest.fixture(scope="module")
def G():
    return BuiltinGenerator(resolution=96)


def _ws(G, n, seed=0, psi=0.7):
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G.mapping(z, truncation_psi=psi)


def test_interface_shapes_and_range(G):
    ws = _ws(G, 3)
    assert ws.shape == (3, 16, 64)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, 96, 96) and img.dtype == torch.float32
    assert img.min() >= -1 and img.max() <= 1
    assert img.std() > 0.05  # not a blank picture


def test_truncation_pulls_towards_the_average():
    G = BuiltinGenerator(resolution=32)
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    full, half = G.mapping(z, 1.0), G.mapping(z, 0.5)
    torch.testing.assert_close(half, full * 0.5)
    cut = G.mapping(z, 0.5, truncation_cutoff=4)
    torch.testing.assert_close(cut[:, :4], full[:, :4] * 0.5)
    torch.testing.assert_close(cut[:, 4:], full[:, 4:])


def test_camera_rows_set_only_the_camera(G):
    a, b = _ws(G, 4, seed=1), _ws(G, 4, seed=2)
    mixed = a.clone()
    mixed[:, list(CAMERA_ROWS)] = b[:, list(CAMERA_ROWS)]
    pa, pb, pm = G.parameters_of(a), G.parameters_of(b), G.parameters_of(mixed)
    for name in pm:
        expect = pb[name] if name in ("azimuth_deg", "elevation_deg", "distance") else pa[name]
        torch.testing.assert_close(pm[name], expect, msg=name)
        if name in ("length", "paint_hue", "azimuth_deg"):
            assert not torch.allclose(pa[name], pb[name])  # the two latents really differ there


def test_azimuth_covers_the_full_circle_and_elevation_stays_low():
    G = BuiltinGenerator(resolution=32)
    prm = G.parameters_of(_ws(G, 2000, psi=1.0))
    hist = np.histogram(prm["azimuth_deg"].numpy(), bins=12, range=(0, 360))[0]
    assert hist.min() > 2000 / 12 * 0.6
    el = prm["elevation_deg"].numpy()
    assert el.min() >= 2 and el.max() <= 28


def test_ground_truth_is_consistent_with_the_pictures(G):
    ws = _ws(G, 6, seed=3)
    img, gt = G.synthesis_with_truth(ws)
    N, H = 6, 96
    assert gt.masks.shape == (N, H, H) and gt.keypoints_2d.shape == (N, len(CAR_KEYPOINTS), 2)
    area = gt.masks.mean(axis=(1, 2))
    assert np.all((area > 0.04) & (area < 0.6)), area
    # Cameras follow g3d.cameras and reproduce the 2D keypoints from the 3D ones.
    uv, z = cameras.project(gt.keypoints_3d, gt.K, gt.R, gt.t)
    np.testing.assert_allclose(uv, gt.keypoints_2d, atol=1e-6)
    az, el, d = cameras.to_azimuth_elevation(gt.R, gt.t)
    np.testing.assert_allclose(az, gt.azimuth_deg % 360, atol=1e-4)
    np.testing.assert_allclose(d, gt.distance, atol=1e-6)
    # Visible keypoints lie on the object's mask (within a pixel); each view sees some and hides some.
    for n in range(N):
        vis = gt.keypoints_visible[n]
        assert 3 <= vis.sum() < len(CAR_KEYPOINTS)
        m = np.pad(gt.masks[n], 1)
        for (u, v) in gt.keypoints_2d[n][vis]:
            x, y = int(u) + 1, int(v) + 1
            assert m[y - 1 : y + 2, x - 1 : x + 2].any()
    # The picture differs from the background where the mask is.
    assert gt.masks.dtype == bool


def test_left_keypoints_face_the_camera_from_the_left():
    G = BuiltinGenerator(resolution=64)
    ws = _ws(G, 1, seed=4)
    # A camera at azimuth 90 deg (the car's left side, +x): left wheels visible, right wheels hidden.
    c = ws.clone()
    prm = G.parameters_of(c)
    for _ in range(200):  # search the camera rows for a code near azimuth 90
        trial = c.clone()
        trial[:, list(CAMERA_ROWS)] = torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(_)) * 0.8
        prm = G.parameters_of(trial)
        if abs(prm["azimuth_deg"].item() - 90) < 15:
            break
    _, gt = G.synthesis_with_truth(trial)
    names = dict(zip(CAR_KEYPOINTS, gt.keypoints_visible[0]))
    assert names["left_front_wheel"] and names["left_back_wheel"]
    assert not names["right_front_wheel"] and not names["right_back_wheel"]


def test_smooth_in_ws(G):
    ws = _ws(G, 1, seed=5)
    step = torch.randn(ws.shape, generator=torch.Generator().manual_seed(9))
    a = G.synthesis(ws)
    b = G.synthesis(ws + 1e-3 * step)
    c = G.synthesis(ws + 3e-1 * step)
    small, big = (a - b).abs().mean().item(), (a - c).abs().mean().item()
    assert small < 0.01 and big > 10 * small


def test_resolutions(G):
    for res in (128, 512):
        g = BuiltinGenerator(resolution=res)
        assert g.synthesis(_ws(g, 1)).shape == (1, 3, res, res)


def test_bad_arguments():
    with pytest.raises(UsageError, match="resolution"):
        BuiltinGenerator(resolution=8)
    with pytest.raises(UsageError, match="cars only"):
        BuiltinGenerator(class_name="horse")


def _render_at(mesh, az, el, px=128):
    """Fragments of meshes (verts [N, V, 3]) seen from (az, el) at the generator's framing distance."""
    N = mesh.verts.shape[0]
    d = framing_distance(torch.full((N,), float(az), dtype=torch.float64), torch.full((N,), float(el), dtype=torch.float64)).numpy()
    R, t = cameras.from_azimuth_elevation(np.full(N, az), np.full(N, el), d)
    K = np.broadcast_to(cameras.intrinsics(px, px, FOV_DEG), (N, 3, 3)).copy()
    vc = torch.einsum("nij,nvj->nvi", torch.tensor(R).float(), mesh.verts) + torch.tensor(t).float()[:, None]
    return rasterize(vc, mesh.faces, torch.tensor(K).float(), px, px, cull_backfaces=True), K, R, t


def test_every_body_type_is_drawn_and_framed_whole_above_the_filters_area():
    G = BuiltinGenerator(resolution=64)
    ws = _ws(G, 700, seed=11, psi=1.0)
    prm = G.parameters_of(ws)
    kinds = prm["body_type"].long()
    share = torch.bincount(kinds, minlength=len(BODY_TYPES)).numpy() / len(kinds)
    assert share.min() > 0.08, dict(zip(BODY_TYPES, share))  # each about 1/7
    _, gt = G.synthesis_with_truth(ws)
    area = gt.masks.reshape(len(ws), -1).mean(1)
    assert area.min() >= 0.10, (area.min(), BODY_TYPES[int(kinds[area.argmin()])])  # the paper's small-mask rule keeps them all
    mesh, _, _ = G.build_mesh(prm)
    uv, _ = cameras.project(mesh.verts.double().numpy(), gt.K, gt.R, gt.t)
    assert ((uv >= 0) & (uv <= 64)).all()  # no car is cut by the border
    # Front views come closer than side views (framing), from the camera rows alone.
    az = prm["azimuth_deg"].numpy() % 180
    side, front = np.abs(az - 90) < 15, (az < 15) | (az > 165)
    assert np.median(prm["distance"].numpy()[front]) < 0.9 * np.median(prm["distance"].numpy()[side])


def test_body_types_differ_in_silhouette_and_a_pickups_bed_is_open():
    G = BuiltinGenerator(resolution=64)
    ref = G.reference_shapes()
    mesh, _, _ = G.build_mesh(ref)
    # Side view: the middle car of every type against every other.
    m = _render_at(mesh, 90.0, 10.0)[0].mask.numpy()
    for i in range(len(BODY_TYPES)):
        for j in range(i):
            iou = (m[i] & m[j]).sum() / (m[i] | m[j]).sum()
            assert iou < 0.9, (BODY_TYPES[i], BODY_TYPES[j], iou)
    # From behind and above, the pickup's bed floor (its dark liner) is seen, deep below the rails' tops.
    p = BODY_TYPES.index("pickup")
    L, yb = ref["length"][p], ref["clearance"][p]
    yt = yb + ref["body_height"][p]
    yr = yt + ref["cabin_height"][p]
    z_rw = -L / 2 + 0.03 + ref["deck_fraction"][p] * L
    floor = torch.stack([torch.tensor(0.0), yt - ref["bed_depth"][p] + 0.004 - yr / 2, (z_rw + (-L / 2 + 0.1)) / 2]).double().numpy()
    assert ref["bed_depth"][p] > 0.15
    frags, K, R, t = _render_at(mesh, 180.0, 25.0)
    uv, z = cameras.project(floor[None], K[p], R[p], t[p])
    u, v = (int(c) for c in uv[0])
    assert frags.depth[p, v, u] == pytest.approx(float(z[0]), abs=0.01)  # nothing closes the bed
    assert mesh.material[frags.face_id[p, v, u]] == TRIM
    s = BODY_TYPES.index("sedan")  # a sedan's deck there is its closed trunk lid, painted
    assert mesh.material[frags.face_id[s, v, u]] != TRIM


def test_a_cars_mesh_does_not_depend_on_its_batch():
    G = BuiltinGenerator(resolution=32)
    ws = _ws(G, 9, seed=12, psi=1.0)
    prm = G.parameters_of(ws)
    whole, _, _ = G.build_mesh(prm)
    for n in (0, 4):
        one, _, _ = G.build_mesh({k: v[n : n + 1] for k, v in prm.items()})
        torch.testing.assert_close(one.verts[0], whole.verts[n], rtol=0, atol=0)
        assert torch.equal(one.faces, whole.faces)  # winding from the reference cars, not the batch
    # A batch led by a car without a bed winds the bed's faces as one led by a pickup does.
    ref = G.reference_shapes()
    p, s = BODY_TYPES.index("pickup"), BODY_TYPES.index("sedan")
    a, _, _ = G.build_mesh({k: v[[p, s]] for k, v in ref.items()})
    b, _, _ = G.build_mesh({k: v[[s, p]] for k, v in ref.items()})
    assert torch.equal(a.faces, b.faces)


def test_a_dataset_of_the_previous_generator_version_is_refused(tmp_path):
    import json

    from g3d.datasets.manifest import read_manifest
    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.evaluate import TrueMeshes

    cfg = SynthConfig(out=tmp_path / "car", samples=2, views=2, resolution=32, batch_size=4, candidates=8)
    run_synth(cfg)
    assert read_manifest(cfg.out).generator.get("version") == GENERATOR_VERSION
    # The same folder as version 1 wrote it: no version in its generator record.
    path = cfg.out / "g3d.json"
    data = json.loads(path.read_text())
    data["generator"].pop("version")
    data["fingerprint"]["generator"].pop("version")
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="built-in version 1 there, 2 in this g3d.*--overwrite"):
        run_synth(cfg)  # not resumed as if the new generator had drawn it
    with pytest.raises(DatasetError, match="built-in generator version 1 .*draws version 2"):
        TrueMeshes(cfg.out, read_manifest(cfg.out))  # nor evaluated against the new generator's meshes
