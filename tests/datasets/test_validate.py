"""``g3d validate``: each kind of damage is named by shard and row; a clean folder passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from g3d.datasets.validate import validate_folder
from g3d.synth.sampling import SynthConfig, run_synth


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("validate") / "car"
    run_synth(SynthConfig(out=out, samples=6, views=3, resolution=32, candidates=12, samples_per_shard=2))
    return out


def _copy(clean: Path, tmp_path: Path) -> Path:
    shutil.copytree(clean, tmp_path / "car")
    return tmp_path / "car"


def _rewrite(path: Path, fn) -> None:
    t = pq.read_table(path)
    pq.write_table(fn(t), path)


def test_a_clean_folder_passes(clean):
    rep = validate_folder(clean)
    assert rep.ok, rep.problems
    assert rep.shards == 3 and rep.rows == 18 and rep.checked_images == 18


def test_each_damage_is_named(clean, tmp_path):
    cases = []
    d = _copy(clean, tmp_path / "trunc")
    p = d / "images" / "part-00001.parquet"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    cases.append((d, "images/part-00001.parquet: not readable Parquet"))
    d = _copy(clean, tmp_path / "missing")
    (d / "images" / "part-00002.parquet").unlink()
    cases.append((d, "images/part-00002.parquet: missing"))

    def corrupt(t):
        rows = t.to_pylist()
        rows[1]["image"] = {"bytes": rows[1]["image"]["bytes"][:40], "path": rows[1]["image"]["path"]}
        return pa.Table.from_pylist(rows, schema=t.schema)

    d = _copy(clean, tmp_path / "png")
    _rewrite(d / "images" / "part-00000.parquet", corrupt)
    cases.append((d, "images/part-00000.parquet row 1 (sample 0, view 1): image is not a decodable PNG"))
    d = _copy(clean, tmp_path / "rows")
    _rewrite(d / "images" / "part-00000.parquet", lambda t: t.slice(0, 5))
    cases.append((d, "images/part-00000.parquet: 5 rows, the manifest plans 6"))

    def skew(t):
        rows = t.to_pylist()
        rows[2]["R"] = [2.0 * x for x in rows[2]["R"]]
        return pa.Table.from_pylist(rows, schema=t.schema)

    d = _copy(clean, tmp_path / "rot")
    _rewrite(d / "images" / "part-00002.parquet", skew)
    cases.append((d, "images/part-00002.parquet row 2 (sample 4, view 2): R is not a rotation"))
    for folder, message in cases:
        problems = validate_folder(folder).problems
        assert any(message in p for p in problems), (message, problems)
    # The row-count damage is also seen in the total.
    assert any("17 rows in all" in p for p in validate_folder(tmp_path / "rows" / "car").problems)


def test_cli_exits_1_and_lists_the_problems(clean, tmp_path):
    d = _copy(clean, tmp_path / "cli")
    (d / "images" / "part-00002.parquet").unlink()
    r = subprocess.run([sys.executable, "-m", "g3d.cli", "validate", str(d), "--sample", "1"], capture_output=True, text=True)
    assert r.returncode == 1 and "part-00002.parquet: missing" in r.stdout and "12 rows in all" in r.stdout and "2 problem(s)" in r.stdout
    ok = subprocess.run([sys.executable, "-m", "g3d.cli", "validate", str(clean)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("valid")


def test_a_changed_byte_is_caught_by_the_recorded_checksum(clean, tmp_path):
    d = _copy(clean, tmp_path / "byte")
    assert (d / "images" / "part-00001.parquet.sha256").is_file()
    p = d / "images" / "part-00001.parquet"
    data = bytearray(p.read_bytes())
    png = data.find(b"\x89PNG\r\n\x1a\n", len(data) // 3)  # one bit inside a PNG's pixel data: Parquet still reads
    assert png > 0
    data[data.find(b"IDAT", png) + 12] ^= 0x01
    p.write_bytes(bytes(data))
    problems = validate_folder(d).problems
    assert any("part-00001.parquet: its bytes changed" in x for x in problems), problems
    (d / "images" / "part-00001.parquet.sha256").unlink()
    d2 = _copy(clean, tmp_path / "old")
    (d2 / "images" / "part-00000.parquet.sha256").unlink()
    rep = validate_folder(d2)
    assert rep.ok and any("no recorded checksum" in n for n in rep.notes)


@pytest.mark.parametrize("fmt", ["hf", "nerfstudio", "coco", "wds"])
def test_exports_validate_and_a_mixed_split_is_caught(clean, tmp_path, fmt):
    import json

    from g3d.export.coco import export_coco
    from g3d.export.hf import export_hf
    from g3d.export.nerfstudio import export_nerfstudio
    from g3d.export.rows import ExportConfig
    from g3d.export.wds import export_wds

    writer = {"hf": export_hf, "nerfstudio": export_nerfstudio, "coco": export_coco, "wds": export_wds}[fmt]
    out = tmp_path / fmt
    writer(ExportConfig(folder=clean, out=out, split={"train": 0.5, "test": 0.5}))
    rep = validate_folder(out)
    assert rep.ok and rep.rows == 18, rep.problems
    record = json.loads((out / "export.json").read_text())
    record["rows"]["train"] += 1
    (out / "export.json").write_text(json.dumps(record))
    assert any("differ from the recorded" in p for p in validate_folder(out).problems)
    if fmt == "coco":  # an object put in both splits
        doc = json.loads((out / "annotations" / "test.json").read_text())
        train = json.loads((out / "annotations" / "train.json").read_text())
        doc["images"].append(train["images"][0])
        (out / "annotations" / "test.json").write_text(json.dumps(doc))
        assert any("share objects" in p for p in validate_folder(out).problems)


def test_another_runs_shard_and_a_missing_one_fail_naming_them(clean, tmp_path):
    """A shard whose g3d_run is not the manifest's run id (made by hand: another seed's shard copied in) and
    a planned shard that is absent: exit 1, each named. A shard naming no run (older g3d) is only a note."""
    from g3d.datasets import folder as dsf

    other = tmp_path / "other"
    run_synth(SynthConfig(out=other, samples=6, views=3, resolution=32, candidates=12, samples_per_shard=2, seed=7))
    d = _copy(clean, tmp_path / "mixed")
    shutil.copy(other / "images" / "part-00001.parquet", d / "images" / "part-00001.parquet")
    shutil.copy(other / "images" / "part-00001.parquet.sha256", d / "images" / "part-00001.parquet.sha256")
    (d / "images" / "part-00002.parquet").unlink()
    r = subprocess.run([sys.executable, "-m", "g3d.cli", "validate", str(d)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "images/part-00001.parquet: written by another run" in r.stdout and "images/part-00002.parquet: missing" in r.stdout, r.stdout
    d = _copy(clean, tmp_path / "old")
    _rewrite(d / "images" / "part-00000.parquet", lambda t: t.replace_schema_metadata({k: v for k, v in t.schema.metadata.items() if k != dsf.RUN_KEY}))
    (d / "images" / "part-00000.parquet.sha256").unlink()
    rep = validate_folder(d)
    assert rep.ok and any("part-00000.parquet: names no run" in n for n in rep.notes), (rep.problems, rep.notes)
