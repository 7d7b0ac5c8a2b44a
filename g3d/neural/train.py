"""``g3d neural train``: the mapping network of StyleGAN-R, in the paper's two stages.

Stage 1 (generator frozen): draw latents (the content rows from fresh latents, one per row group, the
viewpoint rows from the dataset's frozen viewpoint codes), render them with the generator, run the
frozen inverse-graphics network on the renders, map its shape, texture and background (and the view's
camera) back to ws, and pull that towards the drawn ws (L2) with an entropy penalty on the gate.

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

from g3d.datasets import io as dsio
from g3d.errors import G3DError, UsageError
from g3d.neural.mapping import LatentLayout, NeuralMapping, camera_features
from g3d.render.dibr import render
from g3d.synth.viewpoints import item_seed
from g3d.train.loop import _save, _trim_metrics, load_checkpoint  # one checkpoint format and one metrics log for both trainers


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
    seed: int = 0
    device: str = "cpu"
    log_every: int = 10
    preview_every: int = 250
    checkpoint_every: int = 100

    @property
    def steps(self) -> int:
        return self.stage1_steps + self.stage2_steps

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_RESUMABLE = {"stage2_steps", "lr", "gate_lr", "generator_lr", "log_every", "preview_every", "checkpoint_every", "device", "out"}
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints", "previews")


class Sources:
    """What a batch is made from, all frozen in stage 1: the generator ``G``, the inverse-graphics network
    and its template, the dataset's viewpoint codes float [V, L, w_dim] and each view's camera at the
    inverse network's resolution (K, R, t float [V, ...]) with its features float [V, 4], the latent layout,
    the truncation of the dataset, the image crop (top, bottom, left, right) or None, and the inverse
    network's input size (H, W)."""

    def __init__(self, G, inverse, tpl, codes, K, R, t, layout: LatentLayout, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None, crop=None, size: tuple[int, int] = (64, 64)) -> None:
        from g3d import cameras as camlib

        self.G, self.inverse, self.tpl = G, inverse, tpl
        self.codes = codes.float()
        self.K, self.R, self.t = K.float(), R.float(), t.float()
        az, el, d = camlib.to_azimuth_elevation(R.double().cpu().numpy(), t.double().cpu().numpy())
        self.azimuth_deg, self.elevation_deg, self.distance = az, el, d
        self.cam_features = camera_features(az, el, d)
        self.layout = layout
        self.psi, self.cutoff = float(truncation_psi), truncation_cutoff
        self.crop = crop
        self.H, self.W = size
        self.dataset: str | None = None  # the inverse run's dataset folder, when loaded from a run

    @property
    def views(self) -> int:
        return int(self.codes.shape[0])


