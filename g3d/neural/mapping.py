"""StyleGAN-R's mapping network (paper §4.2): camera, shape, texture and background -> the generator's ws.

The generator's latent ws float [N, num_ws, w_dim] is split by rows: the *viewpoint rows* (the class
preset's ``viewpoint_layers``, recorded in the dataset's manifest) and the *content rows* (all others).
An MLP maps the camera to the viewpoint rows. Shape (the inverse-graphics network's mesh), texture (its UV
map) and background (the input photo outside the predicted mask) are each encoded to a full content code,
and the three are blended per content dimension by a learned softmax gate shared by every sample, so each
dimension can learn which of the three it belongs to (an entropy penalty pushes it to one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from g3d.errors import UsageError

SOURCES = ("shape", "texture", "background")
LIGHT = "light"  # the fourth source, where the inverse network predicts the light (g3d train --light)


@dataclass(frozen=True)
class LatentLayout:
    """Which rows of ws the camera sets and which the content sets, and the content row groups.

    ``groups``: the content rows in blocks that training draws from independent latents (style mixing),
    so that a block's value carries no information about another's: the built-in generator's row groups
    (shape, paint, background, light), else the content rows in three contiguous blocks (coarse, middle,
    fine layers)."""

    num_ws: int
    w_dim: int
    viewpoint_rows: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]

    @property
    def content_rows(self) -> tuple[int, ...]:
        return tuple(r for r in range(self.num_ws) if r not in self.viewpoint_rows)

    @property
    def content_dim(self) -> int:
        return len(self.content_rows) * self.w_dim

    @property
    def viewpoint_dim(self) -> int:
        return len(self.viewpoint_rows) * self.w_dim

    @staticmethod
    def of(G, viewpoint_rows) -> "LatentLayout":
        """The layout of generator ``G`` (``num_ws``, ``w_dim``, optional ``row_groups``) with these viewpoint rows."""
        vp = tuple(int(r) for r in viewpoint_rows)
        if not vp or min(vp) < 0 or max(vp) >= G.num_ws:
            raise UsageError(f"viewpoint rows {list(vp)} do not fit a generator with {G.num_ws} ws rows: "
                             "use the generator the inverse-graphics run's dataset was made with")
        content = [r for r in range(G.num_ws) if r not in vp]
        if not content:
            raise UsageError(f"every ws row of the generator is a viewpoint row ({list(vp)}): nothing is left for shape, texture and background")
        named = getattr(G, "row_groups", None)
        if named:
            groups = [tuple(r for r in g if r in content) for g in named]
            covered = {r for g in groups for r in g}
            groups += [(r,) for r in content if r not in covered]
        else:
            groups = [tuple(int(r) for r in b) for b in np.array_split(np.array(content), min(3, len(content)))]
        return LatentLayout(int(G.num_ws), int(G.w_dim), vp, tuple(g for g in groups if g))


def camera_features(azimuth_deg, elevation_deg, distance) -> torch.Tensor:
    """The camera as the mapping network reads it: float32 [B, 4] = (cos az, sin az, elevation in
    radians, log(distance / 4)), from arrays or tensors of shape [B]."""
    az = torch.deg2rad(torch.as_tensor(np.asarray(azimuth_deg, dtype=np.float64)))
    el = torch.deg2rad(torch.as_tensor(np.asarray(elevation_deg, dtype=np.float64)))
    d = torch.as_tensor(np.asarray(distance, dtype=np.float64))
    return torch.stack([torch.cos(az), torch.sin(az), el, torch.log(d / 4.0)], -1).float()


def _mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, cout))


class _ImageCode(nn.Module):
    """A small CNN: image float [B, 3, H, W] in [0, 1] -> code float [B, cout] (four stride-2 blocks, GroupNorm),
    with the image's colour layout beside its features (the mean colour of each cell of a 4 x 4 grid, and each
    channel's spread): GroupNorm removes each sample's mean, so without them a flat colour (a texture map of
    one paint) would give every image the same code, and sky and ground colours would have to be found by the
    convolutions alone."""

    def __init__(self, cout: int, hidden: int) -> None:
        super().__init__()
        from g3d.train.model import SmallEncoder

        self.enc = SmallEncoder()
        self.out = nn.Sequential(nn.Linear(SmallEncoder.out_dim + 51, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, cout))

    side = 32  # inputs are read at 32 px: colours and layout need no more, and it is 4x cheaper than 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([nn.functional.adaptive_avg_pool2d(x, 4).flatten(1), x.std((2, 3))], 1) * 4 - 2
        if x.shape[-1] > self.side:
            x = nn.functional.interpolate(x, size=(max(1, round(self.side * x.shape[-2] / x.shape[-1])), self.side), mode="area")
        return self.out(torch.cat([self.enc(x), stats], 1))


class NeuralMapping(nn.Module):
    """camera [B, 4] (:func:`camera_features`), verts float [B, V, 3] (the predicted mesh), texture float
    [B, 3, T, T] in [0, 1], background float [B, 3, H, W] in [0, 1] (the photo, zero inside the predicted
    mask) and, with ``light``, the predicted light float [B, 4] (unit direction towards it, ambient) -> ws
    float [B, num_ws, w_dim]. With ``light`` the light is a fourth source (its own MLP and a row of the gate), so a
    swap can move the light alone; :attr:`sources` names them in the order of :meth:`codes`.

    Outputs are offsets from the generator's average latent ``w_avg`` (float [w_dim]), so an untrained
    mapping answers the average car. ``gate``: "learned" (the softmax over ``gate_logits``), "uniform"
    (every source weighs 1/3: the mapping that ignores the gate, a baseline of evaluation).

    ``gate_per``: "dim" -- one choice per content dimension, the paper's (``gate_logits`` [3, C]); "row" --
    one per content row of ws ([3, content rows], the default). Measured on the built-in generator (bench/README.md):
    per dimension, the evidence for a source is the small part of each dimension's variance it can explain,
    and the shape kept a share of the paint and background dimensions (shape-swap leakage ratio 2.4); per
    row the evidence adds up over the row's w_dim dimensions (58)."""

    def __init__(self, layout: LatentLayout, n_verts: int, w_avg: torch.Tensor, hidden: int = 256, shape_modes: int = 8,
                 gate_per: str = "row", light: bool = False) -> None:
        super().__init__()
        self.layout = layout
        self.sources = SOURCES + ((LIGHT,) if light else ())
        C, P = layout.content_dim, layout.viewpoint_dim
        self.camera = _mlp(4, hidden, P)
        self.shape = _mlp(shape_modes, hidden, C)
        self.texture = _ImageCode(C, hidden)
        self.background = _ImageCode(C, hidden)
        self.light = _mlp(4, hidden, C) if light else None
        if gate_per not in ("row", "dim"):
            raise UsageError(f"gate_per must be 'row' or 'dim', got {gate_per!r}")
        self.gate_per = gate_per
        self.gate_logits = nn.Parameter(torch.zeros(len(self.sources), len(layout.content_rows) if gate_per == "row" else C))
        w_avg = torch.as_tensor(w_avg, dtype=torch.float32).reshape(-1)
        if w_avg.numel() != layout.w_dim:
            raise UsageError(f"the generator's w_avg has {w_avg.numel()} values but its ws rows {layout.w_dim}")
        self.register_buffer("w_avg", w_avg.clone())
        # The mesh as the shape MLP reads it: its first ``shape_modes`` principal modes over a calibration
        # batch of predicted meshes (:meth:`calibrate`), whitened. Cars differ by a few percent of their size
        # (raw coordinates would hide it), and the inverse network's meshes also move a little with the paint
        # colour: the weak modes that carry it are left out, so the shape code cannot leak the paint.
        self.register_buffer("verts_mean", torch.zeros(n_verts * 3))
        self.register_buffer("modes", torch.zeros(n_verts * 3, shape_modes))
        self.register_buffer("vp_rows", torch.tensor(layout.viewpoint_rows), persistent=False)
        self.register_buffer("ct_rows", torch.tensor(layout.content_rows), persistent=False)

    def gate(self, kind: str = "learned") -> torch.Tensor:
        """Weights of each source (:attr:`sources`) per content dimension, float [S, C] (columns sum to 1)."""
        if kind == "uniform":
            p = torch.full_like(self.gate_logits, 1.0 / len(self.sources))
        elif kind == "learned":
            p = torch.softmax(self.gate_logits, 0)
        else:
            raise ValueError(f"gate must be 'learned' or 'uniform', got {kind!r}")
        return p.repeat_interleave(self.layout.w_dim, 1) if self.gate_per == "row" else p

    def gate_entropy(self) -> torch.Tensor:
        """Mean entropy (nats) of the gate's choices: log 3 when undecided, 0 when each picks one source."""
        p = torch.softmax(self.gate_logits, 0)
        return -(p * torch.log(p.clamp(min=1e-12))).sum(0).mean()

    @torch.no_grad()
    def calibrate(self, verts: torch.Tensor) -> None:
        """Set the shape input's modes from predicted meshes float [B, V, 3] (B > shape_modes)."""
        x = verts.flatten(1).double()
        k = self.modes.shape[1]
        if x.shape[0] <= k:
            raise ValueError(f"calibrate needs more than {k} meshes, got {x.shape[0]}")
        mean = x.mean(0)
        _, sv, vt = torch.linalg.svd(x - mean, full_matrices=False)
        std = (sv[:k] / (x.shape[0] - 1) ** 0.5).clamp(min=1e-9)
        self.verts_mean.copy_(mean.float())
        self.modes.copy_((vt[:k].T / std).float())  # projections onto the modes, each of unit spread

    def shape_input(self, verts: torch.Tensor) -> torch.Tensor:
        """verts float [B, V, 3] -> the whitened principal-mode coordinates the shape MLP reads, float [B, shape_modes]."""
        return (verts.flatten(1) - self.verts_mean) @ self.modes

    @property
    def has_light(self) -> bool:
        return self.light is not None

    def codes(self, verts: torch.Tensor, texture: torch.Tensor, background: torch.Tensor, light: torch.Tensor | None = None) -> torch.Tensor:
        """Content codes of the sources, float [S, B, C] (S = 3, or 4 with the light float [B, 4], which a light
        mapping needs)."""
        shape_in = self.shape_input(verts)
        out = [self.shape(shape_in), self.texture(texture), self.background(background)]
        if self.light is not None:
            if light is None:
                raise ValueError("this mapping has a light code: pass the predicted light")
            out.append(self.light(light))
        return torch.stack(out)

    def assemble(self, camera: torch.Tensor, codes: torch.Tensor, gate: str = "learned") -> torch.Tensor:
        """ws float [B, num_ws, w_dim] from camera [B, 4] and source codes [S, B, C] (each source's code may
        come from a different photo: that is a swap)."""
        L = self.layout
        B = camera.shape[0]
        content = (self.gate(gate)[:, None] * codes).sum(0)
        ws = self.w_avg.expand(B, L.num_ws, L.w_dim).clone()
        ws[:, self.vp_rows] = ws[:, self.vp_rows] + self.camera(camera).view(B, len(L.viewpoint_rows), L.w_dim)
        ws[:, self.ct_rows] = ws[:, self.ct_rows] + content.view(B, len(L.content_rows), L.w_dim)
        return ws

    def forward(self, camera: torch.Tensor, verts: torch.Tensor, texture: torch.Tensor, background: torch.Tensor,
                light: torch.Tensor | None = None, gate: str = "learned") -> torch.Tensor:
        return self.assemble(camera, self.codes(verts, texture, background, light), gate)
