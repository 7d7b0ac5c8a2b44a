"""THE camera convention of g3d, and its conversions.

World frame = the object's frame
    Origin at the object's centre (the centre of its bounding box), **+y up**, the object's
    **front towards +z**. With front +z and up +y, the object's own **left side is +x** and its
    right side is -x (a driver sitting in a car that faces +z has +x on the left hand).

Extrinsics
    ``R`` [3, 3], ``t`` [3] map world points to camera points, ``x_cam = R @ x_world + t``, in
    OpenCV / COLMAP camera axes: x right, y down, z forward (the viewing direction).
    The camera centre is ``c = -R.T @ t``.

Intrinsics
    ``K = [[f, 0, cx], [0, f, cy], [0, 0, 1]]`` in pixels. Pixel ``(i, j)`` (column i, row j)
    covers ``[i, i+1) x [j, j+1)``, so its centre is at ``(i + 0.5, j + 0.5)`` (COLMAP's
    convention); the principal point of a W x H image is ``(W/2, H/2)``. ``fov_deg`` is the
    horizontal field of view: ``f = W / 2 / tan(fov/2)``.

Azimuth / elevation / distance
    The camera sits at ``distance * (sin(az) cos(el), sin(el), cos(az) cos(el))`` and looks at
    the origin with the world's up direction up in the image (roll 0). Azimuth 0 sees the
    object's front, 90 its left side (+x), 180 its back, 270 its right side. Elevation > 0 is
    above the object. Angles are in degrees; azimuth is returned in [0, 360).

transforms.json (nerfstudio / instant-ngp)
    ``transform_matrix`` is camera-to-world in OpenGL axes (x right, y up, z backward):
    ``c2w_gl = inv([R t; 0 1]) @ diag(1, -1, -1, 1)``.

Every function takes numpy arrays with any number of leading batch dimensions and works in
float64.
"""

from __future__ import annotations

import numpy as np

WORLD_UP = np.array([0.0, 1.0, 0.0])
_OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


def camera_center(azimuth_deg, elevation_deg, distance) -> np.ndarray:
    """Camera centre in world coordinates. Inputs broadcast; returns float64 [..., 3]."""
    az = np.deg2rad(np.asarray(azimuth_deg, dtype=np.float64))
    el = np.deg2rad(np.asarray(elevation_deg, dtype=np.float64))
    d = np.asarray(distance, dtype=np.float64)
    az, el, d = np.broadcast_arrays(az, el, d)
    return np.stack([d * np.sin(az) * np.cos(el), d * np.sin(el), d * np.cos(az) * np.cos(el)], axis=-1)


def look_at(center, target=(0.0, 0.0, 0.0), roll_deg=0.0) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``(R [..., 3, 3], t [..., 3])`` of a camera at ``center`` looking at ``target``.

    The image's up direction is the world's +y (then rotated by ``roll_deg`` about the viewing
    axis, clockwise in the image). The camera must not look straight up or down.
    """
    center = np.asarray(center, dtype=np.float64)
    target = np.broadcast_to(np.asarray(target, dtype=np.float64), center.shape)
    fwd = target - center
    fwd = fwd / np.linalg.norm(fwd, axis=-1, keepdims=True)
    right = np.cross(fwd, np.broadcast_to(WORLD_UP, fwd.shape))
    norm = np.linalg.norm(right, axis=-1, keepdims=True)
    if np.any(norm < 1e-9):
        raise ValueError("look_at: the camera looks straight up or down; the image's up direction is undefined")
    right = right / norm
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd], axis=-2)  # rows: camera x, y, z axes in world coordinates
    roll = np.deg2rad(np.asarray(roll_deg, dtype=np.float64))
    if np.any(roll != 0):
        c, s = np.cos(roll), np.sin(roll)
        z, o = np.zeros_like(c), np.ones_like(c)
        Rz = np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)
        R = Rz @ R
    t = -np.einsum("...ij,...j->...i", R, center)
    return R, t


def from_azimuth_elevation(azimuth_deg, elevation_deg, distance, roll_deg=0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(R [..., 3, 3], t [..., 3])`` of the camera at the given azimuth, elevation and distance."""
    return look_at(camera_center(azimuth_deg, elevation_deg, distance), roll_deg=roll_deg)


