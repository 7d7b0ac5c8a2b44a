"""The camera of one photo: the head's supervision and the camera completed from the mask (g3d.train.camera)."""

import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.train.camera import camera_loss, head_to_angles, solve_camera, view_direction
from g3d.train.crop import mask_box


@pytest.fixture(scope="module")
def cars():
    from .conftest import builtin_cars

    return builtin_cars(6, seed=11)


def test_view_direction_and_the_head_read_the_convention():
    az, el = np.array([0.0, 90.0, 200.0]), np.array([5.0, 20.0, 28.0])
    R, t = cameras.from_azimuth_elevation(az, el, 4.0)
    a, e = view_direction(torch.tensor(R), torch.tensor(t))
    assert np.allclose(np.rad2deg(a.numpy()) % 360, az) and np.allclose(np.rad2deg(e.numpy()), el)
    out = torch.tensor(np.stack([np.sin(np.deg2rad(az)), np.cos(np.deg2rad(az)), el / 30.0], -1))
    a2, e2 = head_to_angles(out)
    assert np.allclose(a2.numpy(), a.numpy()) and np.allclose(e2.numpy(), e.numpy())
    assert camera_loss(out, a, e).item() < 1e-12
    assert camera_loss(out, a + np.pi, e).item() == pytest.approx(4.0)  # the opposite azimuth costs most


def test_the_true_direction_and_the_mask_give_back_the_true_camera(cars):
    """Oracle: the true mesh, the true direction and the mask's box -> the generator's camera (distance and aim solved);
    a camera 4 units away looking at the origin (no solve) is the baseline."""
    truth, mesh = cars
    for n in range(6):
        az, el, d = cameras.to_azimuth_elevation(truth.R[n], truth.t[n])
        R, t = solve_camera(mesh.verts[n].double().numpy(), float(az), float(el), truth.K[n], mask_box(truth.masks[n]))
        rot = np.rad2deg(np.arccos(np.clip((np.trace(R.T @ truth.R[n]) - 1) / 2, -1, 1)))
        dist = np.linalg.norm(R.T @ t)
        assert rot < 1.0 and abs(dist / d - 1) < 0.02, (n, rot, dist, d)
        R0, t0 = cameras.from_azimuth_elevation(az, el, 4.0)
        assert abs(4.0 / d - 1) > abs(dist / d - 1)


def test_an_off_centre_car_in_a_larger_photo_gets_its_own_camera(cars):
    """The car shifted in a 2x photo (the crop tells nothing of where): the solved camera puts the mesh on the mask."""
    from g3d.render.dibr import render

    truth, mesh = cars
    n = 2
    K2 = np.diag([2.0, 2.0, 1.0]) @ truth.K[n]
    K2[0, 2] -= 25.0  # the car 25 px left of where a centred camera would put it, in a 256 px photo
    K2[1, 2] -= 40.0  # and 40 px up
    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
    photo_mask = render(mesh.verts[n:n + 1].float(), mesh.faces, f(K2), f(truth.R[n]), f(truth.t[n]), 256, 256, silhouette=False).fragments.mask[0].numpy()
    x0, y0, x1, y1 = mask_box(photo_mask)
    assert x0 > 0 and y0 > 0 and x1 < 256 and y1 < 256  # the car whole in the photo
    az, el, _ = cameras.to_azimuth_elevation(truth.R[n], truth.t[n])
    K_photo = cameras.intrinsics(256, 256, cameras.fov_of(K2, 256))  # what a user's photo gives: the principal point at the centre
    R, t = solve_camera(mesh.verts[n].double().numpy(), float(az), float(el), K_photo, mask_box(photo_mask))
    hard = render(mesh.verts[n:n + 1].float(), mesh.faces, f(K_photo), f(R), f(t), 256, 256, silhouette=False).fragments.mask[0].numpy()
    iou = (hard & photo_mask).sum() / (hard | photo_mask).sum()
    # the baseline: the same direction and distance solve, but a camera that looks at the car (aim not solved)
    R0, t0 = cameras.from_azimuth_elevation(az, el, float(np.linalg.norm(R.T @ t)))
    base = render(mesh.verts[n:n + 1].float(), mesh.faces, f(K_photo), f(R0), f(t0), 256, 256, silhouette=False).fragments.mask[0].numpy()
    iou0 = (base & photo_mask).sum() / (base | photo_mask).sum()
    assert iou > 0.9 and iou0 < iou - 0.3, (iou, iou0)


