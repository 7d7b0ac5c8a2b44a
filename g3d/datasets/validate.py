"""``g3d validate DIR``: every problem of a dataset folder, by shard and row, or none.

Checks: the manifest (readable, schema version), every planned shard present, readable, of the planned
row count and the manifest's columns, the total row count, each row's PNGs decodable at the stated size
(all of them, or ``sample`` rows per shard), masks that are label maps (values 0, 100, 255), cameras
whose ``R`` is a rotation (``R Rᵀ = I``, det +1; rows and ``cameras.parquet``), and stray temporary
files, each shard's run (its ``g3d_run`` metadata against the manifest's run id; shards naming no run, written
before shards recorded it, are listed in ``notes``), and each shard's SHA-256 against the one synth or filter recorded beside it when writing it
(``part-NNNNN.parquet.sha256``; shards written before g3d recorded them are listed in ``notes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from g3d.datasets.manifest import has_manifest, read_manifest
from g3d.errors import DatasetError

MASK_LABELS = {0, 100, 255}


@dataclass
class ValidationReport:
    folder: Path
    shards: int
    rows: int
    checked_images: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not problems: what could not be checked

    @property
    def ok(self) -> bool:
        return not self.problems


def _rotation_problem(R) -> str | None:
    M = np.reshape(np.asarray(R, np.float64), (3, 3))
    if not np.all(np.isfinite(M)):
        return "R is not finite"
    if np.abs(M @ M.T - np.eye(3)).max() > 1e-6 or abs(np.linalg.det(M) - 1.0) > 1e-6:
        return f"R is not a rotation (det {np.linalg.det(M):.4f})"
    return None


def _export_objects(out: Path, fmt: str) -> tuple[dict[str, list[int]], dict[str, int]]:
    """(split -> sample id of every exported row, split -> rows) read back from an export's own files."""
    import json

    import pyarrow.parquet as pq

    ids: dict[str, list[int]] = {}
    if fmt == "hf":
        for p in sorted((out / "data").glob("*.parquet")):
            ids.setdefault(p.name.rsplit("-", 1)[0], []).extend(pq.read_table(p, columns=["sample_id"]).column("sample_id").to_pylist())
    elif fmt == "coco":
        for p in sorted((out / "annotations").glob("*.json")):
            ids[p.stem] = [img["g3d_sample_id"] for img in json.loads(p.read_text())["images"]]
    elif fmt == "wds":
        import tarfile

        for p in sorted(out.glob("*.tar")):
            with tarfile.open(p) as tar:
                ids.setdefault(p.name.rsplit("-", 1)[0], []).extend(int(m.name.split("_")[0]) for m in tar.getmembers() if m.name.endswith(".json"))
    elif fmt == "nerfstudio":
        splits = json.loads((out / "splits.json").read_text())
        for split, objs in splits.items():
            for o in objs:
                frames = json.loads((out / o / "transforms.json").read_text())["frames"]
                ids.setdefault(split, []).extend([int(o.split("_")[1])] * len(frames))
    return ids, {s: len(v) for s, v in ids.items()}


def validate_export(out: str | Path) -> ValidationReport:
    """Validate a ``g3d export`` folder: its splits share no object, and its row counts are the ones recorded
    (``export.json``) and, where the source folder is still there, the source's rows in those objects."""

    out = Path(out)
    rep = ValidationReport(out, 0, 0, 0)
    from g3d.datasets import io as dsio
    from g3d.errors import DatasetError

    try:
        record = dsio.read_json(out / "export.json", f"export into {out} again (delete it first)")
        if not isinstance(record, dict) or not isinstance(record.get("format"), str):
            raise DatasetError(f"{out / 'export.json'} is not an export record: export into {out} again (delete it first)")
    except DatasetError as exc:
        rep.problems.append(str(exc))
        return rep
    try:
        ids, rows = _export_objects(out, record["format"])
    except Exception as exc:  # a damaged export: name what failed
        rep.problems.append(f"{out}: cannot read the {record['format']} files back ({type(exc).__name__}: {exc})")
        return rep
    rep.rows = sum(rows.values())
    names = sorted(ids)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(set(ids[a]) & set(ids[b]))
            if both:
                rep.problems.append(f"splits {a} and {b} share objects {', '.join(map(str, both[:10]))}: export again")
    want = {s: n for s, n in record.get("rows", {}).items() if n}
    if rows != want:
        rep.problems.append(f"rows per split {rows} differ from the recorded {want}: the export is incomplete or was changed; export again")
    src = Path(record.get("source", ""))
    if src.is_dir() and has_manifest(src) and not record.get("all_rows"):

        from g3d.datasets import folder as dsf
        from g3d.datasets.shards import read_shard

        exported = {s for v in ids.values() for s in v}
        kept = 0
        for p in dsf.shard_paths(src):
            try:
                t = read_shard(p, ["sample_id", "keep"], folder=src).to_pylist()
            except DatasetError as exc:
                rep.problems.append(str(exc))
                return rep
            kept += sum(1 for r in t if r["sample_id"] in exported and r["keep"] is not False)
        if kept < rep.rows:
            rep.problems.append(f"{rep.rows} rows exported, but the source {src} keeps only {kept} rows of those objects")
        elif kept > rep.rows:
            rep.notes.append(f"{kept - rep.rows} kept rows of the exported objects are not in the export (views without a usable camera)")
    return rep


