"""Batched procedural mesh building: vertices are torch tensors [N, 3], topology is shared.

A :class:`MeshBuilder` collects parts (prisms from a profile, cylinders, quads); each vertex is a
tensor of N positions, so one build describes N meshes of identical topology whose shapes differ
(the built-in generator draws N cars of different proportions in one batch). Faces are wound so
their normals point away from the part's interior point, which back-face culling relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Mesh:
    """``verts`` float32 [N, V, 3]; ``faces`` int64 [F, 3]; ``material`` int64 [F] (a label per face)."""

    verts: torch.Tensor
    faces: torch.Tensor
    material: torch.Tensor


class MeshBuilder:
    """Accumulates vertices (each a float tensor [N, 3]) and outward-wound triangles."""

    def __init__(self) -> None:
        self.verts: list[torch.Tensor] = []
        self.faces: list[tuple[int, int, int]] = []
        self.material: list[int] = []
        self.inside: list[torch.Tensor] = []  # per face: a point the face's normal must point away from

    def vertex(self, p: torch.Tensor) -> int:
        """Add one vertex, float [N, 3]; returns its index."""
        self.verts.append(p)
        return len(self.verts) - 1

    def tri(self, a: int, b: int, c: int, material: int, inside: torch.Tensor) -> None:
        self.faces.append((a, b, c))
        self.material.append(material)
        self.inside.append(inside)

    def quad(self, a: int, b: int, c: int, d: int, material: int, inside: torch.Tensor) -> None:
        """Quad a-b-c-d (in order around its boundary) as two triangles."""
        self.tri(a, b, c, material, inside)
        self.tri(a, c, d, material, inside)

    def prism(
        self,
        left: list[torch.Tensor],  # P points [N, 3] around a closed profile, one side
        right: list[torch.Tensor],  # the same P points on the other side
        material: int | list[int],  # one label, or one per side quad (P of them)
        cap_material: int | None = None,  # label of the two caps; defaults to material (or its first)
        inside: torch.Tensor | None = None,  # interior point [N, 3]; defaults to the centroid
        cap_centres: tuple[torch.Tensor, torch.Tensor] | None = None,  # fan centres [N, 3] of the left and right caps
    ) -> None:
        """Closed prism between two profile rings: side quads plus two fans from the ring centres.

        The fans need a profile that is star-shaped from their centre: the ring's centroid by default
        (right for a convex profile), else ``cap_centres`` (a point of the profile's kernel, each side).
        """
        P = len(left)
        mats = material if isinstance(material, list) else [material] * P
        cap = cap_material if cap_material is not None else mats[0]
        cl, cr = cap_centres if cap_centres is not None else (torch.stack(left).mean(0), torch.stack(right).mean(0))
        centre = (cl + cr) / 2 if inside is None else inside
        li = [self.vertex(p) for p in left]
        ri = [self.vertex(p) for p in right]
        for k in range(P):
            k1 = (k + 1) % P
            self.quad(li[k], li[k1], ri[k1], ri[k], mats[k], centre)
        for ring, c in ((li, cl), (ri, cr)):
            ci = self.vertex(c)
            for k in range(P):
                self.tri(ci, ring[k], ring[(k + 1) % P], cap, centre)

    def build(self, orient_with: int | list[int] = 0) -> Mesh:
        """Stack into a :class:`Mesh`. Winding is decided on mesh ``orient_with`` of the batch, or, given a
        list of meshes, per face on the one of them where that face is largest (a part that collapses to
        zero area in some meshes is oriented where it exists)."""
        verts = torch.stack(self.verts, dim=1)  # [N, V, 3]
        faces = torch.tensor(self.faces, dtype=torch.int64, device=verts.device)
        which = [orient_with] if isinstance(orient_with, int) else list(orient_with)
        inside = torch.stack(self.inside, dim=1)[which]  # [M, F, 3]
        v = verts[which]  # [M, V, 3]
        a, b, c = v[:, faces[:, 0]], v[:, faces[:, 1]], v[:, faces[:, 2]]
        n = torch.linalg.cross(b - a, c - a)  # [M, F, 3]
        outward = (((a + b + c) / 3 - inside) * n).sum(-1)  # [M, F]
        best = n.norm(dim=-1).argmax(dim=0)  # [F]: the mesh where each face is largest
        flip = outward.gather(0, best[None])[0] < 0
        faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
        material = torch.tensor(self.material, dtype=torch.int64, device=verts.device)
        return Mesh(verts=verts, faces=faces, material=material)


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit normals float [N, F, 3] of counter-clockwise wound faces."""
    a, b, c = verts[:, faces[:, 0]], verts[:, faces[:, 1]], verts[:, faces[:, 2]]
    n = torch.linalg.cross(b - a, c - a)
    return n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)
