import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from g3d.datasets import folder as dsf
from g3d.datasets import io as dsio
from g3d.datasets.manifest import read_manifest
from g3d.errors import UsageError
from g3d.synth.sampling import SynthConfig, run_synth

SMALL = dict(samples=5, views=4, resolution=48, batch_size=3, samples_per_shard=2, candidates=16)


def _cfg(out, **kw):
    args = dict(SMALL)
    args.update(kw)
    return SynthConfig(out=Path(out), **args)


def _rows(folder) -> pd.DataFrame:
    parts = dsf.shard_paths(folder)
    df = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    return df.sort_values(["sample_id", "view_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "car"
    report = run_synth(_cfg(out))
    return out, report


def test_folder_layout_and_counts(reference):
    out, report = reference
    assert report.rows_written == 20 and report.shards_written == [0, 1, 2]
    for name in ("g3d.json", "viewpoints.parquet", "samples.parquet", "README.md", "previews/contact_sheet.png"):
        assert (out / name).is_file(), name
    df = _rows(out)
    assert len(df) == 20 and not df.duplicated(["sample_id", "view_id"]).any()
    assert sorted(df.sample_id.unique()) == list(range(5)) and sorted(df.view_id.unique()) == list(range(4))
    vp = pq.read_table(out / "viewpoints.parquet").to_pandas()
    assert len(vp) == 4 and len(vp.code[0]) == 4 * 64
    assert len(pq.read_table(out / "samples.parquet")) == 5


def test_view_columns_share_one_camera_and_rows_keep_their_object(reference):
    out, _ = reference
    df = _rows(out)
    vp = pq.read_table(out / "viewpoints.parquet").to_pandas()
    for v, col in df.groupby("view_id"):
        K = np.stack(col.K.to_numpy())
        R = np.stack(col.R.to_numpy())
        t = np.stack(col.t.to_numpy())
        assert (K == K[0]).all() and (R == R[0]).all() and (t == t[0]).all()
        assert (col.azimuth_deg == vp.gt_azimuth_deg[v]).all()
    cams = {v: tuple(np.round(col.R.iloc[0], 6)) for v, col in df.groupby("view_id")}
    assert len(set(cams.values())) == 4  # and the views differ
    gt_cols = [c for c in df.columns if c.startswith("gt_") and "light" not in c and "sky" not in c]
    assert "gt_length" in gt_cols and "gt_paint_hue" in gt_cols
    for s, row in df.groupby("sample_id"):
        for c in gt_cols:
            assert row[c].nunique() == 1, (s, c)
    assert df.groupby("view_id").gt_length.nunique().min() > 1  # objects differ down a column


def test_images_masks_decode_and_match_manifest(reference):
    from g3d.datasets.schema import decode_png

    out, _ = reference
    df = _rows(out)
    img = decode_png(df.image[0]["bytes"])
    mask = decode_png(df["mask"][0]["bytes"], grey=True)
    assert img.shape == (48, 48, 3) and mask.shape == (48, 48)
    assert abs((mask > 127).mean() - df.mask_area[0]) < 1e-6
    assert df.keep.all() and df.reject_reason.isna().all()
    assert df.image[0]["path"] == "0000000_000.png"


def test_bbox_is_x0_y0_x1_y1_of_the_object_mask(reference):
    """The schema's bbox order, checked against the mask pixels of every row (a car is wider than tall in
    most views, so [y0, x0, y1, x1] cannot pass)."""
    from g3d.datasets.schema import decode_png

    out, _ = reference
    df = _rows(out)
    swapped_would_pass = 0
    for m, box in zip(df["mask"], df.bbox):
        obj = decode_png(m["bytes"], grey=True) == 255
        ys, xs = np.nonzero(obj)
        expect = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert list(box) == expect, (list(box), expect)
        swapped_would_pass += list(box) == [expect[1], expect[0], expect[3], expect[2]]
    assert swapped_would_pass < len(df) // 2


def test_rows_are_written_sample_major(reference):
    """Within each shard (read as written, unsorted), rows run sample by sample, every view of a sample in order."""
    out, _ = reference
    seen = []
    for p in dsf.shard_paths(out):
        t = pq.read_table(p, columns=["sample_id", "view_id"]).to_pandas()
        pairs = list(zip(t.sample_id, t.view_id))
        assert pairs == sorted(pairs), pairs
        assert pairs == [(s, v) for s in sorted(set(t.sample_id)) for v in range(4)], pairs
        seen += pairs
    assert seen == [(s, v) for s in range(5) for v in range(4)]


def test_same_arguments_give_byte_identical_images(reference, tmp_path):
    out, _ = reference
    run_synth(_cfg(tmp_path / "again"))
    a, b = _rows(out), _rows(tmp_path / "again")
    assert all(x["bytes"] == y["bytes"] for x, y in zip(a.image, b.image))
    assert all(x["bytes"] == y["bytes"] for x, y in zip(a["mask"], b["mask"]))


def test_two_shards_give_the_rows_of_one_run(reference, tmp_path):
    out, _ = reference
    r0 = run_synth(_cfg(tmp_path / "s", shard="0/2"))
    r1 = run_synth(_cfg(tmp_path / "s", shard="1/2"))
    assert r0.shards_written == [0, 2] and r1.shards_written == [1]
    a, b = _rows(out), _rows(tmp_path / "s")
    pd.testing.assert_frame_equal(a.drop(columns=["image", "mask"]), b.drop(columns=["image", "mask"]))
    assert all(x["bytes"] == y["bytes"] for x, y in zip(a.image, b.image))


def test_torchrun_environment_picks_the_shard(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    r = run_synth(_cfg(tmp_path / "t"))
    assert r.shards_written == [1]


def test_rerun_resumes_and_different_run_is_refused(reference, tmp_path):
    out = tmp_path / "r"
    run_synth(_cfg(out))
    (out / "images" / dsf.shard_name(1)).unlink()
    again = run_synth(_cfg(out))
    assert again.resumed and again.shards_written == [1] and again.shards_skipped == [0, 2]
    pd.testing.assert_frame_equal(_rows(out).drop(columns=["image", "mask"]), _rows(reference[0]).drop(columns=["image", "mask"]))
    before = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    with pytest.raises(UsageError, match="different run.*seed.*--overwrite"):
        run_synth(_cfg(out, seed=1))
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == before  # nothing touched
    (out / "annotations").mkdir()
    (out / "annotations" / "pose_bins.parquet").write_bytes(b"hours of clicks")
    (out / "cameras.parquet").write_bytes(b"solved cameras")
    said = []
    run_synth(_cfg(out, seed=1, overwrite=True), log=said.append)
    assert not _rows(out).image[0]["bytes"] == _rows(reference[0]).image[0]["bytes"]
    # People's labels are moved aside, named in the output, never deleted.
    assert not (out / "annotations").exists() and not (out / "cameras.parquet").exists()
    kept = list((out / ".g3d-kept").iterdir())
    assert len(kept) == 1 and (kept[0] / "annotations" / "pose_bins.parquet").read_bytes() == b"hours of clicks"
    assert (kept[0] / "cameras.parquet").read_bytes() == b"solved cameras"
    assert any("removed" in m and "images" in m for m in said)
    assert any("kept annotations, cameras.parquet" in m and str(kept[0]) in m for m in said)


def test_resume_keeps_only_whole_shards_of_this_run(reference, tmp_path):
    """A shard with the wrong row count, or one written by another run (the manifest removed and synth
    rerun with another seed), is redone, never adopted; g3d info does not count it either."""
    from g3d.datasets.summary import summarize

    out = tmp_path / "r"
    run_synth(_cfg(out))
    images = out / "images"
    # Shard 1 (2 samples, 8 rows) replaced by shard 2's bytes (1 sample, 4 rows).
    (images / dsf.shard_name(1)).write_bytes((images / dsf.shard_name(2)).read_bytes())
    again = run_synth(_cfg(out))
    assert again.shards_written == [1] and again.shards_skipped == [0, 2]
    pd.testing.assert_frame_equal(_rows(out).drop(columns=["image", "mask"]), _rows(reference[0]).drop(columns=["image", "mask"]))
    # Another run's shards under this run's manifest.
    other = tmp_path / "other"
    run_synth(_cfg(other, seed=7))
    for k in (0, 2):
        (images / dsf.shard_name(k)).write_bytes((other / "images" / dsf.shard_name(k)).read_bytes())
    info = summarize(out)
    assert "1/3 complete" in info and f"another run's (redone by that rerun): {dsf.shard_name(0)}, {dsf.shard_name(2)}" in info, info
    (out / "g3d.json").unlink()
    third = run_synth(_cfg(out))
    assert third.shards_written == [0, 2] and third.shards_skipped == [1]
    pd.testing.assert_frame_equal(_rows(out), _rows(reference[0]))


def test_a_run_killed_after_claiming_its_manifest_finishes_on_resume(tmp_path):
    """The manifest is claimed before anything else is written: a run killed right after (only g3d.json
    there) writes viewpoints.parquet, samples.parquet and every shard on resume, as an uninterrupted run."""
    out = tmp_path / "k"
    run_synth(_cfg(out))
    whole = {name: pq.read_table(out / name) for name in (dsf.VIEWPOINTS, dsf.SAMPLES)}
    rows = _rows(out)
    for p in out.iterdir():
        if p.name != dsf.MANIFEST:
            dsio.remove(p)
    again = run_synth(_cfg(out))
    assert again.resumed and again.shards_written == [0, 1, 2]
    for name, table in whole.items():
        assert pq.read_table(out / name).equals(table), name
    pd.testing.assert_frame_equal(_rows(out), rows)


def test_claim_manifest_is_once_and_checks_the_run(tmp_path):
    from dataclasses import replace

    from g3d.datasets.manifest import Manifest

    m = Manifest(class_name="car", views=2, height=32, width=32, fingerprint={"seed": 0})
    assert dsf.claim_manifest(tmp_path, m) is True
    assert dsf.claim_manifest(tmp_path, replace(m, g3d_version="other")) is False  # the same run: goes on, file kept
    assert read_manifest(tmp_path).g3d_version is None
    with pytest.raises(UsageError, match=r"holds a different run \(differs in: seed\)"):
        dsf.claim_manifest(tmp_path, replace(m, fingerprint={"seed": 7}))
    assert [p.name for p in tmp_path.iterdir()] == [dsf.MANIFEST]  # no temporary left


@pytest.mark.parametrize("attempt", range(3))
def test_two_workers_of_different_runs_started_together_one_writes(tmp_path, attempt):
    """``--shard 0/2 --seed 0`` and ``--shard 1/2 --seed 7`` started at the same moment on one folder (as
    workers on two machines): exactly one writes, the other is refused in one line before writing anything,
    and the folder holds one run."""
    from g3d.datasets.validate import validate_folder

    out = tmp_path / "w"
    args = [sys.executable, "-m", "g3d.cli", "synth", "--views", "2", "--samples", "4", "--resolution", "32", "--candidates", "8",
            "--samples-per-shard", "1", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    procs = [subprocess.Popen(args + ["--shard", f"{i}/2", "--seed", str(seed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=env) for i, seed in ((0, 0), (1, 7))]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    lines = [line for line in loser.splitlines() if line.strip()]
    assert len(lines) == 1 and "holds a different run (differs in: seed)" in lines[0], loser
    winner = 0 if results[0][0] == 0 else 1
    run = read_manifest(out).run_id
    shards = dsf.shard_paths(out)
    assert [p.name for p in shards] == [dsf.shard_name(k) for k in (winner, winner + 2)]
    assert all(pq.read_schema(p).metadata[dsf.RUN_KEY] == run.encode() for p in shards)
    rep = validate_folder(out)
    assert not rep.ok and all("missing" in x or "rows in all" in x for x in rep.problems), rep.problems


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path):
    import json
    import socket

    out = tmp_path / "w"
    out.mkdir()
    lock = out / ".g3d-lock-synth-0of1"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.write_text(json.dumps({"pid": live.pid, "host": socket.gethostname(), "command": "g3d synth", "started": "earlier"}))
        with pytest.raises(UsageError, match=rf"being written by g3d synth \(pid {live.pid} .*wait for it"):
            run_synth(_cfg(out))
        assert [p.name for p in out.iterdir()] == [lock.name]  # nothing written
        # --overwrite removes what every writer shares: refused while another shard set's writer is live.
        lock.rename(out / ".g3d-lock-synth-1of2")
        with pytest.raises(UsageError, match="being written by g3d synth"):
            run_synth(_cfg(out, overwrite=True))
        (out / ".g3d-lock-synth-1of2").rename(lock)
    finally:
        live.kill()
        live.wait()
    said = []
    run_synth(_cfg(out), log=said.append)  # its writer is gone: the lock is stale, taken over, and said so
    assert any("stale lock" in m for m in said), said
    assert not list(out.glob(".g3d-lock-*")) and len(_rows(out)) == 20


def test_batch_size_is_not_part_of_a_builtin_run_but_is_of_a_stylegan_run(reference, stylegan_fixtures, tmp_path):
    """The built-in generator's bytes do not depend on --batch-size, so another batch size resumes (and
    gives the same bytes); a StyleGAN2 network's do (batched convolutions round differently), so there it
    is part of the run and another batch size is refused."""
    out = tmp_path / "b"
    run_synth(_cfg(out))
    (out / "images" / dsf.shard_name(1)).unlink()
    again = run_synth(_cfg(out, batch_size=7))
    assert again.resumed and again.shards_written == [1]
    pd.testing.assert_frame_equal(_rows(out), _rows(reference[0]))
    # A folder written when the fingerprint still held batch_size resumes, and its manifest is brought up to date.
    import json

    m = json.loads((out / "g3d.json").read_text())
    m["fingerprint"]["batch_size"] = 3
    (out / "g3d.json").write_text(json.dumps(m))
    said = []
    assert run_synth(_cfg(out), log=said.append).resumed and any("fingerprint updated" in s for s in said)
    assert "batch_size" not in json.loads((out / "g3d.json").read_text())["fingerprint"]
    ckpt = str(stylegan_fixtures / "rosinality_small.safetensors")
    run_synth(SynthConfig(out=tmp_path / "s", generator=ckpt, views=2, samples=2, candidates=8, batch_size=1))
    with pytest.raises(UsageError, match="differs in: batch_size"):
        run_synth(SynthConfig(out=tmp_path / "s", generator=ckpt, views=2, samples=2, candidates=8, batch_size=4))
    run_synth(SynthConfig(out=tmp_path / "s4", generator=ckpt, views=2, samples=2, candidates=8, batch_size=4))
    a, b = _rows(tmp_path / "s"), _rows(tmp_path / "s4")
    assert any(x["bytes"] != y["bytes"] for x, y in zip(a.image, b.image))  # why it stays in the fingerprint


def test_viewpoints_file_is_used_exactly(reference, tmp_path):
    out, _ = reference
    vp = pq.read_table(out / "viewpoints.parquet")
    subset = tmp_path / "subset.parquet"
    pq.write_table(vp.slice(1, 2), subset)
    r = run_synth(_cfg(tmp_path / "v", views=None, viewpoints=str(subset)))
    assert r.views == 2
    got = pq.read_table(tmp_path / "v" / "viewpoints.parquet").to_pandas()
    np.testing.assert_array_equal(np.stack(got.code), np.stack(vp.slice(1, 2).to_pandas().code))
    # Rows of a view column carry the file's camera.
    df = _rows(tmp_path / "v")
    ref = _rows(out)
    for new_v, old_v in ((0, 1), (1, 2)):
        assert df[df.view_id == new_v].azimuth_deg.iloc[0] == ref[ref.view_id == old_v].azimuth_deg.iloc[0]


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(class_name="plane"), "unknown class"),
        (dict(views=5000, candidates=None), "more than the proposal can fill"),
        (dict(shard="3/2"), "--shard 3/2"),
        (dict(shard="x"), "not of the form i/N"),
        (dict(samples=0), "--samples"),
        (dict(truncation=1.5), "--truncation"),
        (dict(resolution=4), "resolution"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, kw, match):
    with pytest.raises(UsageError, match=match) as info:
        run_synth(_cfg(tmp_path / "bad", **kw))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad" / "images").exists()


def test_viewpoints_file_of_another_generator_is_refused(tmp_path):
    import pyarrow as pa

    bad = tmp_path / "vp.parquet"
    pq.write_table(pa.table({"view_id": [0], "layers": [[0, 1, 2, 3]], "code": [[0.0] * 4 * 512], "code_shape": [[4, 512]]}), bad)
    with pytest.raises(UsageError, match="w_dim is 64"):
        run_synth(_cfg(tmp_path / "o", views=None, viewpoints=str(bad)))


def test_bad_viewpoint_files_are_one_line_errors_and_write_nothing(reference, tmp_path):
    import pyarrow as pa

    good = pq.read_table(reference[0] / "viewpoints.parquet")
    nan_codes = good.column("code").to_pylist()
    nan_codes[1] = [float("nan")] * len(nan_codes[1])
    cases = {
        "not finite \\(NaN or inf\\)": good.set_column(good.schema.get_field_index("code"), "code", pa.array(nan_codes, good.schema.field("code").type)),
        "holds no views": good.slice(0, 0),
        "hold 7 values but code_shape says 4 x 64 = 256": pa.table({"view_id": [0], "layers": [[0, 1, 2, 3]], "code": [[0.0] * 7], "code_shape": [[4, 64]]}),
    }
    for k, (needle, table) in enumerate(cases.items()):
        path = tmp_path / f"vp{k}.parquet"
        pq.write_table(table, path)
        with pytest.raises(UsageError, match=needle) as info:
            run_synth(_cfg(tmp_path / f"o{k}", views=None, viewpoints=str(path)))
        assert "\n" not in str(info.value) and not (tmp_path / f"o{k}").exists()


def test_foreign_folder_is_refused_even_with_overwrite(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(UsageError, match="not a g3d dataset"):
            run_synth(_cfg(out, overwrite=overwrite))
    assert (out / "thesis.tex").read_text() == "precious"


@pytest.mark.slow
def test_sigkill_midway_then_rerun_gives_the_uninterrupted_rows(reference, tmp_path):
    out = tmp_path / "killed"
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "import g3d.synth.sampling as s\n"
        "orig = s._ShardSink.end\n"
        "def slow_end(self):\n"
        "    orig(self)\n"
        "    print('shard done', flush=True)\n"
        "    time.sleep(30)\n"
        "s._ShardSink.end = slow_end\n"
        f"s.run_synth(s.SynthConfig(out=Path({str(out)!r}), **{SMALL!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "shard done"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert len(dsf.shard_paths(out)) == 1  # one whole shard, no half-written one under a final name
    r = run_synth(_cfg(out))
    assert r.resumed and r.shards_skipped == [0] and r.shards_written == [1, 2]
    assert not [p for p in (out / "images").iterdir() if p.name.startswith(".")]
    a, b = _rows(reference[0]), _rows(out)
    pd.testing.assert_frame_equal(a.drop(columns=["image", "mask"]), b.drop(columns=["image", "mask"]))
    assert all(x["bytes"] == y["bytes"] for x, y in zip(a.image, b.image))


def test_stylegan2_checkpoint_end_to_end_with_frozen_viewpoint_rows(stylegan_fixtures, tmp_path):
    """`g3d synth --generator FIXTURE`: every image of a view column is synthesis(ws with that view's code)."""
    import torch

    from g3d.datasets.schema import decode_png
    from g3d.synth.checkpoints import load_generator

    ckpt = stylegan_fixtures / "nvlabs_small.safetensors"
    out = tmp_path / "sg"
    r = run_synth(SynthConfig(out=out, generator=str(ckpt), views=39, samples=3, batch_size=16, samples_per_shard=2, candidates=80))
    assert r.views == 39 and r.rows_written == 117
    df = _rows(out)
    assert df["mask"].isna().all() and "K" not in df.columns  # a real GAN knows no ground truth
    codes = np.stack(pq.read_table(out / "viewpoints.parquet").to_pandas().code).reshape(39, 4, -1)
    samples = pq.read_table(out / "samples.parquet").to_pandas()
    G = load_generator(str(ckpt))
    z = torch.tensor(np.stack(samples.z), dtype=torch.float32)
    with torch.no_grad():
        content = G.mapping(z, truncation_psi=0.7)
        for _, row in df.iloc[::7].iterrows():
            ws = content[row.sample_id : row.sample_id + 1].clone()
            ws[0, :4] = torch.tensor(codes[row.view_id])
            img = G.synthesis(ws, noise_mode="const")
            want = ((img.clamp(-1, 1) + 1) * 127.5).round()[0].permute(1, 2, 0).numpy()
            got = decode_png(row.image["bytes"]).astype(np.float64)
            assert np.abs(got - want).max() <= 1.0, (row.sample_id, row.view_id)
    manifest = __import__("json").loads((out / "g3d.json").read_text())
    assert manifest["generator"]["sha256"] and manifest["width"] == 64 and not manifest["ground_truth"]


def test_crop_of_a_checkpoint_output(stylegan_fixtures, tmp_path):
    from g3d.datasets.schema import decode_png

    ckpt = stylegan_fixtures / "rosinality_small.safetensors"
    run_synth(SynthConfig(out=tmp_path / "c", generator=str(ckpt), views=2, samples=1, candidates=8, crop=(8, 56, 0, 64)))
    img = decode_png(_rows(tmp_path / "c").image[0]["bytes"])
    assert img.shape == (48, 64, 3)
    with pytest.raises(UsageError, match="--crop"):
        run_synth(SynthConfig(out=tmp_path / "d", generator=str(ckpt), views=2, samples=1, candidates=8, crop=(0, 100, 0, 64)))
    with pytest.raises(UsageError, match="--resolution 128"):
        run_synth(SynthConfig(out=tmp_path / "e", generator=str(ckpt), views=2, samples=1, candidates=8, resolution=128))


def test_car_preset_crops_a_512px_checkpoint_to_512x384(tmp_path):
    """Car config-f draws 512x512 with black bars: the car preset keeps rows 64:448 by default."""
    import torch
    from safetensors.torch import save_file

    from g3d.datasets.schema import decode_png
    from g3d.synth.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    cfg = StyleGAN2Config(z_dim=16, w_dim=16, resolution=512, channels={r: 4 for r in (4, 8, 16, 32, 64, 128, 256, 512)}, mapping_layers=2)
    torch.manual_seed(0)
    G = StyleGAN2Generator(cfg)
    assert G.num_ws == 16
    path = tmp_path / "tiny512.safetensors"
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(path), metadata={"g3d_config": cfg.to_json()})
    r = run_synth(SynthConfig(out=tmp_path / "o", generator=str(path), views=2, samples=1, candidates=8, batch_size=2))
    img = decode_png(_rows(tmp_path / "o").image[0]["bytes"])
    assert img.shape == (384, 512, 3) and r.rows_written == 2
    run_synth(SynthConfig(out=tmp_path / "p", generator=str(path), views=2, samples=1, candidates=8, crop=None))
    assert decode_png(_rows(tmp_path / "p").image[0]["bytes"]).shape == (512, 512, 3)
