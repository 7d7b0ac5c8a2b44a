"""The training loop behind ``g3d train``: multi-view pairs, the paper's losses, learnable cameras.

For each pair (i, j) of views of one object the network predicts shape and texture from image i,
renders them in both views with the DIB-R style renderer and compares with both images and masks
(paper Eq. 2). Cameras are learnable per view, initialised from the dataset (cameras.parquet, the
generator's truth, or pose bins).

Runs on CPU or CUDA (AMP on CUDA), and data-parallel under ``torchrun`` (gloo on CPU, NCCL on
CUDA): every rank draws its own pairs, gradients are averaged, rank 0 writes. ``RUN/`` holds
``config.json``, ``metrics.jsonl`` (and ``tensorboard/`` when tensorboard is installed), ``checkpoints/last.pt`` (model, cameras, optimiser, scaler,
step) and ``previews/step_*.png``. Rerunning into the same RUN resumes exactly: batches are a pure
function of (seed, step, rank). A NaN loss stops the run with the last good checkpoint kept.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from g3d.datasets import io as dsio
from g3d.datasets.cameras import FROM_TRUTH
from g3d.errors import UsageError
from g3d.render.dibr import SIGMA, render
from g3d.runfolder import MetricsLog, RunFolder, TrainingError, check_every, due, is_run, load_checkpoint, start_ranks
from g3d.train.camera import camera_loss, view_direction
from g3d.train.crop import CROP_MODES
from g3d.train.data import PairData
from g3d.train.light import LIGHT_COLUMNS, head_to_light, head_to_specular, light_loss, lighting_of, true_light
from g3d.train.losses import LossWeights, Perceptual, albedo_spread, color_l1, flatten_loss, iou_loss, laplacian_loss, move_loss
from g3d.train.model import InverseGraphicsNet, ViewCameras
from g3d.train.template import build_template


@dataclass
class TrainConfig:
    """Arguments of ``g3d train`` (one to one with its options)."""

    folder: str  # dataset folder
    out: str  # run folder
    resolution: int = 64  # training image width in pixels (height keeps the aspect)
    batch_size: int = 8  # pairs per step and rank (the paper: 16)
    steps: int = 4000
    lr: float = 3e-4  # Adam (the paper: 1e-4)
    lr_schedule: str = "cosine"  # "constant", or "cosine": decays to 5% of lr at the last step
    sigma: float = 1e-5  # soft-silhouette sharpness (NDC units squared) reached after sigma_anneal of the steps
    sigma_anneal: float = 0.5  # fraction of the steps over which sigma goes log-linearly from DIB-R's 1/7000 to sigma
    camera_lr: float = 1e-4  # Adam on the per-view camera deltas
    learn_cameras: bool | None = None  # refine per-view cameras; None = unless they are the generator's exact truth
    tex_res: int = 64  # UV texture map side
    color_readout: bool = True  # per-image colour path into the texture (False only to measure what it brings)
    symmetric: bool = True  # left-right symmetric shapes
    weights: LossWeights = field(default_factory=LossWeights)
    warmup_steps: int = 0  # colour-only steps before the perceptual loss joins
    vgg_weights: str | None = None  # torchvision VGG-16 state dict for the perceptual loss; None = off
    backbone: str = "small"  # image encoder: "small" (sized for 64-128 px on a CPU) or "resnet18"
    backbone_weights: str | None = None  # torchvision ResNet-18 state dict (ImageNet), with backbone "resnet18"
    holdout: float = 0.1  # fraction of objects held out for evaluation
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    log_every: int = 10
    preview_every: int = 500
    checkpoint_every: int = 250
    max_images: int | None = None  # cap on images kept in memory
    crop: bool | str = False  # "box" (or True) / "fov": square crops round each mask, each with its exact intrinsics (train/crop.py), instead of whole views
    zoom: float = 0.0  # with crop "fov": each training image's crop side times its own factor in [1/(1+zoom), 1+zoom], intrinsics to match (train/data.py)
    camera_head: bool = False  # the network also predicts the camera's direction, supervised by each image's camera (train/camera.py)
    camera_weight: float = 1.0  # weight of that supervision beside the render losses
    light: bool = False  # the network also predicts the light, and the renderer shades its texture (an albedo) with it (train/light.py)
    albedo_weight: float = 0.0  # with light: weight of the texture map's spread about its mean colour (a car's paint is one colour: the shading is the light's)
    light_weight: float = 3.0  # with light: weight of its supervision by each image's true light where the data has one (built-in gt_light_* columns)
    ambient_weight: float = 1.0  # with light: weight of the ambient's error within that supervision (beside 1 - cos of the direction's angle)
    specular: bool = True  # with light: a material term, a highlight of per-photo strength and one learned shininess (else Lambertian alone)
    light_encoder: bool = False  # with light: the light read by its own small encoder (train/model.py), not the shared image feature
    twin_weight: float = 1.0  # with light, on data with several lights per car (g3d synth --lights): weight of the twin relighting loss (pair_losses)
    consistency_weight: float = 20.0  # with the twins: weight of the albedo consistency loss, L1 between the texture maps read from a photo and from its twin

    def validate(self) -> None:
        """Options that the loop cannot work with are a one-line :class:`UsageError`."""
        from g3d.train.model import BACKBONES

        if self.backbone not in BACKBONES:
            raise UsageError(f"--backbone {self.backbone}: choose one of {', '.join(BACKBONES)}")
        if self.backbone_weights and self.backbone != "resnet18":
            raise UsageError("--backbone-weights is a ResNet-18 state dict: add --backbone resnet18")
        if self.crop not in (True, False, None) and self.crop not in CROP_MODES:
            raise UsageError(f"crop {self.crop!r}: choose one of {', '.join(CROP_MODES)}")
        if not (math.isfinite(self.zoom) and 0 <= self.zoom <= 1):
            raise UsageError(f"--zoom {self.zoom}: give a number from 0 (off) to 1")
        if self.zoom and self.crop != "fov":
            raise UsageError("--zoom changes the size of --fov-crop crops: add --fov-crop")
        lr_factor(self.lr_schedule, 0, self.steps)  # an unknown schedule is a UsageError
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise UsageError(f"--sigma {self.sigma}: give a positive number (DIB-R's default is {SIGMA:.3g})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr {self.lr}: give a positive learning rate")
        if self.steps < 1 or self.batch_size < 1:
            raise UsageError(f"--steps {self.steps} / --batch-size {self.batch_size}: both must be at least 1")
        check_every(log_every=self.log_every, preview_every=self.preview_every, checkpoint_every=self.checkpoint_every)
        if self.tex_res < 16 or self.tex_res & (self.tex_res - 1):
            raise UsageError(f"--tex-res {self.tex_res}: give a power of two >= 16")
        if not (math.isfinite(self.albedo_weight) and self.albedo_weight >= 0):
            raise UsageError(f"--albedo-weight {self.albedo_weight}: give a number >= 0")
        if not (math.isfinite(self.light_weight) and self.light_weight >= 0):
            raise UsageError(f"--light-weight {self.light_weight}: give a number >= 0")
        if not (math.isfinite(self.ambient_weight) and self.ambient_weight >= 0):
            raise UsageError(f"--ambient-weight {self.ambient_weight}: give a number >= 0")
        if not (math.isfinite(self.twin_weight) and self.twin_weight >= 0):
            raise UsageError(f"--twin-weight {self.twin_weight}: give a number >= 0")
        if not (math.isfinite(self.consistency_weight) and self.consistency_weight >= 0):
            raise UsageError(f"--consistency-weight {self.consistency_weight}: give a number >= 0")
        if not (math.isfinite(self.camera_weight) and self.camera_weight >= 0):
            raise UsageError(f"camera weight {self.camera_weight}: give a number >= 0")
        if self.resolution < 16:
            raise UsageError(f"--resolution {self.resolution}: give at least 16 pixels")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    @staticmethod
    def from_json(d: dict[str, Any], run: str | Path = "RUN") -> "TrainConfig":
        """The config of run folder ``run`` (its ``config.json`` read as ``d``); a neural run's is a :class:`UsageError`."""
        if "inverse" in d and "folder" not in d:
            raise UsageError(f"{run} is a neural run (g3d neural train), not an inverse-graphics run: pass it to `g3d neural eval`, "
                             "or pass the run it names as --inverse")
        d = upgrade_config(d)
        d["weights"] = LossWeights(**d["weights"])
        return TrainConfig(**d)


