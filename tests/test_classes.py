import pytest

from g3d.classes import PRESETS, get_preset
from g3d.errors import UsageError


def test_paper_view_counts_and_defaults():
    assert (get_preset("car").views, get_preset("horse").views, get_preset("bird").views) == (39, 22, 8)
    for p in PRESETS.values():
        assert p.viewpoint_layers == (0, 1, 2, 3)
        assert len(p.pose_bins) == 12
        assert all(b.elevation_deg == 0 for b in p.pose_bins)
        assert sorted(b.azimuth_deg for b in p.pose_bins) == [30.0 * i for i in range(12)]


def test_keypoint_schemas_and_left_right_pairs():
    car = get_preset("car")
    assert len(car.keypoints) == 12 and len(get_preset("bird").keypoints) == 15
    assert ("left_front_wheel", "right_front_wheel") in car.keypoint_pairs
    assert len(car.keypoint_pairs) == 6  # every car keypoint has a mirror twin
    perm = car.flip_permutation()
    assert sorted(perm) == list(range(12))
    for i, j in enumerate(perm):
        assert car.keypoints[j] == car.keypoints[i].replace("left", "#").replace("right", "left").replace("#", "right")


def test_coco_ids_match_the_80_class_order():
    assert (get_preset("car").coco_id, get_preset("bird").coco_id, get_preset("horse").coco_id) == (2, 14, 17)


def test_unknown_class_names_the_known_ones():
    with pytest.raises(UsageError, match="bird, car, horse"):
        get_preset("plane")
