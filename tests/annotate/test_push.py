"""Pose-bin pre-annotation: the bin nearest a camera's angles, azimuth wrapping at 360 degrees."""

import pytest

from g3d.annotate import configs
from g3d.annotate.push import nearest_pose_bin
from g3d.classes import get_preset


@pytest.mark.parametrize(
    "azimuth, expect",
    [(350.0, 0.0), (-10.0, 0.0), (370.0, 0.0), (359.9, 0.0), (340.0, 330.0), (16.0, 30.0), (14.0, 0.0), (196.0, 210.0)],
)
def test_pose_bin_pre_annotation_wraps_at_360(azimuth, expect):
    """350 deg is 10 deg from the front bin (0) and 20 from 330: without the wrap it would be called 330."""
    schema = configs.pose_schema(get_preset("car"))
    centres = {name: b.azimuth_deg for name, b in schema.azimuth.items()}
    assert sorted(centres.values()) == [30.0 * k for k in range(12)]
    az_choice, el_choice = nearest_pose_bin(schema, azimuth, 12.0)
    assert centres[az_choice] == expect
    assert el_choice in schema.elevation
