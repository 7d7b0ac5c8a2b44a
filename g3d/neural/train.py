"""``g3d neural train``: the mapping network of StyleGAN-R, in the paper's two stages.

Stage 1 (generator frozen): draw latents (the content rows from fresh latents, one per row group, the
viewpoint rows from the dataset's frozen viewpoint codes, or, for a share ``between`` of them, from the
generator's own viewpoint distribution, whose cameras come from the built-in generator's truth or the inverse
network's camera head: ``--cameras``), render them with the generator, run the frozen inverse-graphics network
on the renders, map its shape, texture and background (and the camera) back to ws, and pull that towards the
drawn ws (L2) with an entropy penalty on the gate. Trained on the dataset's cameras alone, the camera MLP is
7.3 deg off in azimuth between them (bench/README.md); on continuous cameras it follows any camera.

Stage 2 (generator fine-tuned): cycle consistency -- the mapped ws rendered again and re-read by the
inverse-graphics network must give the same mesh, texture and background code (background compared in
code space, as the paper does), with the stage-1 loss kept beside it. It needs a generator with weights
whose renders carry gradients (StyleGAN2); the built-in generator has neither.

``NRUN/`` holds ``config.json``, ``metrics.jsonl``, ``checkpoints/last.pt`` (mapping, generator weights in
stage 2, optimiser, step) and ``previews/step_*.png``. Batches are a pure function of (seed, step), so
rerunning into the same NRUN resumes exactly. A NaN loss stops with the last good checkpoint kept.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from g3d.errors import G3DError, UsageError
from g3d.neural.figures import preview
from g3d.neural.mapping import NeuralMapping
from g3d.neural.sources import (CAMERA_SOURCES, Sources, build_mapping, cameras_for, draw_latents, draw_viewpoints, load_sources,
                                read_image, resolve_camera_source, synthesize)
from g3d.runfolder import MetricsLog, RunFolder, check_every, due, is_run, load_checkpoint, start_ranks


class NeuralError(G3DError):
    """Neural-renderer training cannot go on (NaN loss, damaged checkpoint)."""


@dataclass
class NeuralConfig:
    """Arguments of ``g3d neural train`` (one to one with its options)."""

    inverse: str  # inverse-graphics run folder (g3d train --out)
    out: str  # neural run folder
    generator: str = "builtin"  # "builtin" (rebuilt from the run's dataset) or the StyleGAN2 checkpoint the dataset was made with
    stage1_steps: int = 1500  # the paper: 700 (from a pretrained mapping); 1500 from scratch here (bench/README.md)
    stage2_steps: int = 0  # the paper: 2500
    batch_size: int = 16  # the paper: 16
    lr: float = 2e-3  # Adam on the mapping network (the paper: 1e-5, on a pretrained one)
    gate_lr: float = 3e-3  # Adam on the gate's logits (1e-2 decides for the shape everywhere on weak inverse networks: bench/README.md)
    generator_lr: float = 1e-5  # Adam on the generator's synthesis weights in stage 2
    entropy_weight: float = 0.01  # weight of the gate's entropy, reached linearly over stage 1
    cycle_weight: float = 1.0  # weight of the stage-2 cycle terms
    source_weight: float = 1.0  # weight of each source's own L2 to the content (0: the gated mixture alone)
    hidden: int = 256  # width of the mapping's MLPs
    shape_modes: int = 8  # principal modes of the predicted meshes the shape MLP reads
    gate_per: str = "row"  # the gate decides per content "row" of ws, or per "dim" (the paper's)
    mix: float = 1.0  # chance that each content row group is drawn from its own latent (style mixing)
    cameras: str = "auto"  # cameras between the dataset's views: "truth" (built-in), "head" (--camera-head run), "views" (none), "auto"
    between: float = 0.5  # chance that a latent's viewpoint is drawn between the dataset's views (with a camera source)
    camera_batch: int = 256  # with the generator's truth: viewpoint codes a step adds for the camera MLP alone (no render)
    seed: int = 0
    device: str = "cpu"
    log_every: int = 10
    preview_every: int = 250
    checkpoint_every: int = 100

    @property
    def steps(self) -> int:
        return self.stage1_steps + self.stage2_steps

    def validate(self) -> None:
        """Options the trainer cannot work with are a one-line :class:`UsageError`."""
        if self.stage1_steps < 0 or self.stage2_steps < 0 or self.steps < 1:
            raise UsageError(f"--stage1-steps {self.stage1_steps} and --stage2-steps {self.stage2_steps}: give at least one step, none negative")
        if self.camera_batch < 0:
            raise UsageError(f"--camera-batch {self.camera_batch}: give 0 (none) or more viewpoint codes a step")
        if self.batch_size < 1 or not self.lr > 0 or not 0 <= self.mix <= 1 or not 0 <= self.between <= 1:
            raise UsageError(f"--batch-size {self.batch_size}, --lr {self.lr}, --mix {self.mix}, --between {self.between}: "
                             "need batch >= 1, lr > 0, and mix and between in 0..1")
        if self.cameras not in CAMERA_SOURCES:
            raise UsageError(f"--cameras {self.cameras!r}: choose one of {', '.join(CAMERA_SOURCES)}")
        check_every(log_every=self.log_every, preview_every=self.preview_every, checkpoint_every=self.checkpoint_every)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any], nrun: str | Path = "NRUN") -> "NeuralConfig":
        """The config of neural run folder ``nrun`` (its ``config.json`` read as ``d``); an inverse-graphics
        run's (g3d train), or a config of other fields, is a :class:`UsageError` naming what to pass."""
        if "folder" in d and "inverse" not in d:
            raise UsageError(f"{nrun} is an inverse-graphics run (g3d train), not a neural run: pass the folder of "
                             f"`g3d neural train --inverse {nrun} --out NRUN`")
        names = set(NeuralConfig.__dataclass_fields__)
        if not {"inverse", "out"} <= set(d) or set(d) - names:
            unknown = sorted(set(d) - names)
            raise UsageError(f"{nrun}/config.json is not a neural run's config" + (f" (unknown {', '.join(unknown)})" if unknown else "")
                             + ": was it written by another g3d version? train it again")
        return NeuralConfig(**d)


