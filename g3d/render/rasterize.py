"""Batched z-buffer triangle rasterizer in plain PyTorch, with barycentric outputs.

Work is proportional to the pixels inside each face's bounding box, not pixels x faces: every
(face, pixel) pair inside a box is enumerated exactly (``repeat_interleave`` over box sizes), the
nearest face per pixel is found with one deterministic ``scatter_reduce("amin")`` over keys that
pack (depth bits, face id) into an int64, and barycentrics are recomputed for the winning face
only, so they are differentiable with respect to the vertex positions (the DIB-R style renderer of
the trainer builds on this).

Coordinates: vertices are given in camera space (OpenCV axes, z forward, see :mod:`g3d.cameras`)
together with intrinsics ``K``; pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEAR = 1e-3  # faces with a vertex closer than this (camera-space z) are dropped
_NO_FACE = torch.iinfo(torch.int64).max


@dataclass
class Fragments:
    """Per-pixel result of :func:`rasterize` for a batch of B images of H x W pixels.

    ``face_id`` int64 [B, H, W]: index into ``faces`` of the visible face, -1 for background.
    ``bary`` float32 [B, H, W, 3]: perspective-correct barycentric weights of that face's three
    vertices (0 on background). ``depth`` float32 [B, H, W]: camera-space z (0 on background).
    """

    face_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """bool [B, H, W]: pixels covered by any face."""
        return self.face_id >= 0


def project_vertices(verts_cam: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pinhole projection. ``verts_cam`` float [B, V, 3], ``K`` float [B, 3, 3] -> float [B, V, 3] = (u, v, z)."""
    z = verts_cam[..., 2]
    zs = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    u = K[:, 0, 0, None] * verts_cam[..., 0] / zs + K[:, 0, 2, None]
    v = K[:, 1, 1, None] * verts_cam[..., 1] / zs + K[:, 1, 2, None]
    return torch.stack([u, v, z], dim=-1)


def _face_boxes(uvz_f: torch.Tensor, height: int, width: int, cull_backfaces: bool):
    """Integer pixel boxes [x0, x1] x [y0, y1] (inclusive) of the pixel centres each face may cover."""
    u, v, z = uvz_f[..., 0], uvz_f[..., 1], uvz_f[..., 2]  # each [B, F, 3]
    area2 = (u[..., 1] - u[..., 0]) * (v[..., 2] - v[..., 0]) - (v[..., 1] - v[..., 0]) * (u[..., 2] - u[..., 0])
    valid = (z.min(dim=-1).values > NEAR) & (area2.abs() > 1e-12)
    if cull_backfaces:
        # With y pointing down in the image, faces wound counter-clockwise as seen from the camera
        # (outward normals towards the viewer) have a negative signed area here.
        valid &= area2 < 0
    x0 = torch.ceil(u.min(dim=-1).values - 0.5).clamp(0, width)
    x1 = torch.floor(u.max(dim=-1).values - 0.5).clamp(-1, width - 1)
    y0 = torch.ceil(v.min(dim=-1).values - 0.5).clamp(0, height)
    y1 = torch.floor(v.max(dim=-1).values - 0.5).clamp(-1, height - 1)
    bw = (x1 - x0 + 1).clamp(min=0)
    bh = (y1 - y0 + 1).clamp(min=0)
    count = torch.where(valid, bw * bh, torch.zeros_like(bw)).long()
    return x0.long(), y0.long(), bw.long(), count, area2


