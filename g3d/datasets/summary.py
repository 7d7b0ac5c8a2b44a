"""``g3d info``: a plain-text summary of a dataset folder."""

from __future__ import annotations

from pathlib import Path

from g3d.datasets import folder as dsf
from g3d.datasets.manifest import read_manifest
from g3d.errors import DatasetError


def _names(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def summarize(path: Path) -> str:
    """What the folder holds: manifest facts, shard completeness, kept rows, columns."""
    import pyarrow.parquet as pq

    path = Path(path)
    m = read_manifest(path)
    if not m.has_images or not m.generator.fields:
        raise DatasetError(f"{path} holds annotations or cameras but no images written by g3d synth (its g3d.json has no "
                           "shard plan or generator): run g3d info on the dataset folder g3d synth wrote")
    plan = m.shard_plan()
    done = dsf.completed_shards(path, plan, m.run_id)
    n_done = sum(done.values())
    rows = 0
    kept = 0
    filtered = 0
    columns: list[str] = []
    for k, ok in done.items():
        if not ok:
            continue
        f = pq.ParquetFile(path / dsf.IMAGES / dsf.shard_name(k))
        rows += f.metadata.num_rows
        columns = f.schema_arrow.names
        filtered += "filter_score" in columns
        kept += sum(f.read(columns=["keep"]).column("keep").to_pylist())
    absent, broken = [], []  # incomplete shards: not there at all, or there but unreadable or short
    for k in (k for k, ok in done.items() if not ok):
        (broken if (path / dsf.IMAGES / dsf.shard_name(k)).is_file() else absent).append(dsf.shard_name(k))
    gen = m.generator
    lines = [
        f"folder      {path}",
        f"class       {m.class_name}",
        f"generator   {gen.get('format')}" + (f" ({gen.get('path')})" if gen.get("path") else ""),
        f"images      {m.width}x{m.height} px, {m.views} views x {m.samples} samples = {m.rows} rows",
        f"viewpoints  ws rows {list(m.viewpoint_layers)} ({m.viewpoints_source})",
        f"truncation  {m.truncation_psi}  seed {m.seed}",
        f"shards      {n_done}/{plan.num_shards} complete" + ("" if n_done == plan.num_shards else "  (rerun the same g3d synth command to finish)"),
        *([f"            not written yet: {_names(absent)}"] if absent else []),
        *([f"            damaged, short or another run's (redone by that rerun): {_names(broken)}"] if broken else []),
        f"rows        {rows} written, {kept} kept",
        f"truth       {'yes: camera, mask, keypoints' if m.ground_truth else 'no'}",
    ]
    if filtered and (filtered < n_done or m.filter is None):
        lines.append(f"filter      INCOMPLETE: {filtered} of {n_done} shards filtered (g3d filter was interrupted): "
                     f"rerun `g3d filter {path}` to finish")
    elif filtered:
        lines.append(f"filter      done: {m.filter.get('kept')} of {m.filter.get('rows')} rows kept")
    if columns:
        lines.append("columns     " + ", ".join(columns))
    for extra in (dsf.CAMERAS, dsf.ANNOTATIONS):
        if (path / extra).exists():
            lines.append(f"also        {extra}")
    return "\n".join(lines)
