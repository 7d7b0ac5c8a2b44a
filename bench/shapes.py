"""How different the built-in cars are in 3D, measured with no network: silhouette IoU of true meshes.

Each of ``--cars`` cars (default 200, 64 px) is drawn from its own random z (``mapping(z)``), so its
camera rows and its shape rows come from the same latent and its viewpoint from the generator's own
distribution; once truncated as g3d synth truncates (psi 0.7, every row: the cars datasets hold) and
once untruncated (psi 1), ``--truncation 0.7,1``. For each car, against its true mask (``synthesis_with_truth``), and
rendered with *this car's* true camera through the same rasterizer, supersampling and 0.5 threshold:

(a) its own true mesh: must be 1.000, a check that the measurement renders the truth's way;
(b) the mean true mesh: the vertex average of a separate set of cars (the same number, drawn with
    seed ``--seed + 1``), and, as a second figure, the vertex average of the same cars;
(c) another car's true mesh: a shuffled pairing (a derangement, fixed seed).

The gap between (b) and (c) and 1 is how much a car's own shape shows in its silhouette: a predictor
that answers every photo with the average car already scores (b). Where the generator has body types
(``body_type`` among its parameters, names in ``builtin.BODY_TYPES``), the same per type with counts,
and (d) the mean true mesh of the car's own body type (from the separate set). As context, the spread
(min / median / max) of the mesh's length (z extent), width (x extent, wheels included) and height
(top minus bottom).

    python bench/shapes.py [--cars 200] [--resolution 64] [--seed 0] [--truncation 0.7,1] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402

from g3d.render.rasterize import rasterize  # noqa: E402
from g3d.synth import builtin  # noqa: E402
from g3d.synth.builtin import BuiltinGenerator  # noqa: E402


def silhouettes(verts: torch.Tensor, faces: torch.Tensor, K: np.ndarray, R: np.ndarray, t: np.ndarray, H: int, W: int, ssaa: int) -> torch.Tensor:
    """Masks bool [N, H, W] of meshes ``verts`` float [N, V, 3] (object frame) under cameras K, R, t (numpy),
    made as ``BuiltinGenerator.synthesis_with_truth`` makes its masks: rasterized at ``ssaa`` x the size
    with back faces culled, box-filtered back down, covered where at least half the sub-pixels are."""
    Ks = K.copy()
    Ks[:, :2] *= ssaa
    Rt = torch.as_tensor(R, dtype=torch.float32)
    tt = torch.as_tensor(t, dtype=torch.float32)
    verts_cam = torch.einsum("nij,nvj->nvi", Rt, verts.float()) + tt[:, None]
    frags = rasterize(verts_cam, faces, torch.as_tensor(Ks, dtype=torch.float32), H * ssaa, W * ssaa, cull_backfaces=True)
    cover = frags.mask[:, None].float()
    if ssaa > 1:
        cover = F.avg_pool2d(cover, ssaa)
    return cover[:, 0] >= 0.5


def iou(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-image IoU of bool masks [N, H, W], float64 [N]."""
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double().clamp(min=1)
    return (inter / union).numpy()


def random_derangement(n: int, seed: int) -> np.ndarray:
    """A permutation of range(n) with no fixed point (uniform, by rejection), seeded."""
    rng = np.random.default_rng(seed)
    while True:
        p = rng.permutation(n)
        if n < 2 or not (p == np.arange(n)).any():
            return p


def draw(G: BuiltinGenerator, n: int, seed: int, batch: int, psi: float):
    """n cars from seeded z, truncated by ``psi`` (every row, as g3d synth does):
    (ws [n, num_ws, w_dim], parameters dict of float [n], mesh verts [n, V, 3], faces [F, 3])."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    ws = G.mapping(z, truncation_psi=psi)
    prm = G.parameters_of(ws)
    verts, faces = [], None
    for lo in range(0, n, batch):
        mesh, _, _ = G.build_mesh({k: v[lo : lo + batch] for k, v in prm.items()})
        verts.append(mesh.verts)
        faces = mesh.faces
    return ws, prm, torch.cat(verts), faces


def body_types(prm) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Integer body type per car and the names, or (None, ()) on a generator without body types."""
    bt = prm.get("body_type")
    if bt is None:
        return None, ()
    ids = torch.round(bt).long().numpy()
    names = tuple(getattr(builtin, "BODY_TYPES", None) or ())
    if len(names) <= int(ids.max()):
        names = names + tuple(f"type {k}" for k in range(len(names), int(ids.max()) + 1))
    return ids, names


