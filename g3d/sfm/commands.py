"""Thin Typer command for ``g3d sfm-init`` (registered by :mod:`g3d.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def sfm_init(
    folder: Path = typer.Argument(..., help="Dataset folder with annotations/ (pose_bins.parquet and/or keypoints.parquet)."),
    method: str = typer.Option("auto", help="auto: keypoints where there are enough, pose bins elsewhere; bins: pose bins only; sfm: keypoints required."),
    focal_guess: Optional[float] = typer.Option(None, "--focal-guess", help="Focal length guess in pixels (default: from the class preset's field of view)."),
    max_reproj_px: float = typer.Option(8.0, "--max-reproj-px", help="Views whose mean reprojection error stays above this (pixels) are re-estimated, then flagged."),
) -> None:
    """One camera per view from pose bins and keypoints, through COLMAP, in the object's frame.

    Writes cameras.parquet (K, R, t, azimuth/elevation/distance, source, reprojection error,
    usable, failed checks per view) and previews/sfm_cameras.png. A pose bin 180 deg off, or a view
    with mirrored left/right labels, gets the camera its keypoints give (source sfm_bin_corrected,
    sfm_labels_swapped). Other views whose refined camera fails a check (too few keypoints,
    implausible focal, far from its pose bin, unregistered) keep their pose-bin camera (source
    sfm_flagged), marked usable = false where the keypoints contradict it (g3d train skips those);
    the report names each with its likely cause. Exits non-zero only when no camera at all can be made.
    """
    from rich.console import Console

    from g3d.errors import UsageError
    from g3d.sfm.run import METHODS, SfmConfig, run_sfm_init

    console = Console(stderr=True)
    if method not in METHODS:
        raise UsageError(f"--method {method!r} is not one of {', '.join(METHODS)}: use --method auto")
    cfg = SfmConfig(folder=folder, method=method, focal_guess=focal_guess, max_reproj_px=max_reproj_px)
    with console.status("g3d sfm-init: refining cameras"):
        report = run_sfm_init(cfg, log_fn=lambda m: console.print(m, highlight=False, markup=False))
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    console.print(f"cameras: {report.cameras}", highlight=False, markup=False, soft_wrap=True)
    if report.preview is not None:
        console.print(f"preview: {report.preview}", highlight=False, markup=False, soft_wrap=True)
