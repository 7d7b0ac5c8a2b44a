"""``g3d export --format coco`` read with pycocotools, ``--format wds`` read with webdataset: the consumers' own libraries."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from g3d.export.coco import export_coco, rle
from g3d.export.rows import ExportConfig
from g3d.export.wds import export_wds


@pytest.fixture(scope="module")
def cars(make_cars):
    return make_cars(12, 4, 5)


def _truth(cars: Path):
    import pandas as pd
    import pyarrow.parquet as pq

    return pd.concat([pq.read_table(p).to_pandas() for p in sorted((cars / "images").glob("part-*.parquet"))]).set_index(["sample_id", "view_id"])


def test_rle_round_trips_through_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    for m in (rng.random((7, 5)) > 0.5, np.ones((3, 4), bool), np.zeros((2, 2), bool)):
        r = rle(m)
        back = mask_utils.decode(mask_utils.frPyObjects(r, *r["size"]))
        np.testing.assert_array_equal(back.astype(bool), m)


def test_coco_export_loads_in_pycocotools(cars, tmp_path):
    from pycocotools.coco import COCO

    rep = export_coco(ExportConfig(folder=cars, out=tmp_path / "coco", split={"train": 0.5, "test": 0.5}, seed=1))
    truth = _truth(cars)
    seen = set()
    for split in ("train", "test"):
        coco = COCO(str(tmp_path / "coco" / "annotations" / f"{split}.json"))
        assert len(coco.getImgIds()) == rep.rows[split] == 24 and coco.loadCats(coco.getCatIds())[0]["id"] == 3
        for img in coco.loadImgs(coco.getImgIds()):
            key = (img["g3d_sample_id"], img["g3d_view_id"])
            row = truth.loc[key]
            assert (tmp_path / "coco" / "images" / img["file_name"]).read_bytes() == row.image["bytes"]
            ann = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))[0]
            from g3d.datasets.schema import decode_png

            expect = decode_png(row["mask"]["bytes"], grey=True) == 255
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), expect)
            x, y, w, h = ann["bbox"]
            assert ann["area"] == expect.sum() and expect[int(y):int(y + h), int(x):int(x + w)].sum() == expect.sum()
            kp = np.reshape(ann["keypoints"], (-1, 3))
            vis = np.asarray(row.keypoints_visible, bool)
            np.testing.assert_allclose(kp[vis & (kp[:, 2] > 0), :2], np.reshape(row.keypoints_2d, (-1, 2))[vis & (kp[:, 2] > 0)])
            assert set(kp[vis, 2]) <= {0, 2} and ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
            seen.add(img["g3d_sample_id"] if split == "train" else -img["g3d_sample_id"] - 1)
    train = {s for s in seen if s >= 0}
    test = {-s - 1 for s in seen if s < 0}
    assert not train & test and len(train) == len(test) == 6


def test_wds_export_streams_in_webdataset_by_object(cars, tmp_path):
    import webdataset as wds

    rep = export_wds(ExportConfig(folder=cars, out=tmp_path / "wds", split={"train": 1.0}, shard_bytes=40_000))
    tars = sorted((tmp_path / "wds").glob("train-*.tar"))
    assert len(tars) == rep.files > 1  # small shards: several
    truth = _truth(cars)
    by_shard = []
    for tar in tars:
        samples = list(wds.WebDataset(str(tar), shardshuffle=False).decode("rgb8"))
        by_shard.append({s["json"]["sample_id"] for s in samples})
        for s in samples:
            row = truth.loc[(s["json"]["sample_id"], s["json"]["view_id"])]
            assert s["__key__"] == f"{s['json']['sample_id']:06d}_{s['json']['view_id']:03d}"
            assert s["png"].shape == (64, 64, 3) and s["mask.png"].shape[:2] == (64, 64)
            np.testing.assert_allclose(s["json"]["R"], row.R)
    assert sum(len(x) for x in by_shard) == 12  # an object's views never straddle two shards
    digest = lambda root: [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob("*.tar"))]  # noqa: E731
    export_wds(ExportConfig(folder=cars, out=tmp_path / "again", split={"train": 1.0}, shard_bytes=40_000))
    assert digest(tmp_path / "wds") == digest(tmp_path / "again")


def test_cocoeval_of_the_truth_against_itself_is_perfect(cars, tmp_path):
    """The annotations are complete enough for COCO's own evaluation: the truth scored as detections gives AP 1.0."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    export_coco(ExportConfig(folder=cars, out=tmp_path / "coco", split={"train": 1.0}))
    gt = COCO(str(tmp_path / "coco" / "annotations" / "train.json"))
    anns = gt.loadAnns(gt.getAnnIds())
    for kind in ("segm", "keypoints"):
        dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
                 **({"segmentation": gt.annToRLE(a)} if kind == "segm" else {"keypoints": a["keypoints"]})} for a in anns]
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(dets)
            ev = COCOeval(gt, dt, kind)
            if kind == "keypoints":
                ev.params.kpt_oks_sigmas = np.full(len(anns[0]["keypoints"]) // 3, 0.05)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0), (kind, ev.stats[:3])
