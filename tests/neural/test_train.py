"""`g3d neural train` as a run: exact resume, both stages, previews, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from g3d.errors import UsageError
from g3d.neural.train import NeuralConfig, NeuralError, load_neural, load_sources, train_neural
from g3d.synth.sampling import SynthConfig, run_synth
from g3d.neural.evaluate import evaluate_neural
from g3d.train.loop import TrainConfig, load_run, train
from tests.train.test_train import _Killed, _kill_after  # an interruption after n steps, as in g3d train's resume test

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def inverse_run(tmp_path_factory) -> Path:
    """An inverse-graphics run of 2 steps on 6 built-in cars x 4 views at 32 px."""
    base = tmp_path_factory.mktemp("neural")
    data = base / "car"
    run_synth(SynthConfig(out=data, samples=6, views=4, resolution=32, candidates=16))
    train(TrainConfig(folder=str(data), out=str(base / "run"), resolution=32, batch_size=2, steps=2, tex_res=16, holdout=0.34,
                      preview_every=10**6))
    return base / "run"


def _cfg(inverse, out, **kw):
    args = dict(inverse=str(inverse), out=str(out), stage1_steps=4, batch_size=2, hidden=16, log_every=1, preview_every=2, checkpoint_every=2)
    args.update(kw)
    return NeuralConfig(**args)


def _state(nrun):
    _, m, _ = load_neural(nrun)
    return torch.cat([v.detach().double().reshape(-1) for v in m.state_dict().values()])


def test_resume_is_exact(inverse_run, tmp_path):
    train_neural(_cfg(inverse_run, tmp_path / "straight"))
    with pytest.raises(_Killed):
        train_neural(_cfg(inverse_run, tmp_path / "split", checkpoint_every=1), progress=_kill_after(2))
    rep = train_neural(_cfg(inverse_run, tmp_path / "split"))
    assert rep.resumed_from == 2 and rep.steps_done == 2
    assert torch.equal(_state(tmp_path / "straight"), _state(tmp_path / "split"))
    lines = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert (tmp_path / "split" / "previews" / "step_0000004.png").is_file()
    # A different run (another seed) is not the same network: the comparison above can fail.
    train_neural(_cfg(inverse_run, tmp_path / "seed1", seed=1))
    assert not torch.equal(_state(tmp_path / "straight"), _state(tmp_path / "seed1"))


def test_stage_two_is_refused_for_the_builtin_generator(inverse_run, tmp_path):
    with pytest.raises(UsageError, match="use --stage2-steps 0"):
        train_neural(_cfg(inverse_run, tmp_path / "s2", stage1_steps=2, stage2_steps=2))


def test_both_stages_on_a_small_stylegan_fine_tune_its_synthesis_weights_in_stage_two(tmp_path):
    from tests.neural.test_mapping import small_stylegan, sources

    G = small_stylegan()
    src = sources(G)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    logs = []
    train_neural(_cfg("unused", tmp_path / "sg", stage1_steps=2, stage2_steps=2, shape_modes=2), log=logs.append, src=src)
    lines = [json.loads(x) for x in (tmp_path / "sg" / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in lines] == [1, 1, 2, 2]
    assert "cycle_shape" in lines[-1] and "cycle_shape" not in lines[0]
    assert any("synthesis weights fine-tuned" in m for m in logs)
    state = torch.load(tmp_path / "sg" / "checkpoints" / "last.pt", weights_only=True)
    moved = {k for k, v in state["generator"].items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith("synthesis.") for k in moved)


def test_bad_input_is_one_line(inverse_run, tmp_path):
    with pytest.raises(UsageError, match="is not an inverse-graphics run"):
        load_sources(tmp_path)
    with pytest.raises(UsageError, match="was made with 16"):  # a 6-row StyleGAN2 for a 16-row built-in dataset
        load_sources(inverse_run, str(REPO / "tests" / "fixtures" / "stylegan2" / "nvlabs_small.safetensors"))
    with pytest.raises(UsageError, match="not a neural run"):
        load_neural(tmp_path)
    with pytest.raises(UsageError, match="is an inverse-graphics run .g3d train., not a neural run: pass the folder of"):
        load_neural(inverse_run)
    train_neural(_cfg(inverse_run, tmp_path / "a"))
    with pytest.raises(UsageError, match="other settings"):
        train_neural(_cfg(inverse_run, tmp_path / "a", hidden=32))
    with pytest.raises(UsageError, match="is a neural run .g3d neural train., not an inverse-graphics run"):
        load_run(tmp_path / "a")
    with pytest.raises(UsageError, match="--n 1: give at least 2"):
        evaluate_neural(None, None, 0, 1)


@pytest.mark.parametrize("option", ["checkpoint_every", "preview_every", "log_every"])
def test_step_intervals_below_one_are_refused_before_any_work(tmp_path, option):
    with pytest.raises(UsageError, match=f"--{option.replace('_', '-')} 0: give a number of steps of at least 1"):
        train_neural(_cfg(tmp_path / "no-run", tmp_path / "n", **{option: 0}))
    assert not (tmp_path / "n").exists()


def test_a_nan_loss_stops_with_the_last_good_checkpoint(inverse_run, tmp_path, monkeypatch):
    import g3d.neural.train as nt

    real = nt.stage1_loss

    def poisoned(*args, **kw):
        total, terms = real(*args, **kw)
        return (total * float("nan") if nt._poison["on"] else total), terms

    nt._poison = {"on": False}
    monkeypatch.setattr(nt, "stage1_loss", poisoned)
    out = tmp_path / "nan"
    train_neural(_cfg(inverse_run, out, stage1_steps=2))
    before = (out / "checkpoints" / "last.pt").read_bytes()
    nt._poison["on"] = True
    with pytest.raises(NeuralError, match="loss is nan"):
        train_neural(_cfg(inverse_run, tmp_path / "nan2"))
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_cli_swap_and_render_write_their_pictures(inverse_run, tmp_path):
    from typer.testing import CliRunner

    from g3d.cli import app

    nrun = tmp_path / "n"
    train_neural(_cfg(inverse_run, nrun, stage1_steps=2))
    runner = CliRunner()
    r = runner.invoke(app, ["neural", "swap", str(nrun), "0:0", "1:1", "2:2", "--out", str(tmp_path / "swap.png")])
    assert r.exit_code == 0, r.output
    import cv2

    sheet = cv2.imread(str(tmp_path / "swap.png"))
    assert sheet is not None and sheet.shape[0] > 3 * 64  # three rows of 2x-enlarged cells
    r = runner.invoke(app, ["neural", "swap", str(nrun), "0:0", "1:1", "--out", str(tmp_path / "swap2.png"), "--shape-from", "1",
                            "--texture-from", "0", "--background-from", "-1"])
    assert r.exit_code == 0, r.output
    narrow = cv2.imread(str(tmp_path / "swap2.png"))
    assert narrow.shape[1] < sheet.shape[1]  # 5 columns (no background column) instead of 6
    r = runner.invoke(app, ["neural", "swap", str(nrun), "0:0", "1:1", "--out", str(tmp_path / "swap3.png")])
    assert r.exit_code != 0 and "--background-from 2: there are 2 photos" in r.output
    r = runner.invoke(app, ["neural", "render", str(nrun), "0:1", "--out", str(tmp_path / "tt"), "--views", "5"])
    assert r.exit_code == 0, r.output
    frames = sorted((tmp_path / "tt" / "frames").glob("*.png"))
    assert len(frames) == 5
    a, b = cv2.imread(str(frames[0])), cv2.imread(str(frames[2]))
    assert a.shape == b.shape and not (a == b).all()  # the camera input reaches the generator: other azimuth, other picture
    assert (tmp_path / "tt" / "turntable.gif").stat().st_size > 0 and (tmp_path / "tt" / "sheet.png").is_file()
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    r = runner.invoke(app, ["neural", "render", str(nrun), f"{bad}@0", "--out", str(tmp_path / "tt2")])
    assert r.exit_code != 0 and "is not an image" in r.output
    r = runner.invoke(app, ["neural", "render", str(nrun), "0:9", "--out", str(tmp_path / "tt3")])
    assert r.exit_code != 0 and "outside the dataset's 0..3" in r.output
    r = runner.invoke(app, ["neural", "eval", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "not a neural run" in r.output
    cv2.imwrite(str(tmp_path / "plain.png"), a)  # a photo that names no view, for a run that predicts no camera
    r = runner.invoke(app, ["neural", "render", str(nrun), str(tmp_path / "plain.png"), "--out", str(tmp_path / "tt4")])
    assert r.exit_code != 0 and "names no view" in r.output and "--camera-head" in r.output and not (tmp_path / "tt4").exists()


def test_cli_render_and_swap_of_plain_photos_with_a_camera_head_run(inverse_run, tmp_path):
    """A photo with no @VIEW: its camera from the inverse run's camera head, the neural run trained with cameras
    between the views (the built-in generator's truth)."""
    import cv2
    from typer.testing import CliRunner

    from g3d.cli import app
    from g3d.neural.photos import dataset_image

    data = inverse_run.parent / "car"
    train(TrainConfig(folder=str(data), out=str(tmp_path / "run"), resolution=32, batch_size=2, steps=2, tex_res=16, holdout=0.34,
                      preview_every=10**6, camera_head=True))
    logs = []
    train_neural(_cfg(tmp_path / "run", tmp_path / "n", stage1_steps=2), log=logs.append)
    assert any("50% of latents between them, their cameras from the generator's truth" in m for m in logs), logs
    for k in range(2):
        cv2.imwrite(str(tmp_path / f"p{k}.png"), cv2.cvtColor(dataset_image(data, k, k + 1), cv2.COLOR_RGB2BGR))
    runner = CliRunner()
    r = runner.invoke(app, ["neural", "render", str(tmp_path / "n"), str(tmp_path / "p0.png"), "--out", str(tmp_path / "tt"), "--views", "3"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "tt" / "frames").glob("*.png"))) == 3
    r = runner.invoke(app, ["neural", "swap", str(tmp_path / "n"), str(tmp_path / "p0.png"), str(tmp_path / "p1.png"), "0:2",
                            "--out", str(tmp_path / "swap.png")])
    assert r.exit_code == 0, r.output
    logs = []
    train_neural(_cfg(tmp_path / "run", tmp_path / "nv", stage1_steps=2, cameras="views"), log=logs.append)
    assert any("views only (no camera source between them" in m for m in logs), logs
    terms = lambda n: set(json.loads((tmp_path / n / "metrics.jsonl").read_text().splitlines()[-1]))  # noqa: E731
    assert "camera" in terms("n") and "camera" not in terms("nv")  # the camera fit on drawn viewpoints: with the truth only


