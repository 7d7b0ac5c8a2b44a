"""The one reader of a dataset's image shards (``images/part-NNNNN.parquet``): every pyarrow error (a
truncated or damaged file, a missing column) becomes a one-line :class:`DatasetError` naming the shard."""

from __future__ import annotations

from pathlib import Path

from g3d.errors import DatasetError


def read_shard(path: Path, columns: list[str] | None = None, schema_only: bool = False, folder: Path | None = None, filters=None):
    """The shard's ``pyarrow.Table`` (only ``columns``, when given), or its schema with ``schema_only``.
    ``folder``: the dataset folder named in the fix (default: the shard's folder's parent); ``filters``:
    pyarrow's row filters (only the matching rows are read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        return pq.read_schema(path) if schema_only else pq.read_table(path, columns=columns, filters=filters)
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:  # pyarrow's errors derive from these
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DatasetError(f"{path} cannot be read ({type(exc).__name__}{': ' + first if first else ''}): it is damaged; rerun "
                           f"the g3d synth command that wrote {folder or path.parent.parent} to rewrite it") from None
