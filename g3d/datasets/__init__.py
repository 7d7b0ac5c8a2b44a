"""The on-disk dataset folder: schema, atomic shard writer, manifest, reader, previews.

See the project README ("The dataset folder") for the layout and every column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from g3d.datasets.reader import G3DDataset


def open_dataset(path: str, **kwargs: Any) -> "G3DDataset":
    """A torch ``Dataset`` over the dataset folder ``path`` (see :class:`g3d.datasets.reader.G3DDataset`)."""
    from g3d.datasets.reader import G3DDataset

    return G3DDataset(path, **kwargs)


__all__ = ["open_dataset"]
