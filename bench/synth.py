"""Throughput of `g3d synth` on the built-in generator.

Prints, at 128 and 256 px: images per second for generation alone; the split of a serial run's time
between generation, PNG encoding and Parquet writing; the end-to-end rate of the pipelined loop
(encoding and writing in background threads) and of the serial loop, measured in the same run, with
their ratio; and end-to-end / generation-only (goal: >= 0.85). Last, peak memory of two runs whose
sample counts differ 8x (rows are streamed to shards, so it should barely move).

    python bench/synth.py            # about 2-3 minutes on 2 cores
    python bench/synth.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from g3d.synth.builtin import BuiltinGenerator  # noqa: E402
from g3d.synth.sampling import SynthConfig, _to_uint8, run_synth  # noqa: E402
from g3d.synth.viewpoints import seeded_z  # noqa: E402


def generation_only(res: int, images: int, batch: int) -> float:
    """Images per second of mapping + synthesis + conversion to uint8, nothing else."""
    G = BuiltinGenerator(resolution=res).eval()
    z = torch.stack([seeded_z(0, i, G.z_dim) for i in range(images)])
    with torch.no_grad():
        G.synthesis_with_truth(G.mapping(z[:batch], 0.7))  # warm-up
        t0 = time.perf_counter()
        for lo in range(0, images, batch):
            img, _ = G.synthesis_with_truth(G.mapping(z[lo : lo + batch], 0.7))
            _to_uint8(img, None)
    return images / (time.perf_counter() - t0)


def end_to_end(res: int, samples: int, views: int, batch: int, pipelined: bool) -> tuple[float, dict]:
    """Images per second of the sampling loop (the one-off viewpoint proposal excluded), and its timings."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig(out=Path(tmp) / "car", samples=samples, views=views, resolution=res, batch_size=batch,
                          pipelined=pipelined, candidates=4 * views, samples_per_shard=max(1, samples // 2))
        rep = run_synth(cfg)
    return samples * views / (rep.seconds - rep.timings["proposal"]), rep.timings


PEAK_CODE = """
import resource, sys, tempfile, torch
from pathlib import Path
from g3d.synth.sampling import SynthConfig, run_synth
torch.set_num_threads(2)
with tempfile.TemporaryDirectory() as tmp:
    run_synth(SynthConfig(out=Path(tmp) / 'car', samples=int(sys.argv[1]), views=4, resolution=256, candidates=16, samples_per_shard=8))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_mb(samples: int) -> float:
    out = subprocess.run([sys.executable, "-c", PEAK_CODE, str(samples)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few images, for a smoke run")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    samples, views = (4, 8) if args.quick else (32, 16)
    results = {}
    print(f"built-in generator, {samples} samples x {views} views per run, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads; medians of {1 if args.quick else 3} interleaved runs")
    print(f"{'px':>4} {'gen-only img/s':>15} {'serial img/s':>13} {'pipelined img/s':>16} {'pipe/serial':>12} "
          f"{'e2e/gen':>8}   serial split gen/encode/write (s)")
    reps = 1 if args.quick else 3
    for res in (128, 256):
        end_to_end(res, 2, 4, args.batch_size, pipelined=True)  # warm-up: imports, thread pools, first allocations
        # Interleave the three measurements and take medians: a shared 2-core machine drifts.
        gens, sers, pipes, splits = [], [], [], []
        for _ in range(reps):
            gens.append(generation_only(res, samples * views, args.batch_size))
            s_rate, s_t = end_to_end(res, samples, views, args.batch_size, pipelined=False)
            sers.append(s_rate)
            splits.append(s_t)
            pipes.append(end_to_end(res, samples, views, args.batch_size, pipelined=True)[0])
        gen, ser, pipe = (float(np.median(x)) for x in (gens, sers, pipes))
        ser_t = splits[int(np.argsort(sers)[len(sers) // 2])]
        results[res] = dict(generation_only=gen, serial=ser, pipelined=pipe, ratio=pipe / ser, e2e_over_gen=pipe / gen,
                            serial_split=ser_t, runs={"gen": gens, "serial": sers, "pipelined": pipes})
        split = "/".join(f"{ser_t[k]:.2f}" for k in ("generation", "encoding", "writing"))
        print(f"{res:>4} {gen:>15.1f} {ser:>13.1f} {pipe:>16.1f} {pipe / ser:>12.2f} {pipe / gen:>8.2f}   {split}")
    # How well the proposed viewpoints cover the circle and how smooth their column order is (built-in truth).
    from g3d.synth.viewpoints import propose

    G = BuiltinGenerator(resolution=64)
    vp = propose(G, 39, (0, 1, 2, 3), seed=0)
    az = G.viewpoint_truth(torch.as_tensor(vp.codes), (0, 1, 2, 3))["azimuth_deg"]
    step = np.abs((np.diff(az) + 180) % 360 - 180)
    gap = np.diff(np.sort(np.r_[az, az.min() + 360])).max()
    print(f"proposed 39 views (seed 0): largest azimuth gap {gap:.1f} deg; neighbouring columns differ by "
          f"{np.median(step):.1f} deg (median), {step.mean():.1f} (mean), {step.max():.1f} (max)")
    results["viewpoints"] = {"largest_gap_deg": float(gap), "neighbour_step_median": float(np.median(step)), "neighbour_step_mean": float(step.mean())}
    if not args.quick:
        small, large = peak_mb(16), peak_mb(128)
        results["peak_rss_mb"] = {"16_samples": small, "128_samples": large}
        print(f"peak RSS, 256 px x 4 views: 16 samples {small:.0f} MB, 128 samples {large:.0f} MB "
              f"(8x the rows, {large / small:.2f}x the memory)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
