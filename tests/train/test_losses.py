"""Each loss against values computed by hand, and the weighting of the terms into the total."""

import numpy as np
import pytest
import torch

from g3d.train.losses import LossWeights, color_l1, flatten_loss, iou_loss, laplacian_loss, move_loss
from g3d.train.template import Template, build_template


def _mesh(verts, faces, pairs, nbr) -> Template:
    nbr = torch.tensor(nbr).T
    count = torch.bincount(nbr[0], minlength=len(verts)).float()
    return Template(verts=torch.tensor(verts, dtype=torch.float32), faces=torch.tensor(faces), face_uvs=torch.zeros(len(faces), 3, 2),
                    edges=torch.zeros(0, 2, dtype=torch.long), face_pairs=torch.tensor(pairs), nbr_index=nbr, nbr_count=count)


def test_color_l1_is_the_mean_absolute_error_inside_the_mask():
    render = torch.zeros(1, 3, 2, 2)
    image = torch.zeros(1, 3, 2, 2)
    image[0, :, 0, 0] = torch.tensor([0.3, 0.6, 0.9])  # inside the mask: |err| sum 1.8 over 3 channels
    image[0, :, 1, 1] = 1.0  # outside the mask: ignored
    mask = torch.zeros(1, 1, 2, 2)
    mask[0, 0, 0, 0] = 1.0
    mask[0, 0, 0, 1] = 1.0  # second masked pixel, error 0
    assert color_l1(render, image, mask).item() == pytest.approx(1.8 / (2 * 3))


def test_iou_loss_is_one_minus_soft_iou_per_image_averaged():
    alpha = torch.tensor([[1.0, 0.5], [0.0, 0.0]]).view(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    # inter = 1 + 0.5 = 1.5; union = sum(a + m - a m) = 1 + 1 + 1 = 3 -> IoU 0.5
    assert iou_loss(alpha, mask).item() == pytest.approx(0.5)
    both = torch.cat([alpha, mask])  # second image: alpha == mask -> loss 0
    assert iou_loss(both, torch.cat([mask, mask])).item() == pytest.approx(0.25)


def test_flatten_loss_of_a_right_angle_fold_and_of_a_plane():
    # Two triangles sharing edge (0, 1): flat, then folded by 90 degrees.
    faces = [[0, 1, 2], [1, 0, 3]]
    flat = _mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0]], faces, [[0, 1]], [[0, 1]])
    assert flatten_loss(flat.verts[None], flat).item() == pytest.approx(0.0, abs=1e-7)
    fold = flat.verts.clone()
    fold[3] = torch.tensor([0.0, 0.0, 1.0])  # normals (0,0,1) and (0,1,0)... cos 0 -> (1 - 0)^2 = 1
    assert flatten_loss(fold[None], flat).item() == pytest.approx(1.0, abs=1e-6)


def test_laplacian_and_move_losses_by_hand():
    # A path 0 - 1 - 2: vertex 1's neighbours average to the midpoint of 0 and 2.
    tpl = _mesh([[0, 0, 0], [1, 1, 0], [2, 0, 0]], [[0, 1, 2]], [[0, 0]], [[0, 1], [1, 0], [1, 2], [2, 1]])
    v = tpl.verts[None]
    # residuals: v0 - v1 = (-1, -1, 0) -> 2; v1 - mean(v0, v2) = (0, 1, 0) -> 1; v2 - v1 = (1, -1, 0) -> 2
    assert laplacian_loss(v, tpl).item() == pytest.approx((2 + 1 + 2) / 3)
    off = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]])
    assert move_loss(off).item() == pytest.approx(25.0 / 2)


def test_the_template_is_smooth_and_closed():
    tpl = build_template(3)
    assert tpl.verts.shape == (642, 3) and tpl.faces.shape == (1280, 3) and len(tpl.face_pairs) == 1920
    assert flatten_loss(tpl.verts[None], tpl).item() < 0.01
    assert laplacian_loss(tpl.verts[None], tpl).item() < 0.01