def to_azimuth_elevation(R, t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(azimuth_deg in [0, 360), elevation_deg, distance)`` of the camera centre of ``(R, t)``.

    The camera need not look at the origin (an SfM camera rarely does exactly); only its centre
    is used.
    """
    c = center_of(R, t)
    d = np.linalg.norm(c, axis=-1)
    el = np.rad2deg(np.arcsin(np.clip(c[..., 1] / np.maximum(d, 1e-12), -1.0, 1.0)))
    az = np.mod(np.rad2deg(np.arctan2(c[..., 0], c[..., 2])), 360.0)
    return az, el, d


def center_of(R, t) -> np.ndarray:
    """Camera centre ``-R^T t`` in world coordinates, [..., 3]."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    return -np.einsum("...ji,...j->...i", R, t)


def intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """Pinhole ``K`` [3, 3] of a ``width`` x ``height`` image with horizontal field of view ``fov_deg``."""
    f = width / 2.0 / np.tan(np.deg2rad(fov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def fov_of(K, width: int) -> float:
    """Horizontal field of view in degrees of intrinsics ``K`` for an image ``width`` pixels wide."""
    return float(np.rad2deg(2.0 * np.arctan(width / 2.0 / np.asarray(K)[0, 0])))


def object_box(bbox, margin: float = 0.15) -> tuple[int, int, int]:
    """The square crop ``(x0, y0, side)`` in whole pixels around an object's box ``bbox = (x0, y0, x1, y1)``
    (pixels, x1/y1 exclusive, as the shards' ``bbox`` column): centred on the box, its longer side plus
    ``margin`` of it on each side. It may reach past the image: :func:`crop_image` pads there."""
    return fov_box(bbox, 0.0, margin)


def fov_box(bbox, side: float, margin: float = 0.15) -> tuple[int, int, int]:
    """The square crop ``(x0, y0, side)`` in whole pixels centred on an object's box ``bbox = (x0, y0, x1, y1)`` with
    a fixed ``side`` (pixels; the caller's fixed field of view: the object keeps its apparent size), widened to the
    box's longer side plus ``margin`` each side where the object would not fit. It may reach past the image."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"object box {bbox} is empty")
    side = int(max(round(float(side)), np.ceil(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin))))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return int(np.floor(cx - side / 2.0)), int(np.floor(cy - side / 2.0)), side


def crop_intrinsics(K, box: tuple[int, int, int], size: int) -> np.ndarray:
    """``K`` [..., 3, 3] of the crop ``box = (x0, y0, side)`` resampled to ``size`` x ``size`` pixels.

    Exact under the pixel convention above: a point at pixel coordinate u in the photo lands at
    ``(u - x0) * size / side`` in the crop (pixel centres map to pixel centres), so the returned camera,
    with the photo's R and t, projects the object onto the crop exactly as the photo's camera projects
    it onto the photo.
    """
    x0, y0, side = box
    s = size / float(side)
    A = np.array([[s, 0.0, -s * x0], [0.0, s, -s * y0], [0.0, 0.0, 1.0]])
    return A @ np.asarray(K, np.float64)


def project(points, K, R, t) -> tuple[np.ndarray, np.ndarray]:
    """Project world points [..., P, 3] to pixels.

    Returns ``(uv [..., P, 2] in pixels, depth [..., P])``; depth is the camera-space z
    (positive in front of the camera).
    """
    points = np.asarray(points, dtype=np.float64)
    cam = np.einsum("...ij,...pj->...pi", np.asarray(R, np.float64), points) + np.asarray(t, np.float64)[..., None, :]
    z = cam[..., 2]
    pix = np.einsum("...ij,...pj->...pi", np.asarray(K, np.float64), cam)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = pix[..., :2] / pix[..., 2:3]
    return uv, z


def to_transforms_json(K, R, t, width: int, height: int, file_paths: list[str]) -> dict:
    """A nerfstudio ``transforms.json`` dict for one shared ``K`` and per-frame ``R`` [N,3,3], ``t`` [N,3]."""
    K = np.asarray(K, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    frames = []
    for path, Ri, ti in zip(file_paths, R, t):
        frames.append({"file_path": path, "transform_matrix": c2w_opengl(Ri, ti).tolist()})
    return {
        "camera_model": "OPENCV",
        "fl_x": float(K[0, 0]),
        "fl_y": float(K[1, 1]),
        "cx": float(K[0, 2]),
        "cy": float(K[1, 2]),
        "w": int(width),
        "h": int(height),
        "frames": frames,
    }


def c2w_opengl(R, t) -> np.ndarray:
    """Camera-to-world 4x4 in OpenGL axes (the ``transform_matrix`` of transforms.json)."""
    R = np.asarray(R, dtype=np.float64)
    M = np.eye(4)
    M[:3, :3] = R.T @ _OPENCV_TO_OPENGL
    M[:3, 3] = center_of(R, t)
    return M


def from_c2w_opengl(M) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`c2w_opengl`: ``(R, t)`` world-to-camera in OpenCV axes."""
    M = np.asarray(M, dtype=np.float64)
    R = (M[:3, :3] @ _OPENCV_TO_OPENGL).T
    t = -R @ M[:3, 3]
    return R, t


def _rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrices float64 [N, 3, 3] -> axis-angle vectors [N, 3] (angle in radians, up to pi)."""
    R = np.asarray(R, np.float64)
    cos = np.clip((np.trace(R, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], axis=1)
    s = np.linalg.norm(axis, axis=1, keepdims=True)
    # Near pi the antisymmetric part vanishes: take the axis from the symmetric part's largest column.
    near_pi = (s[:, 0] < 1e-6) & (angle > 1.0)
    if near_pi.any():
        B = (R[near_pi] + np.eye(3)) / 2.0
        col = np.argmax(np.diagonal(B, axis1=1, axis2=2), axis=1)
        v = B[np.arange(len(B)), :, col]
        axis[near_pi] = v
        s[near_pi] = np.linalg.norm(v, axis=1, keepdims=True)
    return np.where(s > 1e-12, axis / np.maximum(s, 1e-12), 0.0) * angle[:, None]


def _rotmat(w: np.ndarray) -> np.ndarray:
    """Axis-angle vectors float64 [N, 3] -> rotation matrices [N, 3, 3] (Rodrigues)."""
    w = np.asarray(w, np.float64)
    angle = np.linalg.norm(w, axis=1)
    k = np.where(angle[:, None] > 1e-12, w / np.maximum(angle, 1e-12)[:, None], 0.0)
    Kx = np.zeros((len(w), 3, 3))
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    Kx[:, 1, 0], Kx[:, 2, 0], Kx[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * Kx + (1.0 - c) * (Kx @ Kx)


def interpolate(R_a, t_a, R_b, t_b, w) -> tuple[np.ndarray, np.ndarray]:
    """Cameras between a and b: (R [N, 3, 3], t [N, 3]), world-to-camera, for weights ``w`` [N] (0: a, 1: b).

    Object-centred: the rotation is the geodesic one (``R = exp(w log(R_b R_a^T)) R_a``) and ``t``, where the object's
    origin sits in the camera's frame, moves linearly; so a camera between two that look at the object looks at it too,
    at a distance between theirs, and the camera centre swings round the object with the rotation.
    R_a, R_b float [N, 3, 3]; t_a, t_b [N, 3].
    """
    R_a, R_b = np.asarray(R_a, np.float64).reshape(-1, 3, 3), np.asarray(R_b, np.float64).reshape(-1, 3, 3)
    t_a, t_b = np.asarray(t_a, np.float64).reshape(-1, 3), np.asarray(t_b, np.float64).reshape(-1, 3)
    w = np.asarray(w, np.float64).reshape(-1)
    R = _rotmat(w[:, None] * _rotvec(R_b @ np.transpose(R_a, (0, 2, 1)))) @ R_a
    return R, (1.0 - w)[:, None] * t_a + w[:, None] * t_b