# What runs written before these options trained with, where that is not today's default (issue #10 changed the
# defaults; a light run before --light-weight learned its light from the render alone, before --specular it was Lambertian). Every other option a run
# predates was added off, so the run trained with its default.
_BEFORE = {"backbone": "resnet18", "color_readout": False, "lr_schedule": "constant", "sigma": SIGMA, "sigma_anneal": 0.5,
           "symmetric": False, "light_weight": 0.0, "specular": False, "ambient_weight": 1.0,
           "light_encoder": False, "twin_weight": 0.0, "consistency_weight": 0.0}


def upgrade_config(d: dict[str, Any]) -> dict[str, Any]:
    """A run's ``config.json`` with the options it predates filled in as it trained: :data:`_BEFORE`'s value, else
    today's default (so such a run resumes with the defaults; a run without a light head never used --light-weight)."""
    defaults = {k: v for k, v in TrainConfig(folder="", out="").to_json().items() if k not in ("folder", "out")}
    before = dict(_BEFORE)
    if not d.get("light"):
        del before["light_weight"]
        del before["specular"]
        del before["ambient_weight"]
        del before["light_encoder"]
        del before["twin_weight"]
        del before["consistency_weight"]
    return {**defaults, **before, **d}


@dataclass
class TrainReport:
    out: Path
    steps_done: int  # steps this call ran (after a resume: from resumed_from to the target)
    resumed_from: int
    last_metrics: dict[str, float]
    seconds: float
    camera_source: str