def box_pixel_pairs(
    x0: torch.Tensor,  # int64 [M] first pixel column of each box
    y0: torch.Tensor,  # int64 [M] first pixel row
    bw: torch.Tensor,  # int64 [M] box width in pixels
    count: torch.Tensor,  # int64 [M] pixels in the box (0 skips it)
    max_pairs: int,  # pairs per chunk (bounds memory); a single larger box is one chunk
):
    """Every (box, pixel) pair of the boxes, in chunks: yields (box index, x, y), each int64 [P].

    Exact enumeration with ``repeat_interleave`` over the box sizes, so the cost follows the sum of
    the box areas (a few huge faces do not blow up a padded layout).
    """
    cum = torch.cumsum(count, 0)
    M = count.numel()
    if M == 0 or int(cum[-1]) == 0:
        return
    start = 0
    while start < M:
        base = int(cum[start - 1]) if start > 0 else 0
        end = max(start + 1, min(M, int(torch.searchsorted(cum, base + max_pairs, right=True))))
        ids = torch.arange(start, end, device=count.device)
        cnt = count[start:end]
        start = end
        n = int(cnt.sum())
        if n == 0:
            continue
        box = ids.repeat_interleave(cnt)
        local = torch.arange(n, device=count.device) - (torch.cumsum(cnt, 0) - cnt).repeat_interleave(cnt)
        w = bw.index_select(0, box)
        yield box, x0.index_select(0, box) + local % w, y0.index_select(0, box) + torch.div(local, w, rounding_mode="floor")


def _edge_bary(ua, va, ub, vb, uc, vc, px, py, area2):
    """Screen-space barycentrics (l0, l1, l2) of points (px, py) in triangles a, b, c."""
    l0 = ((ub - px) * (vc - py) - (vb - py) * (uc - px)) / area2
    l1 = ((uc - px) * (va - py) - (vc - py) * (ua - px)) / area2
    l2 = 1.0 - l0 - l1
    return l0, l1, l2


def rasterize(
    verts_cam: torch.Tensor,  # float32 [B, V, 3] camera-space vertices (OpenCV axes)
    faces: torch.Tensor,  # int64 [F, 3] vertex indices, shared by the batch
    K: torch.Tensor,  # float32 [B, 3, 3] intrinsics in pixels
    height: int,
    width: int,
    cull_backfaces: bool = False,  # drop faces whose outward side (counter-clockwise winding) faces away
    max_pairs: int = 4_000_000,  # (face, pixel) candidate pairs processed per chunk; bounds memory
) -> Fragments:
    """Rasterize a batch of meshes that share one topology. Returns :class:`Fragments`."""
    B, V, _ = verts_cam.shape
    F = faces.shape[0]
    device = verts_cam.device
    uvz = project_vertices(verts_cam, K)  # [B, V, 3]
    with torch.no_grad():
        uvz_d = uvz.detach()
        uvz_f = uvz_d[:, faces]  # [B, F, 3 verts, 3]
        x0, y0, bw, count, area2 = _face_boxes(uvz_f, height, width, cull_backfaces)
        # Flat per-face tables (several 1-D gathers beat one gather over a [K, N] table on CPU).
        flat = uvz_f.reshape(B * F, 3, 3)
        ua, va, za = flat[:, 0, 0], flat[:, 0, 1], flat[:, 0, 2]
        ub, vb, zb = flat[:, 1, 0], flat[:, 1, 1], flat[:, 1, 2]
        uc, vc, zc = flat[:, 2, 0], flat[:, 2, 1], flat[:, 2, 2]
        area_f = area2.reshape(-1)
        x0f, y0f, bwf, cntf = x0.reshape(-1), y0.reshape(-1), bw.reshape(-1), count.reshape(-1)
        batch_of = torch.arange(B, device=device).repeat_interleave(F)
        face_of = torch.arange(F, device=device).repeat(B)

        zbuf = torch.full((B * height * width,), _NO_FACE, dtype=torch.int64, device=device)
        for pair_face, px_i, py_i in box_pixel_pairs(x0f, y0f, bwf, cntf, max_pairs):
            px = px_i.to(uvz.dtype) + 0.5
            py = py_i.to(uvz.dtype) + 0.5
            g = lambda t: t.index_select(0, pair_face)  # noqa: E731
            l0, l1, l2 = _edge_bary(g(ua), g(va), g(ub), g(vb), g(uc), g(vc), px, py, g(area_f))
            inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
            if not bool(inside.any()):
                continue
            sel = inside.nonzero().squeeze(1)
            l0, l1, l2 = l0[sel], l1[sel], l2[sel]
            pf = pair_face[sel]
            inv_z = l0 / za.index_select(0, pf) + l1 / zb.index_select(0, pf) + l2 / zc.index_select(0, pf)
            z = (1.0 / inv_z).to(torch.float32)
            # Positive float32 bit patterns sort like the floats: pack (z bits, face id) into one key.
            key = (z.view(torch.int32).to(torch.int64) << 32) | face_of.index_select(0, pf)
            pix = (batch_of.index_select(0, pf) * height + py_i[sel]) * width + px_i[sel]
            zbuf.scatter_reduce_(0, pix, key, reduce="amin", include_self=True)

        covered = zbuf != _NO_FACE
        face_id = torch.where(covered, zbuf & 0xFFFFFFFF, torch.full_like(zbuf, -1))
        pix_idx = covered.nonzero().squeeze(1)

    # Differentiable barycentrics and depth for the winning face of each covered pixel.
    bary = torch.zeros(B * height * width, 3, dtype=uvz.dtype, device=device)
    depth = torch.zeros(B * height * width, dtype=uvz.dtype, device=device)
    if pix_idx.numel():
        b = torch.div(pix_idx, height * width, rounding_mode="floor")
        rem = pix_idx - b * height * width
        py = torch.div(rem, width, rounding_mode="floor").to(uvz.dtype) + 0.5
        px = (rem % width).to(uvz.dtype) + 0.5
        f = face_id.index_select(0, pix_idx)
        tri = faces.index_select(0, f)  # [P, 3]
        vflat = uvz.reshape(B * V, 3)
        pa = vflat.index_select(0, b * V + tri[:, 0])
        pb = vflat.index_select(0, b * V + tri[:, 1])
        pc = vflat.index_select(0, b * V + tri[:, 2])
        area = (pb[:, 0] - pa[:, 0]) * (pc[:, 1] - pa[:, 1]) - (pb[:, 1] - pa[:, 1]) * (pc[:, 0] - pa[:, 0])
        l0, l1, l2 = _edge_bary(pa[:, 0], pa[:, 1], pb[:, 0], pb[:, 1], pc[:, 0], pc[:, 1], px, py, area)
        w0, w1, w2 = l0 / pa[:, 2], l1 / pb[:, 2], l2 / pc[:, 2]
        s = w0 + w1 + w2
        bary = bary.index_put((pix_idx,), torch.stack([w0, w1, w2], dim=1) / s[:, None])
        depth = depth.index_put((pix_idx,), 1.0 / s)
    return Fragments(
        face_id=face_id.view(B, height, width),
        bary=bary.view(B, height, width, 3),
        depth=depth.view(B, height, width),
    )


