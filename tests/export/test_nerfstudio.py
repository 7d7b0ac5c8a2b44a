"""``g3d export --format nerfstudio``: transforms.json checked against the convention nerfstudio and
instant-ngp document (camera-to-world, OpenGL axes: x right, y up, z backward), by reprojecting the
generator's keypoints with that math written out here, independently of g3d.cameras. (nerfstudio itself
is not installable beside g3d's pins: it would downgrade numpy and OpenCV.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from g3d.datasets.schema import decode_png
from g3d.export.nerfstudio import export_nerfstudio
from g3d.export.rows import ExportConfig


@pytest.fixture(scope="module")
def cars(make_cars):
    return make_cars(6, 5, 4)


def test_transforms_json_reprojects_the_keypoints_nerfstudio_style(cars, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    rep = export_nerfstudio(ExportConfig(folder=cars, out=tmp_path / "ns", split={"train": 0.5, "test": 0.5}))
    truth = pd.concat([pq.read_table(p).to_pandas() for p in sorted((cars / "images").glob("part-*.parquet"))]).set_index(["sample_id", "view_id"])
    splits = json.loads((tmp_path / "ns" / "splits.json").read_text())
    assert sorted(splits["train"] + splits["test"]) == [f"obj_{s:06d}" for s in range(6)] and rep.files == 6
    for s in range(6):
        root = tmp_path / "ns" / f"obj_{s:06d}"
        doc = json.loads((root / "transforms.json").read_text())
        assert doc["camera_model"] == "OPENCV" and (doc["w"], doc["h"]) == (64, 64)
        assert math.isclose(doc["camera_angle_x"], 2 * math.atan(doc["w"] / (2 * doc["fl_x"])))
        assert len(doc["frames"]) == 5
        for f in doc["frames"]:
            row = truth.loc[(s, f["g3d_view_id"])]
            assert (root / f["file_path"]).read_bytes() == row.image["bytes"]
            m = decode_png((root / f["mask_path"]).read_bytes(), grey=True)
            assert set(np.unique(m)) <= {0, 255} and abs((m == 255).mean() - row.mask_area) < 1e-9
            c2w = np.asarray(f["transform_matrix"])
            # nerfstudio: a camera-space point (x right, y up, looking down -z) maps to the world by c2w.
            w2c = np.linalg.inv(c2w)
            X = np.reshape(row.keypoints_3d, (-1, 3))
            pc = (w2c[:3, :3] @ X.T + w2c[:3, 3:]).T
            u = doc["cx"] + doc["fl_x"] * pc[:, 0] / -pc[:, 2]
            v = doc["cy"] - doc["fl_y"] * pc[:, 1] / -pc[:, 2]
            np.testing.assert_allclose(np.stack([u, v], 1), np.reshape(row.keypoints_2d, (-1, 2)), atol=1e-6)