# Settings that may differ between a run and its resumption: they change neither the data nor the
# network's shape. ``out`` is where the run is now (a moved or copied run folder resumes). Changes of
# the optimisation settings are recorded in ``RUN/history.jsonl``.
_OPTIMISATION = {"steps", "lr", "camera_lr", "lr_schedule", "warmup_steps", "amp"}
_RESUMABLE = _OPTIMISATION | {"log_every", "preview_every", "checkpoint_every", "device", "out"}
# What a run folder holds (removed by ``overwrite``).
RUN_FILES = ("config.json", "metrics.jsonl", "history.jsonl", "checkpoints", "previews", "tensorboard", "cameras_learned.json", "cameras_used.json", "ddp_check.json")


def check_fits(cfg: TrainConfig, available: int | None = None) -> None:
    """Refuse, in one line, a training resolution above the dataset's (upsampling adds nothing a network
    can learn) or one whose images would not fit in memory (``available`` bytes; default: this machine's
    free memory): training keeps every image and mask in memory, 4 bytes a pixel."""
    import os

    from g3d.datasets.manifest import read_manifest

    man = read_manifest(Path(cfg.folder))
    if cfg.resolution > man.width:
        raise UsageError(f"--resolution {cfg.resolution} is above the dataset's {man.width} px: give at most {man.width} "
                         f"(or synthesise the dataset at {cfg.resolution} px)")
    height = max(1, round(cfg.resolution * man.height / man.width))
    images = min(man.rows or 0, cfg.max_images or (man.rows or 0))
    need = images * cfg.resolution * height * 4
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - platforms without sysconf
            return
    if need > available:
        raise UsageError(f"{images} images at {cfg.resolution}x{height} px need {need / 2**30:.1f} GiB in memory and "
                         f"{available / 2**30:.1f} GiB are free: lower --resolution or pass --max-images")


