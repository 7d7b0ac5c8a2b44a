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
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    preview_every: int = typer.Option(250, help="Write previews/step_*.png every K steps."),
    checkpoint_every: int = typer.Option(100, help="Checkpoint every K steps."),
) -> None:
    """Train the mapping network: camera, shape, texture, background -> the generator's latent.

    Stage 1 renders latents drawn at the dataset's viewpoints, reads them with the (frozen) inverse-graphics
    network and learns to map back. Check the result with `g3d neural eval NRUN` (built-in generator).
    """
    from g3d.neural.train import NeuralConfig, train_neural
    from g3d.reporting import console
    from g3d.reporting import progress as _progress

    cfg = NeuralConfig(inverse=str(inverse), out=str(out), generator=generator, stage1_steps=stage1_steps, stage2_steps=stage2_steps,
                       batch_size=batch_size, lr=lr, gate_lr=gate_lr, generator_lr=generator_lr, entropy_weight=entropy_weight,
                       mix=mix, seed=seed, device=device, preview_every=preview_every, checkpoint_every=checkpoint_every)
    with _progress() as prog:
        rep = train_neural(cfg, progress=prog, log=lambda m: console.print(m, highlight=False))
    m = rep.last_metrics
    console.print(f"[green]done[/]: {rep.steps_done} steps in {rep.out} ({rep.seconds:.0f} s)"
                  + (f"; last latent loss {m['latent']:.3f}, gate entropy {m['entropy']:.3f}" if m else ""), highlight=False)


@neural_app.command("eval")
def eval_command(
    nrun: Path = typer.Argument(..., help="A neural run folder (g3d neural train --out)."),
    n: int = typer.Option(64, help="Held-out latents."),
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


def _photos(src, specs: List[str], device: str):
    """Images float [N, 3, H, W] and their dataset views int64 [N] from specs ``PNG@VIEW`` (a photo taken from
    the dataset's view VIEW) or ``SAMPLE:VIEW`` (an image of the inverse run's dataset)."""
    import numpy as np
    import torch

    from g3d.errors import UsageError

    imgs, views = [], []
    for spec in specs:
        if "@" in spec:
            head, _, v = spec.rpartition("@")
        elif ":" in spec:
            head, _, v = spec.partition(":")
        else:
            raise UsageError(f"{spec!r} names no view: write PHOTO.png@VIEW (the dataset view it was taken from) or SAMPLE:VIEW")
        try:
            view = int(v)
            sample = None if "@" in spec else int(head)
        except ValueError:
            raise UsageError(f"{spec!r}: write PHOTO.png@VIEW or SAMPLE:VIEW with whole numbers (views 0..{src.views - 1})") from None
        if not 0 <= view < src.views:
            raise UsageError(f"{spec!r}: view {view} is outside the dataset's 0..{src.views - 1}")
        img = _read_png(Path(head)) if sample is None else _dataset_image(src, sample, view)
        import cv2

        img = cv2.resize(img, (src.W, src.H), interpolation=cv2.INTER_AREA) if img.shape[:2] != (src.H, src.W) else img
        imgs.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255)
        views.append(view)
    return torch.stack(imgs).to(device), torch.tensor(views, device=device)


def _read_png(path: Path):
    import cv2

    from g3d.errors import UsageError

    if not path.is_file():
        raise UsageError(f"{path}: no such file: pass an image file (PNG or JPEG)")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UsageError(f"{path} is not an image cv2 can read: pass a PNG or JPEG photo")
    return img[:, :, ::-1]


def _dataset_image(src, sample: int, view: int):
    import pyarrow.parquet as pq

    from g3d.datasets import folder as dsf
    from g3d.datasets.schema import decode_png
    from g3d.errors import UsageError

    folder = Path(src.dataset)
    for p in dsf.shard_paths(folder):  # only the matching row is read (not every image of every shard)
        t = pq.read_table(p, columns=["image"], filters=[("sample_id", "==", sample), ("view_id", "==", view)])
        if t.num_rows:
            return decode_png(t.column("image")[0].as_py()["bytes"])
    raise UsageError(f"{folder} has no image of sample {sample} in view {view}: see `g3d info {folder}`")


