"""The interface every generator in g3d implements (built-in procedural, StyleGAN2, ...).

A generator is a ``torch.nn.Module`` with two halves, as in StyleGAN:

* ``mapping(z, truncation_psi=1.0, truncation_cutoff=None)``: z float32 [N, z_dim] ->
  ws float32 [N, num_ws, w_dim] (one latent row per synthesis layer, truncated towards the
  generator's average latent);
* ``synthesis(ws, noise_mode="const")``: ws float32 [N, num_ws, w_dim] -> images float32
  [N, 3, H, W] in [-1, 1] (StyleGAN's range; real networks overshoot it a little).

The viewpoint code of a multi-view set is a subset of the rows of ws (``viewpoint_layers`` of the
class preset); the sampling loop replaces those rows, the generator never needs to know.

Generators that know their ground truth (the built-in one) also implement
``synthesis_with_truth(ws) -> (images, GroundTruth)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class GroundTruth:
    """What a procedural generator knows about the images it drew, per image of a batch of N.

    ``masks`` bool [N, H, W]; ``K`` float64 [N, 3, 3]; ``R`` float64 [N, 3, 3]; ``t`` float64 [N, 3]
    (the convention of :mod:`g3d.cameras`); ``azimuth_deg``, ``elevation_deg``, ``distance``
    float64 [N]; ``keypoints_3d`` float64 [N, P, 3] in the object frame; ``keypoints_2d``
    float64 [N, P, 2] in pixels (origin top-left corner of the image); ``keypoints_visible``
    bool [N, P]; ``extra``: generator-specific per-image scalars (shape and paint parameters),
    each float64 [N].
    """

    masks: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    azimuth_deg: np.ndarray
    elevation_deg: np.ndarray
    distance: np.ndarray
    keypoints_3d: np.ndarray
    keypoints_2d: np.ndarray
    keypoints_visible: np.ndarray
    extra: dict[str, np.ndarray]
    labels: np.ndarray | None = None  # uint8 [N, H, W]: 255 the object, 100 other instances, 0 background


class Generator(torch.nn.Module):
    """Base class of g3d generators; subclasses set the attributes and implement the two halves."""

    z_dim: int  # size of the input latent z
    w_dim: int  # size of one row of ws
    num_ws: int  # rows of ws (one per synthesis layer)
    resolution: int  # side of the square image synthesis() returns
    # Whether an image's bytes are independent of how many are drawn per call. False for StyleGAN2
    # networks (batched convolutions round differently: measured on the shipped fixtures), True for the
    # built-in generator; --batch-size is part of a run's fingerprint only where it is False.
    batch_invariant: bool = False

    def mapping(
        self,
        z: torch.Tensor,  # float32 [N, z_dim]
        truncation_psi: float = 1.0,  # 1 = no truncation; 0 = every sample is the average
        truncation_cutoff: int | None = None,  # truncate only rows < cutoff; None = all rows
    ) -> torch.Tensor:  # float32 [N, num_ws, w_dim]
        raise NotImplementedError

    def synthesis(
        self,
        ws: torch.Tensor,  # float32 [N, num_ws, w_dim]
        noise_mode: str = "const",  # "const" | "random" | "none" (ignored by noise-free generators)
    ) -> torch.Tensor:  # float32 [N, 3, H, W] in [-1, 1]
        raise NotImplementedError

    @property
    def has_ground_truth(self) -> bool:
        return hasattr(self, "synthesis_with_truth")

    def describe(self) -> dict[str, Any]:
        """What the dataset manifest records about this generator (format, source, sha256...)."""
        return {"format": type(self).__name__}

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")
