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


def _rodrigues(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices float [B, 3, 3] of axis-angle vectors ``w`` [B, 3] (differentiable, also at 0)."""
    theta = torch.sqrt((w * w).sum(-1, keepdim=True) + 1e-12)[..., None]  # [B, 1, 1]
    k = w / theta[..., 0]
    z = torch.zeros_like(k[:, 0])
    Kx = torch.stack([z, -k[:, 2], k[:, 1], k[:, 2], z, -k[:, 0], -k[:, 1], k[:, 0], z], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(Kx)
    return eye + torch.sin(theta) * Kx + (1 - torch.cos(theta)) * Kx @ Kx


REFINE_STEPS = 40  # render-and-compare steps of refine_cameras
REFINE_SIGMA = 1e-4  # its soft silhouette's sigma: wider than training's final 1e-5, for a basin that reaches a few pixels


def refine_cameras(verts: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor, masks: torch.Tensor,
                   steps: int = REFINE_STEPS, lr: float = 0.02) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render and compare: each camera moved so the mesh's silhouette covers its mask.

    verts float [B, V, 3] (fixed), faces int64 [F, 3], K float [B, 3, 3], R [B, 3, 3], t [B, 3] (the start: the head's
    direction completed by :func:`solve_camera`), masks bool [B, H, W]. The object turns about its origin (the camera
    orbits it: azimuth, elevation, roll) and shifts in the camera frame (where it stands, how far), by Adam on
    1 - soft IoU. Returns (R, t, hard IoU float [B]) of the best step seen for each image (never worse than the start)."""
    from g3d.render.dibr import render

    verts, K, R0, t0 = (a.detach().float() for a in (verts, K, R, t))
    m = masks.float()
    H, W = m.shape[-2:]
    w = torch.zeros(len(R0), 3, requires_grad=True)
    d = torch.zeros(len(R0), 3, requires_grad=True)
    opt = torch.optim.Adam([w, d], lr=lr)
    scale = t0[:, 2:3].abs().clamp(min=1e-3)  # shifts in units of the distance
    best_iou = torch.full((len(R0),), -1.0)
    best_R, best_t = R0.clone(), t0.clone()
    for k in range(steps + 1):
        with torch.enable_grad():  # also under no_grad (eval, predict)
            R = R0 @ _rodrigues(w)
            tt = t0 + d * scale
            out = render(verts, faces, K, R, tt, H, W, sigma=REFINE_SIGMA, silhouette=k < steps)
        with torch.no_grad():
            hard = out.fragments.mask.float()
            iou = (hard * m).flatten(1).sum(1) / ((hard + m) > 0).float().flatten(1).sum(1).clamp(min=1)
            better = iou > best_iou
            best_iou = torch.where(better, iou, best_iou)
            best_R[better], best_t[better] = R[better].detach(), tt[better].detach()
        if k == steps:
            break
        with torch.enable_grad():
            a = out.alpha[:, 0]
            soft_iou = (a * m).flatten(1).sum(1) / (a + m - a * m).flatten(1).sum(1).clamp(min=1e-6)
            opt.zero_grad()
            (1 - soft_iou).sum().backward()
        opt.step()
    return best_R, best_t, best_iou


def predicted_cameras(verts: torch.Tensor, faces: torch.Tensor, azimuth_deg, elevation_deg, K: torch.Tensor, masks: torch.Tensor,
                      refine: bool = True, flips: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The camera of each photo from the network's answer: the head's direction (azimuth_deg, elevation_deg float [B])
    completed from the mask box (:func:`solve_camera`), then, with ``refine``, moved by render and compare
    (:func:`refine_cameras`); with ``flips`` also from the opposite azimuth (the head's commonest large error: front
    and back of a car), keeping whichever covers the mask better. verts float [B, V, 3], K [B, 3, 3] (the images'),
    masks bool [B, H, W]. Returns (R [B, 3, 3], t [B, 3], IoU float [B] of the mesh through that camera)."""
    from g3d.train.crop import mask_box

    v = verts.detach().cpu().double().numpy()
    Kn = K.detach().cpu().double().numpy()
    starts = [0.0, 180.0] if (refine and flips) else [0.0]
    best = None
    for turn in starts:
        Rs, ts = [], []
        for i in range(len(v)):
            if not masks[i].any():
                Rs.append(np.eye(3)), ts.append(np.array([0.0, 0.0, 1e3]))
                continue
            Ri, ti = solve_camera(v[i], float(azimuth_deg[i]) + turn, float(elevation_deg[i]), Kn[i], mask_box(masks[i].cpu().numpy()))
            Rs.append(Ri), ts.append(ti)
        R = torch.as_tensor(np.stack(Rs), dtype=torch.float32)
        t = torch.as_tensor(np.stack(ts), dtype=torch.float32)
        R, t, iou = refine_cameras(verts, faces, K, R, t, masks, steps=REFINE_STEPS if refine else 0)  # 0 steps: scored only
        if best is None:
            best = (R, t, iou)
        else:
            better = iou > best[2]
            best = (torch.where(better[:, None, None], R, best[0]), torch.where(better[:, None], t, best[1]), torch.maximum(iou, best[2]))
    return best
