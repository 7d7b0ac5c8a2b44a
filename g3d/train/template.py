"""The deformable template: an icosphere (642 vertices at level 3) with seam-free UVs and its graph.

``face_uvs`` gives each face corner its own UV (spherical mapping), with corners of faces that
straddle the u = 0/1 seam shifted by +1 so interpolation never runs the long way round; the renderer
wraps u back into [0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Template:
    """``verts`` float32 [V, 3] (unit sphere), ``faces`` int64 [F, 3] (counter-clockwise from outside),
    ``face_uvs`` float32 [F, 3, 2], ``edges`` int64 [E, 2], ``face_pairs`` int64 [E, 2] (faces sharing each edge),
    ``neighbours`` (indices, counts) for the uniform Laplacian."""

    verts: torch.Tensor
    faces: torch.Tensor
    face_uvs: torch.Tensor
    edges: torch.Tensor
    face_pairs: torch.Tensor
    nbr_index: torch.Tensor  # int64 [2, 2E]: (vertex, neighbour) pairs
    nbr_count: torch.Tensor  # float32 [V]
    mirror: torch.Tensor | None = None  # int64 [V]: the vertex at (-x, y, z) (left-right mirror image)

    def to(self, device) -> "Template":
        return Template(*(None if getattr(self, f) is None else getattr(self, f).to(device) for f in self.__dataclass_fields__))


def icosphere(level: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: (verts float64 [V, 3], faces int64 [F, 3]); level 3 -> 642 vertices, 1280 faces."""
    p = (1 + 5**0.5) / 2
    v = [(-1, p, 0), (1, p, 0), (-1, -p, 0), (1, -p, 0), (0, -1, p), (0, 1, p), (0, -1, -p), (0, 1, -p), (p, 0, -1), (p, 0, 1), (-p, 0, -1), (-p, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
         (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    verts = [np.array(x, float) / np.linalg.norm(x) for x in v]
    faces = list(f)
    for _ in range(level):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    V = np.stack(verts)
    Fc = np.array(faces, dtype=np.int64)
    # Orient every face outward (normal along the centroid direction).
    a, b, c = V[Fc[:, 0]], V[Fc[:, 1]], V[Fc[:, 2]]
    flip = (np.cross(b - a, c - a) * (a + b + c)).sum(1) < 0
    Fc[flip] = Fc[flip][:, [0, 2, 1]]
    return V, Fc


def build_template(level: int = 3) -> Template:
    V, Fc = icosphere(level)
    u = 0.5 + np.arctan2(V[:, 0], V[:, 2]) / (2 * np.pi)
    v = np.arccos(np.clip(V[:, 1], -1, 1)) / np.pi
    uv = np.stack([u, v], 1)[Fc]  # [F, 3, 2]
    span = uv[..., 0].max(1) - uv[..., 0].min(1)
    seam = span > 0.5
    fix = uv[seam]
    fix[..., 0] = np.where(fix[..., 0] < 0.5, fix[..., 0] + 1.0, fix[..., 0])
    uv[seam] = fix
    # Edges and the two faces each borders.
    edge_faces: dict[tuple[int, int], list[int]] = {}
    for fi, (a, b, c) in enumerate(Fc):
        for x, y in ((a, b), (b, c), (c, a)):
            edge_faces.setdefault((min(x, y), max(x, y)), []).append(fi)
    edges = np.array(list(edge_faces.keys()), dtype=np.int64)
    pairs = np.array([fs for fs in edge_faces.values() if len(fs) == 2], dtype=np.int64)
    nbr = np.concatenate([edges, edges[:, ::-1]], 0).T
    count = np.bincount(nbr[0], minlength=len(V)).astype(np.float32)
    # The icosphere is symmetric under x -> -x: pair each vertex with its mirror image.
    key = {tuple(np.round(p, 9)): i for i, p in enumerate(V)}
    mirror = np.array([key[tuple(np.round(p * [-1, 1, 1], 9) + 0.0)] for p in V], dtype=np.int64)
    return Template(
        verts=torch.tensor(V, dtype=torch.float32),
        faces=torch.tensor(Fc),
        face_uvs=torch.tensor(uv, dtype=torch.float32),
        edges=torch.tensor(edges),
        face_pairs=torch.tensor(pairs),
        nbr_index=torch.tensor(nbr.copy()),
        nbr_count=torch.tensor(count),
        mirror=torch.tensor(mirror),
    )


def laplacian_residual(verts: torch.Tensor, tpl: Template) -> torch.Tensor:
    """Uniform Laplacian: each vertex minus the mean of its neighbours, float [B, V, 3]."""
    B, V, _ = verts.shape
    s = torch.zeros_like(verts).index_add(1, tpl.nbr_index[0], verts[:, tpl.nbr_index[1]])
    return verts - s / tpl.nbr_count[None, :, None]
