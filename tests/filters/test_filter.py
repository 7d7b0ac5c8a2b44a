import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from g3d.datasets import folder as dsf
from g3d.datasets import io as dsio
from g3d.errors import MissingDependencyError, UsageError
from g3d.filters.rules import FilterConfig, Measurement, measure, verdict
from g3d.filters.run import FilterRun, run_filter, score_against_truth, truly_bad
from g3d.filters.segmenters import COCO80, TorchvisionSegmenter, detectron2_inputs, detectron2_instances, make_segmenter
from g3d.synth.sampling import SynthConfig, run_synth


def _rows(folder) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in dsf.shard_paths(folder)], ignore_index=True)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A built-in dataset where 40% of the objects are broken (second car, shrunk, off-frame)."""
    out = tmp_path_factory.mktemp("filter") / "car"
    run_synth(SynthConfig(out=out, samples=30, views=8, resolution=64, distractors=0.4, candidates=32, samples_per_shard=10))
    return out


@pytest.fixture(scope="module")
def filtered(broken, tmp_path_factory):
    out = tmp_path_factory.mktemp("filtered") / "car"
    shutil.copytree(broken, out)
    report = run_filter(FilterRun(folder=out))
    return out, report


def test_ground_truth_segmenter_precision_and_recall(filtered):
    out, report = filtered
    df = _rows(out)
    bad = truly_bad(df)
    assert bad.sum() >= 40 and (~bad).sum() >= 40  # both kinds are well represented
    score = score_against_truth(out)
    assert score["bad"] == bad.sum() and score["rejected"] == (~df.keep).sum() == report.rows - report.kept
    assert score["precision"] >= 0.95 and score["recall"] >= 0.95, score
    # Each kind of distractor is caught by the rule meant for it.
    assert (df[(df.gt_instances == 2)].reject_reason == "multiple_instances").all()
    assert set(df[(df.gt_distractor == 2)].reject_reason) <= {"small_mask", "no_instance"}
    assert (df[(df.gt_cut == 1) & (df.gt_instances == 1) & (df.gt_area >= 0.1)].reject_reason == "cut_by_border").all()


def test_report_counts_per_rule_and_per_view(filtered):
    out, report = filtered
    df = _rows(out)
    assert report.rows == 240 and report.kept == int(df.keep.sum())
    assert sum(report.first_reason.values()) == report.rows - report.kept
    assert report.first_reason == df.reject_reason.value_counts().to_dict()
    assert len(report.per_view) == 8
    for v in report.per_view:
        col = df[df.view_id == v["view_id"]]
        assert v["rows"] == len(col) == 30 and v["kept"] == int(col.keep.sum())
        assert v["kept_fraction"] == pytest.approx(col.keep.mean())
        assert v["median_area"] == pytest.approx(np.median(col.filter_area[col.filter_instances > 0]))
    saved = json.loads((out / "filter_report.json").read_text())
    assert saved["kept"] == report.kept and saved["config"]["min_area"] == 0.1
    assert {p.name for p in report.previews} == {f"filter_{r}.png" for r in report.first_reason}
    assert json.loads((out / "g3d.json").read_text())["filter"]["kept"] == report.kept


def test_rows_keep_their_data_and_hugging_face_sees_the_new_mask(broken, filtered):
    out, _ = filtered
    before, after = _rows(broken), _rows(out)
    assert len(before) == len(after)
    assert all(a["bytes"] == b["bytes"] for a, b in zip(before.image, after.image))
    assert all(a["bytes"] == b["bytes"] for a, b in zip(before["mask"], after["mask"]))  # not asked to replace
    meta = json.loads(pq.read_schema(dsf.shard_paths(out)[0]).metadata[b"huggingface"])
    assert meta["info"]["features"]["filter_mask"] == {"_type": "Image"}
    kept = after[after.keep]
    assert kept.filter_mask.notna().all() and (kept.filter_instances == 1).all()


def test_rerun_is_idempotent_and_reuses_the_segmentation(filtered):
    out, report = filtered
    first = _rows(out)
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / ".g3d-filter").glob("part-*")}
    again = run_filter(FilterRun(folder=out))
    assert {p.name: p.stat().st_mtime_ns for p in (out / ".g3d-filter").glob("part-*")} == stamp
    assert again.kept == report.kept
    pd.testing.assert_series_equal(first.reject_reason, _rows(out).reject_reason)
    looser = run_filter(FilterRun(folder=out, rules=FilterConfig(min_area=0.01)))
    assert looser.kept > report.kept and "small_mask" not in looser.first_reason


def test_corrupt_png_is_named_rejected_and_the_rest_goes_on(broken, tmp_path):
    out = tmp_path / "car"
    shutil.copytree(broken, out)
    path = dsf.shard_paths(out)[1]
    table = pq.read_table(path)
    images = table.column("image").to_pylist()
    images[3] = {"bytes": b"\x89PNG broken", "path": images[3]["path"]}
    import pyarrow as pa

    from g3d.datasets.schema import image_type

    dsio.write_table(path, table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, image_type())))
    logs = []
    report = run_filter(FilterRun(folder=out), log=logs.append)
    row = table.slice(3, 1).to_pylist()[0]
    name = f"part-00001.parquet sample {row['sample_id']} view {row['view_id']}"
    assert report.corrupt_rows == [name] and any(name in m and "corrupt_image" in m for m in logs)
    df = _rows(out)
    hit = df[(df.sample_id == row["sample_id"]) & (df.view_id == row["view_id"])]
    assert hit.reject_reason.item() == "corrupt_image" and not hit.keep.item()
    assert report.first_reason["corrupt_image"] == 1 and report.rows == 240


def test_rules_in_order():
    cfg = FilterConfig()
    ok = Measurement(False, 1, None, 0.99, 0.3, 0)
    assert verdict(ok, 0.3, cfg) == ([], None)
    assert verdict(Measurement(False, 2, None, 0.99, 0.05, 0), 0.3, cfg)[1] == "multiple_instances"
    assert verdict(Measurement(False, 1, None, 0.99, 0.05, 0), 0.3, cfg)[0] == ["small_mask", "area_outlier"]
    assert verdict(Measurement(False, 1, None, 0.6, 0.3, 10), 0.3, cfg)[0] == ["cut_by_border", "low_score"]
    assert verdict(Measurement(False, 1, None, 0.99, 0.8, 0), 0.3, cfg)[1] == "area_outlier"
    assert verdict(Measurement(False, 0, None, 0, 0, 0), 0.3, cfg)[1] == "no_instance"


def test_torchvision_backend_runs_end_to_end_and_loads_a_weights_file(broken, tmp_path):
    out = tmp_path / "tv"
    run_synth(SynthConfig(out=out, samples=2, views=2, resolution=64, candidates=8))
    torch.manual_seed(0)
    seg = TorchvisionSegmenter(weights="random", min_score=0.0)
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 80, 3), dtype=np.uint8)
    result = seg.segment(images, [{}] * 3)
    assert len(result) == 3
    for insts in result:
        for inst in insts:
            assert inst.mask.shape == (64, 80) and inst.mask.dtype == bool
            assert inst.label in seg.categories and 0 <= inst.score <= 1
    weights = tmp_path / "maskrcnn.pt"
    torch.save({"model": seg.model.state_dict()}, weights)
    loaded = TorchvisionSegmenter(weights=str(weights), min_score=0.0)
    for (k, a), b in zip(seg.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), k
    report = run_filter(FilterRun(folder=out, segmenter="torchvision", weights=str(weights), batch_size=3))
    df = _rows(out)
    assert report.rows == 4 and df.reject_reason.notna().sum() == 4 - report.kept
    assert df.filter_instances.notna().all()


def test_detectron2_adapter_converts_inputs_and_outputs():
    images = np.zeros((2, 4, 5, 3), np.uint8)
    images[..., 0] = 200  # red
    inputs = detectron2_inputs(images)
    assert len(inputs) == 2 and inputs[0]["image"].shape == (3, 4, 5)
    assert inputs[0]["image"][2].max() == 200 and inputs[0]["image"][0].max() == 0  # BGR order
    assert (inputs[1]["height"], inputs[1]["width"]) == (4, 5)

    class FakeInstances:  # the fields detectron2's Instances carries
        def __init__(self, masks, scores, classes):
            self.pred_masks, self.scores, self.pred_classes = masks, scores, classes

        def to(self, device):
            return self

    masks = torch.zeros(2, 4, 5, dtype=torch.bool)
    masks[0, :2] = True
    outs = [{"instances": FakeInstances(masks, torch.tensor([0.9, 0.4]), torch.tensor([2, 7]))},
            {"instances": FakeInstances(masks[:0], torch.zeros(0), torch.zeros(0, dtype=torch.long))}]
    got = detectron2_instances(outs, COCO80)
    assert [i.label for i in got[0]] == ["car", "truck"] and got[1] == []
    assert got[0][0].mask.sum() == 10 and got[0][0].score == pytest.approx(0.9)
    # A model with more classes than COCO's 80 (LVIS: 1203) is a one-line error, not an IndexError.
    lvis = [{"instances": FakeInstances(masks[:1], torch.tensor([0.9]), torch.tensor([900]))}]
    with pytest.raises(UsageError, match="class id 900, beyond the 80 COCO classes"):
        detectron2_instances(lvis, COCO80)


def test_detectron2_missing_is_one_line_with_the_install_hint():
    try:  # detectron2 is not installable from the package registry: here the import fails
        import detectron2  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="detectron2.*not on the package registry") as info:
            make_segmenter("detectron2", config_file="x.yaml", weights="y.pkl")
        assert "\n" not in str(info.value)
    else:  # pragma: no cover
        pytest.skip("detectron2 is installed here")


def test_bad_input(broken, tmp_path):
    with pytest.raises(UsageError, match="unknown segmenter 'sam'.*ground-truth, torchvision, detectron2"):
        make_segmenter("sam")
    with pytest.raises(Exception, match="no g3d dataset"):
        run_filter(FilterRun(folder=tmp_path / "none"))
    with pytest.raises(UsageError, match="--accept 'lorry'"):
        run_filter(FilterRun(folder=broken, accept=("lorry",)))
    with pytest.raises(UsageError, match="--weights .*no such file"):
        run_filter(FilterRun(folder=broken, segmenter="torchvision", weights=str(tmp_path / "nope.pt")))
    incomplete = tmp_path / "inc"
    shutil.copytree(broken, incomplete)
    dsf.shard_paths(incomplete)[0].unlink()
    with pytest.raises(UsageError, match="incomplete"):
        run_filter(FilterRun(folder=incomplete))


def test_ground_truth_instances_come_from_the_label_map():
    from g3d.datasets.schema import encode_png
    from g3d.filters.segmenters import GroundTruthSegmenter

    labels = np.zeros((8, 8), np.uint8)
    labels[:4] = 255
    labels[6:, :2] = 100
    out = GroundTruthSegmenter("car").segment(np.zeros((1, 8, 8, 3), np.uint8), [{"mask": {"bytes": encode_png(labels)}, "sample_id": 0, "view_id": 0}])
    assert [int(i.mask.sum()) for i in out[0]] == [32, 4]


def test_info_says_an_interrupted_filter_is_incomplete_and_names_bad_shards(tmp_path):
    import shutil

    from g3d.datasets import folder as dsf
    from g3d.datasets.summary import summarize

    out = tmp_path / "car"
    run_synth(SynthConfig(out=out, samples=6, views=3, resolution=32, candidates=12, samples_per_shard=2))
    unfiltered = tmp_path / "shard1.parquet"
    shutil.copy(out / "images" / dsf.shard_name(1), unfiltered)
    run_filter(FilterRun(folder=out))
    assert "filter      done:" in summarize(out)
    # As if g3d filter had been killed after rewriting shards 0 and 2: shard 1 unfiltered, manifest without "filter".
    shutil.copy(unfiltered, out / "images" / dsf.shard_name(1))
    m = json.loads((out / "g3d.json").read_text())
    del m["filter"]
    (out / "g3d.json").write_text(json.dumps(m))
    text = summarize(out)
    assert f"INCOMPLETE: 2 of 3 shards filtered (g3d filter was interrupted): rerun `g3d filter {out}` to finish" in text
    shard = out / "images" / dsf.shard_name(2)
    shard.write_bytes(shard.read_bytes()[:500])
    (out / "images" / dsf.shard_name(0)).unlink()
    text = summarize(out)
    assert "1/3 complete" in text and "not written yet: part-00000.parquet" in text
    assert "damaged, short or another run's (redone by that rerun): part-00002.parquet" in text


def _inst(mask, label="car", score=0.9):
    from g3d.filters.segmenters import Instance

    return Instance(mask=mask, label=label, score=score)


def test_measure_counts_only_confident_instances_of_the_class_and_every_border():
    """measure() itself: low-score and other-class instances do not count; all four borders count."""
    cfg = FilterConfig()
    H, W = 20, 30
    car = np.zeros((H, W), bool)
    car[5:15, 5:20] = True
    m = measure([_inst(car), _inst(car, score=0.49), _inst(car, label="truck"), _inst(car[:, ::-1].copy(), score=0.5)], (H, W), cfg)
    assert m.instances == 2 and m.score == 0.9 and m.area == pytest.approx(150 / 600) and m.border_pixels == 0
    for edge in ("top", "bottom", "left", "right"):
        mm = car.copy()
        if edge == "top":
            mm[0, 10:14] = True
        elif edge == "bottom":
            mm[H - 1, 10:14] = True
        elif edge == "left":
            mm[8:12, 0] = True
        else:
            mm[8:12, W - 1] = True
        assert measure([_inst(mm)], (H, W), cfg).border_pixels == 4, edge
    assert measure([_inst(np.zeros((H, W), bool)), _inst(car, score=0.2)], (H, W), cfg).instances == 0


def test_rule_thresholds_at_their_edges():
    """small_mask rejects area < min_area (not <=); cut_by_border rejects >= border_px pixels (not >)."""
    cfg = FilterConfig()

    def m(area=0.5, border=0, score=0.9, instances=1):
        return Measurement(False, instances, np.ones((2, 2), bool), score, area, border)

    assert verdict(m(area=cfg.min_area), None, cfg)[1] is None
    assert verdict(m(area=np.nextafter(cfg.min_area, 0)), None, cfg)[1] == "small_mask"
    assert verdict(m(border=cfg.border_px), None, cfg)[1] == "cut_by_border"
    assert verdict(m(border=cfg.border_px - 1), None, cfg)[1] is None
    assert verdict(m(score=cfg.min_mask_score), None, cfg)[1] is None
    assert verdict(m(score=np.nextafter(cfg.min_mask_score, 0)), None, cfg)[1] == "low_score"
    assert verdict(m(instances=2), None, cfg)[0][0] == "multiple_instances"
    assert verdict(m(area=0.5), 0.5 / 2.5, cfg)[1] is None and verdict(m(area=0.51), 0.5 / 2.5, cfg)[1] == "area_outlier"


def test_detectron2_cache_key_follows_the_config_and_weights_by_content(tmp_path):
    """Another --config-file (or the same path edited) must not reuse cached segmentations (issue #12 §4).
    The key is checked without detectron2: describe() reads only the two files."""
    from g3d.filters.segmenters import Detectron2Segmenter

    seg = object.__new__(Detectron2Segmenter)  # no model needed for the key
    cfg, w = tmp_path / "mask_rcnn.yaml", tmp_path / "model_final.pkl"
    cfg.write_text("MODEL:\n  MASK_ON: True\n")
    w.write_bytes(b"weights")
    seg.config_file, seg.weights = str(cfg), str(w)
    first = seg.describe()
    cfg.write_text("MODEL:\n  MASK_ON: True\n  ROI_HEADS:\n    NUM_CLASSES: 1203\n")
    assert seg.describe() != first and seg.describe()["config_file"] == first["config_file"]
    seg.config_file = str(tmp_path / "other.yaml")
    assert seg.describe()["config_file"] != first["config_file"]


def test_detectron2_weights_are_read_safely_before_detectron2_opens_them(tmp_path):
    """Model-zoo .pkl files are pickles that detectron2 opens with Python's unrestricted unpickler: g3d
    reads them first with its restricted one, so one that would run code is refused and nothing runs."""
    import os
    import pickle

    from g3d.errors import CheckpointError
    from g3d.filters.segmenters import read_detectron2_weights

    cfg = tmp_path / "mask_rcnn_R_50_FPN_3x.yaml"
    cfg.write_text("MODEL:\n  MASK_ON: True\n")
    zoo = tmp_path / "model_final.pkl"
    with open(zoo, "wb") as f:  # the model zoo's layout: numpy arrays under "model", Python 2 compatible
        pickle.dump({"model": {"backbone.stem.conv1.weight": np.ones((64, 3, 7, 7), np.float32)}, "__author__": "zoo"}, f, protocol=2)
    assert read_detectron2_weights(str(cfg), str(zoo)) == {"backbone.stem.conv1.weight": (64, 3, 7, 7)}  # data only: read

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": Evil()}, protocol=2))
    with pytest.raises(CheckpointError, match="refused: .*system.*nothing in it was run"):
        read_detectron2_weights(str(cfg), str(evil))
    assert not marker.exists()
    with pytest.raises(UsageError, match="--config-file .*no such file"):
        read_detectron2_weights(str(tmp_path / "missing.yaml"), str(zoo))
    with pytest.raises(UsageError, match="--weights .*no such file"):
        read_detectron2_weights(str(cfg), str(tmp_path / "missing.pkl"))


def test_weights_that_leave_most_of_a_model_unset_are_measured():
    """What the detectron2 adapter refuses (over 5% of the values unset: a torchvision state dict under a
    detectron2 config, Mask R-CNN weights under PointRend), measured on names and shapes alone."""
    from g3d.filters.segmenters import MAX_MISSING_SHARE, weight_coverage

    model = {"backbone.conv.weight": (64, 3, 7, 7), "roi_heads.mask_head.weight": (256, 256, 3, 3), "roi_heads.point_head.weight": (256, 512)}
    same = dict(model)
    assert weight_coverage(model, same) == ([], 0.0)
    no_point_head = {k: v for k, v in model.items() if "point_head" not in k}
    missing, share = weight_coverage(model, no_point_head)
    assert missing == ["roi_heads.point_head.weight"] and share == pytest.approx(256 * 512 / (64 * 147 + 256 * 256 * 9 + 256 * 512))
    assert share > MAX_MISSING_SHARE
    renamed = {"backbone.body.conv1.weight": (64, 3, 7, 7)}  # torchvision names
    assert weight_coverage(model, renamed)[1] == 1.0
    wrong_shape = {**model, "backbone.conv.weight": (64, 3, 3, 3)}
    assert weight_coverage(model, wrong_shape)[0] == ["backbone.conv.weight"]
