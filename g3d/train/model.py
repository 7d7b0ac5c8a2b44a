"""Inverse-graphics network (image -> deformed template + UV texture) and learnable per-view cameras."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

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
    """One learnable camera per view: ``R = exp(dw) R0``, ``t = t0 + dt``, ``K`` fixed.

    ``K`` float [V, 3, 3] at the training resolution, ``R0`` [V, 3, 3], ``t0`` [V, 3] from
    ``cameras.parquet``, the generator's truth, or pose bins. The deltas start at zero.
    """

    def __init__(self, K: torch.Tensor, R0: torch.Tensor, t0: torch.Tensor, learn: bool = True) -> None:
        super().__init__()
        self.register_buffer("K", K.float())
        self.register_buffer("R0", R0.float())
        self.register_buffer("t0", t0.float())
        self.dw = nn.Parameter(torch.zeros(K.shape[0], 3), requires_grad=learn)
        self.dt = nn.Parameter(torch.zeros(K.shape[0], 3), requires_grad=learn)

    def forward(self, view_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """view ids int64 [B] -> (K [B, 3, 3], R [B, 3, 3], t [B, 3])."""
        R = _rodrigues(self.dw[view_ids]) @ self.R0[view_ids]
        return self.K[view_ids], R, self.t0[view_ids] + self.dt[view_ids]


class InverseGraphicsNet(nn.Module):
    """ResNet-18 encoder -> per-vertex offsets of the template, per-axis scale, and a UV texture map.

    ``forward(images float [B, 3, H, W] in [0, 1]) -> (verts [B, V, 3], texture [B, 3, T, T] in [0, 1],
    offsets [B, V, 3])``. The last shape layer starts at zero, so an untrained network outputs the
    template (an ellipsoid of ``init_scale`` half-extents).
    """

    def __init__(
        self,
        template: Template,
        tex_res: int = 64,  # side of the UV texture map (a power of two >= 16)
        backbone_weights: str | None = None,  # a torchvision resnet18 state dict (e.g. ImageNet); None = random init
        init_scale: tuple[float, float, float] = (0.45, 0.3, 1.0),  # template half-extents x, y, z (a car: width, height, length)
        max_offset: float = 0.3,  # offsets are max_offset * tanh(.)
    ) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        if backbone_weights:
            from g3d.filters.segmenters import load_state_dict

            sd = load_state_dict(backbone_weights)
            sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
            net.load_state_dict(sd, strict=False)
        net.fc = nn.Identity()
        self.encoder = net
        V = template.verts.shape[0]
        self.register_buffer("template", template.verts.clone())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.log_scale = nn.Parameter(torch.log(torch.tensor(init_scale)))
        self.register_buffer("init_log_scale", torch.log(torch.tensor(init_scale)))
        self.max_offset = max_offset
        self.shape_head = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, V * 3 + 3))
        nn.init.zeros_(self.shape_head[2].weight)
        nn.init.zeros_(self.shape_head[2].bias)
        n_up = int(math.log2(tex_res // 4))
        if 4 * 2**n_up != tex_res:
            raise ValueError(f"tex_res must be a power of two >= 16, got {tex_res}")
        self.tex_fc = nn.Linear(512, 128 * 4 * 4)
        ups = []
        ch = 128
        for _ in range(n_up):
            nxt = max(16, ch // 2)
            ups += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(ch, nxt, 3, padding=1), nn.LeakyReLU(0.2)]
            ch = nxt
        ups += [nn.Conv2d(ch, 3, 3, padding=1)]
        self.tex_dec = nn.Sequential(*ups)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B = images.shape[0]
        feat = self.encoder((images - self.mean) / self.std)
        out = self.shape_head(feat)
        V = self.template.shape[0]
        offsets = self.max_offset * torch.tanh(out[:, : V * 3].view(B, V, 3))
        scale = torch.exp(self.log_scale + 0.3 * torch.tanh(out[:, V * 3 :]))  # [B, 3]
        verts = (self.template[None] + offsets) * scale[:, None, :]
        tex = torch.sigmoid(self.tex_dec(self.tex_fc(feat).view(B, 128, 4, 4)))
        return verts, tex, offsets

    def template_verts(self, batch: int) -> torch.Tensor:
        """The template before training (the baseline of evaluation), float [batch, V, 3]."""
        return (self.template * torch.exp(self.init_log_scale))[None].expand(batch, -1, -1)
