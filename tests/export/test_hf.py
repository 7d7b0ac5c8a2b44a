"""``g3d export --format hf``: loaded with Hugging Face ``datasets`` itself, splits by object, cameras checked."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from g3d.errors import UsageError
from g3d.export.hf import export_hf
from g3d.export.rows import ExportConfig
from g3d.export.splits import assign_splits, parse_split


@pytest.fixture(scope="module")
def cars(make_cars):
    return make_cars(20, 4, 8)


def test_load_dataset_opens_the_export_as_it_is(cars, tmp_path):
    from datasets import load_dataset

    rep = export_hf(ExportConfig(folder=cars, out=tmp_path / "hf", seed=3))
    # A cache of our own: datasets serves an earlier load of a folder with the same name and files from
    # its cache (seen here: a test re-exporting with a bug read the previous export's cameras).
    ds = load_dataset(str(tmp_path / "hf"), cache_dir=str(tmp_path / "hf-cache"))
    assert set(ds) == {"train", "val", "test"}
    assert {s: len(ds[s]) for s in ds} == rep.rows and sum(rep.rows.values()) == 80 and rep.objects == {"train": 16, "val": 2, "test": 2}
    row = ds["train"][0]
    assert row["image"].size == (64, 64) and row["image"].mode == "RGB" and row["mask"].mode in ("L", "1")
    # Splits by object: no object in two splits.
    objs = {s: set(ds[s]["sample_id"]) for s in ds}
    assert not (objs["train"] & objs["val"]) and not (objs["train"] & objs["test"]) and not (objs["val"] & objs["test"])
    # The camera convention the card states: every row's keypoints project where the generator drew them.
    import pandas as pd
    import pyarrow.parquet as pq

    src = pd.concat([pq.read_table(p).to_pandas() for p in sorted((cars / "images").glob("part-*.parquet"))]).set_index(["sample_id", "view_id"])
    for r in ds["train"].select_columns(["sample_id", "view_id", "K", "R", "t"]):
        K, R, t = (np.reshape(r[k], s) for k, s in (("K", (3, 3)), ("R", (3, 3)), ("t", (3,))))
        truth = src.loc[(r["sample_id"], r["view_id"])]
        x = (K @ (R @ np.reshape(truth.keypoints_3d, (-1, 3)).T + t[:, None])).T
        np.testing.assert_allclose(x[:, :2] / x[:, 2:], np.reshape(truth.keypoints_2d, (-1, 2)), atol=1e-6)
    truth = src.loc[(row["sample_id"], row["view_id"])]
    # The mask is the object: 0/255, and its area is the row's.
    m = np.asarray(row["mask"])
    assert set(np.unique(m)) <= {0, 255} and abs((m == 255).mean() - truth.mask_area) < 1e-9
    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\n") and "x_cam = R @ X + t" in card and "zhang2021image" in card
    assert "g3d synth --class car --views 4 --samples 20 --generator builtin --seed 0" in card and "Filter: not run" in card


def test_the_same_input_gives_the_same_bytes_and_a_foreign_folder_is_refused(cars, tmp_path):
    a = export_hf(ExportConfig(folder=cars, out=tmp_path / "a"))
    b = export_hf(ExportConfig(folder=cars, out=tmp_path / "b"))
    digest = lambda root: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "data").iterdir())}  # noqa: E731
    assert a.files == b.files and digest(tmp_path / "a") == digest(tmp_path / "b")
    with pytest.raises(UsageError, match="add --overwrite"):
        export_hf(ExportConfig(folder=cars, out=tmp_path / "a"))
    export_hf(ExportConfig(folder=cars, out=tmp_path / "a", overwrite=True, seed=9))
    assert json.loads((tmp_path / "a" / "export.json").read_text())["seed"] == 9
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an export of this dataset"):
        export_hf(ExportConfig(folder=cars, out=tmp_path / "other", overwrite=True))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_split_parsing_and_assignment():
    assert parse_split("train=0.7,test=0.3") == {"train": 0.7, "test": 0.3}
    for bad, msg in (("train=0.7,test=0.2", "sum to 0.9"), ("train", "NAME=FRACTION"), ("a=0.5,a=0.5", "twice"), ("train=-1,x=2", "NAME=FRACTION")):
        with pytest.raises(UsageError, match=msg):
            parse_split(bad)
    ids = np.repeat(np.arange(50), 3)
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert sorted(a) == list(range(50)) and [list(a.values()).count(s) for s in ("train", "val", "test")] == [40, 5, 5]
    assert a == assign_splits(ids[::-1], {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)  # order of rows does not matter
    assert a != assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=2)


def test_cli_export_and_its_one_line_errors(cars, tmp_path):
    import subprocess
    import sys

    def g3d(*args):
        return subprocess.run([sys.executable, "-m", "g3d.cli", *map(str, args)], capture_output=True, text=True)

    ok = g3d("export", cars, "--format", "hf", "--out", tmp_path / "hf", "--split", "train=0.5,test=0.5")
    assert ok.returncode == 0, ok.stderr
    assert "train 40 images of 10 objects, test 40 images of 10 objects" in ok.stdout
    for args, msg in ((["--format", "nerf"], "not available"), (["--format", "hf", "--split", "train=0.5"], "sum to 0.5")):
        r = g3d("export", cars, "--out", tmp_path / "x", *args)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x").exists()


def test_no_kept_rows_and_no_cameras_are_one_line_errors_leaving_nothing(cars, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from g3d.errors import DatasetError

    d = tmp_path / "car"
    shutil.copytree(cars, d)
    for p in sorted((d / "images").glob("part-*.parquet")):
        t = pq.read_table(p)
        pq.write_table(t.set_column(t.column_names.index("keep"), "keep", pa.array([False] * t.num_rows)), p)
    with pytest.raises(DatasetError, match="no kept rows: loosen the filter"):
        export_hf(ExportConfig(folder=d, out=tmp_path / "out"))
    assert export_hf(ExportConfig(folder=d, out=tmp_path / "all", all_rows=True)).rows["train"] > 0
    # A dataset without the generator's cameras and no cameras.parquet: nothing to export the cameras from.
    m = json.loads((d / "g3d.json").read_text())
    m["ground_truth"] = False
    (d / "g3d.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="no cameras: run `g3d sfm-init"):
        export_hf(ExportConfig(folder=d, out=tmp_path / "out", all_rows=True))
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
