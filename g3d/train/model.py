"""Inverse-graphics network (image -> deformed template + UV texture) and learnable per-view cameras."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from g3d.train.light import SHININESS_START
from g3d.train.template import Template

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _rodrigues(w: torch.Tensor) -> torch.Tensor:
    """Axis-angle float [N, 3] -> rotation matrices [N, 3, 3] (smooth at 0)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]
    theta = torch.sqrt(theta2 + 1e-12)
    x, y, z = w[:, 0], w[:, 1], w[:, 2]
    O = torch.zeros_like(x)
    Kx = torch.stack([torch.stack([O, -z, y], -1), torch.stack([z, O, -x], -1), torch.stack([-y, x, O], -1)], -2)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(Kx)
    a = torch.where(theta2 < 1e-8, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(theta2 < 1e-8, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / (theta2 + 1e-12))
    return eye + a * Kx + b * (Kx @ Kx)


class ViewCameras(nn.Module):
    """One learnable camera per view: ``R = exp(f dw) R0``, ``t = t0 + f dt``, ``K`` fixed.

    ``K`` float [V, 3, 3] at the training resolution, ``R0`` [V, 3, 3], ``t0`` [V, 3] from
    ``cameras.parquet``, the generator's truth, or pose bins. The deltas start at zero. ``freedom``
    (``f``, float [V], default 1) scales how far one optimiser step moves each view's camera (Adam's step
    on ``dw`` is about the learning rate whatever the gradient, so ``f`` scales the camera's step):
    small for cameras solved from keypoints, large for pose-bin ones (:data:`g3d.train.data.CAMERA_FREEDOM`).
    It is saved with the deltas (they mean nothing without it); runs saved before it existed trained with 1.
    """

    def __init__(self, K: torch.Tensor, R0: torch.Tensor, t0: torch.Tensor, learn: bool = True, freedom: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("K", K.float())
        self.register_buffer("R0", R0.float())
        self.register_buffer("t0", t0.float())
        f = torch.ones(K.shape[0]) if freedom is None else freedom.float()
        self.register_buffer("freedom", f)  # saved: the learned deltas mean nothing without it
        self.dw = nn.Parameter(torch.zeros(K.shape[0], 3), requires_grad=learn)
        self.dt = nn.Parameter(torch.zeros(K.shape[0], 3), requires_grad=learn)

    def forward(self, view_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """view ids int64 [B] -> (K [B, 3, 3], R [B, 3, 3], t [B, 3])."""
        f = self.freedom[view_ids, None]
        R = _rodrigues(f * self.dw[view_ids]) @ self.R0[view_ids]
        return self.K[view_ids], R, self.t0[view_ids] + f * self.dt[view_ids]


def _block(cin: int, cout: int) -> nn.Sequential:
    """Stride-2 conv, GroupNorm, LeakyReLU, then a stride-1 conv: halves the side."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.LeakyReLU(0.2),
    )


class SmallEncoder(nn.Module):
    """A CNN sized for 64-128 px on a CPU: four stride-2 blocks (``width`` x 1-2-4-8 channels, 32-64-128-256 by default,
    GroupNorm, so a prediction never depends on the rest of the batch), a 4 x 4 grid kept in place (not averaged away:
    where the silhouette's edges sit is what tells the size), and a 512-d feature.

    images float [B, 3, H, W] in [0, 1] -> float [B, 512]."""

    out_dim = 512

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = int(width)
        self.blocks = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w))
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Sequential(nn.Linear(8 * w * 16, 512), nn.LeakyReLU(0.2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.blocks(images * 2.0 - 1.0)).flatten(1))


class ResNetEncoder(nn.Module):
    """torchvision ResNet-18 (optionally from an ImageNet state dict the user has), global-pooled, 512-d."""

    out_dim = 512

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        if weights:
            from g3d.weights import load_state_dict

            sd = load_state_dict(weights, "--backbone-weights")
            sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
            net.load_state_dict(sd, strict=False)
        net.fc = nn.Identity()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


BACKBONES = ("small", "resnet18")
LIGHT_ENCODER_WIDTH = 16  # the light's own encoder (InverseGraphicsNet's light_encoder): a SmallEncoder of half the width


class InverseGraphicsNet(nn.Module):
    """Encoder -> shape head (per-vertex offsets of the template and a per-axis scale) and texture head
    (a per-image colour, modulated by a UV detail map).

    ``forward(images float [B, 3, H, W] in [0, 1]) -> (verts [B, V, 3], texture [B, 3, T, T] in [0, 1],
    offsets [B, V, 3])``. The last shape layer and the detail map's last layer start at zero, so an
    untrained network outputs the template (an ellipsoid of ``init_scale`` half-extents) in one colour
    per image: ``texture = sigmoid(colour(feature) + detail(feature))``. The separate colour path is a
    linear read-out of the image feature, so paint colour reaches the texture from the first step.
    """

    def __init__(
        self,
        template: Template,
        tex_res: int = 64,  # side of the UV texture map (a power of two >= 16)
        backbone: str = "small",  # "small" (SmallEncoder) or "resnet18"
        backbone_weights: str | None = None,  # a torchvision resnet18 state dict (e.g. ImageNet); None = random init
        init_scale: tuple[float, float, float] = (0.45, 0.3, 1.0),  # template half-extents x, y, z (a car: width, height, length)
        max_offset: float = 0.3,  # offsets are max_offset * tanh(.)
        color_readout: bool = True,  # the per-image colour path (False: the UV decoder alone, as before issue #10)
        symmetric: bool = True,  # left-right symmetric shapes (offsets averaged with their mirror image)
        camera_head: bool = False,  # also predict where the camera sits, seen from the object (train/camera.py)
        light_head: bool = False,  # also predict the light, which shades the texture (an albedo) in training (train/light.py)
        specular: bool = False,  # with light_head: a specular strength per photo and one learned shininess (train/light.py)
        light_encoder: bool = False,  # with light_head: the light read by its own small encoder (LIGHT_ENCODER_WIDTH), not the shared feature
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        if backbone_weights and backbone != "resnet18":
            raise ValueError("backbone weights are a ResNet-18 state dict: use backbone 'resnet18' with them")
        self.encoder = ResNetEncoder(backbone_weights) if backbone == "resnet18" else SmallEncoder()
        D = self.encoder.out_dim
        V = template.verts.shape[0]
        self.register_buffer("template", template.verts.clone())
        self.symmetric = symmetric
        if symmetric:
            self.register_buffer("mirror", template.mirror.clone(), persistent=False)
            self.register_buffer("flip_x", torch.tensor([-1.0, 1.0, 1.0]), persistent=False)
        self.log_scale = nn.Parameter(torch.log(torch.tensor(init_scale)))
        self.register_buffer("init_log_scale", torch.log(torch.tensor(init_scale)))
        self.max_offset = max_offset
        self.shape_head = nn.Sequential(nn.Linear(D, 512), nn.LeakyReLU(0.2), nn.Linear(512, V * 3 + 3))
        nn.init.zeros_(self.shape_head[2].weight)
        nn.init.zeros_(self.shape_head[2].bias)
        n_up = int(math.log2(tex_res // 4))
        if tex_res < 16 or 4 * 2**n_up != tex_res:
            raise ValueError(f"tex_res must be a power of two >= 16, got {tex_res}")
        self.color_head = nn.Linear(D, 3) if color_readout else None
        self.tex_fc = nn.Linear(D, 128 * 4 * 4)
        ups = []
        ch = 128
        for _ in range(n_up):
            nxt = max(16, ch // 2)
            ups += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(ch, nxt, 3, padding=1), nn.LeakyReLU(0.2)]
            ch = nxt
        ups += [nn.Conv2d(ch, 3, 3, padding=1)]
        if color_readout:  # the detail map starts flat: the colour path alone sets the first textures
            nn.init.zeros_(ups[-1].weight)
            nn.init.zeros_(ups[-1].bias)
        self.tex_dec = nn.Sequential(*ups)
        # (sin, cos) of the camera's azimuth and its elevation / 30 deg, from the image feature (train/camera.py)
        self.camera_head = nn.Sequential(nn.Linear(D, 256), nn.LeakyReLU(0.2), nn.Linear(256, 3)) if camera_head else None
        # a direction towards the light and the ambient's logit (train/light.py), from the image feature
        # (and the specular strength's logit with the material term); with light_encoder, from a feature of its own
        self.light_encoder = SmallEncoder(LIGHT_ENCODER_WIDTH) if light_head and light_encoder else None
        DL = D if self.light_encoder is None else self.light_encoder.out_dim
        self.light_head = nn.Sequential(nn.Linear(DL, 128), nn.LeakyReLU(0.2), nn.Linear(128, 5 if specular else 4)) if light_head else None
        if light_head:  # the light starts overhead at the usual ambient, whatever the photo
            nn.init.zeros_(self.light_head[2].weight)
            nn.init.zeros_(self.light_head[2].bias)
        # one Blinn-Phong exponent for all cars, learned (its log)
        self.log_shininess = nn.Parameter(torch.tensor(math.log(SHININESS_START))) if light_head and specular else None

    @property
    def shininess(self) -> torch.Tensor | None:
        """The learned Blinn-Phong exponent float [] of a network with the material term, else None."""
        return None if self.log_shininess is None else torch.exp(self.log_shininess)

    def forward(self, images: torch.Tensor, with_camera: bool = False, with_light: bool = False):
        """(verts, texture, offsets), then the camera head's output float [B, 3] with ``with_camera``, then the
        light head's float [B, 4] (float [B, 5] with the material term; :func:`g3d.train.light.head_to_light`) with ``with_light``."""
        B = images.shape[0]
        feat = self.encoder(images)
        out = self.shape_head(feat)
        V = self.template.shape[0]
        offsets = self.max_offset * torch.tanh(out[:, : V * 3].view(B, V, 3))
        if self.symmetric:
            offsets = 0.5 * (offsets + offsets[:, self.mirror] * self.flip_x)
        scale = torch.exp(self.log_scale + 0.3 * torch.tanh(out[:, V * 3 :]))  # [B, 3]
        verts = (self.template[None] + offsets) * scale[:, None, :]
        detail = self.tex_dec(self.tex_fc(feat).view(B, 128, 4, 4))
        if self.color_head is not None:
            detail = detail + self.color_head(feat)[:, :, None, None]
        tex = torch.sigmoid(detail)
        out = (verts, tex, offsets)
        if with_camera:
            if self.camera_head is None:
                raise ValueError("this network has no camera head (trained without --camera-head)")
            out += (self.camera_head(feat),)
        if with_light:
            if self.light_head is None:
                raise ValueError("this network has no light head (trained without --light)")
            out += (self.light_head(feat if self.light_encoder is None else self.light_encoder(images)),)
        return out

    @staticmethod
    def split(outs: tuple, with_camera: bool, with_light: bool):
        """:meth:`forward`'s outputs for those flags as (verts, texture, offsets, camera head's output or None, light
        head's or None): the one place that knows where the optional outputs sit (callers keep calling the module
        itself, so DDP's forward hooks run)."""
        cam = outs[3] if with_camera else None
        return outs[0], outs[1], outs[2], cam, (outs[-1] if with_light else None)

    def template_verts(self, batch: int) -> torch.Tensor:
        """The template before training (the baseline of evaluation), float [batch, V, 3]."""
        return (self.template * torch.exp(self.init_log_scale))[None].expand(batch, -1, -1)