def test_render_and_compare_brings_a_wrong_direction_back_and_a_flipped_one_round(cars):
    """predicted_cameras from the true meshes and directions 12 deg off in azimuth (4 in elevation), one of them turned
    round to the car's other end: refined, the cameras come back to within ~2 deg and cover the masks; unrefined (the
    baseline: the direction as given) they stay off; without the flipped start the turned-round car stays wrong."""
    from g3d.train.camera import predicted_cameras

    truth, mesh = cars
    rng = np.random.default_rng(3)
    n = 6
    az0, el0 = truth.azimuth_deg[:n], truth.elevation_deg[:n]
    az = az0 + rng.choice([-1, 1], n) * 12.0
    el = el0 + rng.choice([-1, 1], n) * 4.0
    az[2] += 180.0  # the head's commonest large error: front and back exchanged (car 2 from its side, 77 deg: a front or
    # rear view, car 1 at 5 deg, has about the same outline turned round, which no mask can settle)
    args = (mesh.verts[:n].float(), mesh.faces, az, el, torch.tensor(truth.K[:n], dtype=torch.float32), torch.tensor(truth.masks[:n]))

    def errors(R, t):
        a, e, _ = cameras.to_azimuth_elevation(R.double().numpy(), t.double().numpy())
        return np.abs((a - az0 + 180) % 360 - 180), np.abs(e - el0)

    R, t, iou = predicted_cameras(*args)
    d_az, d_el = errors(R, t)
    d_az[1] = min(d_az[1], 180.0 - d_az[1])  # car 1, seen from the front (5 deg): its outline from behind is the same
    R0, t0, iou0 = predicted_cameras(*args, refine=False)
    b_az, _ = errors(R0, t0)
    assert np.median(d_az) < 3.0 and d_az.max() < 6.0 and np.median(d_el) < 2.0, (d_az, d_el)
    assert iou.min() > 0.9 and iou.mean() > iou0.mean() + 0.1, (iou, iou0)
    assert np.median(b_az) > 10.0 and b_az[2] > 150.0
    R1, t1, _ = predicted_cameras(*args, flips=False)
    assert errors(R1, t1)[0][2] > 90.0  # the flipped start is what turns it round


HEAD_RUN = dict(resolution=32, batch_size=4, tex_res=16, holdout=0.25, crop=True, lr=1e-3, preview_every=10**6, checkpoint_every=10**6)


@pytest.fixture(scope="module")
def head_run(tiny, tmp_path_factory):
    """A short --crop --camera-head run on the tiny built-in set (120 steps)."""
    from g3d.train.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("head") / "cam"
    train(TrainConfig(folder=str(tiny), out=str(out), steps=120, camera_head=True, **HEAD_RUN))
    return out


@pytest.mark.slow
def test_a_camera_head_run_learns_the_direction_and_eval_scores_its_camera(tiny, head_run, tmp_path):
    """--camera-head on crops: after a short run the held-out azimuth error is far below a constant camera's, and eval
    prints the camera it completes; a run without the head (the baseline) has no camera to score."""
    from g3d.train.evaluate import evaluate
    from g3d.train.loop import TrainConfig, train

    kw = dict(folder=str(tiny), **HEAD_RUN)
    rep = evaluate(head_run)
    c = rep.camera
    # Measured: the head 24-28 deg against the constant's 50 (the trajectory moves with the machine's float path: 25.7
    # in one CI run, 27.6 on the next machine, the same code)
    assert c["head"]["az_deg"] < 0.65 * c["az_deg_const"] and c["az_deg_const"] > 30, c
    assert 0 < c["head"]["iou"] <= c["iou"] <= 1 and any(line.startswith("predicted camera") for line in rep.lines())
    train(TrainConfig(out=str(tmp_path / "plain"), steps=1, **kw))
    assert evaluate(tmp_path / "plain").camera == {}


