"""Every command over a table of bad values (issue #12 §3): exit 2, one line on stderr naming the
problem, no traceback, and nothing half-written left visible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # ~30 processes, each importing torch


def _g3d(args, cwd, env=None):
    e = dict(os.environ)
    e.pop("RANK", None), e.pop("WORLD_SIZE", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "g3d.cli", *args], capture_output=True, text=True, cwd=cwd, env=e, timeout=300)


def _visible_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A small dataset, a 2-step run, and files that are wrong in one way each."""
    t = tmp_path_factory.mktemp("bad")
    ds = t / "ds"
    r = _g3d(["synth", "--samples", "5", "--views", "4", "--resolution", "48", "--candidates", "16", "--out", str(ds)], t)
    assert r.returncode == 0, r.stderr
    r = _g3d(["train", str(ds), "--out", str(t / "run"), "--steps", "2", "--resolution", "48", "--batch-size", "2", "--preview-every", "1000"], t)
    assert r.returncode == 0, r.stderr
    r = _g3d(["neural", "train", "--inverse", str(t / "run"), "--out", str(t / "nrun"), "--stage1-steps", "1", "--batch-size", "2"], t)
    assert r.returncode == 0, r.stderr
    (t / "afile").write_text("x")
    for name, text in (("list", "[1, 2]"), ("wrongtypes", json.dumps({"samples": "many", "views": 4})), ("garbage", "{not json")):
        (t / name).mkdir()
        (t / name / "g3d.json").write_text(text)
    pq.write_table(pq.read_table(ds / "viewpoints.parquet").slice(0, 0), t / "empty_vp.parquet")
    import shutil

    shutil.copytree(ds, t / "trunc")  # a truncated shard (a kill or a full disk while copying it)
    shard = t / "trunc" / "images" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    shutil.copytree(ds, t / "spszero")  # a hand-edited or damaged manifest: samples_per_shard 0
    m = json.loads((t / "spszero" / "g3d.json").read_text())
    (t / "spszero" / "g3d.json").write_text(json.dumps({**m, "samples_per_shard": 0}))
    (t / "badexp").mkdir()
    (t / "badexp" / "export.json").write_text("")  # an export's record left empty
    for name, text in (("p_str", "samples = 'many'"), ("p_float", "samples = 2.5"), ("p_table", "samples = {a = 1}"),
                       ("p_bool", "views = true"), ("p_zero", "samples = 0"), ("p_list", "viewpoint_layers = ['a']")):
        (t / f"{name}.toml").write_text(f"folder = 'pf'\n[synth]\n{text}\n")
    (t / "p_rules.toml").write_text("folder = 'pf'\n[filter.rules]\nmin_area = 'big'\n")
    (t / "p_train.toml").write_text("folder = 'pf'\n[train]\nout = 'r'\nsteps = 'x'\n")
    (t / "p_weights.toml").write_text("folder = 'pf'\n[train]\nout = 'r'\nweights = 3\n")
    return t


