"""Viewpoint codes: propose them, freeze them in a file, mix them into content latents.

A viewpoint code is the block of ws rows ``layers`` (the class preset's viewpoint layers) taken
from one mapped latent: float32 [len(layers), w_dim]. Mixing replaces those rows of a sample's ws
with the code, so every image of a view column shares the camera-setting rows exactly.

Proposal (the paper chose views by hand; this makes the choice reproducible and reviewable):
draw ``candidates`` codes, render the same few probe objects under each, describe each candidate
by its small greyscale probe images, keep ``views`` of them by farthest-point sampling, and order
them along a short path so neighbouring columns look alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from g3d.errors import UsageError

MAX_CANDIDATES = 2048


@dataclass
class Viewpoints:
    """``codes`` float32 [V, L, w_dim] for the ws rows ``layers``; ``source`` says where they came from."""

    codes: np.ndarray
    layers: tuple[int, ...]
    source: str  # "proposed" or the path of the file they were read from

    @property
    def views(self) -> int:
        return int(self.codes.shape[0])

    def digest(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.codes, dtype=np.float32).tobytes()).hexdigest()[:16]


def seeded_z(seed: int, index: int, z_dim: int, stream: int = 0) -> torch.Tensor:
    """The z float32 [z_dim] of item ``index`` in random stream ``stream`` of run ``seed``.

    A pure function of its arguments (no global random state): the same sample gets the same z on
    any machine and in any shard.
    """
    sub = item_seed(seed, index, stream)
    return torch.randn(z_dim, generator=torch.Generator().manual_seed(sub))


def item_seed(seed: int, index: int, stream: int = 0, *more: int) -> int:
    """A 63-bit seed derived from (run seed, stream, item index[, more indices])."""
    state = np.random.SeedSequence([int(seed), int(stream), int(index), *map(int, more)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


RANDOM = "random"  # ``--viewpoints random``: every image its own viewpoint code (the manifest's viewpoints_source)
RANDOM_STREAM = 3  # the random stream of per-image viewpoint latents (1: proposal candidates, 2: probes)


def random_code_z(seed: int, sample_ids, view_ids, z_dim: int) -> torch.Tensor:
    """z float32 [N, z_dim] of the per-image viewpoint latents of images (sample_ids[i], view_ids[i]).

    A pure function of (run seed, sample, view): the same image gets the same viewpoint on any machine,
    in any shard and batch, and whatever ``--views`` or ``--samples`` the run has.
    """
    gens = (torch.Generator().manual_seed(item_seed(seed, s, RANDOM_STREAM, v)) for s, v in zip(sample_ids, view_ids))
    return torch.stack([torch.randn(z_dim, generator=g) for g in gens]).reshape(-1, z_dim)


@torch.no_grad()
def random_codes(G, seed: int, sample_ids, view_ids, layers: tuple[int, ...], truncation_psi: float = 0.7) -> torch.Tensor:
    """Per-image viewpoint codes float32 [N, L, w_dim], drawn from the generator's own viewpoint distribution.

    Each is the ``layers`` rows of ``G.mapping(z)`` for a z of its own (:func:`random_code_z`), with the run's
    truncation, as the proposal draws its candidates: a test set photographed from anywhere, where a frozen
    proposal gives every object the same V viewpoints.
    """
    z = random_code_z(seed, sample_ids, view_ids, G.z_dim).to(G.device)
    return G.mapping(z, truncation_psi=truncation_psi)[:, list(layers)]


BETWEEN_STREAM = 4  # the random stream of ``--between`` images' neighbour pairs and weights
BETWEEN_NEIGHBOURS = 3  # a between image's second view is one of its first view's this many nearest codes


@torch.no_grad()
def probe_descriptors(G, codes: torch.Tensor, layers: tuple[int, ...], seed: int = 0, truncation_psi: float = 0.7, probes: int = 2,
                      chunk: int = 16, progress=None) -> np.ndarray:
    """float64 [n, probes * D]: what codes float [n, L, w_dim] look like, as the proposal compares them: the run's
    ``probes`` probe objects (random stream 2) rendered under each code, ``chunk`` codes a generator call, each image as a
    small mean-free greyscale descriptor. ``progress``: optional callable(advance) per chunk."""
    z_p = torch.stack([seeded_z(seed, i, G.z_dim, stream=2) for i in range(probes)]).to(G.device)
    probe_ws = G.mapping(z_p, truncation_psi=truncation_psi)
    out = []
    for lo in range(0, len(codes), chunk):
        part = codes[lo : lo + chunk]
        img = G.synthesis(mix(probe_ws, part, layers), noise_mode="const")  # probe-major
        out.append(_descriptor(img.float()).view(probes, len(part), -1).permute(1, 0, 2).reshape(len(part), -1).cpu())
        if progress is not None:
            progress(len(part))
    return torch.cat(out).double().numpy()


BETWEEN_CANDIDATES = 8  # the most alike views tried as a view's neighbours
BETWEEN_MIDPOINT = 0.75  # a neighbour's blend at t = 0.5 must look at least this much closer to each end than the ends to each other


@torch.no_grad()
def code_neighbours(G, codes: np.ndarray, layers: tuple[int, ...], seed: int = 0, truncation_psi: float = 0.7,
                    k: int = BETWEEN_NEIGHBOURS, probes: int = 2) -> np.ndarray:
    """int64 [V, k]: each frozen code's neighbours for ``--between``, most alike first; -1 pads a view with fewer.

    Alike as the proposal measures it: the same probe objects (:func:`propose`'s) rendered under each code, compared by
    their small greyscale images (a code's distance in w-space says little about its camera: most of a code's directions
    move nothing). Alike is not enough: a car seen from the front and from behind looks alike, and the blend of those
    two codes is a side view. So of a view's :data:`BETWEEN_CANDIDATES` most alike others, a neighbour is one whose blend
    half way looks between them: closer to each of the two than :data:`BETWEEN_MIDPOINT` times their own distance.
    ``codes`` float [V, L, w_dim]."""
    V = len(codes)
    c = torch.as_tensor(np.asarray(codes), dtype=torch.float32, device=G.device)
    describe = lambda cs: probe_descriptors(G, cs, layers, seed, truncation_psi, probes)  # noqa: E731
    d = describe(c)
    D = np.sqrt(((d[:, None] - d[None]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    cand = np.argsort(D, axis=1, kind="stable")[:, : max(0, min(BETWEEN_CANDIDATES, V - 1))]
    a = np.repeat(np.arange(V), cand.shape[1])
    b = cand.reshape(-1)
    mid = describe(0.5 * (c[a] + c[b]))
    ok = np.maximum(np.sqrt(((mid - d[a]) ** 2).sum(-1)), np.sqrt(((mid - d[b]) ** 2).sum(-1))) <= BETWEEN_MIDPOINT * D[a, b]
    out = np.full((V, k), -1, np.int64)
    for v in range(V):
        good = b[a == v][ok[a == v]][:k]
        out[v, : len(good)] = good
    return out


def between_views(neighbours: np.ndarray, seed: int, sample_ids, between: int) -> dict[str, np.ndarray]:
    """Where the ``between`` extra images of each sample sit (``g3d synth --between``): for the k-th of sample s
    (its view id ``V + k``), a frozen view ``view_a`` drawn uniformly, ``view_b`` one of its most alike views
    (``neighbours`` int [V, k], :func:`code_neighbours`), and the weight ``t`` uniform in [0, 1] (code ``(1 - t) a + t b``).

    A pure function of (run seed, sample, k) and the neighbours. Returns ``sample_id`` int64, ``view_id`` int32,
    ``view_a``, ``view_b`` int32, ``t`` float64, each [len(sample_ids) * between], sample-major."""
    V = len(neighbours)
    nb = np.asarray(neighbours, np.int64)
    has = np.flatnonzero((nb >= 0).any(axis=1))  # views with a neighbour
    if not len(has):
        raise UsageError(f"--between found no two of the {V} frozen views whose blend looks between them: synthesise more --views")
    sids = np.repeat(np.asarray(sample_ids, np.int64).reshape(-1), between)
    ks = np.tile(np.arange(between), len(sids) // max(1, between))
    a = np.empty(len(sids), np.int32)
    b = np.empty(len(sids), np.int32)
    t = np.empty(len(sids), np.float64)
    for i, (s, k) in enumerate(zip(sids, ks)):
        rng = np.random.default_rng([int(seed), BETWEEN_STREAM, int(s), int(k)])
        a[i] = has[rng.integers(len(has))]
        row = nb[a[i]][nb[a[i]] >= 0]
        b[i] = row[rng.integers(len(row))]
        t[i] = rng.uniform(0.0, 1.0)
    return {"sample_id": sids, "view_id": (V + ks).astype(np.int32), "view_a": a, "view_b": b, "t": t}


def blend_codes(codes: torch.Tensor, view_a, view_b, t) -> torch.Tensor:
    """float32 [N, L, w_dim]: ``(1 - t) codes[a] + t codes[b]`` for each row (``codes`` [V, L, w_dim]; a, b, t [N])."""
    a = torch.as_tensor(np.asarray(view_a, np.int64), device=codes.device)
    b = torch.as_tensor(np.asarray(view_b, np.int64), device=codes.device)
    w = torch.as_tensor(np.asarray(t, np.float64), device=codes.device).to(codes.dtype)[:, None, None]
    return (1.0 - w) * codes[a] + w * codes[b]


def mix(
    content_ws: torch.Tensor,  # float32 [N, num_ws, w_dim]
    codes: torch.Tensor,  # float32 [V, L, w_dim]
    layers: tuple[int, ...],
) -> torch.Tensor:  # float32 [N * V, num_ws, w_dim], sample-major (row n * V + v)
    """Every content latent combined with every viewpoint code."""
    N, V = content_ws.shape[0], codes.shape[0]
    ws = content_ws[:, None].expand(N, V, *content_ws.shape[1:]).clone()
    ws[:, :, list(layers)] = codes[None].to(ws)
    return ws.reshape(N * V, *content_ws.shape[1:])


def _descriptor(images: torch.Tensor, size: int = 24) -> torch.Tensor:
    """images float [N, 3, H, W] in [-1, 1] -> float [N, size*size] (greyscale, mean-free)."""
    grey = images.clamp(-1, 1).mean(dim=1, keepdim=True)
    small = torch.nn.functional.adaptive_avg_pool2d(grey, size).flatten(1)
    return small - small.mean(dim=1, keepdim=True)


def farthest_points(desc: np.ndarray, k: int) -> list[int]:
    """Indices of ``k`` rows of ``desc`` [M, D] chosen by farthest-point sampling (deterministic)."""
    centre = desc.mean(0)
    first = int(np.argmin(((desc - centre) ** 2).sum(1)))
    chosen = [first]
    dist = ((desc - desc[first]) ** 2).sum(1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((desc - desc[nxt]) ** 2).sum(1))
    return chosen


def short_path(desc: np.ndarray) -> list[int]:
    """An order of the rows of ``desc`` [V, D] with neighbours alike: nearest-neighbour chain, then 2-opt."""
    V = desc.shape[0]
    if V <= 2:
        return list(range(V))
    D = np.sqrt(((desc[:, None] - desc[None]) ** 2).sum(-1))
    # Start from an end of the longest edge of the set, walk to the nearest unvisited each time.
    start = int(np.unravel_index(np.argmax(D), D.shape)[0])
    order = [start]
    left = set(range(V)) - {start}
    while left:
        cur = order[-1]
        nxt = min(left, key=lambda j: (D[cur, j], j))
        order.append(nxt)
        left.remove(nxt)
    for _ in range(100):  # 2-opt on the open path: reverse order[i+1..j] when that shortens it
        improved = False
        for i in range(V - 2):
            for j in range(i + 2, V):
                a, b, c = order[i], order[i + 1], order[j]
                d = order[j + 1] if j + 1 < V else None
                old = D[a, b] + (D[c, d] if d is not None else 0.0)
                new = D[a, c] + (D[b, d] if d is not None else 0.0)
                if new < old - 1e-9:
                    order[i + 1 : j + 1] = order[i + 1 : j + 1][::-1]
                    improved = True
        if not improved:
            break
    return order


def check_views(views: int, candidates: int | None) -> int:
    """Number of candidates the proposal draws for ``views``; a :class:`UsageError` if it cannot fill them."""
    if views < 1:
        raise UsageError(f"--views must be at least 1, got {views}")
    M = candidates if candidates is not None else max(64, 4 * views)
    if views > MAX_CANDIDATES or views > M:
        raise UsageError(
            f"--views {views} is more than the proposal can fill ({min(M, MAX_CANDIDATES)} candidates): ask for fewer views or pass --viewpoints FILE"
        )
    return min(M, MAX_CANDIDATES)


@torch.no_grad()
def propose(
    G,  # a g3d Generator
    views: int,
    layers: tuple[int, ...],
    seed: int = 0,
    truncation_psi: float = 0.7,
    candidates: int | None = None,  # codes to choose from; default 4 x views, at least 64
    probes: int = 2,  # probe objects rendered under every candidate
    batch_size: int = 32,
    progress=None,  # optional callable(advance: int) for a progress bar
) -> Viewpoints:
    """Choose ``views`` viewpoint codes that cover the generator's views well, ordered as a path."""
    M = check_views(views, candidates)
    dev = G.device
    z_c = torch.stack([seeded_z(seed, i, G.z_dim, stream=1) for i in range(M)]).to(dev)
    cand_ws = G.mapping(z_c, truncation_psi=truncation_psi)
    codes = cand_ws[:, list(layers)]  # [M, L, w_dim]
    desc = probe_descriptors(G, codes, layers, seed, truncation_psi, probes, max(1, batch_size // probes), progress)
    chosen = farthest_points(desc, views)
    order = short_path(desc[chosen])
    picked = [chosen[i] for i in order]
    return Viewpoints(codes=codes[picked].float().cpu().numpy(), layers=tuple(layers), source="proposed")


def viewpoints_table(vp: Viewpoints, truth: dict[str, np.ndarray] | None = None):
    """``viewpoints.parquet`` as a pyarrow Table: view_id, layers, code (flattened), code_shape, truth columns."""
    import pyarrow as pa

    V, L, D = vp.codes.shape
    cols = {
        "view_id": pa.array(np.arange(V, dtype=np.int32)),
        "layers": pa.array([list(vp.layers)] * V, type=pa.list_(pa.int32())),
        "code": pa.array(list(vp.codes.reshape(V, L * D)), type=pa.list_(pa.float32(), L * D)),
        "code_shape": pa.array([[L, D]] * V, type=pa.list_(pa.int32(), 2)),
    }
    for name, values in (truth or {}).items():
        cols[f"gt_{name}"] = pa.array(np.asarray(values, dtype=np.float64))
    return pa.table(cols, metadata={b"g3d_source": vp.source.encode()})


def load_viewpoints(path: str, w_dim: int, layers: tuple[int, ...] | None = None) -> Viewpoints:
    """Read codes from a ``viewpoints.parquet`` (a previous run's, or a hand-edited subset of one).

    The codes' shape must match the generator: ``w_dim`` columns, and ``layers`` rows if given.
    """
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise UsageError(f"--viewpoints {path}: no such file") from None
    except Exception as exc:
        raise UsageError(f"--viewpoints {path} is not a readable Parquet file ({exc}): pass a viewpoints.parquet written by g3d synth") from None
    if "code" not in table.column_names:
        raise UsageError(f"--viewpoints {path} has no 'code' column: pass a viewpoints.parquet written by g3d synth")
    if table.num_rows == 0:
        raise UsageError(f"--viewpoints {path} holds no views: pass a file with at least one row")
    try:
        flat = np.array(table.column("code").to_pylist(), dtype=np.float32)
    except (TypeError, ValueError):
        raise UsageError(f"--viewpoints {path}: its codes are not all numbers of one length: pass a viewpoints.parquet written by g3d synth") from None
    if "code_shape" in table.column_names:
        L, D = table.column("code_shape")[0].as_py()
    else:
        L, D = len(layers or ()), w_dim
    file_layers = tuple(table.column("layers")[0].as_py()) if "layers" in table.column_names else tuple(layers or ())
    if D != w_dim:
        raise UsageError(
            f"--viewpoints {path} holds codes of width {D} but the generator's w_dim is {w_dim}: use a file made with this generator"
        )
    if flat.ndim != 2 or flat.shape[1] != L * D:
        got = flat.shape[1] if flat.ndim == 2 else "uneven numbers of"
        raise UsageError(f"--viewpoints {path}: codes hold {got} values but code_shape says {L} x {D} = {L * D}: use a file written by g3d synth")
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        raise UsageError(f"--viewpoints {path}: the codes of {int(bad.sum())} view(s) (first: row {int(np.flatnonzero(bad)[0])}) "
                         "are not finite (NaN or inf): fix or drop those rows")
    if layers is not None and tuple(layers) != file_layers:
        raise UsageError(
            f"--viewpoints {path} codes rows {list(file_layers)} but this run mixes rows {list(layers)}: use a file made with the same viewpoint layers"
        )
    if flat.shape[0] == 0:
        raise UsageError(f"--viewpoints {path} holds no views")
    return Viewpoints(codes=flat.reshape(-1, L, D), layers=file_layers, source=str(path))
