"""One photo from anywhere, end to end: a short --fov-crop --camera-head run on frozen views, scored on new cars from
random viewpoints (g3d eval's novel-view IoU and camera), and g3d predict on a larger photo with the car off-centre.

The figures of the full recipe (39 views, 7000 steps) are bench/train.py's; this run is the short budget CI affords,
and its bars are the baselines it must beat, not the bench's figures."""

import json

import numpy as np
import pytest
import torch



@pytest.mark.slow
def test_new_cars_from_random_viewpoints_beat_the_mean_car_in_their_other_views(any_photo):
    """Novel-view IoU (the mesh from one photo in the car's other photos, each with its own camera) must beat the mean
    prediction and the swapped pairing, and the returned camera must beat a constant one refined the same way: a
    network answering every photo with one car, or reading nothing of the viewpoint, fails here."""
    from g3d.train.evaluate import evaluate

    run, rv = any_photo
    rep = evaluate(run, rv)
    nv, c = rep.novel, rep.camera
    assert rep.objects == 12 and rep.novel_pairs == 12 * 4 * 3
    assert nv["iou"] >= nv["mean_pred"] + 0.02 and nv["iou"] >= nv["swap"] + 0.01, nv
    assert nv["iou"] >= nv["mean_true"], nv
    # Measured (one core, 2026-12-06): novel-view IoU 0.915 | mean prediction 0.851, swapped 0.822, mean true car 0.850,
    # true mesh 0.976; camera 4.1 / 3.2 deg (the head alone 21.3 / 1.8, a constant camera 81.2 / 3.7 and refined 14.6 /
    # 6.1), IoU through it 0.903 (the refined constant camera 0.874).
    assert c["head"]["az_deg"] < 0.5 * c["az_deg_const"], c
    assert c["az_deg"] <= c["head"]["az_deg"] and c["az_deg"] < c["const_refined"]["az_deg"], c
    assert c["iou"] >= c["const_refined"]["iou"] + 0.01 and c["iou"] > c["head"]["iou"] + 0.05, c


@pytest.mark.slow
def test_predict_returns_the_photos_own_camera_for_a_larger_off_centre_photo(any_photo, tmp_path):
    """A held-out car's photo from a random viewpoint made 2x larger and put off-centre in a wider canvas (its field of
    view given, as a user would): the returned mesh through the returned camera covers the mask at IoU >= 0.9; the
    same photo with the head's camera unrefined (the baseline) covers it less."""
    import cv2
    import pyarrow.parquet as pq

    from g3d import cameras
    from g3d.datasets.schema import decode_png
    from g3d.train.predict import predict

    run, rv = any_photo
    rows = pq.read_table(sorted((rv / "images").glob("part-*.parquet"))[-1], columns=["sample_id", "image", "mask", "K", "R", "t"]).to_pylist()
    r = rows[-2]
    img, m = decode_png(r["image"]["bytes"]), decode_png(r["mask"]["bytes"], grey=True) == 255
    big = cv2.resize(img, (128, 128), interpolation=cv2.INTER_LINEAR)
    bm = cv2.resize(m.astype(np.uint8) * 255, (128, 128), interpolation=cv2.INTER_LINEAR)
    photo = np.zeros((160, 224, 3), np.uint8) + big[:1, :1]
    mask = np.zeros((160, 224), np.uint8)
    photo[16:144, 80:208], mask[16:144, 80:208] = big, bm  # 48 px right of the centre
    cv2.imwrite(str(tmp_path / "car.png"), photo[..., ::-1])
    cv2.imwrite(str(tmp_path / "car_mask.png"), mask)
    fov = float(np.rad2deg(2 * np.arctan(224 / 2 / (2 * np.reshape(r["K"], (3, 3))[0, 0]))))
    (p,) = predict(run, [tmp_path / "car.png"], [tmp_path / "car_mask.png"], tmp_path / "out", fov_deg=fov)
    (p0,) = predict(run, [tmp_path / "car.png"], [tmp_path / "car_mask.png"], tmp_path / "out0", fov_deg=fov, refine=False)
    rec = json.loads(p.json.read_text())
    assert p.mask_iou >= 0.9 and p.mask_iou > p0.mask_iou, (p.mask_iou, p0.mask_iou)
    az, el, _ = cameras.to_azimuth_elevation(np.reshape(r["R"], (3, 3)), np.asarray(r["t"]))
    assert abs((rec["azimuth_deg"] - float(az) + 180) % 360 - 180) < 20 and abs(rec["elevation_deg"] - float(el)) < 10, (rec, az, el)
    assert rec["K"][0][2] == 112.0 and not rec["mask_touches_border"] and (tmp_path / "out" / "car_mask.png").is_file()