@pytest.mark.slow
def test_two_process_torchrun_keeps_ranks_identical(inverse_run, tmp_path):
    import os
    import subprocess
    import sys

    nrun = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "g3d.cli", "neural", "train",
           "--inverse", str(inverse_run), "--out", str(nrun), "--stage1-steps", "4", "--batch-size", "2", "--checkpoint-every", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    check = json.loads((nrun / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["identical"] and check["checksums"][0] == check["checksums"][1]
    lines = [json.loads(x) for x in (nrun / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [4]  # rank 0 alone writes (every 10 steps, and the last)
    # The ranks drew different latents: the averaged run is not the one-process run.
    train_neural(_cfg(inverse_run, tmp_path / "one", stage1_steps=4, batch_size=2, hidden=256, log_every=10, preview_every=250,
                      checkpoint_every=2))
    assert not torch.equal(_state(nrun), _state(tmp_path / "one"))


def test_render_without_pillow_is_one_line_naming_the_extra_and_writes_nothing(tmp_path, monkeypatch):
    import sys

    from g3d.errors import MissingDependencyError
    from g3d.neural.figures import write_turntable

    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"turntable.gif needs Pillow, which is not installed: run pip install 'g3d\[gif\]'"):
        write_turntable(tmp_path / "tt", None, None, None, 0, [0.0], 15.0, 4.0)
    assert not (tmp_path / "tt").exists()