_RESUMABLE = {"stage2_steps", "lr", "gate_lr", "generator_lr", "log_every", "preview_every", "checkpoint_every", "device", "out"}


def _mapped(mapping: NeuralMapping, src: Sources, images: torch.Tensor, ws: torch.Tensor, views, source_weight: float):
    """(ws_hat, L2 to ws, each source's own L2, read-outs): the mapping of photos ``images`` of latents ``ws``
    taken with cameras ``views`` (:class:`~g3d.neural.sources.ImageCameras` or dataset view ids).

    With ``source_weight`` > 0, each source's code answers the whole content alone (its own L2), and the
    L2 of the blend reaches only the gate and the camera MLP (the codes enter it detached): the gate then
    picks, per row, the source that carries that row best. Trained through the blend instead, the codes
    co-adapt to whatever the gate does, and on the built-in generator the shape leaked into paint and
    background (shape-swap leakage ratio 1.7 against 58, bench/README.md). ``source_weight`` 0: the blend alone trains everything."""
    cam, verts, tex, bg, _, light = read_image(src, images, views)
    codes = mapping.codes(verts, tex, bg, light)
    if source_weight > 0:
        content = (ws[:, mapping.ct_rows] - mapping.w_avg).flatten(1)
        own = ((codes - content[None]) ** 2).mean()
        latent = F.mse_loss(mapping.assemble(cam, codes.detach()), ws)
    else:
        own = codes.new_zeros(())
        latent = F.mse_loss(mapping.assemble(cam, codes), ws)
    return mapping.assemble(cam, codes), latent, own, (verts, tex, bg)


def stage1_loss(mapping: NeuralMapping, src: Sources, ws: torch.Tensor, views: torch.Tensor, entropy_weight: float,
                source_weight: float = 1.0):
    """(total, terms): L2 of the mapped ws to the drawn ws, each source's own L2, and the gate's entropy."""
    with torch.no_grad():
        images = synthesize(src, ws)
        cams = cameras_for(src, ws, views, images)
    _, latent, own, _ = _mapped(mapping, src, images, ws, cams, source_weight)
    ent = mapping.gate_entropy()
    return latent + source_weight * own + entropy_weight * ent, {"latent": latent, "sources": own, "entropy": ent}


def stage2_loss(mapping: NeuralMapping, src: Sources, ws: torch.Tensor, views: torch.Tensor, entropy_weight: float, cycle_weight: float,
                source_weight: float = 1.0):
    """(total, terms): the stage-1 loss plus cycle consistency -- the mapped ws rendered and read again
    gives the same mesh, texture and background code (the background compared in code space)."""
    with torch.no_grad():
        images = synthesize(src, ws)
        cams = cameras_for(src, ws, views, images)
    ws_hat, latent, own, (verts, tex, bg) = _mapped(mapping, src, images, ws, cams, source_weight)
    _, verts2, tex2, bg2, _, _ = read_image(src, synthesize(src, ws_hat), cams)
    ent = mapping.gate_entropy()
    c_shape = F.mse_loss(verts2, verts)
    c_tex = F.l1_loss(tex2, tex)
    c_bg = F.mse_loss(mapping.background(bg2), mapping.background(bg).detach())
    total = latent + source_weight * own + entropy_weight * ent + cycle_weight * (c_shape + c_tex + c_bg)
    return total, {"latent": latent, "sources": own, "entropy": ent, "cycle_shape": c_shape, "cycle_texture": c_tex,
                   "cycle_background": c_bg}


