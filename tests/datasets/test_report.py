"""``g3d report``: the page opened in headless Chromium (Debian's ``chromium``; ``make test`` installs it).

No failed image loads, no script errors, a screenshot that is not blank. Without Chromium the test fails
naming how to install it; ``G3D_SKIP_CHROMIUM=1`` skips it instead (an explicit opt-out)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from g3d.datasets.report import write_report
from g3d.errors import DatasetError
from g3d.pipeline.config import load
from g3d.pipeline.run import run_pipeline


def _chromium() -> str:
    if os.environ.get("G3D_SKIP_CHROMIUM") == "1":
        pytest.skip("G3D_SKIP_CHROMIUM=1: the headless-browser check of g3d report is skipped on request")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("no chromium for the report test: `apt-get install chromium` (Debian; `make test` does it), or G3D_SKIP_CHROMIUM=1 to skip")
    return exe


@pytest.mark.slow
def test_report_opens_in_headless_chromium_with_every_image_loaded(tmp_path):
    exe = _chromium()
    (tmp_path / "p.toml").write_text("folder = 'car'\n[synth]\nsamples = 8\nviews = 4\nresolution = 64\ncandidates = 16\n"
                                     "[train]\nout = 'run'\nsteps = 4\nresolution = 32\nbatch_size = 2\ntex_res = 16\nholdout = 0.25\n")
    run_pipeline(load(tmp_path / "p.toml"))
    page = write_report(tmp_path / "car", tmp_path / "report", tmp_path / "run")
    text = page.read_text()
    for section in ("Contact sheet", "Kept fraction per view", "Camera rig", "Annotations", "Training", "Held-out IoU per view", "Dataset card"):
        assert section in text, section
    assert "http://" not in text and "https://" not in text  # nothing fetched
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run(args + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(0)))
    assert attrs.get("images-ok") == "true" and int(attrs["images"]) >= 2 and attrs.get("errors") == "", attrs
    shot = tmp_path / "shot.png"
    subprocess.run(args + ["--window-size=1000,1400", f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    from g3d.datasets.schema import decode_png

    img = decode_png(shot.read_bytes())
    assert img.std() > 20 and (img < 250).mean() > 0.2  # not blank: the contact sheet fills much of the first screen


def test_a_missing_image_is_what_the_page_check_reports(tmp_path):
    """The page's own check is what the browser test reads: an image that does not load makes it false."""
    exe = _chromium()
    from g3d.datasets.report import CHECK

    page = tmp_path / "index.html"
    page.write_text(f"<!doctype html><html><head>{CHECK}</head><body><img src='missing.png'></body></html>")
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert 'data-images-ok="false"' in dom.stdout


def test_a_foreign_out_folder_is_refused(tmp_path):
    from g3d.synth.sampling import SynthConfig, run_synth

    run_synth(SynthConfig(out=tmp_path / "car", samples=2, views=2, resolution=32, candidates=8))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty and holds no earlier report"):
        write_report(tmp_path / "car", tmp_path / "mine")
    assert Path(tmp_path / "mine" / "notes.txt").read_text() == "x"
    write_report(tmp_path / "car", tmp_path / "rep")
    assert (tmp_path / "rep" / "index.html").is_file() and "Camera rig" in (tmp_path / "rep" / "index.html").read_text()
    assert np.all([not p.name.startswith(".") for p in tmp_path.iterdir()])
    # An earlier report is replaced whole: what it held and the new one does not is gone.
    (tmp_path / "rep" / "old_picture.png").write_bytes(b"x")
    write_report(tmp_path / "car", tmp_path / "rep")
    assert (tmp_path / "rep" / "index.html").is_file() and not (tmp_path / "rep" / "old_picture.png").exists()
    assert np.all([not p.name.startswith(".") for p in tmp_path.iterdir()])
