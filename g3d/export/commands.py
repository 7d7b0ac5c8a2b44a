"""The ``g3d export`` command (parses, calls the format's writer, reports)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

FORMATS = ("hf", "nerfstudio", "coco", "wds")


def export_command(
    folder: Path = typer.Argument(..., help="A dataset folder written by g3d synth (filtered: only kept rows are exported)."),
    format: List[str] = typer.Option(..., "--format", help="hf: a folder datasets.load_dataset(OUT) opens as it is (Parquet shards per split and a dataset card); nerfstudio: one folder per object with transforms.json (nerfstudio, instant-ngp); coco: annotations/{split}.json with RLE masks and keypoints, and the images; wds: WebDataset tar shards. Repeat for several (each into OUT/FORMAT)."),
    out: Path = typer.Option(..., "--out", help="Export folder; must be new, empty, or (with --overwrite) an earlier export of this dataset."),
    shard_size_mb: int = typer.Option(1024, help="wds: start a new tar shard past this many MB (shards hold whole objects)."),
    split: Optional[str] = typer.Option(None, help="Object-level split fractions, e.g. train=0.8,val=0.1,test=0.1 (the default)."),
    seed: int = typer.Option(0, help="Seed of the object split (the same split for every format)."),
    all_rows: bool = typer.Option(False, "--all-rows", help="Also export rows the filter rejected."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export of this dataset in --out."),
) -> None:
    """Export the dataset for other researchers: kept rows, split by object, cameras from cameras.parquet
    (usable views) or the generator, masks as 0/255 images, and a dataset card stating the camera
    convention. Written under a hidden name and renamed when whole."""
    from g3d.errors import UsageError
    from g3d.export.coco import export_coco
    from g3d.export.hf import export_hf
    from g3d.export.nerfstudio import export_nerfstudio
    from g3d.export.rows import ExportConfig
    from g3d.export.splits import parse_split
    from g3d.export.wds import export_wds
    from g3d.reporting import progress

    bad = [f for f in format if f not in FORMATS]
    if bad:
        raise UsageError(f"--format {', '.join(bad)} is not available: choose from {', '.join(FORMATS)}")
    if shard_size_mb < 1:
        raise UsageError(f"--shard-size-mb {shard_size_mb}: give at least 1")
    if seed < 0:
        raise UsageError(f"--seed {seed}: give a whole number from 0 (the split's seed)")
    writers = {"hf": export_hf, "nerfstudio": export_nerfstudio, "coco": export_coco, "wds": export_wds}
    fractions = parse_split(split)
    reports = []
    with progress() as prog:
        for f in dict.fromkeys(format):
            target = out if len(set(format)) == 1 else out / f
            cfg = ExportConfig(folder=folder, out=target, split=fractions, seed=seed, all_rows=all_rows, overwrite=overwrite,
                               shard_bytes=shard_size_mb << 20)
            reports.append(writers[f](cfg, progress=prog))
    how = {"hf": "datasets.load_dataset('{}')", "coco": "pycocotools.coco.COCO('{}/annotations/train.json')", "wds": "webdataset.WebDataset('{}/train-{{000000..}}.tar')",
           "nerfstudio": "ns-train splatfacto --data {}/obj_NNNNNN"}
    for rep in reports:
        typer.echo(f"wrote {rep.format} to {rep.out}: " + ", ".join(f"{s} {n} images of {rep.objects[s]} objects" for s, n in rep.rows.items())
                   + f"; load it with {how[rep.format].format(rep.out)}")
