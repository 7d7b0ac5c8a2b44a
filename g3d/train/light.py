"""The light the inverse-graphics network predicts (``g3d train --light``): DIB-R's ambient plus one directional
light, in the object frame, shading the predicted texture (then an albedo) in training. Its figures against the built-in
truth are :func:`g3d.train.evaluate.light_figures`.

Where the training data carries each image's true light (the built-in generator's ``gt_light_*`` columns,
:data:`LIGHT_COLUMNS`), the head is also supervised by it (:func:`light_loss`, ``g3d train --light-weight``), as the
camera head is by the cameras: with a light fixed in the object frame, Lambertian shading baked into the texture renders
every view exactly as albedo times light does, so the render losses alone cannot tell the two apart (measured in
bench/README.md, "Light and albedo"). A StyleGAN's data has no such columns: its light learns from the render alone.

The model is the built-in generator's own: shade = ambient + (1 - ambient) * max(0, n . l), with ``l`` the unit
direction *towards* the light (the generator's ``light_azimuth_deg`` / ``light_elevation_deg``, object frame, y up)
and ``ambient`` in 0..1; and with a material term (``g3d train --light``'s default ``--specular``) a white Blinn-Phong
highlight on top, ``specular * max(0, n . h) ** shininess`` (:class:`g3d.render.dibr.Lighting`). The head's raw output
float [B, 4] (float [B, 5] with the material term) is a direction (normalised, around straight up at the start), the
ambient's logit and the specular strength's logit (per photo: a car's paint); the shininess is one learned number
for all cars (:attr:`g3d.train.model.InverseGraphicsNet.shininess`). Without the highlight, a Lambertian albedo has
to paint the photo's highlights in, and they move with the light: measured with the true light and the true car,
no network (bench/light.py --ceiling), the Lambertian albedo changes across two lights 2.5x less than the photo does,
the Blinn-Phong one 39.5x less (9.5x with the normals averaged over each pixel).
"""

from __future__ import annotations

import numpy as np
import torch

from g3d.render.dibr import Lighting

LIGHT_COLUMNS = ("gt_light_azimuth_deg", "gt_light_elevation_deg", "gt_ambient")  # the built-in generator's truth
AMBIENT_START = 0.45  # the head's ambient before training (the built-in generator draws 0.3-0.55)
SPECULAR_START = 0.1  # the head's specular strength before training
SHININESS_START = 16.0  # the learned shininess before training (Blinn-Phong exponent)


def light_direction(azimuth_deg, elevation_deg) -> np.ndarray:
    """Unit directions towards the light float64 [N, 3] (object frame, y up; azimuth from +z towards +x), as the
    built-in generator defines them."""
    az, el = np.radians(np.asarray(azimuth_deg, np.float64)), np.radians(np.asarray(elevation_deg, np.float64))
    return np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], -1)


def head_to_light(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The light head's raw output float [B, 4] -> (direction float [B, 3], unit; ambient float [B] in 0..1)."""
    up = torch.tensor([0.0, 1.0, 0.0], dtype=out.dtype, device=out.device)
    d = out[:, :3] + up
    d = d / d.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    return d, torch.sigmoid(out[:, 3] + float(np.log(AMBIENT_START / (1 - AMBIENT_START))))


def head_to_specular(out: torch.Tensor) -> torch.Tensor | None:
    """The light head's raw output float [B, 5] -> the specular strength float [B] in 0..1; None for a head without
    the material term (float [B, 4])."""
    if out.shape[1] < 5:
        return None
    return torch.sigmoid(out[:, 4] + float(np.log(SPECULAR_START / (1 - SPECULAR_START))))


def lighting_of(direction: torch.Tensor, ambient: torch.Tensor, specular: torch.Tensor | None = None,
                shininess: torch.Tensor | float | None = None) -> Lighting:
    """The renderer's per-image :class:`Lighting` for directions float [B, 3] and ambients float [B]; with
    ``specular`` float [B] (and ``shininess``, one number or float [B]) a highlight too."""
    if specular is None:
        return Lighting(ambient=ambient, diffuse=1.0 - ambient, direction=direction)
    return Lighting(ambient=ambient, diffuse=1.0 - ambient, direction=direction, specular=specular,
                    shininess=SHININESS_START if shininess is None else shininess)


def true_light(extra: dict[str, np.ndarray]) -> np.ndarray | None:
    """float32 [N, 4]: each image's true light, the unit direction towards it [3] and the ambient, from the
    :data:`LIGHT_COLUMNS` of a :class:`g3d.train.data.PairData`'s ``extra``; None when the data lacks any of them."""
    if not all(c in extra for c in LIGHT_COLUMNS):
        return None
    az, el, amb = (np.asarray(extra[c], np.float64) for c in LIGHT_COLUMNS)
    if not (np.isfinite(az) & np.isfinite(el) & np.isfinite(amb)).all():
        return None
    return np.concatenate([light_direction(az, el), amb[:, None]], 1).astype(np.float32)


def light_loss(direction: torch.Tensor, ambient: torch.Tensor, truth: torch.Tensor, ambient_weight: float = 1.0) -> torch.Tensor:
    """The head's light against the truth: mean (1 - cos) of the angle between the directions float [B, 3] and
    truth[:, :3], plus ``ambient_weight`` times the mean absolute error of the ambients float [B] against truth[:, 3]."""
    cos = (direction * truth[:, :3]).sum(-1)
    return (1.0 - cos).mean() + ambient_weight * (ambient - truth[:, 3]).abs().mean()
