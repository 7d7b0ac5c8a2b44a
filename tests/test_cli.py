import subprocess
import sys


def g3d(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "g3d.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_is_cheap_and_lists_commands():
    code = "import sys, g3d.cli; print(sorted(m for m in ('torch', 'pyarrow', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
    r = g3d("--help")
    assert r.returncode == 0 and "synth" in r.stdout and "info" in r.stdout
    r = g3d("synth", "--help")
    assert "--views" in r.stdout and "--shard" in r.stdout and "--viewpoints" in r.stdout


def test_synth_then_info(tmp_path):
    out = tmp_path / "car"
    r = g3d("synth", "--class", "car", "--views", "3", "--samples", "2", "--resolution", "40", "--candidates", "12", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"contact sheet: {out}/previews/contact_sheet.png" in r.stderr.replace("\n", "")
    r = g3d("info", str(out))
    assert r.returncode == 0
    assert "3 views x 2 samples = 6 rows" in r.stdout and "1/1 complete" in r.stdout


def test_default_out_is_g3d_data_class(tmp_path):
    r = g3d("synth", "--views", "2", "--samples", "1", "--resolution", "32", "--candidates", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g3d-data" / "car" / "g3d.json").is_file()


def test_bad_input_is_one_line_with_a_fix_and_nonzero_exit(tmp_path):
    for args, needle in [
        (("synth", "--class", "plane"), "choose one of bird, car, horse"),
        (("synth", "--shard", "3/2", "--out", str(tmp_path / "x")), "--shard 3/2"),
        (("synth", "--generator", str(tmp_path / "missing.pkl"), "--out", str(tmp_path / "y")), "missing.pkl"),
        (("info", str(tmp_path / "nowhere")), "no g3d dataset"),
    ]:
        r = g3d(*args)
        assert r.returncode != 0, args
        assert needle in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert len([line for line in r.stderr.strip().splitlines() if line.strip()]) <= 2, r.stderr


def test_convert_then_synth_with_the_converted_checkpoint(stylegan_fixtures, tmp_path):
    dst = tmp_path / "g.safetensors"
    r = g3d("convert", str(stylegan_fixtures / "rosinality_small.safetensors"), str(dst))
    assert r.returncode == 0, r.stderr
    r = g3d("synth", "--generator", str(dst), "--views", "3", "--samples", "1", "--candidates", "12", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    r = g3d("info", str(tmp_path / "o"))
    assert "64x64 px" in r.stdout and "truth       no" in r.stdout


def test_a_pickle_that_runs_code_is_refused_in_one_line(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "network.pkl"
    bad.write_bytes(pickle.dumps({"G_ema": Evil()}))
    r = g3d("synth", "--generator", str(bad), "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and "network.pkl" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()