def learns_cameras(cfg: TrainConfig, data: PairData) -> bool:
    """Whether the run refines its cameras: as asked, else unless they are the generator's exact truth
    (refining exact cameras only lets them drift along with the shape)."""
    return cfg.learn_cameras if cfg.learn_cameras is not None else data.cameras.source != FROM_TRUTH


def cameras_used(cams, learn: bool) -> dict[str, Any]:
    """What the run trained with (written to the run's cameras_used.json): the cameras' origin, whether
    they were refined, each view's source and freedom (see ViewSet), and the views skipped."""
    views = cams.views
    counts: dict[str, int] = {}
    for s in views or []:
        counts[str(s)] = counts.get(str(s), 0) + 1
    return {"cameras": cams.source, "refined": bool(learn), "sources": counts or None,
            "view_source": views, "freedom": cams.freedom().tolist(), "skipped_views": cams.skipped(),
            "skipped_why": {str(v): why for v, why in cams.skipped_why().items()}}


def build(cfg: TrainConfig, data: PairData, device) -> tuple[InverseGraphicsNet, ViewCameras]:
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    tpl = build_template(3)
    model = InverseGraphicsNet(tpl, tex_res=cfg.tex_res, backbone=cfg.backbone, backbone_weights=cfg.backbone_weights,
                               color_readout=cfg.color_readout, symmetric=cfg.symmetric, camera_head=cfg.camera_head,
                               light_head=cfg.light, specular=cfg.specular, light_encoder=cfg.light_encoder).to(device)
    cams = ViewCameras(data.cameras.K, data.cameras.R, data.cameras.t, learn=learns_cameras(cfg, data), freedom=data.cameras.freedom()).to(device)
    return model, cams


