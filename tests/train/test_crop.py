"""Object-centred crops and their exact intrinsics (g3d.cameras.object_box / crop_intrinsics, g3d.train.crop)."""

import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.train.crop import crop_image, mask_box


def test_crop_intrinsics_move_projections_with_the_crop():
    rng = np.random.default_rng(0)
    K = cameras.intrinsics(300, 200, 40.0)
    R, t = cameras.from_azimuth_elevation(30.0, 15.0, 4.0)
    pts = rng.uniform(-1, 1, (50, 3))
    uv, _ = cameras.project(pts, K, R, t)
    box = (-13, 27, 151)  # reaching past the photo's left edge
    Kc = cameras.crop_intrinsics(K, box, 64)
    uv_c, _ = cameras.project(pts, Kc, R, t)
    assert np.allclose(uv_c, (uv - [box[0], box[1]]) * 64 / 151)


def test_object_box_is_a_square_around_the_box_with_a_margin():
    x0, y0, side = cameras.object_box((10, 40, 50, 60), margin=0.25)
    assert side == 60 and x0 + side / 2 == pytest.approx(30, abs=1) and y0 + side / 2 == pytest.approx(50, abs=1)
    with pytest.raises(ValueError):
        cameras.object_box((5, 5, 5, 9))


def test_a_true_mesh_lands_on_its_cropped_mask_only_with_the_crop_camera():
    """The built-in generator's car at 128 px, cropped around its mask to 48 px: its true mesh rendered with the crop's
    intrinsics covers the cropped mask (the check of the pixel-centre convention through the resampling); the photo's
    intrinsics merely rescaled to 48 px (the uncropped baseline) do not."""
    from g3d.render.dibr import render

    from .conftest import builtin_cars

    truth, mesh = builtin_cars(3, seed=3)
    for n in range(3):
        m = truth.masks[n]
        box = cameras.object_box(mask_box(m), margin=0.1)
        crop = crop_image(m, box, 48, mask=True)
        img = crop_image(np.zeros((128, 128, 3), np.uint8), box, 48)
        assert img.shape == (48, 48, 3) and crop.shape == (48, 48)
        scores = {}
        for name, K in (("crop", cameras.crop_intrinsics(truth.K[n], box, 48)), ("rescaled", np.diag([48 / 128, 48 / 128, 1]) @ truth.K[n])):
            f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
            hard = render(mesh.verts[n:n + 1].float(), mesh.faces, f(K), f(truth.R[n]), f(truth.t[n]), 48, 48, silhouette=False).fragments.mask[0].numpy()
            scores[name] = (hard & crop).sum() / (hard | crop).sum()
        assert scores["crop"] > 0.95 and scores["rescaled"] < scores["crop"] - 0.1, scores


def test_crop_training_data_puts_each_car_in_the_middle_at_one_scale_with_its_own_camera(tiny):
    """PairData(crop=True): every image a square crop round its mask; the true mesh through the batch's cameras (the view's
    camera with the image's crop) lands on the cropped mask; the whole-view data (the baseline) has cars of every size.
    crop="fov": crops of the views' own field of view centred on the mask: exact cameras too, and each car keeps the size
    it has in its whole view (a farther car looks smaller), centred where the whole view has it anywhere."""
    from g3d.train.data import PairData
    from g3d.train.evaluate import TrueMeshes, _hard_iou
    from g3d.train.model import ViewCameras

    truth = TrueMeshes.load(tiny)
    extent = {}
    centre = {}
    for crop in (False, True, "fov"):
        data = PairData(tiny, 24, "train", 0.25, crop=crop)  # from 32 px: the crop's K also undoes the training scale
        assert (data.height, data.width) == (24, 24)
        cams = ViewCameras(data.cameras.K, data.cameras.R, data.cameras.t, learn=False)
        idx = torch.arange(len(data))
        b = data.batch(idx, "cpu")
        K, R, t = b.cameras_from(cams)
        iou = _hard_iou(truth.verts(data.sample_ids.tolist()).contiguous(), truth.faces, K, R, t, 24, 24, b.masks)
        assert iou.min() > 0.8 and iou.mean() > 0.9, (crop, iou)
        boxes = np.array([mask_box(m) for m in data.masks.numpy()])
        extent[crop] = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        centre[crop] = np.abs((boxes[:, :2] + boxes[:, 2:]) / 2 - 12).max(1)
    # In the crop the car's longer side is 1/1.3 of the crop (24 px -> 18-19), whatever its size in the view.
    assert np.abs(extent[True] - 24 / 1.3).max() <= 2.0, extent[True]  # whole-pixel boxes at the 32 px source
    assert np.ptp(extent[False]) > 3 * np.ptp(extent[True]), extent
    assert np.abs(extent["fov"] - extent[False]).max() <= 1.0, (extent["fov"], extent[False])
    assert centre["fov"].max() <= 1.0 < centre[False].max(), (centre["fov"], centre[False])


