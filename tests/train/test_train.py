import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from g3d.errors import DatasetError, UsageError
from g3d.synth.sampling import SynthConfig, run_synth
from g3d.train.evaluate import evaluate
from g3d.train.loop import TrainConfig, TrainingError, load_run, train

REPO = Path(__file__).resolve().parents[2]


def _cfg(folder, out, **kw):
    args = dict(folder=str(folder), out=str(out), resolution=32, batch_size=2, steps=4, lr=1e-3, tex_res=16,
                log_every=1, preview_every=2, checkpoint_every=2, holdout=0.25)
    args.update(kw)
    return TrainConfig(**args)


def _params(run):
    """(step, every parameter and buffer of the network and cameras, flattened)."""
    _, model, cams, _, step = load_run(run)
    tensors = list(model.state_dict().values()) + list(cams.state_dict().values())
    return step, torch.cat([p.detach().double().reshape(-1) for p in tensors])


class _Killed(Exception):
    pass


def _kill_after(n):
    """A progress callback that interrupts training after ``n`` steps (after their checkpoint)."""
    def progress(_label, _total):
        done = {"n": 0}

        def advance(k):
            done["n"] += k
            if done["n"] >= n:
                raise _Killed()
        return advance
    return progress


@pytest.mark.parametrize("backbone", ["small", "resnet18"])
def test_resume_is_exact(tiny, tmp_path, backbone):
    """Killed after step 2 and rerun: parameters and buffers (ResNet's BatchNorm statistics too) equal an
    uninterrupted run's, with the learning-rate and sigma schedules continuing where they stopped;
    previews in between change nothing."""
    train(_cfg(tiny, tmp_path / "straight", backbone=backbone, preview_every=1))
    with pytest.raises(_Killed):
        train(_cfg(tiny, tmp_path / "split", backbone=backbone, preview_every=3, checkpoint_every=1), progress=_kill_after(2))
    rep = train(_cfg(tiny, tmp_path / "split", backbone=backbone, preview_every=3))
    assert rep.resumed_from == 2 and rep.steps_done == 2  # the steps this call ran
    s1, a = _params(tmp_path / "straight")
    s2, b = _params(tmp_path / "split")
    assert s1 == s2 == 4 and torch.equal(a, b)
    lines = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert (tmp_path / "split" / "previews" / "step_0000004.png").is_file()


def test_preview_shows_four_different_objects(tiny):
    from g3d.train.data import PairData
    from g3d.train.loop import preview_indices

    data = PairData(tiny, 32, "train", 0.25)
    idx = preview_indices(data, 4)
    assert len(idx) == 4 and len(set(data.sample_ids[idx].tolist())) == 4