FIXTURE = Path(__file__).parent / "fixtures" / "stylegan2" / "rosinality_small.safetensors"
S = ["synth", "--samples", "2", "--views", "2", "--resolution", "48", "--candidates", "8", "--out"]
CASES = [
    # (arguments, environment, words the one line must contain)
    (S + ["o", "--seed", "-1"], None, "--seed -1"),
    (S + ["o", "--samples-per-shard", "-1"], None, "--samples-per-shard -1"),
    (S + ["o", "--samples-per-shard", "0"], None, "--samples-per-shard 0"),
    (S + ["o", "--device", "tpu"], None, "--device 'tpu'"),
    (S + ["o", "--truncation", "nan"], None, "--truncation nan"),
    (S + ["o", "--resolution", "7"], None, "--resolution 7"),
    (S + ["o", "--samples", "0"], None, "--samples"),
    (S + ["o", "--samples", "abc"], None, "--samples"),
    (S + ["o"], {"RANK": "abc", "WORLD_SIZE": "2"}, "RANK='abc'"),
    (["synth", "--samples", "2", "--resolution", "48", "--out", "o", "--viewpoints", "empty_vp.parquet"], None, "holds no views"),
    (S + ["list", "--overwrite", "--seed", "-5"], None, "--seed -5"),
    (["train", "ds", "--out", "r", "--batch-size", "0"], None, "--batch-size 0"),
    (["train", "ds", "--out", "r", "--tex-res", "100"], None, "--tex-res 100"),
    (["train", "ds", "--out", "afile"], None, "is a file"),
    (["train", "ds", "--out", "r", "--steps", "-3"], None, "--steps -3"),
    (["train", "ds", "--out", "r", "--resolution", "7"], None, "--resolution 7"),
    (["train", "ds", "--out", "r", "--resolution", "4096"], None, "--resolution 4096 is above the dataset's 48 px"),
    (["train", "ds", "--out", "r", "--lr", "-1"], None, "--lr -1"),
    (["train", "ds", "--out", "r", "--sigma", "0"], None, "--sigma 0"),
    (["train", "ds", "--out", "r", "--device", "tpu"], None, "--device 'tpu'"),
    (["train", "nowhere", "--out", "r"], None, "nowhere"),
    (["train", "ds", "--out", "r", "--checkpoint-every", "0"], None, "--checkpoint-every"),
    (["train", "ds", "--out", "r", "--preview-every", "0"], None, "--preview-every"),
    (["neural", "train", "--inverse", "run", "--out", "n", "--checkpoint-every", "0"], None, "--checkpoint-every"),
    (["neural", "train", "--inverse", "run", "--out", "n", "--preview-every", "0"], None, "--preview-every"),
    (["neural", "eval", "nrun", "--n", "0"], None, "--n"),
    (["neural", "eval", "nrun", "--n", "-3"], None, "--n"),
    (["neural", "eval", "run"], None, "run is an inverse-graphics run (g3d train), not a neural run: pass the folder of"),
    (["eval", "nrun"], None, "nrun is a neural run (g3d neural train), not an inverse-graphics run"),
    (["neural", "render", "nrun", "0:0", "--out", "tt", "--views", "0"], None, "--views"),
    (["filter", "ds", "--min-area", "5"], None, "--min-area 5"),
    (["filter", "ds", "--min-score", "-1"], None, "--min-score -1"),
    (["filter", "ds", "--batch-size", "0"], None, "--batch-size"),
    (["filter", "ds", "--device", "tpu"], None, "--device 'tpu'"),
    (["convert", "nothere.pkl", "x.safetensors"], None, "nothere.pkl"),
    (["convert", str(FIXTURE), "nodir/x.safetensors"], None, "does not exist"),
    (["info", "list"], None, "not a g3d manifest"),
    (["info", "wrongtypes"], None, "samples"),
    (["info", "garbage"], None, "unreadable"),
    (["info", "spszero"], None, "samples_per_shard = 0 (at least 1)"),
    (["annotate", "push", "poses", "ds", "--url", "http://[::1", "--api-key", "k"], None, "[::1"),
    (["export-mesh", "run", "nope.png", "--out", "x.glb"], None, "nope.png"),
    (["export-mesh", "run", "ds/previews/contact_sheet.png", "--out", "x.stl"], None, "x.stl"),
    (["eval", "norun"], None, "norun"),
    (["eval", "run", "--device", "tpu"], None, "--device 'tpu'"),
    (["sfm-init", "nowhere"], None, "nowhere"),
    (["export", "trunc", "--format", "hf", "--out", "e"], None, "part-00000.parquet cannot be read"),
    (["export", "ds", "--format", "hf", "--out", "e", "--seed", "-1"], None, "--seed -1"),
    (["export", "ds", "--format", "hf", "--out", "badexp", "--overwrite"], None, "badexp/export.json is damaged"),
    (["pipeline", "p_str.toml"], None, "p_str.toml: [synth] samples = 'many': give a whole number"),
    (["pipeline", "p_float.toml"], None, "p_float.toml: [synth] samples = 2.5: give a whole number"),
    (["pipeline", "p_table.toml"], None, "p_table.toml: [synth] samples = a table"),
    (["pipeline", "p_bool.toml"], None, "p_bool.toml: [synth] views = True"),
    (["pipeline", "p_zero.toml"], None, "p_zero.toml: [synth] --samples must be at least 1"),
    (["pipeline", "p_list.toml"], None, "p_list.toml: [synth] viewpoint_layers = ['a']"),
    (["pipeline", "p_rules.toml"], None, "p_rules.toml: [filter.rules] min_area = 'big': give a number"),
    (["pipeline", "p_train.toml"], None, "p_train.toml: [train] steps = 'x'"),
    (["pipeline", "p_weights.toml"], None, "p_weights.toml: [train] weights = 3: give a table"),
]
if not __import__("torch").cuda.is_available():
    CASES += [(S + ["o", "--device", "cuda"], None, "no CUDA GPU"), (["train", "ds", "--out", "r", "--device", "cuda"], None, "no CUDA GPU")]