def spread(x: np.ndarray, digits: int = 3) -> str:
    return f"{x.min():.{digits}f} / {np.median(x):.{digits}f} / {x.max():.{digits}f}"


def measure(G: BuiltinGenerator, n: int, seed: int, batch: int, psi: float) -> None:
    """Draw, render and print the figures of the module docstring for one truncation."""
    t0 = time.perf_counter()
    H = W = G.resolution
    B = batch
    ws, prm, verts, faces = draw(G, n, seed, B, psi)
    _, prm_ref, verts_ref, _ = draw(G, n, seed + 1, B, psi)
    mean_ref = verts_ref.mean(0, keepdim=True)
    mean_same = verts.mean(0, keepdim=True)
    other = random_derangement(n, seed + 2)
    types, names = body_types(prm)
    types_ref, _ = body_types(prm_ref)
    type_means = {}
    if types is not None:
        for k in np.unique(types):
            sel = types_ref == k
            type_means[int(k)] = verts_ref[torch.as_tensor(sel)].mean(0, keepdim=True) if sel.any() else None

    scores: dict[str, list[np.ndarray]] = {"own": [], "mean": [], "mean_same": [], "other": [], "type_mean": []}
    for lo in track(range(0, n, B), description=f"psi {psi}: {n} cars x {5 if types is not None else 4} meshes",
                    console=Console(stderr=True), transient=True):
        hi = min(n, lo + B)
        _, truth = G.synthesis_with_truth(ws[lo:hi])
        m = torch.as_tensor(truth.masks)
        K, R, t = truth.K, truth.R, truth.t

        def score(v: torch.Tensor) -> np.ndarray:
            return iou(silhouettes(v, faces, K, R, t, H, W, G.ssaa), m)

        k = hi - lo
        scores["own"].append(score(verts[lo:hi]))
        scores["mean"].append(score(mean_ref.expand(k, -1, -1)))
        scores["mean_same"].append(score(mean_same.expand(k, -1, -1)))
        scores["other"].append(score(verts[torch.as_tensor(other[lo:hi])]))
        if types is not None:
            tv = torch.cat([type_means.get(int(c)) if type_means.get(int(c)) is not None else mean_ref for c in types[lo:hi]])
            scores["type_mean"].append(score(tv))
    s = {k: np.concatenate(v) for k, v in scores.items() if v}
    seconds = time.perf_counter() - t0

    print()
    label = {0.7: " (g3d synth's default)", 1.0: " (none: the generator's own distribution)"}.get(psi, "")
    print(f"== truncation psi {psi}{label}: {n} cars at {H} px, each from its own z (seed {seed}), "
          f"its own true camera; {seconds:.0f} s")
    print(f"viewpoints drawn: elevation {spread(prm['elevation_deg'].double().numpy(), 1)} deg, "
          f"distance {spread(prm['distance'].double().numpy())} (min / median / max)")
    print("mean silhouette IoU against the car's true mask:")
    rows = [("(a) own true mesh (a check: must be 1.000)", f"{s['own'].mean():.4f}  (min {s['own'].min():.4f})"),
            (f"(b) mean true mesh of {n} other cars (seed {seed + 1})", f"{s['mean'].mean():.4f}"),
            (f"    mean true mesh of the same {n} cars", f"{s['mean_same'].mean():.4f}"),
            (f"(c) another car's true mesh (derangement, seed {seed + 2})", f"{s['other'].mean():.4f}")]
    if "type_mean" in s:
        rows.append((f"(d) mean true mesh of the car's body type (seed {seed + 1})", f"{s['type_mean'].mean():.4f}"))
    wide = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{wide}}  {value}")
    if s["own"].min() < 1.0:
        print(f"CHECK FAILED: {int((s['own'] < 1).sum())} cars' own true mesh does not reproduce the true mask: "
              "the measurement no longer renders as synthesis_with_truth does")
        raise SystemExit(1)
    print(f"  1 - (b) = {1 - s['mean'].mean():.4f}: what a car's own shape adds over the average car; "
          f"(b) - (c) = {s['mean'].mean() - s['other'].mean():+.4f}")

    if types is not None:
        print(f"per body type (the car's type; (c) pairs it with any other car; (d) its type's mean from seed {seed + 1}):")
        print(f"  {'type':<12} {'cars':>5} {'ref cars':>8} {'(a) own':>8} {'(b) mean':>9} {'same-set':>9} {'(c) other':>10} {'(d) type':>9}")
        for k in range(len(names)):
            sel = types == k
            nref = int((types_ref == k).sum())
            if not sel.any():
                print(f"  {names[k]:<12} {0:>5} {nref:>8}")
                continue
            print(f"  {names[k]:<12} {int(sel.sum()):>5} {nref:>8} {s['own'][sel].mean():>8.4f} {s['mean'][sel].mean():>9.4f} "
                  f"{s['mean_same'][sel].mean():>9.4f} {s['other'][sel].mean():>10.4f} {s['type_mean'][sel].mean():>9.4f}")
    else:
        print("(no body_type parameter in this generator: no per-type table)")

    ext = (verts.amax(1) - verts.amin(1)).numpy()  # [n, 3]: x, y, z extents
    print("size of the true meshes, min / median / max (object-frame units):")
    print(f"  length (z extent):           {spread(ext[:, 2])}")
    print(f"  width (x extent, wheels in): {spread(ext[:, 0])}")
    print(f"  height (top - bottom):       {spread(ext[:, 1])}")
    for name in ("length", "width"):
        if name in prm:
            print(f"  parameter {name + ':':<19} {spread(prm[name].double().numpy())}")
    if types is not None:
        print("  per body type, median length / width / height:")
        for k in range(len(names)):
            sel = types == k
            if sel.any():
                print(f"    {names[k]:<12} {np.median(ext[sel, 2]):.3f} / {np.median(ext[sel, 0]):.3f} / {np.median(ext[sel, 1]):.3f}")


