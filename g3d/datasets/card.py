"""The dataset card (README.md inside a dataset folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from g3d.datasets import io as dsio


def write_card(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write ``README.md`` describing the folder from its manifest."""
    gen = manifest.generator
    lines = [
        f"# g3d multi-view dataset: {manifest.class_name}",
        "",
        f"{manifest.samples} objects x {manifest.views} views = {manifest.rows} images of "
        f"{manifest.width}x{manifest.height} px, made by g3d {manifest.g3d_version} with the "
        f"`{gen.get('format')}` generator (seed {manifest.seed}, truncation {manifest.truncation_psi}).",
        "",
        f"Viewpoint codes: ws rows {list(manifest.viewpoint_layers)} ({manifest.viewpoints_source}).",
        "Every image of a view column shares that view's code; every row is one object.",
        "",
        "## Load it",
        "",
        "```python",
        "import g3d.datasets",
        f"ds = g3d.datasets.open_dataset('{Path(folder).name}')   # torch Dataset: image, mask, K, R, t, ...",
        "",
        "from datasets import load_dataset   # Hugging Face",
        f"hf = load_dataset('parquet', data_files='{Path(folder).name}/images/*.parquet', split='train')",
        "```",
        "",
        "## Files",
        "",
        "- `g3d.json`: manifest (arguments, generator, counts)",
        "- `viewpoints.parquet`: view_id, code (frozen ws rows)" + (", gt_azimuth_deg, gt_elevation_deg, gt_distance" if manifest.ground_truth else ""),
        "- `samples.parquet`: sample_id, seed, z",
        "- `images/part-*.parquet`: one row per (sample_id, view_id); image and mask as PNG {bytes, path}"
        + ("; ground-truth camera (K, R, t in OpenCV axes, object frame: y up, front +z) and keypoints" if manifest.ground_truth else ""),
        "- `previews/contact_sheet.png`: rows objects, columns views",
        "",
    ]
    if manifest.keypoints:
        lines += ["Keypoints (order of `keypoints_2d`): " + ", ".join(manifest.keypoints), ""]
    path = Path(folder) / "README.md"
    dsio.write_bytes(path, "\n".join(lines).encode())
    return path
