"""The ``g3d export`` command (parses, calls the format's writer, reports)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

FORMATS = ("hf",)  # built so far; nerfstudio, coco and wds are issue #13's next parts


def export_command(
    folder: Path = typer.Argument(..., help="A dataset folder written by g3d synth (filtered: only kept rows are exported)."),
    format: List[str] = typer.Option(..., "--format", help="hf: a folder datasets.load_dataset(OUT) opens as it is (Parquet shards per split and a dataset card)."),
    out: Path = typer.Option(..., "--out", help="Export folder; must be new, empty, or (with --overwrite) an earlier export of this dataset."),
    split: Optional[str] = typer.Option(None, help="Object-level split fractions, e.g. train=0.8,val=0.1,test=0.1 (the default)."),
    seed: int = typer.Option(0, help="Seed of the object split (the same split for every format)."),
    all_rows: bool = typer.Option(False, "--all-rows", help="Also export rows the filter rejected."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export of this dataset in --out."),
) -> None:
    """Export the dataset for other researchers: kept rows, split by object, cameras from cameras.parquet
    (usable views) or the generator, masks as 0/255 images, and a dataset card stating the camera
    convention. Written under a hidden name and renamed when whole."""
    from g3d.errors import G3DError, UsageError
    from g3d.export.hf import ExportConfig, export_hf
    from g3d.export.splits import parse_split
    from g3d.reporting import fail, progress

    try:
        bad = [f for f in format if f not in FORMATS]
        if bad:
            raise UsageError(f"--format {', '.join(bad)} is not available: choose from {', '.join(FORMATS)} (nerfstudio, coco and wds are not built yet)")
        cfg = ExportConfig(folder=folder, out=out, split=parse_split(split), seed=seed, all_rows=all_rows, overwrite=overwrite)
        with progress() as prog:
            rep = export_hf(cfg, progress=prog)
    except G3DError as exc:
        fail(exc)
    typer.echo(f"wrote {rep.out}: " + ", ".join(f"{s} {n} images of {rep.objects[s]} objects" for s, n in rep.rows.items())
               + f"; load it with datasets.load_dataset('{rep.out}')")