def camera_fit_loss(mapping: NeuralMapping, src: Sources, seed: int, step: int, n: int, stream: int = 0) -> torch.Tensor:
    """L2 of the camera MLP's viewpoint rows to ``n`` viewpoint codes drawn with their true cameras
    (:func:`~g3d.neural.sources.draw_viewpoints`): where the generator knows its cameras, the camera MLP learns from
    many more cameras than a step renders (a viewpoint code is cheap; its image is not). Measured (bench/README.md):
    trained only on the rendered latents' cameras it is 4.0 deg off in azimuth between the views."""
    vp, feats = draw_viewpoints(src, seed, step, n, stream)
    return F.mse_loss(mapping.camera(feats).view_as(vp), vp - mapping.w_avg)


def _generator_weights(G, stage: int) -> list[torch.nn.Parameter]:
    """The generator weights ``stage`` trains: none in stage 1; its synthesis weights in stage 2 (the GAN's own
    mapping network stays frozen: the neural renderer's mapping replaces it)."""
    syn = getattr(G, "synthesis_network", None)
    return list(syn.parameters()) if (stage == 2 and syn is not None) else []


def trainable(stage: int, mapping: NeuralMapping, G) -> list[torch.nn.Parameter]:
    """The parameters each stage trains: the mapping in both, the generator's synthesis weights in stage 2
    (the inverse-graphics network stays frozen)."""
    return list(mapping.parameters()) + _generator_weights(G, stage)


def _freeze_generator(G, stage: int) -> None:
    """Gradients on for exactly the generator weights ``stage`` trains."""
    G.requires_grad_(False)
    for q in _generator_weights(G, stage):
        q.requires_grad_(True)


@dataclass
class NeuralReport:
    out: Path
    steps_done: int
    resumed_from: int
    last_metrics: dict[str, float]
    seconds: float


def _optimizer(stage: int, cfg: NeuralConfig, mapping: NeuralMapping, G) -> torch.optim.Adam:
    rest = [p for n, p in mapping.named_parameters() if n != "gate_logits"]
    groups = [{"params": rest, "lr": cfg.lr}, {"params": [mapping.gate_logits], "lr": cfg.gate_lr}]
    gen = _generator_weights(G, stage)
    if gen:
        groups.append({"params": gen, "lr": cfg.generator_lr})
    return torch.optim.Adam(groups)


