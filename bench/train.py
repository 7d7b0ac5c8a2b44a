"""Inverse-graphics training: the renderer's cost against a dense implementation, and IoU after a fixed budget.

1. Renderer forward+backward per image (1280-face template, the soft silhouette plus textured colour)
   at 64 / 128 / 256 px, against the dense silhouette (every pixel x every face) measured in the same
   run where it fits in memory.
2. A CPU training run on built-in car data at 64 px for a fixed number of steps: held-out 2D IoU
   against the untrained template's.

    python bench/train.py [--quick] [--steps 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from g3d import cameras  # noqa: E402
from g3d.render.dibr import dense_soft_silhouette, render  # noqa: E402
from g3d.render.rasterize import project_vertices, rasterize  # noqa: E402
from g3d.train.template import build_template  # noqa: E402


def _scene(size: int, B: int):
    tpl = build_template(3)
    R, t = cameras.from_azimuth_elevation(np.linspace(0, 300, B), np.full(B, 15.0), np.full(B, 3.0))
    K = np.broadcast_to(cameras.intrinsics(size, size, 40), (B, 3, 3))
    verts = (tpl.verts * torch.tensor([0.9, 0.6, 1.2]))[None].repeat(B, 1, 1)
    verts = verts + 0.02 * torch.randn(verts.shape, generator=torch.Generator().manual_seed(0))
    return tpl, verts, torch.tensor(np.array(K), dtype=torch.float32), torch.tensor(R, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)


def time_sparse(size: int, B: int, reps: int) -> float:
    tpl, verts, K, R, t = _scene(size, B)
    tex = torch.rand(B, 3, 64, 64)
    best = []
    for _ in range(reps):
        v = verts.clone().requires_grad_(True)
        t0 = time.perf_counter()
        out = render(v, tpl.faces, K, R, t, size, size, face_uvs=tpl.face_uvs, texture=tex)
        (out.image.mean() + out.alpha.mean()).backward()
        best.append(time.perf_counter() - t0)
    return float(np.median(best)) / B


def time_dense(size: int, B: int, reps: int) -> float:
    tpl, verts, K, R, t = _scene(size, B)
    best = []
    for _ in range(reps):
        v = verts.clone().requires_grad_(True)
        t0 = time.perf_counter()
        cam = torch.einsum("bij,bvj->bvi", R, v) + t[:, None]
        covered = rasterize(cam.detach(), tpl.faces, K, size, size).mask
        dense_soft_silhouette(project_vertices(cam, K), tpl.faces, covered).mean().backward()
        best.append(time.perf_counter() - t0)
    return float(np.median(best)) / B


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(2)
    reps = 2 if args.quick else 3
    print("renderer forward+backward per image, 1280 faces, batch 4, 2 threads")
    print(f"{'px':>4} {'g3d (binned) ms':>16} {'dense silhouette ms':>20} {'speed-up':>9}")
    for size in (64, 128, 256):
        sparse = time_sparse(size, 4, reps)
        # Dense needs pixels x faces x ~10 float tensors: 256 px is ~3.4 GB per image, so it stops at 128.
        dense = time_dense(size, 1 if size > 64 else 4, reps) if size <= 128 else None
        d = f"{dense * 1e3:20.1f}" if dense else f"{'(not run: memory)':>20}"
        r = f"{dense / sparse:8.0f}x" if dense else f"{'-':>9}"
        print(f"{size:>4} {sparse * 1e3:16.1f} {d} {r}")

    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.evaluate import evaluate
    from g3d.train.loop import TrainConfig, train

    steps = 30 if args.quick else args.steps
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "car"
        run_synth(SynthConfig(out=data, samples=60, views=12, resolution=64, candidates=48))
        t0 = time.perf_counter()
        train(TrainConfig(folder=str(data), out=str(Path(tmp) / "run"), resolution=64, batch_size=8, steps=steps, lr=1e-3,
                                preview_every=10**9, checkpoint_every=10**9))
        secs = time.perf_counter() - t0
        ev = evaluate(Path(tmp) / "run")
    print(f"training, 64 px, batch 8, {steps} steps on CPU: {secs:.0f} s ({secs / steps:.2f} s/step)")
    print(f"held-out 2D IoU {ev.iou:.3f} vs template {ev.template_iou:.3f}; Chamfer {ev.chamfer:.4f} vs {ev.template_chamfer:.4f}")


if __name__ == "__main__":
    main()
