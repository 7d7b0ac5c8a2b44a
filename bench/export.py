"""`g3d export`: images/s per format against writing the same PNG bytes to plain files, and peak memory.

For two dataset sizes (built-in cars at 128 px, the second 4x the first), each format is exported in a
fresh child process (so its peak resident memory is its own), beside the baseline measured in the same
run: the same rows' image PNG bytes read from the shards and written to one file each (no masks, no
cameras, no metadata). Memory must stay flat with the dataset's size: exports hold one source shard.

    python bench/export.py [--samples 100] [--views 12] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMATS = ("hf", "nerfstudio", "coco", "wds")


def _plain_files(folder: Path, out: Path) -> int:
    import pyarrow.parquet as pq

    from g3d.datasets import folder as dsf

    out.mkdir(parents=True)
    n = 0
    for p in dsf.shard_paths(folder):
        for r in pq.read_table(p, columns=["sample_id", "view_id", "image"]).to_pylist():
            (out / f"{r['sample_id']:06d}_{r['view_id']:03d}.png").write_bytes(r["image"]["bytes"])
            n += 1
    return n


def _child(kind: str, folder: str, out: str, q) -> None:
    from g3d.export.coco import export_coco
    from g3d.export.hf import export_hf
    from g3d.export.nerfstudio import export_nerfstudio
    from g3d.export.rows import ExportConfig
    from g3d.export.wds import export_wds

    t0 = time.perf_counter()
    if kind == "plain files":
        n = _plain_files(Path(folder), Path(out))
    else:
        fn = {"hf": export_hf, "nerfstudio": export_nerfstudio, "coco": export_coco, "wds": export_wds}[kind]
        n = sum(fn(ExportConfig(folder=Path(folder), out=Path(out))).rows.values())
    secs = time.perf_counter() - t0
    q.put((n, secs, _peak_mb()))


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: reset by exec, unlike ru_maxrss, which keeps the forking parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(kind: str, folder: Path, out: Path) -> tuple[int, float, float]:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    ctx = mp.get_context("spawn")  # a fresh interpreter: its peak memory is the export's own
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(kind, str(folder), str(out), q))
    p.start()
    res = q.get()
    p.join()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100, help="objects of the smaller dataset (the larger has 4x)")
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--quick", action="store_true", help="10 and 40 objects x 4 views")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    samples, views = (10, 4) if args.quick else (args.samples, args.views)
    from g3d.synth.sampling import SynthConfig, run_synth

    tmp = tempfile.TemporaryDirectory()
    root = args.workdir or Path(tmp.name)
    print("| objects x views | images | writer | images/s | vs plain files | peak memory (MB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in (samples, 4 * samples):
        data = root / f"car-{n}"
        if not (data / "g3d.json").is_file():
            run_synth(SynthConfig(out=data, samples=n, views=views, resolution=128, seed=5, samples_per_shard=max(1, 512 // views)))
        base = None
        for kind in ("plain files",) + FORMATS:
            count, secs, mem = measure(kind, data, root / f"out-{n}-{kind.replace(' ', '-')}")
            rate = count / secs
            base = base or rate
            print(f"| {n} x {views} | {count} | {kind} | {rate:.0f} | {rate / base:.2f}x | {mem:.0f} |", flush=True)
    tmp.cleanup()


if __name__ == "__main__":
    main()
