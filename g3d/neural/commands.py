"""``g3d neural train|eval|swap|render``: thin Typer commands over :mod:`g3d.neural`.

Registered by the main app with ``app.add_typer(neural_app, name="neural")``; torch and the stage load
inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from g3d.reporting import CommandGroup

neural_app = typer.Typer(
    cls=CommandGroup,
    name="neural",
    help="StyleGAN-R (paper §4.2): the inverse-graphics network drives the generator -- re-render a photo "
         "under new cameras, swap shape, texture and background between photos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@neural_app.command("train")
def train_command(
    inverse: Path = typer.Option(..., help="An inverse-graphics run folder (g3d train --out RUN)."),
    out: Path = typer.Option(..., help="Neural run folder: config.json, metrics.jsonl, checkpoints/, previews/. Rerunning resumes."),
    generator: str = typer.Option("builtin", help="builtin (rebuilt from the run's dataset), or the StyleGAN2 checkpoint g3d synth used for it."),
    stage1_steps: int = typer.Option(1500, help="Stage 1 (generator frozen): mapped latent vs drawn latent, each source's own fit, gate entropy (the paper: 700)."),
    stage2_steps: int = typer.Option(0, help="Stage 2: cycle consistency, the generator's synthesis weights fine-tuned (StyleGAN2 checkpoints; the paper: 2500)."),
    batch_size: int = typer.Option(16, help="Latents per step (the paper: 16)."),
    lr: float = typer.Option(2e-3, help="Adam learning rate of the mapping network."),
    gate_lr: float = typer.Option(3e-3, help="Adam learning rate of the gate's logits."),
    generator_lr: float = typer.Option(1e-5, help="Adam learning rate of the generator's synthesis weights in stage 2."),
    entropy_weight: float = typer.Option(0.01, help="Weight of the gate's entropy (pushes each latent dimension to one source)."),
    mix: float = typer.Option(1.0, help="Chance that each content row group is drawn from its own latent (style mixing)."),
    cameras: str = typer.Option("auto", help="Where cameras between the dataset's views come from: truth (the built-in generator's), "
                                "head (the inverse run's --camera-head), views (none: the camera MLP learns the dataset's cameras only), "
                                "auto (truth, else head, else views)."),
    between: float = typer.Option(0.5, help="Share of latents whose viewpoint is drawn between the dataset's views (with a camera source)."),
    camera_batch: int = typer.Option(256, help="With --cameras truth: viewpoint codes a step adds for the camera MLP alone (no render; 0: none)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    preview_every: int = typer.Option(250, min=1, help="Write previews/step_*.png every K steps."),
    checkpoint_every: int = typer.Option(100, min=1, help="Checkpoint every K steps."),
) -> None:
    """Train the mapping network: camera, shape, texture, background -> the generator's latent.

    Stage 1 renders latents drawn at the dataset's viewpoints and between them (--cameras, --between), reads
    them with the (frozen) inverse-graphics network and learns to map back. Check the result with `g3d neural eval NRUN` (built-in generator).
    """
    from g3d.neural.train import NeuralConfig, train_neural
    from g3d.reporting import console
    from g3d.reporting import progress as _progress

    cfg = NeuralConfig(inverse=str(inverse), out=str(out), generator=generator, stage1_steps=stage1_steps, stage2_steps=stage2_steps,
                       batch_size=batch_size, lr=lr, gate_lr=gate_lr, generator_lr=generator_lr, entropy_weight=entropy_weight,
                       mix=mix, cameras=cameras, between=between, camera_batch=camera_batch, seed=seed, device=device, preview_every=preview_every, checkpoint_every=checkpoint_every)
    with _progress() as prog:
        rep = train_neural(cfg, progress=prog, log=lambda m: console.print(m, highlight=False))
    m = rep.last_metrics
    console.print(f"[green]done[/]: {rep.steps_done} steps in {rep.out} ({rep.seconds:.0f} s)"
                  + (f"; last latent loss {m['latent']:.3f}, gate entropy {m['entropy']:.3f}" if m else ""), highlight=False)


@neural_app.command("eval")
def eval_command(
    nrun: Path = typer.Argument(..., help="A neural run folder (g3d neural train --out)."),
    n: int = typer.Option(64, min=2, help="Held-out latents (each swap takes a source from another of them)."),
    device: str = typer.Option("cpu"),
) -> None:
    """Camera, shape, paint and background errors, swap leakage and silhouette IoU against the built-in
    generator's truth, beside the identity (ceiling), the mapping with its gate ignored and the average latent."""
    from g3d.neural.evaluate import evaluate_neural
    from g3d.neural.train import load_neural
    from g3d.reporting import console

    cfg, mapping, src = load_neural(nrun, device)
    rep = evaluate_neural(mapping, src, cfg.seed, n)
    for line in rep.lines():
        console.print(line, highlight=False)