def test_a_run_resumes_typed_relative_or_absolute_and_after_a_copy(tiny, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    train(_cfg(tiny, "rel", steps=2))
    cfg = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert cfg["out"] == str(tmp_path / "rel") and cfg["folder"] == str(tiny.resolve())
    assert train(_cfg(tiny, tmp_path / "rel", steps=3)).resumed_from == 2
    shutil.copytree(tmp_path / "rel", tmp_path / "copy")
    rep = train(_cfg(tiny, tmp_path / "copy", steps=4))
    assert rep.resumed_from == 3 and _params(tmp_path / "copy")[0] == 4


def test_training_and_eval_at_another_resolution_than_the_dataset(tiny, tmp_path):
    """Trained at 24 px on 32 px data: cameras are rescaled, so the true meshes re-project onto the masks
    (without rescaling K they land ~1/3 off), and only the held-out objects are scored."""
    run = tmp_path / "run"
    rep_t = train(_cfg(tiny, run, resolution=24, steps=2))
    assert rep_t.steps_done == 2
    rep = evaluate(run)
    assert rep.held_out == [6, 7] and rep.images == 8
    assert rep.true_iou > 0.8 and rep.true_iou > rep.template_iou, rep
    assert rep.mean_true_iou > 0.7
    # Per body type: the held-out objects' own types, every image counted once, the same IoUs regrouped.
    import pyarrow.parquet as pq

    from g3d.synth.builtin import BODY_TYPES

    rows = pq.read_table(sorted((tiny / "images").glob("part-*.parquet")), columns=["sample_id", "gt_body_type"]).to_pandas()
    kinds = rows[rows.sample_id.isin([6, 7])].drop_duplicates("sample_id").gt_body_type
    assert set(rep.per_type) == {BODY_TYPES[int(k)] for k in kinds}
    n = sum(d["images"] for d in rep.per_type.values())
    assert n == rep.images
    for key, overall in (("iou", rep.iou), ("true", rep.true_iou), ("mean_true", rep.mean_true_iou)):
        assert abs(sum(d[key] * d["images"] for d in rep.per_type.values()) / n - overall) < 1e-6
    assert any(line.strip().startswith(next(iter(rep.per_type))) for line in rep.lines())


def test_eval_on_another_dataset_uses_its_cameras(tiny, tmp_path):
    import shutil

    run = tmp_path / "run"
    train(_cfg(tiny, run, steps=1))
    other = tmp_path / "other"
    run_synth(SynthConfig(out=other, samples=4, views=6, resolution=32, candidates=24, seed=5))
    rep = evaluate(run, other)
    assert rep.cameras == "dataset" and rep.images == 6 and len(rep.per_view) == 6
    # The run's own dataset, re-synthesised in place with more views: its learned cameras no longer fit.
    own = tmp_path / "own"
    shutil.copytree(tiny, own)
    run2 = tmp_path / "run2"
    train(_cfg(own, run2, steps=1))
    assert evaluate(run2).cameras == "run"
    run_synth(SynthConfig(out=own, samples=8, views=6, resolution=32, candidates=24, overwrite=True))
    with pytest.raises(UsageError, match="6 views but run .* learned cameras for 4") as info:
        evaluate(run2)
    assert "\n" not in str(info.value)


def test_other_settings_into_the_same_run_are_refused_optimisation_settings_resume(tiny, tmp_path):
    train(_cfg(tiny, tmp_path / "r", steps=1))
    with pytest.raises(UsageError, match="other settings.*tex_res.*--overwrite"):
        train(_cfg(tiny, tmp_path / "r", tex_res=32))
    rep = train(_cfg(tiny, tmp_path / "r", steps=2, lr=5e-4))  # the NaN advice: lower --lr and resume
    assert rep.resumed_from == 1
    hist = [json.loads(x) for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == [0, 1] and hist[1]["changed"] == {"lr": [1e-3, 5e-4], "steps": [1, 2]}
    assert json.loads((tmp_path / "r" / "config.json").read_text())["lr"] == 5e-4
    rep = train(_cfg(tiny, tmp_path / "r", tex_res=32), overwrite=True)
    assert rep.resumed_from == 0 and rep.steps_done == 4
    assert [json.loads(x)["step"] for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()] == [0]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a run folder"):
        train(_cfg(tiny, tmp_path / "file"))


def test_a_run_written_before_newer_options_resumes(tiny, tmp_path):
    """A config.json without the options added since (``zoom``, ``camera_head``, ``light``, ...) describes a run that
    trained with them off: it resumes with their defaults (a different value is still refused), and options whose
    old behaviour differs from today's default keep the old one (``light_weight`` 0 for a light run; a run without a
    light head never used it)."""
    from g3d.train.loop import TrainConfig, upgrade_config

    run = tmp_path / "old"
    train(_cfg(tiny, run, steps=1))
    config = json.loads((run / "config.json").read_text())
    for key in ("zoom", "camera_head", "camera_weight", "light", "albedo_weight", "light_weight"):
        del config[key]
    (run / "config.json").write_text(json.dumps(config))
    assert train(_cfg(tiny, run, steps=2)).resumed_from == 1
    assert upgrade_config({"steps": 1})["zoom"] == TrainConfig.zoom
    assert upgrade_config({"light": True})["light_weight"] == 0.0 and upgrade_config({})["light_weight"] == TrainConfig.light_weight
    # a light run from before the material term was Lambertian (its light head has 4 outputs)
    assert upgrade_config({"light": True})["specular"] is False and upgrade_config({"light": True, "specular": True})["specular"] is True
    with pytest.raises(UsageError, match="other settings.*zoom"):
        train(_cfg(tiny, run, steps=3, crop="fov", zoom=0.1))


@pytest.mark.parametrize("option", ["checkpoint_every", "preview_every", "log_every"])
def test_step_intervals_below_one_are_refused_before_any_work(tmp_path, option):
    with pytest.raises(UsageError, match=f"--{option.replace('_', '-')} 0: give a number of steps of at least 1"):
        train(_cfg(tmp_path / "no-data", tmp_path / "r", **{option: 0}))
    assert not (tmp_path / "r").exists()


def test_non_finite_parameters_are_never_checkpointed(tiny, tmp_path, monkeypatch):
    run = tmp_path / "inf"
    train(_cfg(tiny, run, steps=1, checkpoint_every=1))

    class Poisoned(torch.optim.Adam):
        """Adam whose update turns one weight into inf (the loss of that step was still finite)."""

        def step(self, closure=None):
            out = super().step(closure)
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
            return out

    monkeypatch.setattr(torch.optim, "Adam", Poisoned)
    with pytest.raises(TrainingError, match="no longer finite after step 2.*last good state") as info:
        train(_cfg(tiny, run, steps=4, checkpoint_every=1))
    monkeypatch.undo()
    assert "\n" not in str(info.value)
    step, p = _params(run)
    assert step == 1 and torch.isfinite(p).all()
    assert train(_cfg(tiny, run, steps=3, lr=5e-4)).resumed_from == 1


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    import g3d.train.loop as loop

    real = loop.color_l1
    calls = {"n": 0}

    def poisoned(*a):
        calls["n"] += 1
        return real(*a) * (float("nan") if calls["n"] == 3 else 1.0)

    monkeypatch.setattr(loop, "color_l1", poisoned)
    with pytest.raises(TrainingError, match="at step 2.*last good state") as info:
        train(_cfg(tiny, tmp_path / "nan", checkpoint_every=1))
    assert "\n" not in str(info.value)
    step, p = _params(tmp_path / "nan")
    assert step == 2 and torch.isfinite(p).all()


def test_damaged_checkpoint_and_missing_masks_are_named(tiny, tmp_path):
    run = tmp_path / "dmg"
    train(_cfg(tiny, run, steps=2))
    (run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="last.pt is damaged"):
        train(_cfg(tiny, run, steps=3))
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from g3d.datasets import folder as dsf
    from g3d.datasets.schema import image_type

    nomask = tmp_path / "nomask"
    shutil.copytree(tiny, nomask)
    for p in dsf.shard_paths(nomask):
        t = pq.read_table(p)
        pq.write_table(t.set_column(t.schema.get_field_index("mask"), "mask", pa.nulls(t.num_rows, image_type())), p)
    with pytest.raises(DatasetError, match="no masks: run `g3d filter"):
        train(_cfg(nomask, tmp_path / "x"))


def test_export_mesh_glb_and_obj_load_in_trimesh(tiny, tmp_path):
    trimesh = pytest.importorskip("trimesh")

    from g3d.train.export import export_mesh

    run = tmp_path / "run"
    train(_cfg(tiny, run, steps=2))
    img = tmp_path / "car.png"
    rows = __import__("pyarrow.parquet", fromlist=["x"]).read_table(sorted((tiny / "images").glob("part-*"))[0]).to_pylist()
    img.write_bytes(rows[0]["image"]["bytes"])
    glb = export_mesh(run, img, tmp_path / "car.glb")[0]
    mesh = trimesh.load(glb, force="mesh")
    assert len(mesh.faces) == 1280 and mesh.visual.kind == "texture"
    assert mesh.visual.material.baseColorTexture.size == (16, 16)
    objs = export_mesh(run, img, tmp_path / "car.obj")
    mesh2 = trimesh.load(objs[0], force="mesh")
    assert len(mesh2.faces) == 1280 and mesh2.visual.kind == "texture"
    np.testing.assert_allclose(mesh.bounds, mesh2.bounds, atol=1e-5)  # the same shape in both files
    assert mesh.bounds[1][2] - mesh.bounds[0][2] > mesh.bounds[1][1] - mesh.bounds[0][1]  # longer than tall, like the template
    with pytest.raises(UsageError, match=".glb or .obj"):
        export_mesh(run, img, tmp_path / "car.ply")


@pytest.mark.slow
def test_two_process_torchrun_keeps_ranks_identical(tiny, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "g3d.cli",
           "train", str(tiny), "--out", str(run), "--resolution", "32", "--batch-size", "2", "--steps", "3",
           "--tex-res", "16", "--lr", "1e-3", "--checkpoint-every", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    check = json.loads((run / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["identical"] and check["checksums"][0] == check["checksums"][1]
    assert _params(run)[0] == 3


@pytest.mark.slow
def test_training_reads_its_input_not_a_mean_car(tmp_path):
    """A short CPU run must give object-specific answers: the IoU beats the same images scored with
    another object's prediction and with the mean prediction, predicted length follows the true length
    and the texture follows the paint. The network as it was before issue #10 (one grey mean car for
    every photo) had IoU == swap IoU == mean-prediction IoU and no colour correlation."""
    data = tmp_path / "car"
    run_synth(SynthConfig(out=data, samples=120, views=8, resolution=64, seed=3, truncation=1.0))
    # The defaults of g3d train (small encoder, lr 3e-4 cosine, sigma annealed to 1e-5, shape weights 1/1/0.5), a shorter budget.
    train(TrainConfig(folder=str(data), out=str(tmp_path / "run"), resolution=64, batch_size=12, steps=1000, holdout=0.2,
                      preview_every=10**6, checkpoint_every=10**6))
    rep = evaluate(tmp_path / "run")
    # Measured (one thread, 167 s of training): IoU 0.940, swap 0.925, mean prediction 0.928, template 0.604;
    # length r 0.77 (swapped 0.36); paint r 0.97/0.98/0.99 (swapped <= 0.07); Chamfer of the outer surfaces
    # 0.0288 to the own true mesh, 0.0320 to another's, template 0.0703.
    assert rep.images == 24 * 8 and rep.objects == 24 and len(rep.per_view) == 8
    assert rep.iou > rep.template_iou + 0.25, rep
    assert rep.iou - rep.swap_iou >= 0.007 and rep.iou - rep.mean_pred_iou >= 0.006, rep
    assert rep.size_corr["length"] >= 0.45 and rep.size_corr["length"] > rep.size_corr_swap["length"] + 0.2, rep
    assert min(rep.color_corr) >= 0.9 and max(rep.color_corr_swap) < 0.5, rep
    assert rep.chamfer < rep.template_chamfer and rep.chamfer < rep.chamfer_other, rep


def test_cli_train_then_eval_prints_baselines_and_oracles(tiny, tmp_path):
    def g3d(*args):
        return subprocess.run([sys.executable, "-m", "g3d.cli", *args], capture_output=True, text=True, timeout=600, cwd=REPO)

    run = tmp_path / "run"
    r = g3d("train", str(tiny), "--out", str(run), "--resolution", "32", "--steps", "2", "--batch-size", "2", "--tex-res", "16")
    err = r.stderr.replace("\n", "")
    assert r.returncode == 0, r.stderr
    assert "done: 2 steps" in err and "cameras: ground truth, fixed" in err
    r = g3d("train", str(tiny), "--out", str(run), "--resolution", "32", "--steps", "3", "--batch-size", "2", "--tex-res", "16")
    err = r.stderr.replace("\n", "")
    assert r.returncode == 0 and "resuming" in err and "done: 1 steps" in err, r.stderr
    r = g3d("eval", str(run))
    assert r.returncode == 0, r.stderr
    for needle in ("swapped pairing", "mean prediction", "ceilings: true mesh", "Chamfer (outer surfaces) to own true mesh", "size r", "paint colour r", "per view: v0"):
        assert needle in r.stdout, r.stdout
    for args, needle in [(("--backbone", "vgg"), "--backbone vgg: choose one of small, resnet18"),
                         (("--lr-schedule", "step"), "--lr-schedule step"), (("--sigma", "0"), "--sigma 0.0"),
                         (("--tex-res", "100"), "--tex-res 100"), (("--steps", "0"), "--steps 0")]:
        r = g3d("train", str(tiny), "--out", str(tmp_path / "bad"), *args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_damaged_data_is_one_line_naming_it(tiny, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from g3d.datasets import folder as dsf

    trunc = tmp_path / "trunc"
    shutil.copytree(tiny, trunc)
    shard = dsf.shard_paths(trunc)[0]
    shard.write_bytes(shard.read_bytes()[:2000])
    for call in (lambda: train(_cfg(trunc, tmp_path / "r1")), lambda: evaluate(_params_run(tiny, tmp_path), trunc)):
        with pytest.raises(DatasetError, match=f"{shard.name} cannot be read.*rerun") as info:
            call()
        assert "\n" not in str(info.value)
    bad = tmp_path / "badpng"
    shutil.copytree(tiny, bad)
    shard = dsf.shard_paths(bad)[0]
    t = pq.read_table(shard)
    rows = t.column("image").to_pylist()
    rows[3] = {"bytes": b"not a png", "path": None}
    pq.write_table(t.set_column(t.schema.get_field_index("image"), "image", pa.array(rows, t.schema.field("image").type)), shard)
    with pytest.raises(DatasetError, match="sample 0 view 3 does not decode: run `g3d filter"):
        train(_cfg(bad, tmp_path / "r2"))


def _params_run(tiny, tmp_path):
    run = tmp_path / "ok"
    if not (run / "checkpoints" / "last.pt").is_file():
        train(_cfg(tiny, run, steps=1))
    return run


def test_export_mesh_makes_the_output_folder(tiny, tmp_path):
    from g3d.train.export import export_mesh

    run = _params_run(tiny, tmp_path)
    img = tmp_path / "car.png"
    import pyarrow.parquet as pq

    img.write_bytes(pq.read_table(sorted((tiny / "images").glob("part-*"))[0]).to_pylist()[0]["image"]["bytes"])
    out = export_mesh(run, img, tmp_path / "new" / "dir" / "car.glb")
    assert out[0].is_file()


def test_training_reads_the_cameras_provenance(tiny, tmp_path):
    """#11: views cameras.parquet marks unusable (or gives no row) are skipped, pose-bin cameras get 10x the
    camera step and keypoint ones a quarter, and the run records what it used."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from g3d.train.data import PairData

    data = tmp_path / "car"
    shutil.copytree(tiny, data)
    rows = pq.read_table(next((data / "images").glob("part-*.parquet")), columns=["view_id", "K", "R", "t"]).to_pandas()
    rows = rows.drop_duplicates("view_id").sort_values("view_id")
    keep = rows.view_id != 2  # view 2: no row (rejected by the annotator)
    rows = rows[keep]
    pq.write_table(pa.table({
        "view_id": pa.array(rows.view_id, pa.int32()),
        "K": [list(k) for k in rows.K], "R": [list(r) for r in rows.R], "t": [list(x) for x in rows.t],
        "source": ["pose_bin", "sfm_flagged", "sfm"], "usable": [True, False, True],
    }), data / "cameras.parquet")
    pairs = PairData(data, 32, "train", 0.25)
    assert sorted(set(pairs.view_ids.tolist())) == [0, 3]
    assert pairs.cameras.skipped() == [1, 2]
    train(_cfg(data, tmp_path / "run", steps=2))
    used = json.loads((tmp_path / "run" / "cameras_used.json").read_text())
    assert used["skipped_views"] == [1, 2] and used["refined"] is True
    assert used["view_source"] == ["pose_bin", "sfm_flagged", None, "sfm"]
    assert used["freedom"] == [10.0, 10.0, 10.0, 0.25]  # pose-bin cameras 10x the camera step, keypoint ones a quarter


def test_eval_puts_the_true_meshes_in_the_frame_of_sfm_cameras(tiny, tmp_path):
    """Cameras from sfm-init live in their own frame (keypoint-derived origin, preset distance scale):
    the oracles (true mesh, mean true mesh) are measured after the similarity that maps the generator's
    camera centres onto them, so they read as they do with the generator's own cameras."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from g3d.sfm.align import Similarity

    data = tmp_path / "car"
    shutil.copytree(tiny, data)
    rows = pq.read_table(next((data / "images").glob("part-*.parquet")), columns=["view_id", "K", "R", "t"]).to_pandas()
    rows = rows.drop_duplicates("view_id").sort_values("view_id")
    a = np.radians(30.0)
    sim = Similarity(rotation=np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]), origin=np.array([0.1, -0.2, 0.05]), scale=1.25)
    R, t = sim.cameras(np.stack([np.reshape(r, (3, 3)) for r in rows.R]), np.stack(list(rows.t)))
    pq.write_table(pa.table({"view_id": pa.array(rows.view_id, pa.int32()), "K": [list(k) for k in rows.K],
                             "R": [list(r.reshape(9)) for r in R], "t": [list(x) for x in t], "source": ["sfm"] * 4}), data / "cameras.parquet")
    train(_cfg(data, tmp_path / "moved", steps=2, learn_cameras=False))
    train(_cfg(tiny, tmp_path / "truth", steps=2))
    moved, truth = evaluate(tmp_path / "moved"), evaluate(tmp_path / "truth")
    assert truth.truth_frame is None and "scale 1.250" in moved.truth_frame
    assert abs(moved.true_iou - truth.true_iou) < 0.01 and moved.true_iou > 0.9
    assert abs(moved.mean_true_iou - truth.mean_true_iou) < 0.01
    assert abs(moved.mean_true_chamfer / truth.mean_true_chamfer - 1.25) < 0.05  # distances in the cameras' units


def test_eval_reads_the_camera_freedom_the_run_trained_with(tiny, tmp_path):
    """The learned camera deltas are scaled by each view's freedom: eval and export must apply the same
    scale (a run trained with pose-bin freedom 10 was evaluated with 1 and its cameras moved a tenth)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "car"
    shutil.copytree(tiny, data)
    rows = pq.read_table(next((data / "images").glob("part-*.parquet")), columns=["view_id", "K", "R", "t"]).to_pandas()
    rows = rows.drop_duplicates("view_id").sort_values("view_id")
    pq.write_table(pa.table({"view_id": pa.array(rows.view_id, pa.int32()), "K": [list(k) for k in rows.K], "R": [list(r) for r in rows.R],
                             "t": [list(x) for x in rows.t], "source": ["pose_bin", "sfm", "pose_bin", "sfm"]}), data / "cameras.parquet")
    train(_cfg(data, tmp_path / "run", steps=3, camera_lr=1e-2))
    _, _, cams, _, _ = load_run(tmp_path / "run")
    assert cams.freedom.tolist() == [10.0, 0.25, 10.0, 0.25]
    with torch.no_grad():
        _, R, t = cams(torch.arange(4))
    from g3d.train.model import _rodrigues

    expect = _rodrigues(cams.freedom[:, None] * cams.dw) @ cams.R0
    torch.testing.assert_close(R, expect)
    assert float(cams.dw.abs().max()) > 0  # the cameras did move


def _pose_bin_dataset(tiny, tmp_path, rows):
    """A copy of ``tiny`` without ground truth (so g3d train falls back to the pose bins) and with
    ``annotations/pose_bins.parquet`` holding ``rows`` (view_id, azimuth_deg, rejected)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "car"
    shutil.copytree(tiny, data)
    manifest = json.loads((data / "g3d.json").read_text())
    (data / "g3d.json").write_text(json.dumps({**manifest, "ground_truth": False}))
    (data / "annotations").mkdir()
    pq.write_table(pa.table({
        "view_id": pa.array([r[0] for r in rows], pa.int32()),
        "azimuth_bin": pa.array([None] * len(rows), pa.string()),
        "azimuth_deg": pa.array([r[1] for r in rows], pa.float64()),
        "elevation_deg": pa.array([10.0] * len(rows), pa.float64()),
        "rejected": pa.array([r[2] for r in rows], pa.bool_()),
    }), data / "annotations" / "pose_bins.parquet")
    return data


def test_pose_bins_skip_unannotated_and_rejected_views(tiny, tmp_path):
    """#21: no cameras.parquet, no truth, pose bins for views 0 and 3, view 1 rejected, view 2 unannotated:
    g3d train skips views 1 and 2 (named in its output and in cameras_used.json), never training them
    with azimuth 0 or NaN, and trains views 0 and 3 with their bins' cameras."""
    from typer.testing import CliRunner

    from g3d import cameras
    from g3d.cli import app
    from g3d.train.data import PairData

    data = _pose_bin_dataset(tiny, tmp_path, [(0, 45.0, False), (1, None, True), (3, 300.0, False)])
    pairs = PairData(data, 32, "train", 0.25)
    assert pairs.cameras.source == "pose bins"
    assert sorted(set(pairs.view_ids.tolist())) == [0, 3]  # no image of views 1, 2
    assert pairs.cameras.skipped_why() == {1: "rejected by the annotator", 2: "no pose bin"}
    az, el, _ = cameras.to_azimuth_elevation(pairs.cameras.R.double().numpy(), pairs.cameras.t.double().numpy())
    assert np.allclose(az[[0, 3]], [45.0, 300.0]) and np.allclose(el[[0, 3]], 10.0)

    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(data), "--out", str(run), "--resolution", "32", "--steps", "2", "--batch-size", "2", "--tex-res", "16"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "views 1, 2 skipped" in out and "1: rejected by the annotator" in out and "2: no pose bin" in out, out
    used = json.loads((run / "cameras_used.json").read_text())
    assert used["cameras"] == "pose bins" and used["skipped_views"] == [1, 2]
    assert used["skipped_why"] == {"1": "rejected by the annotator", "2": "no pose bin"}
    assert used["view_source"] == ["pose_bin", None, None, "pose_bin"]


def test_pose_bins_of_views_the_dataset_lacks_are_named_and_ignored(tiny, tmp_path):
    """#25: a pose bin for view 9 of a 4-view dataset is ignored with a note (it was an IndexError)."""
    from typer.testing import CliRunner

    from g3d.cli import app

    data = _pose_bin_dataset(tiny, tmp_path, [(0, 45.0, False), (1, 135.0, False), (2, 225.0, False), (3, 315.0, False), (9, 90.0, False)])
    r = CliRunner().invoke(app, ["train", str(data), "--out", str(tmp_path / "run"), "--resolution", "32", "--steps", "1",
                                 "--batch-size", "2", "--tex-res", "16"])
    assert r.exit_code == 0, r.output
    assert "pose bins for views the dataset does not have ignored: 9" in " ".join(r.output.split()), r.output


def test_a_pose_bin_file_with_no_usable_view_is_one_line(tiny, tmp_path):
    data = _pose_bin_dataset(tiny, tmp_path, [(0, None, True), (1, None, True)])
    with pytest.raises(DatasetError, match="gives no view a usable pose bin"):
        train(_cfg(data, tmp_path / "run", steps=1))


def test_a_run_whose_images_do_not_fit_in_memory_is_refused_with_the_estimate(tiny, tmp_path):
    """#25: training keeps every image in memory; a run that cannot fit is refused before it reads any
    (it was killed by the kernel after minutes), and one above the dataset's resolution too."""
    from g3d.train.loop import check_fits

    cfg = _cfg(tiny, tmp_path / "run")
    check_fits(cfg, available=32 * 32 * 4 * 32)  # 32 images of 32 x 32 px fit in exactly that
    with pytest.raises(UsageError, match=r"32 images at 32x32 px need 0\.0 GiB in memory .* lower --resolution or pass --max-images"):
        check_fits(cfg, available=32 * 32 * 4 * 32 - 1)
    with pytest.raises(UsageError, match="--resolution 64 is above the dataset's 32 px"):
        check_fits(_cfg(tiny, tmp_path / "run", resolution=64))


def test_novel_view_pairs_stay_within_an_object():
    from g3d.train.evaluate import novel_view_pairs

    sids = np.array([3, 3, 3, 5, 5, 9, 9, 9, 9, 9, 9, 9])
    p = novel_view_pairs(sids, k=5)
    assert (sids[p[:, 0]] == sids[p[:, 1]]).all() and (p[:, 0] != p[:, 1]).all()
    assert len(p) == len({tuple(x) for x in p.tolist()})  # no pair twice
    # 3 images: 2 others each; 2 images: 1 each; 7 images: 5 each (the cap)
    assert len(p) == 3 * 2 + 2 * 1 + 7 * 5
    assert np.bincount(p[:, 1], minlength=12).tolist() == np.bincount(p[:, 0], minlength=12).tolist()  # as often target as source
    assert len(novel_view_pairs(np.array([1, 2, 3]))) == 0  # one image per object: nothing to pair


def test_eval_on_a_random_viewpoint_test_set_uses_each_images_camera(tiny, tmp_path):
    """A --viewpoints random test set: every image its own true camera. The oracle (the true mesh, rendered with
    those cameras) must land on the masks in the input view and in the object's other views; a camera looked up
    by view id instead of by image would not."""
    run = tmp_path / "run"
    train(_cfg(tiny, run, steps=1))
    rv = tmp_path / "random"
    run_synth(SynthConfig(out=rv, samples=8, views=4, resolution=32, viewpoints="random", seed=9))
    rep = evaluate(run, rv)
    assert rep.cameras == "dataset, one per image" and rep.images == 8 and rep.objects == 2
    assert rep.per_view == {}  # no shared views to group by
    assert rep.novel_pairs == 2 * 4 * 3
    assert rep.true_iou > 0.85 and rep.novel["true"] > 0.85, (rep.true_iou, rep.novel)
    assert rep.novel["mean_true"] < rep.novel["true"] and rep.novel["iou"] < rep.novel["true"]
    assert any(line.startswith("novel-view IoU") for line in rep.lines())
    # On frozen views the novel-view oracle is the same measurement: the true mesh in other views of its object.
    own = evaluate(run)
    assert own.novel_pairs == 2 * 4 * 3 and own.novel["true"] > 0.85
