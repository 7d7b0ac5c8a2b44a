"""Contact sheets: rows are objects, columns are views, so alignment is checked at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from g3d.datasets import folder as dsf
from g3d.datasets import io as dsio


def grid(images: np.ndarray, labels_top: list[str] | None = None, labels_left: list[str] | None = None, pad: int = 2) -> np.ndarray:
    """uint8 [R, C, h, w, 3] -> one uint8 picture with optional column / row labels."""
    import cv2

    R, C, h, w, _ = images.shape
    top = 16 if labels_top else 0
    left = 40 if labels_left else 0
    H = top + R * (h + pad) + pad
    W = left + C * (w + pad) + pad
    sheet = np.full((H, W, 3), 255, np.uint8)
    for r in range(R):
        for c in range(C):
            y = top + pad + r * (h + pad)
            x = left + pad + c * (w + pad)
            sheet[y : y + h, x : x + w] = images[r, c]
    for c, text in enumerate(labels_top or []):
        cv2.putText(sheet, text, (left + pad + c * (w + pad) + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for r, text in enumerate(labels_left or []):
        y = top + pad + r * (h + pad) + h // 2 + 4
        cv2.putText(sheet, text, (2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def write_contact_sheet(folder: Path, max_samples: int = 8, thumb: int = 96, name: str = "contact_sheet.png") -> Path:
    """Write ``previews/<name>``: the first ``max_samples`` objects of shard 0 in every view."""
    import cv2
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from g3d.datasets.schema import decode_png

    folder = Path(folder)
    table = pq.read_table(folder / dsf.IMAGES / dsf.shard_name(0), columns=["sample_id", "view_id", "image"])
    ids = sorted(set(table.column("sample_id").to_pylist()))[:max_samples]
    table = table.filter(pc.is_in(table.column("sample_id"), value_set=__import__("pyarrow").array(ids, type="int64")))
    views = sorted(set(table.column("view_id").to_pylist()))
    first = decode_png(table.column("image")[0].as_py()["bytes"])
    h0, w0 = first.shape[:2]
    tw = thumb
    th = max(1, round(thumb * h0 / w0))
    cells = np.full((len(ids), len(views), th, tw, 3), 255, np.uint8)
    pos_s = {s: i for i, s in enumerate(ids)}
    pos_v = {v: i for i, v in enumerate(views)}
    for s, v, im in zip(table.column("sample_id").to_pylist(), table.column("view_id").to_pylist(), table.column("image").to_pylist()):
        cells[pos_s[s], pos_v[v]] = cv2.resize(decode_png(im["bytes"]), (tw, th), interpolation=cv2.INTER_AREA)
    sheet = grid(cells, [f"v{v}" for v in views], [f"s{s}" for s in ids])
    out = folder / dsf.PREVIEWS / name
    out.parent.mkdir(exist_ok=True)
    dsio.write_bytes(out, cv2.imencode(".png", sheet[..., ::-1])[1].tobytes())
    return out
