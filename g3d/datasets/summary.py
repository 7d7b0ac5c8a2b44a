"""``g3d info``: a plain-text summary of a dataset folder."""

from __future__ import annotations

from pathlib import Path

from g3d.datasets import folder as dsf
from g3d.errors import DatasetError


def _names(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def summarize(path: Path) -> str:
    """What the folder holds: manifest facts, shard completeness, kept rows, columns."""
    import pyarrow.parquet as pq

    path = Path(path)
    m = dsf.read_manifest(path)
    lacking = [k for k in ("samples", "samples_per_shard", "rows", "generator") if k not in m]
    if lacking:
        raise DatasetError(f"{path} holds annotations or cameras but no images written by g3d synth (its g3d.json has no "
                           f"{', '.join(lacking)}): run g3d info on the dataset folder g3d synth wrote")
    plan = dsf.ShardPlan(m["samples"], m["views"], m["samples_per_shard"])
    done = dsf.completed_shards(path, plan, dsf.manifest_run_id(m))
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
    gen = m["generator"]
    lines = [
        f"folder      {path}",
        f"class       {m['class']}",
        f"generator   {gen.get('format')}" + (f" ({gen['path']})" if gen.get("path") else ""),
        f"images      {m['width']}x{m['height']} px, {m['views']} views x {m['samples']} samples = {m['rows']} rows",
        f"viewpoints  ws rows {m.get('viewpoint_layers')} ({m.get('viewpoints_source')})",
        f"truncation  {m.get('truncation_psi')}  seed {m.get('seed')}",
        f"shards      {n_done}/{plan.num_shards} complete" + ("" if n_done == plan.num_shards else "  (rerun the same g3d synth command to finish)"),
        *([f"            not written yet: {_names(absent)}"] if absent else []),
        *([f"            damaged, short or another run's (redone by that rerun): {_names(broken)}"] if broken else []),
        f"rows        {rows} written, {kept} kept",
        f"truth       {'yes: camera, mask, keypoints' if m.get('ground_truth') else 'no'}",
    ]
    if filtered and (filtered < n_done or "filter" not in m):
        lines.append(f"filter      INCOMPLETE: {filtered} of {n_done} shards filtered (g3d filter was interrupted): "
                     f"rerun `g3d filter {path}` to finish")
    elif filtered:
        lines.append(f"filter      done: {m['filter'].get('kept')} of {m['filter'].get('rows')} rows kept")
    if columns:
        lines.append("columns     " + ", ".join(columns))
    for extra in (dsf.CAMERAS, dsf.ANNOTATIONS):
        if (path / extra).exists():
            lines.append(f"also        {extra}")
    return "\n".join(lines)
