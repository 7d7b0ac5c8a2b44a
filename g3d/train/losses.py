"""The paper's losses (Eq. 1): colour, perceptual, silhouette IoU, flatten, Laplacian, vertex move."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from g3d.train.template import Template, laplacian_residual


@dataclass
class LossWeights:
    """L = 20 L1colour + 0.5 Lpercept + 3 Liou + 1 Lflatten + 1 Llaplacian + 0.5 Lmove.

    The paper's Eq. 1 with its shape regularisers at a fifth of its weights (5, 5, 2.5): at 64 px they held
    the meshes near a smooth average car (bench/README.md: Chamfer of the outer surface 0.031 -> 0.025
    on held-out cars, 2D IoU 0.955 -> 0.956). ``LossWeights(flatten=5, laplacian=5, move=2.5)`` is the paper's."""

    color: float = 20.0
    percept: float = 0.5
    iou: float = 3.0
    flatten: float = 1.0
    laplacian: float = 1.0
    move: float = 0.5

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def color_l1(render: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |render - image| inside the mask. render, image float [B, 3, H, W]; mask float [B, 1, H, W]."""
    return ((render - image).abs() * mask).sum() / (mask.sum() * 3).clamp(min=1.0)


def iou_loss(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU of the silhouette ``alpha`` and ``mask`` (float [B, 1, H, W]), averaged over the batch."""
    inter = (alpha * mask).flatten(1).sum(1)
    union = (alpha + mask - alpha * mask).flatten(1).sum(1).clamp(min=1e-6)
    return (1.0 - inter / union).mean()


def flatten_loss(verts: torch.Tensor, tpl: Template) -> torch.Tensor:
    """Mean (1 - cos)^2 between the normals of faces sharing an edge (smooth surfaces)."""
    f = tpl.faces
    a, b, c = verts[:, f[:, 0]], verts[:, f[:, 1]], verts[:, f[:, 2]]
    n = F.normalize(torch.linalg.cross(b - a, c - a), dim=-1, eps=1e-12)
    cos = (n[:, tpl.face_pairs[:, 0]] * n[:, tpl.face_pairs[:, 1]]).sum(-1)
    return ((1.0 - cos) ** 2).mean()


def laplacian_loss(verts: torch.Tensor, tpl: Template) -> torch.Tensor:
    """Mean squared uniform-Laplacian residual."""
    return laplacian_residual(verts, tpl).pow(2).sum(-1).mean()


def move_loss(offsets: torch.Tensor) -> torch.Tensor:
    """Mean squared vertex offset from the template."""
    return offsets.pow(2).sum(-1).mean()


class Perceptual(torch.nn.Module):
    """VGG-16 feature distance (relu1_2 .. relu4_3), from a torchvision VGG-16 state dict the user has."""

    def __init__(self, weights_path: str) -> None:
        super().__init__()
        from torchvision.models import vgg16

        from g3d.weights import load_state_dict

        vgg = vgg16(weights=None)
        vgg.load_state_dict(load_state_dict(weights_path, "--vgg-weights"))
        self.blocks = torch.nn.ModuleList([vgg.features[:4], vgg.features[4:9], vgg.features[9:16], vgg.features[16:23]])
        for p in self.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x, y = (a - self.mean) / self.std, (b - self.mean) / self.std
        loss = a.new_zeros(())
        for blk in self.blocks:
            x, y = blk(x), blk(y)
            loss = loss + (x - y).abs().mean()
        return loss


def albedo_spread(texture: torch.Tensor) -> torch.Tensor:
    """Mean absolute deviation of each texture map float [B, 3, T, T] from its own mean colour: 0 for a map of one
    colour. With a predicted light (``g3d train --light``) the shading can go to the light or be painted into the
    texture, and the views of one car cannot tell which (Lambertian shading under a light fixed to the object looks
    the same from every side); a car's paint is one colour, so a small weight on this sends the shading to the light."""
    return (texture - texture.mean((2, 3), keepdim=True)).abs().mean()
