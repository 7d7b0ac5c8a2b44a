"""Reading a dataset folder: a torch ``Dataset`` of decoded rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from g3d.datasets import folder as dsf
from g3d.datasets.manifest import read_manifest
from g3d.datasets.schema import decode_png
from g3d.errors import DatasetError

_META_COLUMNS = ("sample_id", "view_id", "keep")


class G3DDataset:
    """Rows of ``images/part-*.parquet`` as dicts of tensors (a ``torch.utils.data.Dataset``).

    Each item: ``image`` uint8 [H, W, 3] (RGB), ``mask`` bool [H, W] (absent when unknown),
    ``sample_id``, ``view_id`` (int), and, when the folder has ground truth, ``K`` float32 [3, 3],
    ``R`` float32 [3, 3], ``t`` float32 [3], ``keypoints_2d`` float32 [P, 2],
    ``keypoints_visible`` bool [P]. ``keep_only`` drops rows the filters rejected.
    Row groups are read on demand (one cached per worker), so opening is cheap.
    """

    def __init__(self, path: str | Path, keep_only: bool = False) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.files = dsf.shard_paths(self.path)
        if not self.files:
            raise DatasetError(f"{self.path} has no complete image shards: run or resume `g3d synth --out {self.path}`")
        index = []  # (file, row group, row in group)
        meta = {c: [] for c in _META_COLUMNS}
        for fi, f in enumerate(self.files):
            pf = pq.ParquetFile(f)
            for g in range(pf.num_row_groups):
                t = pf.read_row_group(g, columns=list(_META_COLUMNS))
                n = t.num_rows
                index.extend((fi, g, r) for r in range(n))
                for c in _META_COLUMNS:
                    meta[c].extend(t.column(c).to_pylist())
        self._index = np.array(index, dtype=np.int64).reshape(-1, 3)
        self.sample_ids = np.array(meta["sample_id"], dtype=np.int64)
        self.view_ids = np.array(meta["view_id"], dtype=np.int64)
        self.keep = np.array(meta["keep"], dtype=bool)
        self._rows = np.flatnonzero(self.keep) if keep_only else np.arange(len(self._index))
        self._cache: tuple[tuple[int, int], Any] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def _group(self, fi: int, g: int):
        import pyarrow.parquet as pq

        if self._cache is None or self._cache[0] != (fi, g):
            self._cache = ((fi, g), pq.ParquetFile(self.files[fi]).read_row_group(g).to_pylist())
        return self._cache[1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        fi, g, r = (int(v) for v in self._index[self._rows[i]])
        row = self._group(fi, g)[r]
        item: dict[str, Any] = {
            "sample_id": row["sample_id"],
            "view_id": row["view_id"],
            "image": torch.from_numpy(decode_png(row["image"]["bytes"])),
        }
        if row.get("mask") is not None:
            item["mask"] = torch.from_numpy(decode_png(row["mask"]["bytes"], grey=True) > 127)
        if row.get("K") is not None:
            item["K"] = torch.tensor(row["K"], dtype=torch.float32).view(3, 3)
            item["R"] = torch.tensor(row["R"], dtype=torch.float32).view(3, 3)
            item["t"] = torch.tensor(row["t"], dtype=torch.float32)
            item["keypoints_2d"] = torch.tensor(row["keypoints_2d"], dtype=torch.float32).view(-1, 2)
            item["keypoints_visible"] = torch.tensor(row["keypoints_visible"], dtype=torch.bool)
        return item