@pytest.mark.slow
def test_predict_a_larger_photo_with_the_car_off_centre(tiny, head_run, tmp_path):
    """g3d predict on a held-out car's photo at 2x its size, the car pushed off-centre in a wider canvas: the returned
    camera puts the returned mesh on the mask (its own pixel grid); the files are written; a photo with no mask is one line."""
    import json

    import cv2
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from g3d.cli import app
    from g3d.datasets.schema import decode_png
    from g3d.train.export import write_glb  # noqa: F401  (the GLB writer predict uses)
    from g3d.train.predict import predict

    row = pq.read_table(sorted((tiny / "images").glob("part-*.parquet"))[-1], columns=["sample_id", "image", "mask"]).to_pylist()[-1]
    img = cv2.resize(decode_png(row["image"]["bytes"]), (64, 64), interpolation=cv2.INTER_LINEAR)
    m = cv2.resize((decode_png(row["mask"]["bytes"], grey=True) == 255).astype(np.uint8) * 255, (64, 64), interpolation=cv2.INTER_LINEAR)
    photo = np.zeros((80, 120, 3), np.uint8) + img[:1, :1]  # a wider photo, the car 40 px right of its centre
    mask = np.zeros((80, 120), np.uint8)
    photo[8:72, 48:112], mask[8:72, 48:112] = img, m
    cv2.imwrite(str(tmp_path / "car.png"), photo[..., ::-1])
    cv2.imwrite(str(tmp_path / "car_mask.png"), mask)
    (p,) = predict(head_run, [tmp_path / "car.png"], [tmp_path / "car_mask.png"], tmp_path / "out")
    rec = json.loads(p.json.read_text())
    assert p.glb.is_file() and p.sheet.is_file() and np.asarray(rec["K"]).shape == (3, 3) and rec["width"] == 120
    assert rec["K"][0][2] == 60.0 and rec["mask_iou"] == p.mask_iou
    # the camera is the photo's: it places the mesh where the car is, 40 px right of centre
    assert p.mask_iou > 0.75, p.mask_iou
    res = CliRunner().invoke(app, ["predict", str(head_run), str(tmp_path / "car.png"), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "--mask" in res.output and len(res.output.strip().splitlines()) == 1, res.output


@pytest.mark.slow
def test_predict_finds_the_mask_with_a_segmenter(tiny, head_run, tmp_path):
    """--segmenter instead of --mask: a segmenter's best car is the mask predict uses (the same answer as passing that
    mask); torchvision's real Mask R-CNN with random weights finds no car, a one-line error naming --mask; the
    ground-truth segmenter has nothing to read in a photo."""
    import cv2
    import pyarrow.parquet as pq

    from g3d.datasets.schema import decode_png
    from g3d.errors import UsageError
    from g3d.filters.segmenters import Instance, Segmenter
    from g3d.train.predict import predict

    row = pq.read_table(sorted((tiny / "images").glob("part-*.parquet"))[-1], columns=["image", "mask"]).to_pylist()[-1]
    img, m = decode_png(row["image"]["bytes"]), decode_png(row["mask"]["bytes"], grey=True) == 255
    cv2.imwrite(str(tmp_path / "car.png"), img[..., ::-1])
    cv2.imwrite(str(tmp_path / "mask.png"), m.astype(np.uint8) * 255)

    class Found(Segmenter):  # a segmenter that sees the car, and a smaller truck beside it
        name = "found"

        def segment(self, images, rows):
            return [[Instance(np.roll(m, 3, 1) & m, "truck", 0.99), Instance(m, "car", 0.9), Instance(m & ~m, "car", 0.2)]]

    (a,) = predict(head_run, [tmp_path / "car.png"], None, tmp_path / "a", segmenter=Found())
    (b,) = predict(head_run, [tmp_path / "car.png"], [tmp_path / "mask.png"], tmp_path / "b")
    assert (cv2.imread(str(a.json.parent / "car_mask.png"), 0) > 127).sum() == m.sum()
    assert a.mask_iou == pytest.approx(b.mask_iou) and a.azimuth_deg == pytest.approx(b.azimuth_deg)
    with pytest.raises(UsageError, match="found no car scoring >= 0.5: pass --mask") as e:
        predict(head_run, [tmp_path / "car.png"], None, tmp_path / "c", segmenter="torchvision", segmenter_weights="random")
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="ground-truth"):
        predict(head_run, [tmp_path / "car.png"], None, tmp_path / "d", segmenter="ground-truth")


@pytest.mark.slow
def test_predict_warns_when_the_car_is_cut_by_the_border(tiny, head_run, tmp_path):
    """A car pushed half out of the photo: g3d predict still answers, flags mask_touches_border in the JSON and warns in
    one line; the whole car in the photo (the baseline) gives no warning."""
    import json

    import cv2
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from g3d.cli import app
    from g3d.datasets.schema import decode_png

    row = pq.read_table(sorted((tiny / "images").glob("part-*.parquet"))[-1], columns=["image", "mask"]).to_pylist()[-1]
    img, m = decode_png(row["image"]["bytes"]), (decode_png(row["mask"]["bytes"], grey=True) == 255).astype(np.uint8) * 255
    for name, shift in (("whole", 16), ("cut", -12)):
        photo = np.zeros((32, 64, 3), np.uint8) + img[:1, :1]
        mask = np.zeros((32, 64), np.uint8)
        x0 = max(0, shift)
        src = slice(max(0, -shift), 32)
        photo[:, x0:x0 + src.stop - src.start], mask[:, x0:x0 + src.stop - src.start] = img[:, src], m[:, src]
        cv2.imwrite(str(tmp_path / f"{name}.png"), photo[..., ::-1])
        cv2.imwrite(str(tmp_path / f"{name}_mask.png"), mask)
        res = CliRunner().invoke(app, ["predict", str(head_run), str(tmp_path / f"{name}.png"), "--mask", str(tmp_path / f"{name}_mask.png"),
                                       "--out", str(tmp_path / "out")])
        assert res.exit_code == 0, res.output
        rec = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert rec["mask_touches_border"] == (name == "cut") and ("warning" in res.output) == (name == "cut"), res.output
