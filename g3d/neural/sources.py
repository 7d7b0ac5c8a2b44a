"""What a neural run is built from, all frozen in stage 1 (:class:`Sources`), and what it does with them:
latents drawn at the dataset's viewpoints, rendered by the generator, and read back by the inverse-graphics
network. Used by the trainer (:mod:`g3d.neural.train`), the pictures (:mod:`g3d.neural.figures`) and the
evaluation (:mod:`g3d.neural.evaluate`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from g3d.errors import UsageError
from g3d.neural.mapping import LatentLayout, NeuralMapping, camera_features
from g3d.render.dibr import render
from g3d.runfolder import is_run
from g3d.synth.viewpoints import item_seed


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


def load_sources(inverse_run: str | Path, generator: str = "builtin", device: str = "cpu") -> Sources:
    """The frozen parts of a neural run: the inverse-graphics run, its dataset's viewpoint codes and
    cameras, and the generator the dataset was made with (rebuilt for "builtin")."""
    from g3d.datasets import folder as dsf
    from g3d.datasets.manifest import read_manifest
    from g3d.synth.checkpoints import load_generator
    from g3d.synth.viewpoints import load_viewpoints
    from g3d.train.loop import load_run

    run = Path(inverse_run)
    if not is_run(run):
        raise UsageError(f"--inverse {run} is not an inverse-graphics run (no config.json or checkpoints/last.pt): "
                         f"pass a folder written by `g3d train DATASET --out RUN`")
    cfg, inverse, cams, tpl, _ = load_run(run, device)
    if cfg.crop:
        raise UsageError(f"--inverse {run} was trained on crops round each object's mask (g3d train --crop), and the neural renderer "
                         "reads whole views: pass a run trained without --crop")
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
    """A fresh (uncalibrated) mapping network for ``src``'s latent layout and template."""
    return NeuralMapping(src.layout, src.tpl.verts.shape[0], src.G.w_avg.reshape(-1)[: src.layout.w_dim], hidden, shape_modes, gate_per)