def test_zoomed_fov_crops_change_each_cars_apparent_size_with_an_exact_camera(tiny):
    """PairData(crop="fov", zoom=0.3): each image's fov crop side times its own factor in [1/1.3, 1.3]: the true mesh
    through the batch's cameras still lands on the cropped mask (the intrinsics follow the zoom), each car's apparent
    size is its plain fov crop's over that factor (so it no longer follows from the viewpoint alone), and the factors
    are a pure function of (seed, sample, view): loading again gives the same crops, another seed other ones."""
    from g3d.errors import UsageError
    from g3d.train.data import PairData, zoom_factor
    from g3d.train.evaluate import TrueMeshes, _hard_iou
    from g3d.train.loop import TrainConfig
    from g3d.train.model import ViewCameras

    truth = TrueMeshes.load(tiny)
    plain = PairData(tiny, 24, "train", 0.25, crop="fov")
    zoomed = PairData(tiny, 24, "train", 0.25, crop="fov", zoom=0.3, seed=5)
    assert torch.equal(zoomed.images, PairData(tiny, 24, "train", 0.25, crop="fov", zoom=0.3, seed=5).images)
    assert not torch.equal(zoomed.images, PairData(tiny, 24, "train", 0.25, crop="fov", zoom=0.3, seed=6).images)
    cams = ViewCameras(zoomed.cameras.K, zoomed.cameras.R, zoomed.cameras.t, learn=False)
    b = zoomed.batch(torch.arange(len(zoomed)), "cpu")
    iou = _hard_iou(truth.verts(zoomed.sample_ids.tolist()).contiguous(), truth.faces, *b.cameras_from(cams), 24, 24, b.masks)
    assert iou.min() > 0.8 and iou.mean() > 0.9, iou
    f = np.array([zoom_factor(0.3, 5, s, v) for s, v in zip(zoomed.sample_ids.tolist(), zoomed.view_ids.tolist())])
    assert f.min() >= 1 / 1.3 - 1e-9 and f.max() <= 1.3 + 1e-9 and np.ptp(f) > 0.2, f
    # The crop's focal length in pixels is the plain fov crop's over the factor (but for whole-pixel sides of a ~30 px
    # crop at the 32 px source); zoomed in, the crop widens where the car would not fit, as fov crops do.
    ratio = (zoomed.crop_mats[:, 0, 0] / plain.crop_mats[:, 0, 0]).numpy()
    out = f >= 1
    assert out.sum() >= 3 and np.allclose(ratio[out], 1 / f[out], rtol=0.05), (ratio, f)
    assert (ratio <= 1 / f * 1.05).all() and (ratio[~out] > 1).all(), (ratio, f)
    extent = lambda d: np.array([max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in map(mask_box, d.masks.numpy())])  # noqa: E731
    # whole-pixel boxes at 24 px
    assert np.allclose(extent(zoomed)[out], extent(plain)[out] / f[out], atol=2.0), (extent(zoomed), extent(plain), f)
    with pytest.raises(ValueError, match="fov"):
        PairData(tiny, 24, "train", 0.25, crop=True, zoom=0.3)
    with pytest.raises(UsageError, match="--fov-crop"):
        TrainConfig(folder=str(tiny), out="x", crop=True, zoom=0.3).validate()
    with pytest.raises(UsageError, match="--zoom"):
        TrainConfig(folder=str(tiny), out="x", crop="fov", zoom=-0.1).validate()


def test_a_crop_run_trains_evaluates_on_crops_and_whole_photo_readers_refuse_it(tiny, tmp_path):
    from g3d.errors import UsageError
    from g3d.train.evaluate import evaluate
    from g3d.train.export import export_mesh
    from g3d.train.loop import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(folder=str(tiny), out=str(run), resolution=32, batch_size=2, steps=2, tex_res=16, holdout=0.25, crop=True,
                      preview_every=1, checkpoint_every=2))
    assert (run / "previews" / "step_0000002.png").is_file()
    rep = evaluate(run)
    assert rep.true_iou > 0.85 and rep.novel["true"] > 0.85, (rep.true_iou, rep.novel)
    photo = tmp_path / "photo.png"
    import cv2

    cv2.imwrite(str(photo), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(UsageError, match="--crop"):
        export_mesh(run, photo, tmp_path / "car.glb")
