"""`g3d sfm-init` with keypoints clicked on 1, 2, 3, 4 or 6 cars, solved jointly, on the bench/train.py sfm recipe's data.

The data: built-in cars, 39 frozen views, 128 px, seed 1 (the cars and viewpoints of `bench/train.py --sfm-cameras`;
8 cars are enough, the cameras do not depend on the others), keypoints scripted on cars 0 .. N-1 with 1 px noise
(`g3d.sfm.synthetic.annotations_from_dataset`, seed 1), then `g3d sfm-init` as the CLI runs it. Printed per N, against
the generator's truth after the best similarity on the camera centres: rotation error median / worst over the 39
views, focal error, the cameras' sources; beside it the same clicks through a bundle adjustment started at the true
cameras (the best those clicks allow) and the pose-bin cameras alone (the fallback).

    python bench/sfm_cars.py [--workdir DIR] [--cars 1,2,3,4,6]     # about 2 minutes on one core
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None, help="keep the data here (default: a temporary folder)")
    ap.add_argument("--cars", default="1,2,3,4,6", help="numbers of clicked cars to try")
    args = ap.parse_args()

    from g3d.datasets.annotations import read_annotations
    from g3d.datasets.cameras import read_cameras, read_true_cameras
    from g3d.datasets.manifest import read_manifest
    from g3d.sfm import colmap
    from g3d.sfm.align import compare_cameras
    from g3d.sfm.run import BinCameras, SfmConfig, focal_guess, run_sfm_init
    from g3d.sfm.synthetic import annotations_from_dataset
    from g3d.synth.sampling import SynthConfig, run_synth

    counts = [int(c) for c in args.cars.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        data = (args.workdir or Path(tmp)) / "car"
        if not (data / "g3d.json").is_file():
            run_synth(SynthConfig(out=data, samples=max(8, max(counts)), views=39, resolution=128, seed=1))
        man = read_manifest(data)
        truth = read_true_cameras(data, man)
        f_true = float(truth.K[0, 0, 0])
        print(f"built-in cars, 39 views, 128 px, seed 1; keypoints scripted with 1 px noise; focal {f_true:.1f} px\n")
        print("| cars clicked | sfm-init: rotation median / worst (deg), focal error | sources | BA from the true cameras | pose bins alone | seconds |")
        print("| --- | --- | --- | --- | --- | --- |")
        for n in counts:
            annotations_from_dataset(data, sample_id=list(range(n)), noise_px=1.0, seed=1)
            t0 = time.perf_counter()
            rep = run_sfm_init(SfmConfig(folder=data, preview=False))
            secs = time.perf_counter() - t0
            est = read_cameras(data, man)
            e = compare_cameras(est.R, est.t, float(est.K[0, 0, 0]), truth.R, truth.t, f_true)
            ann = read_annotations(data)
            xy = ann.stacked().xy if ann.by_object else ann.xy
            ref = colmap.bundle_adjust_from(xy, truth.R, truth.t, f_true, ann.width, ann.height)
            r = compare_cameras(ref.R, ref.t, ref.focal, truth.R, truth.t, f_true)
            bR, bt, _, _ = BinCameras(ann, SfmConfig(folder=data)).at(focal_guess(ann.preset, ann.width, None))
            b = compare_cameras(bR, bt, f_true, truth.R, truth.t, f_true)
            src = ", ".join(f"{k} {v}" for k, v in rep.sources.items() if v)
            print(f"| {n} | **{e.median_rotation_deg:.2f} / {e.worst_rotation_deg:.1f}**, {100 * e.focal_rel:.1f}% | {src} | "
                  f"{r.median_rotation_deg:.2f} / {r.worst_rotation_deg:.1f}, {100 * r.focal_rel:.1f}% | "
                  f"{b.median_rotation_deg:.1f} / {b.worst_rotation_deg:.1f} | {secs:.0f} |")


if __name__ == "__main__":
    main()
