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