@pytest.mark.parametrize("args, env, needle", CASES, ids=[" ".join(a[:1] + a[-2:]) + (f" {e}" if e else "") for a, e, _ in CASES])
def test_bad_value_is_one_line_exit_2_and_writes_nothing(place, args, env, needle):
    before = _visible_files(place)
    r = _g3d(args, place, env)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines
    assert _visible_files(place) == before, sorted(map(str, _visible_files(place) - before))


def test_validate_names_a_manifest_with_zero_samples_per_shard(place):
    """g3d validate reports the damaged manifest as the folder's problem (exit 1, its contract), no ZeroDivisionError."""
    r = _g3d(["validate", "spszero"], place)
    assert r.returncode == 1 and "samples_per_shard = 0 (at least 1)" in r.stdout + r.stderr and "Traceback" not in r.stderr, r


def test_garbage_manifest_then_the_advised_overwrite_works(place):
    """The advice of the error for a garbage g3d.json (rerun with --overwrite) works."""
    r = _g3d(S + ["garbage"], place)
    assert r.returncode == 2 and "--overwrite" in r.stderr, r.stderr
    r = _g3d(S + ["garbage", "--overwrite"], place)
    assert r.returncode == 0, r.stderr
    assert _g3d(["info", "garbage"], place).returncode == 0


def test_ctrl_c_says_how_to_resume(tmp_path):
    """Ctrl-C (SIGINT) mid-synth: exit 130 with the one line that says how to resume; rerunning resumes."""
    import signal
    import time

    args = [sys.executable, "-m", "g3d.cli", "synth", "--samples", "400", "--views", "4", "--resolution", "64", "--candidates", "16",
            "--samples-per-shard", "8", "--out", str(tmp_path / "c")]
    # SIGINT back to its default in the child: a shell that runs the suite in the background ignores it, the
    # child inherits that, and Python then installs no KeyboardInterrupt handler at all.
    p = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "c" / "images").glob("part-*.parquet")):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err)
    assert "interrupted: rerun the same command to resume" in err and "Traceback" not in err, err


