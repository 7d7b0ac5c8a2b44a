"""The measurements of `g3d neural eval`, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from g3d.neural.evaluate import GROUPS, _diff, group_moves


def test_angles_and_hues_wrap_round():
    assert _diff("paint_hue", np.array([0.95]), np.array([0.05]))[0] == pytest.approx(0.1)
    assert _diff("azimuth_deg", np.array([350.0]), np.array([10.0]))[0] == pytest.approx(20.0)
    assert _diff("length", np.array([2.1]), np.array([1.9]))[0] == pytest.approx(0.2)  # not an angle: no wrap


def test_group_moves_are_mean_spread_units_per_group():
    keys = [k for g in GROUPS.values() for k in g]
    p = {k: np.zeros(2) for k in keys}
    q = {k: np.zeros(2) for k in keys}
    spread = {k: 1.0 for k in keys}
    n = len(GROUPS["shape"])
    q["length"] = np.array([0.1 * n / 10, 0.0])  # one of the n shape parameters moves
    spread["length"] = 0.1
    m = group_moves(p, q, spread)
    assert m["shape"] == pytest.approx([0.1, 0.0])  # n/10 spread units over n parameters
    assert m["paint"] == pytest.approx([0.0, 0.0]) and m["background"] == pytest.approx([0.0, 0.0])


@pytest.mark.parametrize("rows, group, with_light", [("PAINT_ROWS", "paint", False), ("LIGHT_ROWS", "light", True)])
def test_builtin_parameter_groups_are_what_each_row_group_sets(rows, group, with_light):
    """A swap of the true latents' paint (or light) rows moves that group's parameters only: the groups name what
    each row group of the built-in generator decodes to (so the leakage ratio has an exact ceiling). With a light code
    the light is a group of its own (LIGHT_GROUPS); without one the three groups stay as they were."""
    import g3d.synth.builtin as builtin
    from g3d.neural.evaluate import LIGHT_GROUPS

    G = builtin.BuiltinGenerator(resolution=32)
    ws = G.mapping(torch.randn(4, 64, generator=torch.Generator().manual_seed(0)), 0.7)
    sw = ws.clone()
    r = list(getattr(builtin, rows))
    sw[:, r] = ws.roll(1, 0)[:, r]
    a = {k: v.double().numpy() for k, v in G.parameters_of(ws).items()}
    b = {k: v.double().numpy() for k, v in G.parameters_of(sw).items()}
    m = group_moves(a, b, {k: 1.0 for k in a}, LIGHT_GROUPS if with_light else None)
    assert m[group].min() > 0 and all(m[g].max() == 0 for g in m if g != group)
    assert ("light" in m) == with_light
