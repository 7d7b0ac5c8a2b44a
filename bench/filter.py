"""Throughput of `g3d filter`: the rules alone (ground-truth masks) vs the torchvision Mask R-CNN backend.

Prints images per second for (a) the whole filter with the ground-truth segmenter, i.e. decoding,
measuring and the rules plus the shard rewrite, and (b) torchvision's Mask R-CNN ResNet-50 FPN v2
(random weights: the cost is the same as COCO weights) at batch 1 and a small batch, on the CPU,
and the batched / one-image ratio, all measured in the same run.

    python bench/filter.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from g3d.filters.run import FilterRun, run_filter, score_against_truth  # noqa: E402
from g3d.filters.segmenters import TorchvisionSegmenter  # noqa: E402
from g3d.synth.sampling import SynthConfig, run_synth  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--resolution", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(2)
    samples, views = (4, 4) if args.quick else (16, 16)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "car"
        run_synth(SynthConfig(out=src, samples=samples, views=views, resolution=args.resolution, distractors=0.3, candidates=4 * views))
        n = samples * views
        work = Path(tmp) / "work"
        shutil.copytree(src, work)
        t0 = time.perf_counter()
        rep = run_filter(FilterRun(folder=work))
        rules_rate = n / (time.perf_counter() - t0)
        score = score_against_truth(work)
        print(f"{args.resolution} px, {n} images (30% of objects broken by --distractors), {torch.get_num_threads()} threads")
        print(f"rules + rewrite (ground-truth masks): {rules_rate:8.1f} images/s  (kept {rep.kept}/{rep.rows})")
        print(f"against the generator's truth: precision {score['precision']:.3f}, recall {score['recall']:.3f} "
              f"({score['bad']} truly bad, {score['rejected']} rejected)")
    # Random weights score every class near 1/91: a 0.5 threshold keeps detections few, as COCO weights do on real pictures.
    seg = TorchvisionSegmenter(weights="random", min_score=0.5)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, args.resolution, args.resolution, 3), dtype=np.uint8)
    seg.segment(images[:1], [{}])  # warm-up
    rates = {}
    reps = 2 if args.quick else 4
    for batch in (1, 4):
        t0 = time.perf_counter()
        done = 0
        for _ in range(reps):
            for lo in range(0, 4, batch):
                seg.segment(images[lo : lo + batch], [{}] * batch)
                done += batch
        rates[batch] = done / (time.perf_counter() - t0)
        print(f"torchvision Mask R-CNN, batch {batch}:      {rates[batch]:8.2f} images/s")
    print(f"batched / one image at a time:        {rates[4] / rates[1]:8.2f}x")
    print(f"rules alone / torchvision (batch 4):  {rules_rate / rates[4]:8.0f}x")


if __name__ == "__main__":
    main()
