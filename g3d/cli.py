"""The ``g3d`` command line. Thin: parses options, calls one library function, reports.

Every command imports its stage lazily, so ``g3d --help`` does not load torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from g3d.errors import G3DError
from g3d.reporting import CommandGroup, console, error, fail, progress

app = typer.Typer(
    cls=CommandGroup,
    name="g3d",
    help="Turn a 2D image GAN into a 3D data engine: aligned multi-view sets, masks, cameras, meshes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Shared with the stages' command modules (g3d/reporting.py, below the CLI: no import cycle).
_fail, _progress = fail, progress


def _parse_crop(value: Optional[str]):
    if value is None:
        return "auto"
    if value.lower() == "none":
        return None
    try:
        parts = tuple(int(v) for v in value.split(","))
        if len(parts) != 4:
            raise ValueError
        return parts
    except ValueError:
        raise typer.BadParameter("use TOP,BOTTOM,LEFT,RIGHT pixel bounds (e.g. 64,448,0,512) or 'none'") from None


@app.command()
def synth(
    class_name: str = typer.Option("car", "--class", help="Class preset: car (39 views), horse (22), bird (8)."),
    views: Optional[int] = typer.Option(None, help="Number of viewpoint codes (columns). Default: the preset's."),
    samples: int = typer.Option(100, help="Number of objects (rows); each is drawn in every view."),
    out: Optional[Path] = typer.Option(None, help="Dataset folder. Default: g3d-data/<class>."),
    generator: str = typer.Option("builtin", help="'builtin' (procedural cars with ground truth) or a StyleGAN2 checkpoint path."),
    seed: int = typer.Option(0, help="Run seed; every sample's latent is a pure function of (seed, sample id)."),
    truncation: float = typer.Option(0.7, help="Truncation psi (1 = none)."),
    batch_size: int = typer.Option(32, help="Images per generator call."),
    resolution: Optional[int] = typer.Option(None, help="Image size for generators that allow it (builtin: 32-1024, default 256)."),
    viewpoints: Optional[Path] = typer.Option(None, help="Use the codes of this viewpoints.parquet instead of proposing new ones; "
                                              "'random': every image its own viewpoint, drawn from the generator's (a test set from anywhere)."),
    shard: Optional[str] = typer.Option(None, help="i/N: write only worker i's share of N (torchrun's RANK/WORLD_SIZE are used when unset)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different g3d run in --out."),
    samples_per_shard: Optional[int] = typer.Option(None, help="Objects per Parquet shard (default: about 1024 rows per shard)."),
    candidates: Optional[int] = typer.Option(None, help="Candidate codes the viewpoint proposal chooses from (default max(64, 4 x views))."),
    crop: Optional[str] = typer.Option(None, help="TOP,BOTTOM,LEFT,RIGHT crop of the generator's output, or 'none' (default: the preset's crop for 512 px checkpoints)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    distractors: float = typer.Option(0.0, help="Built-in generator: fraction of objects drawn broken (a second car, shrunk, pushed off-frame), recorded in gt_* columns, to measure filters."),
    lights: int = typer.Option(1, help="Built-in generator: each car under this many lights. Samples come in groups of LIGHTS consecutive "
                               "ids, one car in the same views, only the light resampled (g3d eval then scores albedo and relighting)."),
    between: int = typer.Option(0, help="Per object, this many extra images whose viewpoint codes lie between two neighbouring frozen "
                                "codes (view ids V..V+BETWEEN-1; between.parquet says which two and the weight): continuous "
                                "viewpoints for g3d train, their cameras interpolated from the frozen views' (sfm-init, pose bins) "
                                "and refined per image. Annotation and sfm-init use the frozen views only."),
) -> None:
    """Sample N objects in V frozen viewpoints: an aligned multi-view dataset folder.

    The first rows of StyleGAN's latent (the preset's viewpoint layers) are fixed to one code per
    view and the other rows resampled per object. Writes g3d.json, viewpoints.parquet,
    samples.parquet, images/part-*.parquet and previews/contact_sheet.png. Rerunning the same
    command resumes an interrupted run.

    With --viewpoints random each image gets a viewpoint code of its own (V per object, none shared):
    photos from anywhere, for scoring a network on viewpoints it never saw. The built-in generator
    records each image's exact camera; there is no viewpoints.parquet, annotate and sfm-init, which
    need frozen views, refuse such a folder, and train takes it only with those exact cameras.
    """
    from g3d.synth.sampling import SynthConfig, run_synth

    cfg = SynthConfig(
        out=out if out is not None else Path("g3d-data") / class_name,
        class_name=class_name,
        views=views,
        samples=samples,
        generator=generator,
        seed=seed,
        truncation=truncation,
        batch_size=batch_size,
        resolution=resolution,
        viewpoints=str(viewpoints) if viewpoints is not None else None,
        shard=shard,
        overwrite=overwrite,
        samples_per_shard=samples_per_shard,
        candidates=candidates,
        crop=_parse_crop(crop),
        device=device,
        distractors=distractors,
        lights=lights,
        between=between,
    )
    with _progress() as progress:
        report = run_synth(cfg, progress=progress, log=lambda m: console.print(m))
    rate = report.rows_written / report.seconds if report.seconds > 0 else 0.0
    console.print(
        f"[green]done[/]: {report.samples} objects x {report.views} views in {report.out} "
        f"({report.rows_written} images written in {report.seconds:.1f} s, {rate:.1f} images/s"
        + (f"; {len(report.shards_skipped)} shards kept from an earlier run" if report.shards_skipped else "")
        + ")",
        highlight=False,
    )
    if report.contact_sheet is not None:
        console.print(f"contact sheet: {report.contact_sheet}", highlight=False)


@app.command()
def convert(
    src: Path = typer.Argument(..., help="A StyleGAN2 checkpoint: NVlabs .pkl, NVIDIA TensorFlow .pkl, rosinality .pt, or safetensors."),
    dst: Path = typer.Argument(..., help="Output .safetensors (g3d's format: weights plus the architecture in its metadata)."),
) -> None:
    """Convert a StyleGAN2 checkpoint to g3d's safetensors format. Nothing in the input is executed."""
    from g3d.synth.checkpoints import convert_checkpoint

    out = convert_checkpoint(src, dst)
    typer.echo(f"wrote {out}")