@pytest.mark.parametrize("name", ["color", "iou", "flatten", "laplacian", "move"])
def test_each_weight_scales_exactly_its_own_term(name, tiny_pairs):
    from g3d.train.loop import pair_losses

    model, cams, tpl, data, cfg = tiny_pairs
    i, j = data.pairs(0, 0, 0, 2)
    w = {k: 0.0 for k in LossWeights().as_dict()}
    w[name] = 1.7
    cfg.weights = LossWeights(**w)
    total, terms, _ = pair_losses(model, cams, tpl, data.batch(i, "cpu"), data.batch(j, "cpu"), cfg, None, 0, data.height, data.width)
    assert terms[name].item() > 0
    assert total.item() == pytest.approx(1.7 * terms[name].item(), rel=1e-6)
    cfg.weights = LossWeights()
    total, terms, _ = pair_losses(model, cams, tpl, data.batch(i, "cpu"), data.batch(j, "cpu"), cfg, None, 0, data.height, data.width)
    d = LossWeights().as_dict()
    assert total.item() == pytest.approx(sum(d[k] * terms[k].item() for k in ("color", "iou", "flatten", "laplacian", "move")), rel=1e-6)


@pytest.fixture()
def tiny_pairs(tiny):
    from g3d.train.loop import TrainConfig, build
    from g3d.train.data import PairData

    cfg = TrainConfig(folder=str(tiny), out="unused", resolution=32, tex_res=16, holdout=0.25)
    data = PairData(tiny, 32, "train", 0.25)
    torch.manual_seed(0)
    model, cams = build(cfg, data, "cpu")
    with torch.no_grad():  # a deformed, non-template shape so that every term is non-zero
        model.shape_head[2].bias.normal_(0, 0.5)
    return model, cams, build_template(3), data, cfg


def test_pairs_are_two_different_views_of_one_object(tiny):
    from g3d.train.data import PairData

    data = PairData(tiny, 32, "train", 0.25)
    seen_objects = set()
    for step in range(40):
        i, j = data.pairs(seed=3, step=step, rank=0, batch=4)
        assert torch.equal(data.sample_ids[i], data.sample_ids[j])
        assert (i != j).all() and (data.view_ids[i] != data.view_ids[j]).all()
        seen_objects |= set(data.sample_ids[i].tolist())
    assert seen_objects == set(data.sample_ids.tolist())  # every training object is drawn
    a, b = data.pairs(3, 7, 0, 4)
    c, d = data.pairs(3, 7, 0, 4)
    assert torch.equal(a, c) and torch.equal(b, d)  # a pure function of (seed, step, rank)


def test_held_out_objects_are_disjoint_from_training_objects(tiny):
    from g3d.train.data import PairData, first_test_sample

    train = PairData(tiny, 32, "train", 0.25)
    test = PairData(tiny, 32, "test", 0.25)
    tr, te = set(train.sample_ids.tolist()), set(test.sample_ids.tolist())
    assert tr and te and not (tr & te)
    assert tr | te == set(range(8)) and te == {6, 7}
    assert len(train) + len(test) == 8 * 4
    assert first_test_sample(8, 0.25) == 6 and first_test_sample(10, 0.01) == 9 and first_test_sample(10, 0.0) == 10


def test_cameras_are_rescaled_to_the_training_resolution(tiny):
    """Keypoints projected with the training cameras land on the stored 2D keypoints, scaled."""
    import pyarrow.parquet as pq

    from g3d import cameras
    from g3d.datasets import folder as dsf
    from g3d.train.data import PairData

    rows = pq.read_table(dsf.shard_paths(tiny)[0], columns=["view_id", "keypoints_2d", "keypoints_3d"]).to_pylist()[:4]
    for res in (32, 20):  # the dataset's width, and another
        data = PairData(tiny, res, "train", 0.25)
        s = res / 32
        assert data.width == res and data.images.shape[1:3] == (data.height, data.width)
        for r in rows:
            v = r["view_id"]
            uv, _ = cameras.project(np.reshape(r["keypoints_3d"], (-1, 3)), data.cameras.K[v].double().numpy(),
                                    data.cameras.R[v].double().numpy(), data.cameras.t[v].double().numpy())
            np.testing.assert_allclose(uv, np.reshape(r["keypoints_2d"], (-1, 2)) * s, atol=1e-3)