@neural_app.command("swap")
def swap_command(
    nrun: Path = typer.Argument(..., help="A neural run folder."),
    photos: List[str] = typer.Argument(..., help="Photos as PNG@VIEW (taken from that dataset view) or SAMPLE:VIEW (the run's dataset)."),
    out: Path = typer.Option(..., help="The figure (PNG)."),
    shape_from: int = typer.Option(0, help="Index of the photo every row takes its shape from (-1: each its own)."),
    texture_from: int = typer.Option(1, help="Index of the photo every row takes its texture from (-1: each its own)."),
    background_from: int = typer.Option(2, help="Index of the photo every row takes its background from (-1: each its own)."),
    device: str = typer.Option("cpu"),
) -> None:
    """The paper's Fig. 10: rows are the photos; columns input, re-rendered, shape from A, texture from B,
    background from C (each alone), and the chosen ones together (-1 leaves a source as it is)."""
    import numpy as np

    from g3d.datasets import io as dsio
    from g3d.datasets.previews import grid
    from g3d.datasets.schema import encode_png
    from g3d.errors import UsageError
    from g3d.neural.figures import swap_grid
    from g3d.neural.train import load_neural
    from g3d.reporting import console

    _, mapping, src = load_neural(nrun, device)
    images, views = _photos(src, photos, device)
    for name, k in (("--shape-from", shape_from), ("--texture-from", texture_from), ("--background-from", background_from)):
        if not -1 <= k < len(photos):
            raise UsageError(f"{name} {k}: there are {len(photos)} photos, so give 0..{len(photos) - 1} (or -1: each its own)")
    cells, labels = swap_grid(mapping, src, images, views, shape_from, texture_from, background_from)
    sheet = grid(np.repeat(np.repeat(cells, 2, 2), 2, 3), labels, [str(i) for i in range(len(photos))])
    out.parent.mkdir(parents=True, exist_ok=True)
    dsio.write_bytes(out, encode_png(np.ascontiguousarray(sheet)))
    console.print(f"wrote {out}", highlight=False)


@neural_app.command("render")
def render_command(
    nrun: Path = typer.Argument(..., help="A neural run folder."),
    photo: str = typer.Argument(..., help="PNG@VIEW (a photo taken from that dataset view) or SAMPLE:VIEW (the run's dataset)."),
    out: Path = typer.Option(..., help="Folder for frames/, turntable.gif and sheet.png."),
    views: int = typer.Option(12, help="Cameras evenly round the object."),
    azimuths: Optional[str] = typer.Option(None, help="Comma-separated azimuths in degrees (instead of --views)."),
    elevation: float = typer.Option(15.0, help="Camera elevation in degrees."),
    distance: float = typer.Option(4.0, help="Camera distance (object units)."),
    device: str = typer.Option("cpu"),
) -> None:
    """One photo -> the inverse-graphics network -> the generator re-renders it under new cameras: frames,
    an animated turntable and a sheet of the generator's rendering above the textured mesh's."""
    import numpy as np

    from g3d.datasets import io as dsio
    from g3d.datasets.previews import grid
    from g3d.datasets.schema import encode_png
    from g3d.errors import UsageError
    from g3d.neural.figures import turntable
    from g3d.neural.train import load_neural
    from g3d.reporting import console

    if azimuths:
        try:
            az = [float(a) for a in azimuths.split(",")]
        except ValueError:
            raise UsageError(f"--azimuths {azimuths!r}: give numbers separated by commas, e.g. 0,30,60") from None
    else:
        if views < 1:
            raise UsageError(f"--views {views}: give at least 1")
        az = list(np.arange(views) * 360.0 / views)
    _, mapping, src = load_neural(nrun, device)
    images, vids = _photos(src, [photo], device)
    gan, mesh = turntable(mapping, src, images[0], int(vids[0]), az, elevation, distance)
    frames = dsio.fresh_dir(out / "frames")
    for k, f in enumerate(gan):
        (frames / f"{k:03d}.png").write_bytes(encode_png(np.ascontiguousarray(f)))
    dsio.replace_dir(frames, out / "frames")
    import io as _io

    from PIL import Image

    buf = _io.BytesIO()
    big = [Image.fromarray(np.repeat(np.repeat(f, 2, 0), 2, 1)) for f in gan]
    big[0].save(buf, format="GIF", save_all=True, append_images=big[1:], duration=120, loop=0)
    dsio.write_bytes(out / "turntable.gif", buf.getvalue())
    sheet = grid(np.stack([gan, mesh]), [f"{a:.0f}" for a in az], ["GAN", "mesh"])
    dsio.write_bytes(out / "sheet.png", encode_png(np.ascontiguousarray(sheet)))
    console.print(f"wrote {out}/frames ({len(az)} frames), {out}/turntable.gif, {out}/sheet.png", highlight=False)