def with_freedom(cams_state: dict[str, Any]) -> dict[str, Any]:
    """A ViewCameras state dict with its ``freedom`` (runs saved before it was stored trained with 1 for every view)."""
    if "freedom" not in cams_state:
        cams_state = {**cams_state, "freedom": torch.ones(cams_state["K"].shape[0])}
    return cams_state


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """Multiplier of the learning rates at ``step`` (a pure function of the step: resume stays exact)."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(1, steps)))
    raise UsageError(f"--lr-schedule {schedule}: choose {' or '.join(LR_SCHEDULES)}")


def sigma_at(cfg: "TrainConfig", step: int) -> float:
    """The soft silhouette's sigma at ``step``: DIB-R's 1/7000 annealed log-linearly to ``cfg.sigma``."""
    span = cfg.sigma_anneal * cfg.steps
    f = 1.0 if span <= 0 else min(1.0, step / span)
    return math.exp((1 - f) * math.log(SIGMA) + f * math.log(cfg.sigma))


def uses_twins(cfg: TrainConfig) -> bool:
    """Whether a light run reads each photo's twin (the same car and view under another light): for the twin
    relighting loss, the albedo consistency loss, or both."""
    return cfg.twin_weight > 0 or cfg.consistency_weight > 0


def pair_losses(model, cams, tpl, data_i, data_j, cfg: TrainConfig, percept, step: int, H: int, W: int, light_i: torch.Tensor | None = None,
                twin: tuple | None = None):
    """Loss terms of one batch of pairs; returns (total, terms dict, prediction of view i). ``light_i`` float [B, 4]:
    view i's true light (:func:`g3d.train.light.true_light`), supervising the light head; None: none.

    ``twin``: with the light, (rows int64 [T] of the batch, their twins' :class:`g3d.train.data.Batch`, the twins' true
    lights float [T, 4] or None): photos of the same cars and views under another light (``PairData.twins``). The
    *twin relighting loss* renders each twin's texture on the shape predicted from image i, shaded by the light
    predicted from image i, and compares it with image i (colour L1 in the mask, weight ``cfg.twin_weight``): one
    car's albedo must be the same whatever light it was photographed under, and the light must hold what differs.
    The twins' lights are supervised too, where they are known. With ``cfg.consistency_weight`` the two texture maps
    (photo i's and its twin's) are also pulled together directly: colour L1 over the map (the *albedo consistency
    loss*; both move, the render losses keep each one the photo's)."""
    img_i, mask_i, view_i, crop_i = data_i
    img_j, mask_j, view_j, crop_j = data_j
    use_twin = cfg.light and twin is not None and uses_twins(cfg)
    B = img_i.shape[0]
    inputs = torch.cat([img_i, twin[1].images]) if use_twin else img_i  # one call of the network (DDP)
    outs = InverseGraphicsNet.split(model(inputs, with_camera=cfg.camera_head, with_light=cfg.light), cfg.camera_head, cfg.light)
    verts, tex, offsets, cam_out, light_out = (None if o is None else o[:B] for o in outs)
    lighting = None
    if cfg.light:  # the light of view i shades both views: it sits in the object frame, as the car's paint does
        l_dir, l_amb = head_to_light(light_out.float())
        l_spec = head_to_specular(light_out.float())
        lighting = lighting_of(torch.cat([l_dir, l_dir]), torch.cat([l_amb, l_amb]), None if l_spec is None else torch.cat([l_spec, l_spec]),
                               getattr(model, "module", model).shininess)
    views = torch.cat([view_i, view_j])
    K, R, t = cams(views)  # one call for both (DDP)
    K = torch.cat([crop_i, crop_j]).to(K.dtype) @ K  # each image's own intrinsics (identity without crops)
    out = render(torch.cat([verts, verts]).float(), tpl.faces, K, R, t, H, W, face_uvs=tpl.face_uvs, texture=torch.cat([tex, tex]).float(),
                 sigma=sigma_at(cfg, step), lighting=lighting)
    target = torch.cat([img_i, img_j])
    mask = torch.cat([mask_i, mask_j])
    w = cfg.weights
    terms = {
        "color": color_l1(out.image, target, mask),
        "iou": iou_loss(out.alpha, mask),
        "flatten": flatten_loss(verts.float(), tpl),
        "laplacian": laplacian_loss(verts.float(), tpl),
        "move": move_loss(offsets.float()),
    }
    total = w.color * terms["color"] + w.iou * terms["iou"] + w.flatten * terms["flatten"] + w.laplacian * terms["laplacian"] + w.move * terms["move"]
    if cfg.light and cfg.albedo_weight > 0:  # the albedo's colour spread over the texture map
        terms["albedo"] = albedo_spread(tex.float())
        total = total + cfg.albedo_weight * terms["albedo"]
    if cfg.light and light_i is not None and cfg.light_weight > 0:
        terms["light"] = light_loss(l_dir, l_amb, light_i.to(l_dir), cfg.ambient_weight)
        total = total + cfg.light_weight * terms["light"]
    if cfg.camera_head:  # supervised by view i's camera as training has it (detached: the head does not move the cameras)
        az, el = view_direction(R[:B].detach().float(), t[:B].detach().float())
        terms["camera"] = camera_loss(cam_out.float(), az, el)
        total = total + cfg.camera_weight * terms["camera"]
    if percept is not None and step >= cfg.warmup_steps:
        comp = out.image * mask + target * (1 - mask)  # compare the object region only
        terms["percept"] = percept(comp, target)
        total = total + w.percept * terms["percept"]
    if use_twin:
        rows, _, light_t = twin
        _, tex_t, _, _, light_out_t = (None if o is None else o[B:] for o in outs)  # the twins' answers
        if cfg.twin_weight > 0:
            lit_i = lighting_of(l_dir[rows], l_amb[rows], None if l_spec is None else l_spec[rows], getattr(model, "module", model).shininess)
            o_t = render(verts[rows].float(), tpl.faces, K[:B][rows], R[:B][rows], t[:B][rows], H, W, face_uvs=tpl.face_uvs,
                         texture=tex_t.float(), sigma=sigma_at(cfg, step), lighting=lit_i)
            terms["twin"] = color_l1(o_t.image, img_i[rows], mask_i[rows])
            total = total + cfg.twin_weight * terms["twin"]
        if cfg.consistency_weight > 0:
            terms["consistency"] = (tex[rows].float() - tex_t.float()).abs().mean()
            total = total + cfg.consistency_weight * terms["consistency"]
        if light_t is not None and cfg.light_weight > 0:
            d_t, a_t = head_to_light(light_out_t.float())
            terms["light_twin"] = light_loss(d_t, a_t, light_t.to(d_t), cfg.ambient_weight)
            total = total + cfg.light_weight * terms["light_twin"]
    with torch.no_grad():
        hard = out.fragments.mask[:, None].float()
        inter = (hard * mask).flatten(1).sum(1)
        union = ((hard + mask) > 0).float().flatten(1).sum(1).clamp(min=1)
        terms["iou_hard"] = (inter / union).mean()
        if cfg.light and l_spec is not None:  # the material term, logged (not losses)
            terms["specular"] = l_spec.mean()
            terms["shininess"] = lighting.shininess.detach() if torch.is_tensor(lighting.shininess) else torch.tensor(lighting.shininess)
    return total, terms, (verts, tex)


def preview_indices(data: PairData, n: int = 4) -> torch.Tensor:
    """Indices of the first kept image of ``n`` different objects (fewer when the split has fewer), int64 [<= n]."""
    first: dict[int, int] = {}
    for i, s in enumerate(data.sample_ids.tolist()):
        first.setdefault(s, i)
    return torch.tensor(list(first.values())[:n])


def _preview(path: Path, model, cams, tpl, data: PairData, device, H: int, W: int, n: int = 4) -> None:
    """Rows: ``n`` different training objects; columns: the input image, then the prediction rendered in 4 views.

    Runs the network in eval mode (normalisation statistics are neither used from the batch nor updated),
    then restores the mode it found, so a preview never changes what training computes.
    """
    import numpy as np

    from g3d.datasets.previews import grid
    from g3d.datasets.schema import encode_png

    idx = preview_indices(data, n)
    img, _, view, crop = data.batch(idx, device)
    V = cams.K.shape[0]
    show = torch.linspace(0, V - 1, 4).round().long().to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            verts, tex, _ = model(img)
            cells = [img.permute(0, 2, 3, 1).cpu()]
            for v in show:
                K, R, t = cams(v.repeat(len(idx)))
                K = crop @ K  # each input's crop, seen from view v
                o = render(verts.float(), tpl.faces, K, R, t, H, W, face_uvs=tpl.face_uvs, texture=tex.float(), silhouette=False)
                cells.append((o.image + (1 - o.fragments.mask[:, None].float())).permute(0, 2, 3, 1).cpu())
    finally:
        model.train(was_training)
    arr = (torch.stack(cells, 1).clamp(0, 1) * 255).round().byte().numpy()
    sheet = grid(arr, ["input"] + [f"v{int(v)}" for v in show])
    path.parent.mkdir(parents=True, exist_ok=True)
    dsio.write_bytes(path, encode_png(np.ascontiguousarray(sheet)))


def train(cfg: TrainConfig, progress: Callable[[str, int], Callable[[int], None]] | None = None,
          log: Callable[[str], None] | None = None, overwrite: bool = False) -> TrainReport:
    """Train (or resume) the run in ``cfg.out``; ``overwrite`` starts it again. See the module docstring."""
    t_start = time.perf_counter()
    log = log or (lambda m: None)
    ranks, cfg.device = start_ranks(cfg.device)
    rank = ranks.rank
    cfg.validate()
    device = torch.device(cfg.device)
    cfg.folder, cfg.out = str(Path(cfg.folder).resolve()), str(Path(cfg.out).resolve())  # recorded and compared resolved
    run = RunFolder(cfg.out, error=TrainingError)
    out = run.path
    if overwrite and rank == 0 and out.is_dir():
        gone = run.clear(RUN_FILES)
        if gone:
            log(f"--overwrite: removed {', '.join(gone)} from {out}")
    changed: dict[str, list] = {}
    old = run.previous_config()
    if old is not None:
        old["folder"] = str(Path(old["folder"]).resolve())  # runs written before paths were resolved hold them as typed
        old = upgrade_config(old)
        new = cfg.to_json()
        run.refuse_other_settings(old, new, _RESUMABLE, fix="choose another --out, or add --overwrite to start this one again")
        changed = {k: [old.get(k), new.get(k)] for k in sorted(_OPTIMISATION) if old.get(k) != new.get(k)}
    check_fits(cfg)
    data = PairData(cfg.folder, cfg.resolution, "train", cfg.holdout, cfg.max_images, crop=cfg.crop, per_image_cameras=True,
                    zoom=cfg.zoom, seed=cfg.seed, extra_columns=LIGHT_COLUMNS if cfg.light else ())
    light_truth = true_light(data.extra) if cfg.light and cfg.light_weight > 0 else None
    if light_truth is not None:
        light_truth = torch.from_numpy(light_truth)
    use_twins = cfg.light and uses_twins(cfg) and bool((data.twins >= 0).any())
    if data.per_image and learns_cameras(cfg, data) and data.cameras.source == FROM_TRUTH:  # a --viewpoints random set
        raise UsageError(f"{cfg.folder} has the generator's exact camera for every image, and refining them one image at a time only "
                         "lets them drift with the shape: train with --fixed-cameras")
    if data.resized and rank == 0:
        log(f"note: images are resized to {data.width}x{data.height} for training")
    H, W = data.height, data.width
    model, cams = build(cfg, data, device)
    tpl = build_template(3).to(device)
    percept = None
    if cfg.vgg_weights:
        percept = Perceptual(cfg.vgg_weights).to(device)
    elif cfg.weights.percept > 0 and rank == 0:
        log("note: perceptual loss off (no VGG-16 weights; pass --vgg-weights PATH to use it)")
    groups = [{"params": list(model.parameters()), "lr": cfg.lr}]
    learn = learns_cameras(cfg, data)
    if rank == 0:
        log(f"cameras: {data.cameras.source}, {'refined during training' if learn else 'fixed'}")
        if cfg.light:
            log("light: supervised by each image's true light (the data's gt_light_* columns)" if light_truth is not None
                else "light: from the render alone (" + ("no true light in the data)" if cfg.light_weight > 0 else "--light-weight 0)"))
            if use_twins:
                log(f"light: twin losses on {int((data.twins >= 0).sum())} images with a twin under another light (relighting: --twin-weight "
                    f"{cfg.twin_weight:g}, albedo consistency: --consistency-weight {cfg.consistency_weight:g})")
        for problem in data.cameras.problems or []:
            log(f"note: {data.cameras.source}: {problem}")
        skipped = data.cameras.skipped_why()
        if skipped:
            log(f"note: views {', '.join(map(str, skipped))} skipped, no usable camera in {data.cameras.source} ("
                + "; ".join(f"{v}: {why}" for v, why in skipped.items()) + ")")
    if learn:
        groups.append({"params": list(cams.parameters()), "lr": cfg.camera_lr})
    opt = torch.optim.Adam(groups)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start = 0
    state = run.load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        cams.load_state_dict(with_freedom(state["cams"]))
        opt.load_state_dict(state["opt"])
        scaler.load_state_dict(state["scaler"])
        start = int(state["step"])
        if rank == 0:
            log(f"resuming {out} at step {start}" + (f" with {', '.join(f'{k} {a} -> {b}' for k, (a, b) in changed.items())}" if changed else ""))
    net, cam_mod = model, cams
    if ranks.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        cam_mod = DDP(cams, device_ids=[device.index] if device.type == "cuda" else None) if learn else cams
    if rank == 0:
        run.begin(cfg.to_json(), start)
        dsio.write_json(out / "cameras_used.json", cameras_used(data.cameras, learn))
        run.append_history({"step": start, "to": cfg.steps, "changed": changed})
    advance = progress("training", cfg.steps - start) if (progress and rank == 0) else None
    tb = _tensorboard(out) if rank == 0 else None
    metrics = MetricsLog(run.metrics, cfg.log_every, cfg.steps, start)
    last: dict[str, float] = {}
    for step in range(start, cfg.steps):
        f = lr_factor(cfg.lr_schedule, step, cfg.steps)
        for g, base in zip(opt.param_groups, [cfg.lr, cfg.camera_lr]):  # (no camera group when they are fixed)
            g["lr"] = base * f
        i_idx, j_idx = data.pairs(cfg.seed, step, rank, cfg.batch_size)
        twin = None
        if use_twins:
            rows = torch.nonzero(data.twins[i_idx] >= 0)[:, 0]
            if len(rows):
                t_idx = data.twins[i_idx[rows]]
                twin = (rows.to(device), data.batch(t_idx, device), None if light_truth is None else light_truth[t_idx].to(device))
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            total, terms, _ = pair_losses(net, cam_mod, tpl, data.batch(i_idx, device), data.batch(j_idx, device), cfg, percept, step, H, W,
                                          light_i=None if light_truth is None else light_truth[i_idx].to(device), twin=twin)
        run.stop_unless_finite(total, step)
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
        done = step + 1
        if rank == 0:
            if metrics.due(done):
                last = metrics.write(done, {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}})
                if tb is not None:
                    for k, v in last.items():
                        if k != "step":
                            tb.add_scalar(f"train/{k}", v, done)
            if due(done, cfg.preview_every, cfg.steps):
                _preview(out / "previews" / f"step_{done:07d}.png", model, cams, tpl, data, device, H, W)
            if due(done, cfg.checkpoint_every, cfg.steps):
                run.save(done, {"model": model.state_dict(), "cams": cams.state_dict(), "opt": opt.state_dict(),
                                "scaler": scaler.state_dict(), "step": done}, model, cams)
            if advance:
                advance(1)
    if tb is not None:
        tb.close()
    if rank == 0 and start < cfg.steps:
        dsio.write_json(out / "cameras_learned.json", {"source": data.cameras.source, "dw": cams.dw.detach().cpu().tolist(), "dt": cams.dt.detach().cpu().tolist(),
                                                          "freedom": cams.freedom.cpu().tolist(), "note": "R = exp(freedom * dw) R0, t = t0 + freedom * dt"})
    if ranks.distributed:
        run.check_ranks_agree(ranks, model, cams)
    return TrainReport(out, max(0, cfg.steps - start), start, last, time.perf_counter() - t_start, data.cameras.source)