def picture(path: str, per_type: int = 6, px: int = 128, seed: int = 0) -> None:
    """A contact sheet of the body types: one row per type, ``per_type`` cars each from its own random viewpoint."""
    from PIL import Image

    G = BuiltinGenerator(resolution=px)
    names = getattr(builtin, "BODY_TYPES", None)
    if names is None:
        raise SystemExit("--picture needs a generator with body types")
    ws = G.mapping(torch.randn(60 * len(names), G.z_dim, generator=torch.Generator().manual_seed(seed)), truncation_psi=0.7)
    kind = G.parameters_of(ws)["body_type"].long()
    rows = []
    for k in range(len(names)):
        idx = torch.nonzero(kind == k)[:per_type, 0]
        img = G.synthesis(ws[idx])
        im = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        rows.append(np.concatenate(list(im), axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    print(f"wrote {path}: rows {', '.join(names)}; {per_type} cars each, {px} px, truncation 0.7, seed {seed}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cars", type=int, default=200)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--truncation", default="0.7,1", help="truncation psi of every ws row, comma-separated: one section each")
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--picture", metavar="PNG", help="also write a contact sheet of the body types (docs/body_types.png)")
    args = ap.parse_args()
    if args.cars < 2:
        ap.error("--cars must be at least 2 (the shuffled pairing needs another car)")
    psis = [float(p) for p in args.truncation.split(",")]
    torch.set_num_threads(args.threads)
    G = BuiltinGenerator(resolution=args.resolution)
    print(f"built-in generator at {G.resolution} px, {torch.get_num_threads()} thread(s); "
          f"silhouette IoU against each car's true mask, every mesh through the car's true camera, "
          f"rasterized at {G.ssaa}x, box-filtered and thresholded at 0.5 as the truth is")
    for psi in psis:
        measure(G, args.cars, args.seed, args.batch, psi)
    if args.picture:
        picture(args.picture, seed=args.seed)


if __name__ == "__main__":
    main()