def validate_folder(folder: str | Path, sample: int | None = None) -> ValidationReport:
    """Validate a dataset folder (or an export: :func:`validate_export`); ``sample``: decode only this many rows per shard (None: all)."""
    if (Path(folder) / "export.json").is_file():
        return validate_export(folder)
    import pyarrow.parquet as pq

    from g3d.datasets import cameras as dscam
    from g3d.datasets import folder as dsf
    from g3d.datasets import io as dsio
    from g3d.datasets.schema import SCHEMA_VERSION, decode_png, image_rows_schema

    folder = Path(folder)
    rep = ValidationReport(folder, 0, 0, 0)
    try:
        man = read_manifest(folder)
    except Exception as exc:  # the reader's one-line error is the problem
        rep.problems.append(f"g3d.json: {exc}")
        return rep
    if man.schema_version != SCHEMA_VERSION:
        rep.problems.append(f"g3d.json: schema version {man.schema_version}, this g3d reads {SCHEMA_VERSION}")
    try:
        plan = man.shard_plan()
    except DatasetError as exc:
        rep.problems.append(f"g3d.json: {exc}")
        return rep
    run = man.run_id
    expected = set(image_rows_schema(len(man.keypoints or []), [], bool(man.ground_truth)).names)
    total = 0
    for k in range(plan.num_shards):
        path = folder / dsf.IMAGES / dsf.shard_name(k)
        name = f"images/{path.name}"
        if not path.is_file():
            rep.problems.append(f"{name}: missing (the manifest plans {plan.num_shards} shards): rerun the g3d synth command to write it")
            continue
        try:
            table = pq.read_table(path)
        except Exception as exc:
            rep.problems.append(f"{name}: not readable Parquet ({type(exc).__name__}): truncated or damaged; rerun g3d synth")
            continue
        rep.shards += 1
        owner = (table.schema.metadata or {}).get(dsf.RUN_KEY)
        if owner is None:
            rep.notes.append(f"{name}: names no run (written before shards recorded theirs)")
        elif run is not None and owner != run.encode():
            rep.problems.append(f"{name}: written by another run ({owner.decode(errors='replace')}, the manifest's is {run}): "
                                "rerun the g3d synth command of this folder to replace it")
        recorded = path.with_name(path.name + dsio.CHECKSUM_SUFFIX)
        if recorded.is_file():
            want = recorded.read_text().split()[0] if recorded.read_text().split() else ""
            if dsio.file_sha256(path) != want:
                rep.problems.append(f"{name}: its bytes changed since they were written (SHA-256 differs from {recorded.name}): rerun the g3d command that wrote it")
        else:
            rep.notes.append(f"{name}: no recorded checksum (written before g3d recorded them)")
        missing = sorted(expected - set(table.column_names))
        if missing:
            rep.problems.append(f"{name}: lacks columns {', '.join(missing)}")
        if table.num_rows != plan.rows(k):
            rep.problems.append(f"{name}: {table.num_rows} rows, the manifest plans {plan.rows(k)}")
        total += table.num_rows
        rows = table.to_pylist()
        pick = range(len(rows)) if sample is None else np.linspace(0, len(rows) - 1, min(sample, len(rows))).astype(int)
        for i in pick:
            r = rows[int(i)]
            where = f"{name} row {int(i)} (sample {r.get('sample_id')}, view {r.get('view_id')})"
            for col, grey in (("image", False), ("mask", True)):
                cell = r.get(col)
                if not cell or cell.get("bytes") is None:
                    if col == "image":
                        rep.problems.append(f"{where}: no image")
                    continue
                try:
                    arr = decode_png(cell["bytes"], grey=grey)
                except ValueError:
                    rep.problems.append(f"{where}: {col} is not a decodable PNG")
                    continue
                if arr.shape[:2] != (man.height, man.width):
                    rep.problems.append(f"{where}: {col} is {arr.shape[1]}x{arr.shape[0]}, the manifest says {man.width}x{man.height}")
                if grey and not set(np.unique(arr).tolist()) <= MASK_LABELS:
                    rep.problems.append(f"{where}: mask holds values other than the labels 0, 100, 255")
            rep.checked_images += 1
            if r.get("R") is not None:
                why = _rotation_problem(r["R"])
                if why:
                    rep.problems.append(f"{where}: {why}")
    if man.rows is not None and total != man.rows:
        rep.problems.append(f"images/: {total} rows in all, the manifest says {man.rows}")
    rep.rows = total
    if dscam.has_camera_file(folder):
        try:
            cams = dscam.read_camera_file(folder, man)
        except DatasetError as exc:
            rep.problems.append(f"{dsf.CAMERAS}: {exc}")
        else:
            for v, R, src in zip(cams.view_ids, cams.R, cams.sources):
                why = _rotation_problem(R) if src is not None else None
                if why:
                    rep.problems.append(f"{dsf.CAMERAS} view {v}: {why}: rerun g3d sfm-init")
    strays = [p.name for p in (folder / dsf.IMAGES).glob(".*")] if (folder / dsf.IMAGES).is_dir() else []
    if strays:
        rep.problems.append(f"images/: temporary files {', '.join(strays[:5])} left by an interrupted run: rerun it to finish, or delete them")
    return rep