def interpolate(
    attrs: torch.Tensor,  # float [B, V, C] per-vertex attributes
    faces: torch.Tensor,  # int64 [F, 3]
    frags: Fragments,
) -> torch.Tensor:  # float [B, H, W, C], 0 on background
    """Barycentric interpolation of per-vertex attributes at every covered pixel."""
    B, V, C = attrs.shape
    fid = frags.face_id.clamp(min=0)  # [B, H, W]
    tri = faces[fid]  # [B, H, W, 3]
    bidx = torch.arange(B, device=attrs.device).view(B, 1, 1, 1)
    vals = attrs[bidx, tri]  # [B, H, W, 3, C]
    out = (vals * frags.bary[..., None]).sum(dim=-2)
    return out * frags.mask[..., None].to(out.dtype)


def gather_faces(
    face_attrs: torch.Tensor,  # float [B, F, C] per-face attributes
    frags: Fragments,
    background: torch.Tensor | float = 0.0,  # value where no face is visible
) -> torch.Tensor:  # float [B, H, W, C]
    """Per-face attribute of the visible face at every pixel (flat shading, labels, ids)."""
    B, F, C = face_attrs.shape
    fid = frags.face_id.clamp(min=0)
    bidx = torch.arange(B, device=face_attrs.device).view(B, 1, 1)
    out = face_attrs[bidx, fid]
    bg = torch.as_tensor(background, dtype=out.dtype, device=out.device)
    return torch.where(frags.mask[..., None], out, bg)