@app.command(name="filter")
def filter_(
    folder: Path = typer.Argument(..., help="A dataset folder written by g3d synth."),
    segmenter: Optional[str] = typer.Option(None, help="ground-truth | torchvision | detectron2. Default: ground-truth for the built-in generator, torchvision otherwise."),
    weights: Optional[str] = typer.Option(None, help="torchvision: 'coco' (default), 'random' or a state-dict PATH; detectron2: the model weights PATH."),
    config_file: Optional[Path] = typer.Option(None, help="detectron2 config (Mask R-CNN or PointRend)."),
    min_area: float = typer.Option(0.10, help="Reject masks covering less than this fraction of the image (the paper's 10%)."),
    min_score: float = typer.Option(0.5, help="An instance counts when its score reaches this; exactly one must."),
    accept: list[str] = typer.Option([], help="Extra COCO classes that count as the object (e.g. --accept truck for cars)."),
    replace_masks: bool = typer.Option(False, "--replace-masks", help="Overwrite existing masks with the segmenter's (default: only fill missing ones)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    batch_size: int = typer.Option(8, help="Images per segmenter call."),
) -> None:
    """Segment every image and drop bad ones: not exactly one instance, mask under 10%, cut by the border, ...

    Sets keep / reject_reason in every row, stores the chosen mask, writes filter_report.json and
    one contact sheet per reject reason in previews/ (masks overlaid in red).
    """
    from g3d.filters.rules import FilterConfig
    from g3d.filters.run import FilterRun, run_filter

    cfg = FilterRun(
        folder=folder,
        segmenter=segmenter,
        weights=weights,
        config_file=str(config_file) if config_file else None,
        device=device,
        batch_size=batch_size,
        accept=tuple(accept),
        replace_masks=replace_masks,
        rules=FilterConfig(min_area=min_area, min_score=min_score),
    )
    with _progress() as progress:
        report = run_filter(cfg, progress=progress, log=lambda m: console.print(m, highlight=False, soft_wrap=True))
    from rich.table import Table

    table = Table(title=f"g3d filter ({report.segmenter}): kept {report.kept} of {report.rows} images")
    table.add_column("reject reason")
    table.add_column("images (first reason)", justify="right")
    table.add_column("images failing the rule", justify="right")
    for reason in sorted(set(report.first_reason) | set(report.failed_rule)):
        table.add_row(reason, str(report.first_reason.get(reason, 0)), str(report.failed_rule.get(reason, 0)))
    console.print(table)
    worst = sorted(report.per_view, key=lambda v: v["kept_fraction"])[:5]
    console.print("least kept views: " + ", ".join(f"v{v['view_id']} {v['kept_fraction']:.0%}" for v in worst), highlight=False)
    for p in report.previews:
        console.print(f"preview: {p}", highlight=False)


@app.command()
def train(
    folder: Path = typer.Argument(..., help="A dataset folder with masks (g3d filter) and cameras (g3d sfm-init, or the built-in generator's truth)."),
    out: Path = typer.Option(..., help="Run folder: config.json, metrics.jsonl, checkpoints/, previews/. Rerunning resumes."),
    resolution: int = typer.Option(64, help="Training image width in pixels."),
    batch_size: int = typer.Option(8, help="Multi-view pairs per step (and per rank under torchrun)."),
    steps: int = typer.Option(4000, help="Optimisation steps."),
    lr: float = typer.Option(3e-4, help="Adam learning rate (the paper: 1e-4)."),
    lr_schedule: str = typer.Option("cosine", help="constant, or cosine (decays to 5% of --lr at the last step)."),
    sigma: float = typer.Option(1e-5, help="Final soft-silhouette sigma (NDC units squared), reached from DIB-R's 1/7000 over the first half."),
    backbone: str = typer.Option("small", help="Image encoder: small (sized for 64-128 px on a CPU) or resnet18."),
    learn_cameras: Optional[bool] = typer.Option(None, "--learn-cameras/--fixed-cameras", show_default="learn unless they are the generator's exact truth",
                                                 help="Refine the per-view cameras jointly (why pose bins suffice)."),
    tex_res: int = typer.Option(64, help="UV texture map side (power of two)."),
    vgg_weights: Optional[Path] = typer.Option(None, help="torchvision VGG-16 state dict for the perceptual loss (off without it)."),
    backbone_weights: Optional[Path] = typer.Option(None, help="torchvision ResNet-18 state dict (e.g. ImageNet), with --backbone resnet18."),
    warmup_steps: int = typer.Option(0, help="Steps before the perceptual loss joins."),
    crop: bool = typer.Option(False, "--crop", help="Train on square crops round each mask (each with its exact intrinsics): "
                              "the network cannot read a car's size from where it sits in a view."),
    fov_crop: bool = typer.Option(False, "--fov-crop", help="Train on crops of the views' own field of view centred on each mask (exact "
                                  "intrinsics): a car keeps its apparent size, as in a photo; g3d predict cuts photos alike."),
    zoom: float = typer.Option(0.0, help="With --fov-crop: each training image's crop side times its own factor, log-uniform in "
                               "[1/(1+ZOOM), 1+ZOOM], its intrinsics changed to match, so apparent size at a training viewpoint "
                               "no longer tells a car's size (0: off)."),
    camera_head: bool = typer.Option(False, "--camera-head", help="Also predict the camera's azimuth and elevation from the photo, "
                                     "supervised by each image's camera (g3d eval then scores the camera it gives)."),
    light: bool = typer.Option(False, "--light", help="Also predict the light (ambient and one direction, object frame); the renderer "
                               "shades the texture with it, so the texture is an albedo (g3d eval scores the light on built-in data)."),
    albedo_weight: float = typer.Option(0.0, help="With --light: weight of the texture's colour spread (a car's paint is one colour, "
                                        "so the shading goes to the light)."),
    light_weight: float = typer.Option(3.0, help="With --light: weight of the light's supervision by each image's true light where the "
                                       "data has one (the built-in generator's); 0, or a StyleGAN's data: from the render alone."),
    ambient_weight: float = typer.Option(1.0, help="With --light and the true light: weight of the ambient's absolute error beside "
                                         "1 - cos of the direction's angle in that supervision."),
    specular: bool = typer.Option(True, "--specular/--no-specular", help="With --light: a material term, a white highlight "
                                  "(Blinn-Phong) whose strength the network predicts per photo and whose shininess it learns, "
                                  "so highlights are not painted into the albedo (--no-specular: Lambertian alone)."),
    light_encoder: bool = typer.Option(False, "--light-encoder", help="With --light: read the light with a small encoder of its "
                                       "own instead of the image feature shape and texture share."),
    twin_weight: float = typer.Option(1.0, help="With --light, on a set with several lights per car (g3d synth --lights 2): weight of "
                                      "the twin relighting loss (the same car and view under another light: its texture, lit by "
                                      "this photo's predicted light, must give this photo). 0: off."),
    consistency_weight: float = typer.Option(20.0, help="With --light, on a set with several lights per car: weight of the albedo consistency loss "
                                             "(the texture maps read from the two photos of one car and view pulled together, L1; "
                                             "the colour loss's weight is 20). 0: off."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="cpu or cuda (AMP on)."),
    preview_every: int = typer.Option(500, min=1, help="Write previews/step_*.png every K steps."),
    checkpoint_every: int = typer.Option(250, min=1, help="Checkpoint every K steps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the run in --out again (removes only what g3d train wrote there)."),
) -> None:
    """Train the inverse-graphics network (image -> textured mesh) through the DIB-R style renderer.

    Multi-view loss (paper Eq. 2) with the paper's loss weights; runs data-parallel under torchrun.
    Check what it learned with `g3d eval RUN`: the held-out IoU means something only beside the
    swapped-pairing and mean-prediction figures it prints.

    Rerunning into the same --out resumes exactly; the learning rate, schedule and --steps may change
    on resume (recorded in RUN/history.jsonl), other settings need another --out or --overwrite.
    """
    from g3d.train.loop import TrainConfig
    from g3d.train.loop import train as run_train

    if not 0 <= seed < 2**63:
        _fail(G3DError(f"--seed {seed}: give a whole number from 0 to 2**63 - 1"))
    if crop and fov_crop:
        _fail(G3DError("--crop and --fov-crop are two ways to cut the views: give one"))
    cfg = TrainConfig(folder=str(folder), out=str(out), resolution=resolution, batch_size=batch_size, steps=steps, lr=lr,
                      lr_schedule=lr_schedule, sigma=sigma, backbone=backbone,
                      learn_cameras=learn_cameras, tex_res=tex_res, vgg_weights=str(vgg_weights) if vgg_weights else None,
                      backbone_weights=str(backbone_weights) if backbone_weights else None, warmup_steps=warmup_steps, crop="fov" if fov_crop else crop, zoom=zoom, camera_head=camera_head,
                      light=light, albedo_weight=albedo_weight, light_weight=light_weight, ambient_weight=ambient_weight, specular=specular, light_encoder=light_encoder,
                      twin_weight=twin_weight, consistency_weight=consistency_weight, seed=seed, device=device, preview_every=preview_every, checkpoint_every=checkpoint_every)
    with _progress() as progress:
        report = run_train(cfg, progress=progress, log=lambda m: console.print(m, highlight=False), overwrite=overwrite)
    m = report.last_metrics
    console.print(f"[green]done[/]: {report.steps_done} steps in {report.out} ({report.seconds:.0f} s; cameras from {report.camera_source})"
                  + (f"; last loss {m['loss']:.3f}, train IoU {m['iou_hard']:.3f}" if m else ""), highlight=False)


@app.command(name="eval")
def eval_(
    run: Path = typer.Argument(..., help="A run folder written by g3d train."),
    folder: Optional[Path] = typer.Argument(None, help="Dataset folder (default: the run's)."),
    device: str = typer.Option("cpu"),
) -> None:
    """Score the run on held-out objects, each figure beside what it must beat.

    2D IoU of the predicted mesh re-projected in the input view, beside the same images scored with
    another object's prediction (swapped pairing), with the mean prediction and with the template.
    On built-in data also the ceilings (true mesh, mean true mesh), Chamfer distances, and the
    correlation of predicted size and paint colour with the truth. On a dataset other than the run's
    own, that dataset's cameras are used.
    """
    from g3d.train.evaluate import evaluate

    rep = evaluate(run, folder, device)
    for line in rep.lines():
        typer.echo(line)


@app.command(name="export-mesh")
def export_mesh(
    run: Path = typer.Argument(..., help="A run folder written by g3d train."),
    image: Path = typer.Argument(..., help="A picture of one object."),
    out: Path = typer.Option(..., help="car.glb (one file) or car.obj (with .mtl and _texture.png)."),
    device: str = typer.Option("cpu"),
) -> None:
    """Predict a textured mesh from a single image and write it as GLB or OBJ."""
    from g3d.train.export import export_mesh as _export

    paths = _export(run, image, out, device)
    for p in paths:
        typer.echo(f"wrote {p}")


@app.command()
def predict(
    run: Path = typer.Argument(..., help="A run trained with g3d train --fov-crop (or --crop) --camera-head."),
    photos: list[Path] = typer.Argument(..., help="Photos of one car each (PNG or JPEG, any size, the car anywhere in it)."),
    mask: Optional[list[Path]] = typer.Option(None, "--mask", help="The car's mask of each photo (PNG, car pixels > 127), once per photo, in order."),
    out: Path = typer.Option(..., help="Folder for NAME.glb, NAME.json (K, R, t, azimuth, elevation, distance, size) and NAME_sheet.png."),
    fov: Optional[float] = typer.Option(None, help="The photos' horizontal field of view in degrees (default: the run's cameras')."),
    segmenter: Optional[str] = typer.Option(None, help="Find each photo's mask instead of --mask: torchvision or detectron2 (its best car, as g3d filter picks it)."),
    weights: Optional[str] = typer.Option(None, help="The segmenter's weights: torchvision 'coco' (default) or a state-dict PATH; detectron2: the model PATH."),
    config_file: Optional[Path] = typer.Option(None, help="detectron2 config (Mask R-CNN or PointRend)."),
    accept: list[str] = typer.Option([], help="Extra COCO classes that count as the car (e.g. --accept truck)."),
    min_score: float = typer.Option(0.5, help="The segmenter's instance must score at least this."),
    refine: bool = typer.Option(True, "--refine/--no-refine", help="Refine the camera by render and compare against the mask (from the head's "
                                "direction and the opposite one); --no-refine: the head's direction, distance and aim from the mask box."),
    device: str = typer.Option("cpu"),
) -> None:
    """One photo from anywhere -> its textured mesh (GLB, object frame) and the photo's own camera.

    The photo is cut round its mask (--mask, or --segmenter) as the run was trained; the network gives the
    mesh, texture and the camera's direction; distance and aim are solved from the mask, and the camera is
    refined by render and compare, so that K, R, t (world-to-camera, OpenCV axes) are the photo's for its own
    pixels. NAME.json's mask_iou is the mesh through that camera against the mask. The sheet shows the photo,
    the predicted silhouette over it and the mesh turned round.
    """
    from g3d.train.predict import predict as _predict

    for p in _predict(run, list(photos), list(mask or []), out, fov, device, refine=refine, segmenter=segmenter, segmenter_weights=weights,
                      segmenter_config=str(config_file) if config_file else None, labels=("car", *accept), min_score=min_score):
        typer.echo(f"{p.name}: azimuth {p.azimuth_deg:.1f} deg, elevation {p.elevation_deg:.1f} deg, distance {p.distance:.2f}; "
                   f"mask IoU {p.mask_iou:.3f} -> {p.glb}, {p.json}, {p.sheet}")
        if p.touches_border:
            console.print(f"[yellow]warning[/]: {p.name}'s mask reaches the photo's border: if the car is cut there, its size, distance "
                          "and aim are the visible part's; give a photo with the whole car in it", highlight=False)


@app.command()
def info(folder: Path = typer.Argument(..., help="A dataset folder written by g3d synth.")) -> None:
    """Print what a dataset folder holds: class, generator, counts, shards, columns."""
    from g3d.datasets.summary import summarize

    text = summarize(folder)
    typer.echo(text)


@app.command()
def validate(
    folder: Path = typer.Argument(..., help="A dataset folder written by g3d synth, or an export written by g3d export."),
    sample: Optional[int] = typer.Option(None, help="Decode only this many rows per shard (default: every row)."),
) -> None:
    """Check a dataset folder and list every problem by shard and row; exit 1 when there is any.

    Manifest and schema version, every planned shard present and readable with its planned rows and
    columns, the total row count, decodable PNGs of the stated size, masks that are label maps (0, 100,
    255), rotations in R (rows and cameras.parquet), no temporary files left by an interrupted run, each
    shard's SHA-256 against the one recorded when it was written. On an export: no object in two splits,
    and the rows per split as recorded."""
    from g3d.datasets.validate import validate_folder

    if sample is not None and sample < 1:
        _fail(G3DError(f"--sample {sample}: give at least 1"))
    rep = validate_folder(folder, sample)
    for p in rep.problems:
        typer.echo(p)
    typer.echo(f"{folder}: {rep.shards} shards, {rep.rows} rows, {rep.checked_images} rows' images decoded: "
               + ("valid" if rep.ok else f"{len(rep.problems)} problem(s)"))
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def report(
    folder: Path = typer.Argument(..., help="A dataset folder written by g3d synth."),
    out: Path = typer.Option(..., "--out", help="Report folder: index.html and the pictures it shows (replaced when it holds an earlier report)."),
    run: Optional[Path] = typer.Option(None, "--run", help="A g3d train run folder: its training curves and held-out IoU per view."),
) -> None:
    """Write a static, self-contained HTML report: contact sheet, kept fraction per view and rejected
    examples per rule, the camera rig, annotation status, training curves and eval IoU per view
    (--run), and the dataset card. Open OUT/index.html in any browser; nothing is fetched."""
    from g3d.datasets.report import write_report

    page = write_report(folder, out, run)
    typer.echo(f"wrote {page}")


def _register_stage_commands() -> None:
    """Stages that own a Typer sub-app (their modules import nothing heavy at the top)."""
    from g3d.annotate.commands import annotate_app
    from g3d.export.commands import export_command
    from g3d.neural.commands import neural_app
    from g3d.pipeline.commands import pipeline_command
    from g3d.sfm.commands import sfm_init

    app.add_typer(annotate_app, name="annotate")
    app.add_typer(neural_app, name="neural")
    app.command("sfm-init")(sfm_init)
    app.command("pipeline")(pipeline_command)
    app.command("export")(export_command)


_register_stage_commands()


def _reflow_help(typer_app: typer.Typer) -> None:
    """Join each docstring paragraph into one line, so the terminal wraps it (not the source's line breaks)."""
    import inspect

    for info in typer_app.registered_commands:
        doc = info.help or (inspect.getdoc(info.callback) if info.callback else None)
        if doc:
            info.help = "\n\n".join(" ".join(par.split()) for par in doc.split("\n\n"))
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


_reflow_help(app)


INTERRUPTED = "interrupted: rerun the same command to resume"


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error (disk full, permission, missing folder) with its fix."""
    import errno

    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    what = exc.strerror or str(exc)
    fix = {
        errno.ENOSPC: "free some space and rerun the same command: what was complete is kept",
        errno.EDQUOT: "free some space and rerun the same command: what was complete is kept",
        errno.EACCES: "choose a folder you can write to, or fix its permissions",
        errno.EPERM: "choose a folder you can write to, or fix its permissions",
        errno.EROFS: "choose a folder on a writable disk",
        errno.ENOENT: "check the path (its folder must exist)",
        errno.ENOTDIR: "check the path: a part of it is a file, not a folder",
        errno.EISDIR: "give a file path, not a folder",
    }.get(exc.errno, "check the path and rerun the same command")
    return f"{what}{where}: {fix}"


def main() -> None:
    """Console-script entry point: every failure is one line on stderr and a non-zero exit.

    g3d's own errors (bad input, refused files) exit 2 with their message; operating-system errors
    (disk full, permissions, missing folders) exit 2 with the fix; Ctrl-C says how to resume (exit
    130); anything else is a bug in g3d, told in one line (exit 1; ``G3D_DEBUG=1`` shows the traceback).
    """
    import os

    # Typer vendors click: take its exception classes from Typer's own BadParameter.
    click_exception = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    aborts = (KeyboardInterrupt, typer.Abort, getattr(sys.modules[click_exception.__module__], "Abort", typer.Abort))
    try:
        code = typer.main.get_command(app).main(prog_name="g3d", standalone_mode=False)
    except aborts:
        console.print(INTERRUPTED, highlight=False)
        sys.exit(130)
    except click_exception as exc:  # bad option syntax or value type: click's message, on one line
        if type(exc).__name__ == "NoArgsIsHelpError":  # `g3d` alone: the help
            exc.show()
        else:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "g3d"
            error(f"{' '.join(exc.format_message().split())} (see {where} --help)")
        sys.exit(exc.exit_code)
    except G3DError as exc:  # raised outside a command's own handler
        error(str(exc))
        sys.exit(exc.exit_code)
    except OSError as exc:
        if os.environ.get("G3D_DEBUG"):
            raise
        error(os_error_line(exc))
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("G3D_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        error(f"{type(exc).__name__}{': ' + first if first else ''} (a bug in g3d: rerun with G3D_DEBUG=1 for the traceback and report it)")
        sys.exit(1)
    if code == 130:  # Typer turns Ctrl-C inside a command into a quiet exit 130
        console.print(INTERRUPTED, highlight=False)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