def test_convert_writes_the_usual_mode_of_a_new_file(tmp_path):
    """safetensors writes 0600; g3d convert gives the file 0666 minus the umask, like any new file."""
    from g3d.synth.checkpoints import convert_checkpoint

    out = convert_checkpoint(FIXTURE, tmp_path / "c.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_full_disk_is_one_line_with_the_fix(tmp_path, monkeypatch, capsys):
    """An OSError from deep inside a command (here: no space left) is one line naming it and the fix, exit 2."""
    import errno

    import g3d.cli
    import g3d.datasets.summary

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.parquet"))

    monkeypatch.setattr(g3d.datasets.summary, "summarize", full)
    monkeypatch.setattr(sys, "argv", ["g3d", "info", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        g3d.cli.main()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exc.value.code == 2 and len(err) == 1, err
    assert "No space left on device" in err[0] and "free some space and rerun the same command" in err[0], err


def test_a_damaged_filter_cache_is_dropped_and_recomputed(place, tmp_path):
    """An empty cache key or a truncated cache entry in .g3d-filter/ (a kill, a full disk): g3d filter drops
    it, says so in one line, and finishes (it failed forever before)."""
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(place / "ds", ds)
    assert _g3d(["filter", str(ds)], tmp_path).returncode == 0
    entry = ds / ".g3d-filter" / "part-00000.parquet"
    entry.write_bytes(entry.read_bytes()[:100])
    r = _g3d(["filter", str(ds)], tmp_path)
    assert r.returncode == 0 and "part-00000.parquet is damaged: dropped" in r.stderr, r.stderr
    (ds / ".g3d-filter" / "key.json").write_text("")
    r = _g3d(["filter", str(ds)], tmp_path)
    assert r.returncode == 0 and "key.json is damaged: the segmentation cache is dropped" in r.stderr, r.stderr


def _commands():
    """(command path, click command) of every g3d command, walking the CLI's click tree."""
    import typer

    import g3d.cli

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    return list(walk(typer.main.get_command(g3d.cli.app), []))


# A valid value of an option could start a long job: every command is pointed at inputs that are missing
# (arguments and required options "nowhere"; synth a missing --viewpoints file, annotate serve a missing
# label-studio command), so it fails fast after its options are checked -- except
# `g3d train`, which is also run on the small dataset for one step, so options checked only once training
# runs (--checkpoint-every 0) are reached too.
SWEEP_VALUES = ("0", "-1", "1000000000000", "abc")
# Known failures, strict (none left: train --checkpoint-every / --preview-every 0 and neural render --views 10^12 now fail at the boundary).
SWEEP_XFAIL: dict[tuple[str, str, str], str] = {}
# g3d validate exits 1 for a folder with problems (here: the missing one, once --sample is valid).
SWEEP_CODES = {"validate": (0, 1, 2)}


def _sweep_cases():
    cases = []
    for path, cmd in _commands():
        base = list(path)
        for p in cmd.params:
            if p.required:
                base += ["nowhere"] if p.param_type_name == "argument" else [p.opts[0], "nowhere"]
        base += {"synth": ["--out", "sweep-out", "--viewpoints", "nowhere.parquet"], "annotate serve": ["--label-studio", "nowhere"]}.get(" ".join(path), [])
        bases = [(" ".join(path), base)]
        if path == ["train"]:
            bases.append(("train ds", ["train", "ds", "--out", "sweep-run", "--steps", "1", "--resolution", "16", "--batch-size", "1",
                                       "--tex-res", "16"]))
        for p in cmd.params:
            if p.param_type_name != "option" or p.type_descriptor.annotation not in (int, float):
                continue
            for name, args in bases:
                for value in SWEEP_VALUES:
                    if name == "train ds" and value == "1000000000000":
                        continue  # a valid huge size would start a huge job (resolution: issue 25, another branch)
                    why = SWEEP_XFAIL.get((name, p.opts[0], value))
                    marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
                    cases.append(pytest.param(args, p.opts[0], value, SWEEP_CODES.get(name, (0, 2)), id=f"{name} {p.opts[0]} {value}", marks=marks))
    return cases


@pytest.mark.parametrize("args, option, value, codes", _sweep_cases())
def test_every_numeric_option_at_0_minus_1_huge_and_wrong_type(place, monkeypatch, capsys, args, option, value, codes):
    """Exit 0 or 2 (never 1, a bug), no traceback, at most one error line, for every numeric option of every
    command (generated from the CLI's own parameters), run in-process."""
    import shutil

    import g3d.cli

    monkeypatch.chdir(place)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    shutil.rmtree(place / "sweep-run", ignore_errors=True)
    monkeypatch.setattr(sys, "argv", ["g3d", *args, option, value])
    with pytest.raises(SystemExit) as exc:
        g3d.cli.main()
    text = capsys.readouterr().err
    err = [line for line in text.splitlines() if line.strip().startswith("error")]
    assert exc.value.code in codes and "a bug in g3d" not in text, (exc.value.code, err)
    assert len(err) <= 1 and "Traceback" not in text, text
