"""The camera of one photo: the direction the network predicts, and the rest solved from the mask.

The camera head predicts where the camera sits as seen from the object: azimuth and elevation of the
camera centre in the object frame (:mod:`g3d.cameras`' convention). What a crop cannot tell (how far
away the camera was, and where in the photo the object stood) follows from the photo's own pixels:
:func:`solve_camera` places the camera on that direction at the distance, and turns it towards the pixel,
at which the predicted mesh's projected box matches the mask's box, with the photo's intrinsics.
"""

from __future__ import annotations

import numpy as np
import torch

from g3d import cameras as camlib

ELEVATION_SCALE = 30.0  # the head's elevation output is in units of 30 degrees


def view_direction(R: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(azimuth rad [B], elevation rad [B]) of the camera centres of ``R`` [B, 3, 3], ``t`` [B, 3] (object frame)."""
    c = -(R.transpose(1, 2) @ t[..., None])[..., 0]
    az = torch.atan2(c[:, 0], c[:, 2])
    el = torch.atan2(c[:, 1], torch.sqrt(c[:, 0] ** 2 + c[:, 2] ** 2).clamp(min=1e-9))
    return az, el


def head_to_angles(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's raw output float [B, 3] (sin, cos of the azimuth, scaled elevation) -> (azimuth rad, elevation rad)."""
    return torch.atan2(out[:, 0], out[:, 1]), torch.deg2rad(out[:, 2] * ELEVATION_SCALE)


def camera_loss(out: torch.Tensor, az: torch.Tensor, el: torch.Tensor) -> torch.Tensor:
    """Supervision of the head's output [B, 3] by the true direction (az, el rad [B]): the (sin, cos) pair against
    the azimuth's (squared distance, 0 when exact, 4 when opposite) plus the elevation's squared error in radians."""
    target = torch.stack([torch.sin(az), torch.cos(az)], -1)
    return ((out[:, :2] - target) ** 2).sum(-1).mean() + ((torch.deg2rad(out[:, 2] * ELEVATION_SCALE) - el) ** 2).mean()


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation [3, 3] taking unit vector ``a`` to unit vector ``b``."""
    v = np.cross(a, b)
    s, c = np.linalg.norm(v), float(np.dot(a, b))
    if s < 1e-12:
        return np.eye(3)
    k = v / s
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * Kx + (1 - c) * Kx @ Kx


def solve_camera(verts: np.ndarray, azimuth_deg: float, elevation_deg: float, K: np.ndarray, box, iterations: int = 8,
                 distance: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``(R [3, 3], t [3])`` of a camera at ``(azimuth_deg, elevation_deg)`` from the object whose mesh
    ``verts`` float [V, 3] projects, through ``K`` [3, 3], onto the mask box ``box = (x0, y0, x1, y1)`` (pixels, x1/y1
    exclusive): the distance scales the projected box to the mask's size, the camera turns so its centre lands on the
    mask box's centre (roll: the smallest turn from the look-at camera, so up stays about up)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    size_m, centre_m = np.array([x1 - x0, y1 - y0]), np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    d = camlib.camera_center(azimuth_deg, elevation_deg, 1.0)
    Kinv = np.linalg.inv(K)

    def pose(s: float, aim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The camera at distance ``s`` on the direction, turned so the object's origin lands on pixel ``aim``."""
        c = s * d
        ray = Kinv @ np.array([aim[0], aim[1], 1.0])
        R = _rotation_between(np.array([0.0, 0.0, 1.0]), ray / np.linalg.norm(ray)) @ camlib.look_at(c)[0]
        return R, -R @ c

    aim, s = centre_m.copy(), float(distance)
    for _ in range(iterations):
        uv, _ = camlib.project(verts, K, *pose(s, aim))
        s *= float(np.sqrt(np.prod((uv.max(0) - uv.min(0)) / np.maximum(size_m, 1e-6))))  # size ~ 1 / distance
        aim = aim + (centre_m - (uv.max(0) + uv.min(0)) / 2)
    return pose(s, aim)