def _tensorboard(out: Path):
    """A TensorBoard writer for ``RUN/tensorboard`` when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def load_run(run: str | Path, device="cpu"):
    """(config, model, cameras, template) of a finished or interrupted run, for eval and export."""
    run = Path(run)
    if not is_run(run):
        raise UsageError(f"{run} is not a g3d training run (no config.json or checkpoints/last.pt): run `g3d train DIR --out {run}` first")
    cfg = TrainConfig.from_json(json.loads((run / "config.json").read_text()), run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    tpl = build_template(3)
    model = InverseGraphicsNet(tpl, tex_res=cfg.tex_res, backbone=cfg.backbone, color_readout=cfg.color_readout, symmetric=cfg.symmetric,
                               camera_head=cfg.camera_head, light_head=cfg.light, specular=cfg.specular, light_encoder=cfg.light_encoder)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[-1].strip()[:200]
        raise TrainingError(f"{run / 'checkpoints' / 'last.pt'} does not fit the network its config.json describes ({first}): "
                            "was the run written by another g3d version? train it again") from None
    V = state["cams"]["K"].shape[0]
    cams = ViewCameras(torch.zeros(V, 3, 3), torch.zeros(V, 3, 3), torch.zeros(V, 3))
    cams.load_state_dict(with_freedom(state["cams"]))
    return cfg, model.to(device).eval(), cams.to(device), tpl.to(device), int(state["step"])