@neural_app.command("swap")
def swap_command(
    nrun: Path = typer.Argument(..., help="A neural run folder."),
    photos: List[str] = typer.Argument(..., help="Photos: PNG (framed as the dataset's images, any viewpoint: the camera from the inverse "
                                                 "run's --camera-head), PNG@VIEW (taken from that dataset view) or SAMPLE:VIEW (the run's dataset)."),
    out: Path = typer.Option(..., help="The figure (PNG)."),
    shape_from: int = typer.Option(0, help="Index of the photo every row takes its shape from (-1: each its own)."),
    texture_from: int = typer.Option(1, help="Index of the photo every row takes its texture from (-1: each its own)."),
    background_from: int = typer.Option(2, help="Index of the photo every row takes its background from (-1: each its own)."),
    light_from: int = typer.Option(-1, help="Index of the photo every row takes its light from (-1: each its own). Needs a "
                                   "neural run on an inverse run trained with --light (its light is a source of its own)."),
    device: str = typer.Option("cpu"),
) -> None:
    """The paper's Fig. 10: rows are the photos; columns input, re-rendered, shape from A, texture from B,
    background from C, light from D (each alone), and the chosen ones together (-1 leaves a source as it is)."""
    from g3d.neural.figures import write_swap_figure
    from g3d.neural.photos import read_photos
    from g3d.neural.train import load_neural
    from g3d.reporting import console

    _, mapping, src = load_neural(nrun, device)
    images, views = read_photos(src, photos, device)
    write_swap_figure(out, mapping, src, images, views, shape_from, texture_from, background_from, light_from)
    console.print(f"wrote {out}", highlight=False)


@neural_app.command("render")
def render_command(
    nrun: Path = typer.Argument(..., help="A neural run folder."),
    photo: str = typer.Argument(..., help="PNG (framed as the dataset's images, any viewpoint: the camera from the inverse run's "
                                          "--camera-head), PNG@VIEW (taken from that dataset view) or SAMPLE:VIEW (the run's dataset)."),
    out: Path = typer.Option(..., help="Folder for frames/, turntable.gif and sheet.png."),
    views: int = typer.Option(12, min=1, max=3600, help="Cameras evenly round the object (at most 3600)."),
    azimuths: Optional[str] = typer.Option(None, help="Comma-separated azimuths in degrees (instead of --views)."),
    elevation: float = typer.Option(15.0, help="Camera elevation in degrees."),
    distance: float = typer.Option(4.0, help="Camera distance (object units)."),
    device: str = typer.Option("cpu"),
) -> None:
    """One photo -> the inverse-graphics network -> the generator re-renders it under new cameras: frames,
    an animated turntable and a sheet of the generator's rendering above the textured mesh's."""
    from g3d.errors import UsageError
    from g3d.neural.figures import write_turntable
    from g3d.neural.photos import read_photos
    from g3d.neural.train import load_neural
    from g3d.reporting import console

    if azimuths:
        try:
            az = [float(a) for a in azimuths.split(",")]
        except ValueError:
            raise UsageError(f"--azimuths {azimuths!r}: give numbers separated by commas, e.g. 0,30,60") from None
    else:
        az = [k * 360.0 / views for k in range(views)]
    _, mapping, src = load_neural(nrun, device)
    images, cams = read_photos(src, [photo], device)
    write_turntable(out, mapping, src, images[0], cams, az, elevation, distance)
    console.print(f"wrote {out}/frames ({len(az)} frames), {out}/turntable.gif, {out}/sheet.png", highlight=False)
