"""The measurements of g3d eval that need no trained run: Chamfer distances of outer surfaces."""

import numpy as np
import torch

from g3d.train.evaluate import OuterSurface, outer_chamfer
from g3d.train.template import build_template


def _box(half: tuple[float, float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed box centred at the origin: verts float [8, 3], faces int64 [12, 3] counter-clockwise from outside."""
    s = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float32)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    v = s * torch.tensor(half)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    flip = (torch.linalg.cross(b - a, c - a) * (a + b + c)).sum(1) < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return v, faces


def test_outer_points_lie_on_the_surface_all_the_way_round():
    tpl = build_template(3)
    p = OuterSurface(tpl.verts * 0.8, tpl.faces, n=4000).samples
    r = np.linalg.norm(p, axis=1)
    assert r.max() <= 0.8 + 1e-4 and r.min() >= 0.8 * 0.98, (r.min(), r.max())  # on the facets of a sphere of radius 0.8
    d = p / r[:, None]
    for axis in range(3):  # seen from every side, the underside included
        assert (d[:, axis] > 0.8).mean() > 0.04 and (d[:, axis] < -0.8).mean() > 0.04, axis


def test_outer_chamfer_is_the_gap_between_surfaces():
    """Concentric spheres 0.1 apart measure 0.1 (a distance, not its square); a sphere against itself seen
    from other directions measures near 0 (the floor eval prints), far below the gap."""
    tpl = build_template(3)
    inner, outer = OuterSurface(tpl.verts * 0.8, tpl.faces), OuterSurface(tpl.verts * 0.9, tpl.faces, seed=1)
    assert abs(outer_chamfer(inner, outer) - 0.1) < 0.01, outer_chamfer(inner, outer)
    floor = outer_chamfer(OuterSurface(tpl.verts * 0.8, tpl.faces, seed=2, azimuth_offset=18.0), inner)
    assert 0 < floor < 0.01, floor


def test_structure_no_outside_camera_sees_is_not_charged():
    """A box hiding a smaller box inside (like the built-in cars' inner tyre halves) measures as the box alone."""
    outer_v, outer_f = _box((1.0, 0.4, 0.9))
    inner_v, inner_f = _box((0.6, 0.2, 0.5))
    both_v = torch.cat([outer_v, inner_v])
    both_f = torch.cat([outer_f, inner_f + len(outer_v)])
    both = OuterSurface(both_v, both_f, n=3000)
    on_outside = ((np.abs(both.samples) / [1.0, 0.4, 0.9]).max(1) > 0.999).mean()
    assert on_outside == 1.0, on_outside
    assert outer_chamfer(both, OuterSurface(outer_v, outer_f, n=3000, seed=1)) < 1e-6


def test_surface_seen_from_above_the_ground_leaves_the_underside_out():
    """``min_elevation=0`` keeps the cameras at or above the horizon (25 of the 42): a unit sphere seen from
    them (distance 4) shows no point below y = -sqrt(1 - 1/16) ~ -0.968, where from all round it shows its
    lowest cap; the upper half is seen either way."""
    from g3d.train.evaluate import outer_directions

    az, el = outer_directions(min_elevation=0.0)
    assert len(az) == 25 and el.min() >= 0.0
    tpl = build_template(3)
    above = OuterSurface(tpl.verts, tpl.faces, n=4000, min_elevation=0.0).samples
    every = OuterSurface(tpl.verts, tpl.faces, n=4000).samples
    assert above[:, 1].min() > -0.97 and every[:, 1].min() < -0.99, (above[:, 1].min(), every[:, 1].min())
    assert (above[:, 1] > 0.9).mean() > 0.02


def test_a_run_on_sfm_cameras_is_scored_on_another_dataset_in_its_own_frame(tiny, tmp_path):
    """Cameras from g3d sfm-init live in a frame of their own (the keypoints' object frame, another scale). A run trained
    on them, evaluated on a random-view test set with the generator's cameras, must see that set's cameras and true
    meshes through the similarity fitted on its own dataset: here the truth written as cameras.parquet moved by a known
    similarity (scale 0.8, turned 20 deg), which eval must find, and through which the true mesh still covers its masks."""
    import shutil

    from g3d import cameras as camlib
    from g3d.datasets import cameras as dscam
    from g3d.datasets.manifest import read_manifest
    from g3d.sfm.align import Similarity
    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.evaluate import evaluate
    from g3d.train.loop import TrainConfig, train

    folder = tmp_path / "car"
    shutil.copytree(tiny, folder)
    man = read_manifest(folder)
    tc = dscam.read_true_cameras(folder, man)
    a = np.deg2rad(20.0)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    sim = Similarity(rotation=rot, origin=np.array([0.05, 0.0, -0.1]), scale=0.8)
    R, t = sim.cameras(tc.R, tc.t)
    az, el, d = camlib.to_azimuth_elevation(R, t)
    V = len(R)
    dscam.write_cameras(folder, {
        "view_id": list(range(V)), "K": [k.ravel().tolist() for k in tc.K], "R": [r.ravel().tolist() for r in R], "t": [x.tolist() for x in t],
        "azimuth_deg": list(np.atleast_1d(az)), "elevation_deg": list(np.atleast_1d(el)), "distance": list(np.atleast_1d(d)),
        "fov_deg": [camlib.fov_of(k, man.width) for k in tc.K], "source": ["sfm"] * V, "reprojection_error": [0.5] * V,
        "num_keypoints": [12] * V, "usable": [True] * V, "failed_checks": [""] * V})
    run = tmp_path / "run"
    train(TrainConfig(folder=str(folder), out=str(run), resolution=32, batch_size=2, steps=1, tex_res=16, holdout=0.25,
                      learn_cameras=False, preview_every=10**6, checkpoint_every=10**6))
    rv = tmp_path / "rv"
    run_synth(SynthConfig(out=rv, samples=8, views=3, resolution=32, viewpoints="random", seed=9))
    rep = evaluate(run, rv)
    assert "scale 0.800" in rep.truth_frame and "scale 0.800" in rep.cameras, (rep.truth_frame, rep.cameras)
    assert rep.true_iou > 0.85 and rep.novel["true"] > 0.85, (rep.true_iou, rep.novel)