def train_neural(cfg: NeuralConfig, progress: Callable[[str, int], Callable[[int], None]] | None = None,
                 log: Callable[[str], None] | None = None, src: Sources | None = None) -> NeuralReport:
    """Train (or resume) the neural run ``cfg.out``. See the module docstring."""
    t0 = time.perf_counter()
    log = log or (lambda m: None)
    ranks, cfg.device = start_ranks(cfg.device)
    if ranks.rank != 0:
        log, progress = (lambda m: None), None
    cfg.validate()
    device = torch.device(cfg.device)
    cfg.inverse, cfg.out = str(Path(cfg.inverse).resolve()), str(Path(cfg.out).resolve())
    run = RunFolder(cfg.out, error=NeuralError)
    out = run.path
    old = run.previous_config()
    if old is not None:
        run.refuse_other_settings(old, cfg.to_json(), _RESUMABLE, what="a neural run")
    src = src or load_sources(cfg.inverse, cfg.generator, cfg.device)
    src.camera_source = resolve_camera_source(src, cfg.cameras)
    between = cfg.between if src.camera_source != "views" else 0.0
    log(f"cameras: the dataset's {src.views} views" + (f", and {between:.0%} of latents between them, their cameras from the "
        + ("generator's truth" if src.camera_source == "truth" else "inverse network's camera head") if between > 0 else
        " only (no camera source between them: the camera MLP will not follow other cameras)"))
    if cfg.stage2_steps > 0 and getattr(src.G, "synthesis_network", None) is None:
        raise UsageError(f"--stage2-steps {cfg.stage2_steps}: stage 2 fine-tunes the generator through its renders, and this generator "
                         "has no weights and renders without gradients (the built-in one): use --stage2-steps 0, or a StyleGAN2 checkpoint")
    torch.manual_seed(cfg.seed)
    mapping = build_mapping(src, cfg.hidden, cfg.shape_modes, cfg.gate_per).to(device)
    start = 0
    state = run.load_checkpoint()
    if state is not None:
        mapping.load_state_dict(state["mapping"])
        if state.get("generator") is not None:
            src.G.load_state_dict(state["generator"])
        start = int(state["step"])
        log(f"resuming {out} at step {start}")
    if state is None:  # the shape input's modes, from meshes of latents no training step draws
        with torch.no_grad():
            verts = []
            for k in range(max(1, -(-4 * cfg.shape_modes // 64))):
                ws, views = draw_latents(src, cfg.seed, k, 64, cfg.mix, stream=3)
                verts.append(read_image(src, synthesize(src, ws), views)[1])
            mapping.calibrate(torch.cat(verts))
    stage = 1 if start < cfg.stage1_steps else 2
    opt = _optimizer(stage, cfg, mapping, src.G)
    _freeze_generator(src.G, stage)
    if state is not None and state.get("stage", 1) == stage:
        opt.load_state_dict(state["opt"])
    if ranks.rank == 0:
        run.begin(cfg.to_json(), start)
    advance = progress("neural training", cfg.steps - start) if progress else None
    metrics = MetricsLog(run.metrics, cfg.log_every, cfg.steps, start)
    last: dict[str, float] = {}
    for step in range(start, cfg.steps):
        if step == cfg.stage1_steps and stage == 1:
            stage = 2
            opt = _optimizer(2, cfg, mapping, src.G)
            _freeze_generator(src.G, 2)
            log("stage 2: cycle consistency, the generator's synthesis weights fine-tuned")
        ws, views = draw_latents(src, cfg.seed, step, cfg.batch_size, cfg.mix, stream=4 * ranks.rank, between=between)  # each rank its own latents
        ent_w = cfg.entropy_weight * min(1.0, (step + 1) / max(1, cfg.stage1_steps))  # decisions firm up as the codes learn
        if stage == 1:
            total, terms = stage1_loss(mapping, src, ws, views, ent_w, cfg.source_weight)
        else:
            total, terms = stage2_loss(mapping, src, ws, views, ent_w, cfg.cycle_weight, cfg.source_weight)
        if cfg.camera_batch > 0 and src.camera_source == "truth":
            terms["camera"] = camera_fit_loss(mapping, src, cfg.seed, step, cfg.camera_batch, stream=ranks.rank)
            total = total + terms["camera"]
        run.stop_unless_finite(total, step)
        opt.zero_grad(set_to_none=True)
        total.backward()
        if ranks.distributed:
            _average_grads([q for g in opt.param_groups for q in g["params"]], ranks.world)
        opt.step()
        done = step + 1
        if ranks.rank != 0:
            continue
        if metrics.due(done):
            last = metrics.write(done, {"stage": stage, "loss": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}})
        if due(done, cfg.preview_every, cfg.steps):
            preview(out / "previews" / f"step_{done:07d}.png", mapping, src, cfg.seed)
        if due(done, cfg.checkpoint_every, cfg.steps) or done == cfg.stage1_steps:
            gen_state = src.G.state_dict() if (stage == 2 and len(opt.param_groups) > 2) else None
            run.save(done, {"mapping": mapping.state_dict(), "generator": gen_state, "opt": opt.state_dict(), "step": done, "stage": stage}, mapping)
        if advance:
            advance(1)
    if ranks.distributed:
        run.check_ranks_agree(ranks, mapping, src.G)
    return NeuralReport(out, max(0, cfg.steps - start), start, last, time.perf_counter() - t0)


def _average_grads(params, world: int) -> None:
    """Under torchrun: average every trained parameter's gradient over the ranks (each rank drew its own
    latents; the same start and the same averaged steps keep the ranks identical, which the end checks)."""
    import torch.distributed as dist

    for q in params:
        if q.grad is None:
            q.grad = torch.zeros_like(q)
        dist.all_reduce(q.grad)
        q.grad /= world


def load_neural(nrun: str | Path, device: str = "cpu") -> tuple[NeuralConfig, NeuralMapping, Sources]:
    """(config, mapping in eval mode, sources) of a neural run, for render, swap and eval."""
    nrun = Path(nrun)
    if not is_run(nrun):
        raise UsageError(f"{nrun} is not a neural run (no config.json or checkpoints/last.pt): run `g3d neural train --inverse RUN --out {nrun}` first")
    cfg = NeuralConfig.from_json({**json.loads((nrun / "config.json").read_text()), "device": device}, nrun)
    src = load_sources(cfg.inverse, cfg.generator, device)
    src.camera_source = resolve_camera_source(src, cfg.cameras)
    state = load_checkpoint(nrun / "checkpoints" / "last.pt")
    mapping = build_mapping(src, cfg.hidden, cfg.shape_modes, cfg.gate_per).to(device)
    mapping.load_state_dict(state["mapping"])
    if state.get("generator") is not None:
        src.G.load_state_dict(state["generator"])
    return cfg, mapping.eval(), src