def draw_latents(src: Sources, seed: int, step: int, batch: int, mix: float = 1.0, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ws float [batch, num_ws, w_dim], view ids int64 [batch]): a pure function of (seed, step, stream).

    Each content row group comes from its own latent with chance ``mix`` (else from the first group's),
    truncated as the dataset was; the viewpoint rows are the dataset's code of a random view."""
    L, G = src.layout, src.G
    g = torch.Generator().manual_seed(item_seed(seed, step, stream=2000 + stream))
    views = torch.randint(src.views, (batch,), generator=g)
    z = torch.randn(len(L.groups), batch, G.z_dim, generator=g)
    own = torch.rand(len(L.groups), batch, generator=g) < mix
    z = torch.where(own[..., None], z, z[:1])
    dev = src.codes.device
    ws = G.mapping(z[0].to(dev), src.psi, src.cutoff)
    for k, rows in enumerate(L.groups[1:], start=1):
        ws[:, list(rows)] = G.mapping(z[k].to(dev), src.psi, src.cutoff)[:, list(rows)]
    ws[:, list(L.viewpoint_rows)] = src.codes[views.to(dev)]
    return ws, views.to(dev)


def synthesize(src: Sources, ws: torch.Tensor) -> torch.Tensor:
    """ws [B, num_ws, w_dim] -> images float [B, 3, H, W] in [0, 1] as the inverse network sees them
    (the dataset's crop, resized to its input size). Differentiable in ws and the generator's weights."""
    img = (src.G.synthesis(ws, noise_mode="const").float().clamp(-1, 1) + 1) / 2
    if src.crop is not None:
        top, bottom, left, right = src.crop
        img = img[:, :, top:bottom, left:right]
    if img.shape[-2:] != (src.H, src.W):
        img = F.interpolate(img, size=(src.H, src.W), mode="area")
    return img


def read_image(src: Sources, images: torch.Tensor, views: torch.Tensor):
    """What the mapping reads from photos taken from dataset views ``views`` int64 [B]: (camera features
    [B, 4], verts [B, V, 3], texture [B, 3, T, T], background [B, 3, H, W], mask float [B, 1, H, W]).
    The background is the photo with the predicted mesh's silhouette (rendered at the view's camera) blacked out."""
    verts, tex, _ = src.inverse(images)
    out = render(verts.float(), src.tpl.faces, src.K[views], src.R[views], src.t[views], src.H, src.W, silhouette=False)
    mask = out.fragments.mask[:, None].float()
    return src.cam_features[views], verts, tex, images * (1 - mask), mask


def _mapped(mapping: NeuralMapping, src: Sources, images: torch.Tensor, ws: torch.Tensor, views: torch.Tensor, source_weight: float):
    """(ws_hat, L2 to ws, each source's own L2, read-outs): the mapping of photos ``images`` of latents ``ws``.

    With ``source_weight`` > 0, each source's code answers the whole content alone (its own L2), and the
    L2 of the blend reaches only the gate and the camera MLP (the codes enter it detached): the gate then
    picks, per row, the source that carries that row best. Trained through the blend instead, the codes
    co-adapt to whatever the gate does, and on the built-in generator the shape leaked into paint and
    background (shape-swap leakage ratio 1.7 against 58, bench/README.md). ``source_weight`` 0: the blend alone trains everything."""
    cam, verts, tex, bg, _ = read_image(src, images, views)
    codes = mapping.codes(verts, tex, bg)
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
    _, latent, own, _ = _mapped(mapping, src, images, ws, views, source_weight)
    ent = mapping.gate_entropy()
    return latent + source_weight * own + entropy_weight * ent, {"latent": latent, "sources": own, "entropy": ent}


def stage2_loss(mapping: NeuralMapping, src: Sources, ws: torch.Tensor, views: torch.Tensor, entropy_weight: float, cycle_weight: float,
                source_weight: float = 1.0):
    """(total, terms): the stage-1 loss plus cycle consistency -- the mapped ws rendered and read again
    gives the same mesh, texture and background code (the background compared in code space)."""
    with torch.no_grad():
        images = synthesize(src, ws)
    ws_hat, latent, own, (verts, tex, bg) = _mapped(mapping, src, images, ws, views, source_weight)
    _, verts2, tex2, bg2, _ = read_image(src, synthesize(src, ws_hat), views)
    ent = mapping.gate_entropy()
    c_shape = F.mse_loss(verts2, verts)
    c_tex = F.l1_loss(tex2, tex)
    c_bg = F.mse_loss(mapping.background(bg2), mapping.background(bg).detach())
    total = latent + source_weight * own + entropy_weight * ent + cycle_weight * (c_shape + c_tex + c_bg)
    return total, {"latent": latent, "sources": own, "entropy": ent, "cycle_shape": c_shape, "cycle_texture": c_tex,
                   "cycle_background": c_bg}


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


def load_sources(inverse_run: str | Path, generator: str = "builtin", device: str = "cpu") -> Sources:
    """The frozen parts of a neural run: the inverse-graphics run, its dataset's viewpoint codes and
    cameras, and the generator the dataset was made with (rebuilt for "builtin")."""
    from g3d.datasets import folder as dsf
    from g3d.datasets.manifest import read_manifest
    from g3d.synth.checkpoints import load_generator
    from g3d.synth.viewpoints import load_viewpoints
    from g3d.train.loop import load_run

    run = Path(inverse_run)
    if not (run / "config.json").is_file() or not (run / "checkpoints" / "last.pt").is_file():
        raise UsageError(f"--inverse {run} is not an inverse-graphics run (no config.json or checkpoints/last.pt): "
                         f"pass a folder written by `g3d train DATASET --out RUN`")
    cfg, inverse, cams, tpl, _ = load_run(run, device)
    folder = Path(cfg.folder)
    manifest = read_manifest(folder)
    gen = manifest.generator
    if generator == "builtin":
        if not gen.is_builtin:
            raise UsageError(f"the dataset of {run} ({folder}) was made with a {gen.format} generator, not the built-in one: "
                             "pass --generator CHECKPOINT, the checkpoint g3d synth used")
        from g3d.synth.builtin import BuiltinGenerator

        G = BuiltinGenerator.from_record(gen.fields, distractors=0.0).to(device)
    else:
        G = load_generator(generator, device=device)
    vp_path = folder / dsf.VIEWPOINTS
    if not vp_path.is_file():
        raise UsageError(f"{folder} has no {dsf.VIEWPOINTS}: the neural renderer needs a dataset written by g3d synth")
    layers = tuple(manifest.viewpoint_layers)
    if G.num_ws <= max(layers) or (gen.get("num_ws") and gen.get("num_ws") != G.num_ws):
        raise UsageError(f"--generator has {G.num_ws} ws rows but the dataset of {run} was made with {gen.get('num_ws')}: "
                         "pass the generator that made the dataset")
    vp = load_viewpoints(str(vp_path), G.w_dim, layers)
    layout = LatentLayout.of(G, layers)
    with torch.no_grad():
        K, R, t = cams(torch.arange(cams.K.shape[0], device=cams.K.device))
    crop = (manifest.fingerprint or {}).get("crop")
    inverse.requires_grad_(False).eval()
    G.requires_grad_(False)
    src = Sources(G, inverse, tpl, torch.as_tensor(vp.codes, dtype=torch.float32, device=device), K, R, t, layout, manifest.truncation_psi,
                   manifest.truncation_cutoff, tuple(crop) if crop else None, (max(1, round(cfg.resolution * manifest.height / manifest.width)), int(cfg.resolution)))
    src.dataset = str(folder)
    return src


def build_mapping(src: Sources, hidden: int, shape_modes: int = 8, gate_per: str = "row") -> NeuralMapping:
    return NeuralMapping(src.layout, src.tpl.verts.shape[0], src.G.w_avg.reshape(-1)[: src.layout.w_dim], hidden, shape_modes, gate_per)


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
    from g3d.devices import check_device
    from g3d.train.loop import _dist

    check_device(cfg.device)
    rank, world, distributed = _dist()
    if distributed:
        import os

        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
        if cfg.device.startswith("cuda"):
            cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    if rank != 0:
        log, progress = (lambda m: None), None
    if cfg.stage1_steps < 0 or cfg.stage2_steps < 0 or cfg.steps < 1:
        raise UsageError(f"--stage1-steps {cfg.stage1_steps} and --stage2-steps {cfg.stage2_steps}: give at least one step, none negative")
    if cfg.batch_size < 1 or not cfg.lr > 0 or not 0 <= cfg.mix <= 1:
        raise UsageError(f"--batch-size {cfg.batch_size}, --lr {cfg.lr}, --mix {cfg.mix}: need batch >= 1, lr > 0 and mix in 0..1")
    device = torch.device(cfg.device)
    cfg.inverse, cfg.out = str(Path(cfg.inverse).resolve()), str(Path(cfg.out).resolve())
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a run folder: choose another --out")
    cfg_path, ckpt_path = out / "config.json", out / "checkpoints" / "last.pt"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        diff = sorted(k for k in set(old) | set(cfg.to_json()) if k not in _RESUMABLE and old.get(k) != cfg.to_json().get(k))
        if diff:
            raise UsageError(f"--out {out} holds a neural run with other settings ({', '.join(diff)}): choose another --out")
    src = src or load_sources(cfg.inverse, cfg.generator, cfg.device)
    if cfg.stage2_steps > 0 and getattr(src.G, "synthesis_network", None) is None:
        raise UsageError(f"--stage2-steps {cfg.stage2_steps}: stage 2 fine-tunes the generator through its renders, and this generator "
                         "has no weights and renders without gradients (the built-in one): use --stage2-steps 0, or a StyleGAN2 checkpoint")
    torch.manual_seed(cfg.seed)
    mapping = build_mapping(src, cfg.hidden, cfg.shape_modes, cfg.gate_per).to(device)
    start = 0
    state = load_checkpoint(ckpt_path) if ckpt_path.is_file() else None
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
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        dsio.write_json(cfg_path, cfg.to_json())
        _trim_metrics(out / "metrics.jsonl", start)
    advance = progress("neural training", cfg.steps - start) if progress else None
    last: dict[str, float] = {}
    t_last = time.perf_counter()
    for step in range(start, cfg.steps):
        if step == cfg.stage1_steps and stage == 1:
            stage = 2
            opt = _optimizer(2, cfg, mapping, src.G)
            _freeze_generator(src.G, 2)
            log("stage 2: cycle consistency, the generator's synthesis weights fine-tuned")
        ws, views = draw_latents(src, cfg.seed, step, cfg.batch_size, cfg.mix, stream=4 * rank)  # each rank its own latents
        ent_w = cfg.entropy_weight * min(1.0, (step + 1) / max(1, cfg.stage1_steps))  # decisions firm up as the codes learn
        if stage == 1:
            total, terms = stage1_loss(mapping, src, ws, views, ent_w, cfg.source_weight)
        else:
            total, terms = stage2_loss(mapping, src, ws, views, ent_w, cfg.cycle_weight, cfg.source_weight)
        if not torch.isfinite(total):
            raise NeuralError(f"loss is {float(total.detach())} at step {step}: stopped; {ckpt_path} keeps the last good state (lower --lr and resume)")
        opt.zero_grad(set_to_none=True)
        total.backward()
        if distributed:
            _average_grads([q for g in opt.param_groups for q in g["params"]], world)
        opt.step()
        done = step + 1
        if rank != 0:
            continue
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            last = {"step": done, "stage": stage, "loss": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()},
                    "seconds_per_step": (now - t_last) / max(1, min(cfg.log_every, done - start))}
            t_last = now
            with open(out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(last) + "\n")
        if done % cfg.preview_every == 0 or done == cfg.steps:
            from g3d.neural.figures import preview

            preview(out / "previews" / f"step_{done:07d}.png", mapping, src, cfg.seed)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or done == cfg.stage1_steps:
            if not all(bool(torch.isfinite(p).all()) for p in mapping.parameters()):
                raise NeuralError(f"parameters are no longer finite after step {done}: {ckpt_path} keeps the last good state (lower --lr)")
            gen_state = src.G.state_dict() if (stage == 2 and len(opt.param_groups) > 2) else None
            _save(ckpt_path, {"mapping": mapping.state_dict(), "generator": gen_state, "opt": opt.state_dict(), "step": done, "stage": stage})
        if advance:
            advance(1)
    if distributed:
        from g3d.train.loop import _check_ranks_agree

        _check_ranks_agree(mapping, src.G, world, rank, out)
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
    if not (nrun / "config.json").is_file() or not (nrun / "checkpoints" / "last.pt").is_file():
        raise UsageError(f"{nrun} is not a neural run (no config.json or checkpoints/last.pt): run `g3d neural train --inverse RUN --out {nrun}` first")
    d = json.loads((nrun / "config.json").read_text())
    cfg = NeuralConfig(**{**d, "device": device})
    src = load_sources(cfg.inverse, cfg.generator, device)
    state = load_checkpoint(nrun / "checkpoints" / "last.pt")
    mapping = build_mapping(src, cfg.hidden, cfg.shape_modes, cfg.gate_per).to(device)
    mapping.load_state_dict(state["mapping"])
    if state.get("generator") is not None:
        src.G.load_state_dict(state["generator"])
    return cfg, mapping.eval(), src
