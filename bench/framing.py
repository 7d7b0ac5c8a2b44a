"""Framing of the built-in cars against the paper's filter rules, through the CLI as a user runs it.

1. ``g3d synth --views V --samples N --resolution R --seed S --out DIR`` (honest data), then
   ``g3d filter DIR --segmenter ground-truth``; the filter's per-image decisions are read back from
   the rewritten shards (``keep``, ``reject_reason`` = the first failed rule, ``filter_failed`` = every
   failed rule). Printed: the fraction kept per view (min over views, the 3 worst views with the
   filter's median mask area there), rejections per rule, and from the truth (the object's pixels of the
   generator's mask PNG; its true mesh rebuilt from the row's ``gt_*`` columns and projected with the
   row's camera): mask area min / median per view, and the images whose object touches the border
   (a mask pixel on the outermost rows / columns) or crosses it (a mesh vertex projects outside).
   A per-view table with all of these.
2. The same command with ``--distractors 0.3``: precision and recall of the filter's rejections against
   which images are truly bad (:func:`g3d.filters.run.truly_bad` / ``score_against_truth``, the logic of
   tests/filters and bench/filter.py), beside keep-everything and rejecting at random at the same
   rate (in expectation); recall per kind of breakage, and the honest objects' rejections.

The ground-truth segmenter hands the rules the generator's exact masks, so the rules here are the
oracle of any segmenter: what they reject is the framing's doing, not segmentation error.

    python bench/framing.py [--samples 100] [--views 39] [--resolution 64] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402

from g3d import cameras  # noqa: E402
from g3d.datasets import folder as dsf  # noqa: E402
from g3d.datasets.schema import decode_png  # noqa: E402
from g3d.filters.rules import FilterConfig  # noqa: E402
from g3d.filters.run import score_against_truth, truly_bad  # noqa: E402
from g3d.synth import builtin  # noqa: E402
from g3d.synth.builtin import BuiltinGenerator  # noqa: E402

console = Console(stderr=True)
CAMERA_GT = ("gt_azimuth_deg", "gt_elevation_deg", "gt_distance")
MASK_OBJECT = getattr(builtin, "MASK_OBJECT", 255)  # the object's value in the mask PNG
DISTRACTOR_KINDS = getattr(builtin, "DISTRACTOR_KINDS", {0: "none", 1: "second_car", 2: "small", 3: "off_frame"})


def g3d_command() -> list[str]:
    """The ``g3d`` console script beside this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "g3d"
    found = str(here) if here.is_file() else shutil.which("g3d")
    if not found:
        raise SystemExit("no g3d command beside this Python nor on PATH: install g3d (pip install -e .)")
    return [found]


def run_cli(args: list[str], what: str) -> float:
    """Run ``g3d ARGS`` with this checkout first on PYTHONPATH; seconds taken. Its output is shown only on failure."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    cmd = g3d_command() + args
    t0 = time.perf_counter()
    with console.status(f"{what}: g3d {' '.join(args)}"):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stdout[-4000:], res.stderr[-4000:], sep="\n")
        raise SystemExit(f"g3d {' '.join(args)} failed (exit {res.returncode})")
    return time.perf_counter() - t0


def read_rows(folder: Path) -> pd.DataFrame:
    """Every image row of the filtered dataset, without the image bytes."""
    cols = None
    tables = []
    for p in dsf.shard_paths(folder):
        if cols is None:
            cols = [c for c in pq.read_schema(p).names if c not in ("image", "filter_mask", "keypoints_2d", "keypoints_visible", "keypoints_3d")]
        tables.append(pq.read_table(p, columns=cols).to_pandas())
    return pd.concat(tables, ignore_index=True)


def truth_framing(rows: pd.DataFrame, resolution: int, batch: int = 256) -> pd.DataFrame:
    """Per row, from the truth: the object's area, whether it touches the border (a mask pixel on the
    outermost rows / columns) and whether it crosses it (a vertex of its true mesh, rebuilt from the
    row's gt_* columns, projects outside the image through the row's camera)."""
    area, touch, border_px = [], [], []
    for m in track(rows["mask"], description="reading the true masks", console=console, transient=True):
        obj = decode_png(m["bytes"], grey=True) == MASK_OBJECT
        area.append(float(obj.mean()))
        n = int(obj[0].sum() + obj[-1].sum() + obj[1:-1, 0].sum() + obj[1:-1, -1].sum())
        border_px.append(n)
        touch.append(n > 0)
    G = BuiltinGenerator(resolution=resolution)
    names = [c for c in rows.columns if c.startswith("gt_") and c not in CAMERA_GT]
    known = set(G.truth_extra_names)
    names = [c for c in names if c[3:] in known and c[3:] not in ("distractor", "instances", "cut", "area")]
    cross = []
    for lo in range(0, len(rows), batch):
        chunk = rows.iloc[lo : lo + batch]
        prm = {c[3:]: torch.tensor(chunk[c].to_numpy(np.float32)) for c in names}
        mesh, _, _ = G.build_mesh(prm)
        verts = mesh.verts.double().numpy()
        K = np.stack(chunk["K"].to_numpy()).reshape(-1, 3, 3)
        R = np.stack(chunk["R"].to_numpy()).reshape(-1, 3, 3)
        t = np.stack(chunk["t"].to_numpy()).reshape(-1, 3)
        uv, _ = cameras.project(verts, K, R, t)
        H, W = chunk["height"].to_numpy()[:, None], chunk["width"].to_numpy()[:, None]
        out = (uv[..., 0] < 0) | (uv[..., 0] > W) | (uv[..., 1] < 0) | (uv[..., 1] > H)
        cross.extend(out.any(1).tolist())
    return pd.DataFrame({"true_area": area, "touches": touch, "border_px": border_px, "crosses": cross}, index=rows.index)


def honest(args, folder: Path) -> None:
    synth = ["synth", "--views", str(args.views), "--samples", str(args.samples), "--resolution", str(args.resolution),
             "--seed", str(args.seed), "--out", str(folder)]
    s_synth = run_cli(synth, "generating")
    s_filter = run_cli(["filter", str(folder), "--segmenter", "ground-truth"], "filtering")
    rows = read_rows(folder)
    rows = rows.join(truth_framing(rows, args.resolution))
    n = len(rows)
    rules = FilterConfig()
    print(f"== honest data: g3d {' '.join(synth)}  ({s_synth:.0f} s), then g3d filter {folder} --segmenter ground-truth ({s_filter:.0f} s)")
    kept = int(rows.keep.sum())
    print(f"kept {kept} of {n} images ({kept / n:.1%}); rules: min area {rules.min_area:.0%}, cut = >= {rules.border_px} mask "
          f"pixels on the border, exactly one instance, area within {rules.area_ratio}x of the view's median")
    first = Counter(rows.reject_reason.dropna())
    failed = Counter(f for fs in rows.filter_failed for f in fs)
    print("rejections per rule (first failed rule / every failed rule): "
          + (", ".join(f"{r} {first.get(r, 0)} / {failed.get(r, 0)}" for r in sorted(set(first) | set(failed))) or "none"))

    az = rows.groupby("view_id").azimuth_deg.median()
    el = rows.groupby("view_id").elevation_deg.median()
    dist = rows.groupby("view_id").distance.median()
    kept_v = rows.groupby("view_id").keep.mean()
    # The filter's view median: over images with an instance (all of them here), of the chosen mask's area.
    fmed = rows[rows.filter_instances > 0].groupby("view_id").filter_area.median()
    amin = rows.groupby("view_id").true_area.min()
    amed = rows.groupby("view_id").true_area.median()
    touch = rows.groupby("view_id").touches.sum()
    cut3 = rows.assign(c=rows.border_px >= rules.border_px).groupby("view_id").c.sum()
    cross = rows.groupby("view_id").crosses.sum()
    worst = kept_v.sort_values(kind="stable").index[:3]
    print(f"kept per view: min {kept_v.min():.0%} (view {int(kept_v.idxmin())}), median {kept_v.median():.0%}; "
          f"views under 100%: {int((kept_v < 1).sum())} of {len(kept_v)}")
    print("the 3 worst views: " + "; ".join(f"view {int(v)} kept {kept_v[v]:.0%}, median mask area {fmed.get(v, float('nan')):.3f}" for v in worst))
    print(f"truth: object mask area min {rows.true_area.min():.3f}, median {rows.true_area.median():.3f}; per view, min of the "
          f"view minima {amin.min():.3f}, min of the view medians {amed.min():.3f} (view {int(amed.idxmin())}); "
          f"images under {rules.min_area:.0%}: {int((rows.true_area < rules.min_area).sum())}")
    print(f"truth: objects touching the border (>= 1 mask pixel on it) {int(rows.touches.sum())}, with >= {rules.border_px} pixels "
          f"(the rule's bar) {int((rows.border_px >= rules.border_px).sum())}, crossing it (a true mesh vertex outside the image) "
          f"{int(rows.crosses.sum())}, of {n} images")
    print("per view (azimuth / elevation / distance: the view's median camera):")
    print(f"  {'view':>4} {'az':>6} {'el':>5} {'dist':>5} {'kept':>5} {'filter med':>10} {'true min':>8} {'true med':>8} {'touch':>5} {'>=3px':>5} {'cross':>5}  rejected")
    for v in kept_v.index:
        rej = Counter(rows.reject_reason[rows.view_id == v].dropna())
        print(f"  {int(v):>4} {az[v]:>6.1f} {el[v]:>5.1f} {dist[v]:>5.2f} {kept_v[v]:>5.0%} {fmed.get(v, float('nan')):>10.3f} {amin[v]:>8.3f} "
              f"{amed[v]:>8.3f} {int(touch[v]):>5} {int(cut3[v]):>5} {int(cross[v]):>5}  {', '.join(f'{r} {c}' for r, c in rej.items())}")


def with_distractors(args, folder: Path) -> None:
    synth = ["synth", "--views", str(args.views), "--samples", str(args.samples), "--resolution", str(args.resolution),
             "--seed", str(args.seed), "--distractors", str(args.distractors), "--out", str(folder)]
    s_synth = run_cli(synth, "generating")
    s_filter = run_cli(["filter", str(folder), "--segmenter", "ground-truth"], "filtering")
    score = score_against_truth(folder)
    rows = read_rows(folder)
    bad, rejected = truly_bad(rows), ~rows.keep
    n, nb, nr = len(rows), int(bad.sum()), int(rejected.sum())
    print()
    print(f"== broken objects: g3d {' '.join(synth)}  ({s_synth:.0f} s), then g3d filter ... --segmenter ground-truth ({s_filter:.0f} s)")
    kinds = Counter(DISTRACTOR_KINDS.get(int(k), str(k)) for k in rows.gt_distractor)
    print(f"{n} images: " + ", ".join(f"{k} {c}" for k, c in kinds.items()) + f"; truly bad {nb} ({nb / n:.1%}), rejected {nr} ({nr / n:.1%})")
    print(f"  {'rejections':<40} {'precision':>9} {'recall':>7}")
    print(f"  {'g3d filter (ground-truth masks)':<40} {score['precision']:>9.3f} {score['recall']:>7.3f}")
    print(f"  {'keep everything':<40} {'-':>9} {0.0:>7.3f}   (rejects nothing)")
    print(f"  {f'reject {nr / n:.1%} at random (expectation)':<40} {nb / n:>9.3f} {nr / n:>7.3f}")
    print(f"  {'oracle (reject exactly the truly bad)':<40} {1.0:>9.3f} {1.0:>7.3f}")
    # Why each bad image is bad (the terms of truly_bad), and what the filter caught of each.
    rules = FilterConfig()
    why = {
        "not exactly one instance": rows.gt_instances != 1,
        f"true mask under {rules.min_area:.0%}": rows.gt_area < rules.min_area,
        "cut by the frame (gt_cut)": rows.gt_cut == 1,
        "shrunk (distractor 'small')": rows.gt_distractor == 2,
    }
    print("recall per kind of breakage (an image can be bad for several reasons):")
    for name, sel in why.items():
        k = int(sel.sum())
        print(f"  {name:<32} {k:>5} images, rejected {int((sel & rejected).sum()):>5}" + (f" ({(sel & rejected).sum() / k:.1%})" if k else ""))
    honest_rows = rows.gt_distractor == 0
    hb = honest_rows & bad
    print(f"honest objects (distractor none): {int(honest_rows.sum())} images, {int(hb.sum())} truly bad by framing "
          f"(small or cut), {int((honest_rows & rejected).sum())} rejected: "
          + (", ".join(f"{r} {c}" for r, c in Counter(rows.reject_reason[honest_rows & rejected]).items()) or "none"))
    own = truth_framing(rows[honest_rows], args.resolution)
    agree = int((own.crosses.to_numpy() == (rows.gt_cut[honest_rows] == 1).to_numpy()).sum())
    print(f"cross-check on the honest objects: the true mesh rebuilt from gt_* crosses the border in {int(own.crosses.sum())} images, "
          f"the generator's gt_cut says {int((rows.gt_cut[honest_rows] == 1).sum())}; they agree on {agree} of {int(honest_rows.sum())}")
    fp = rejected & ~bad
    if fp.any():
        print(f"rejected but not truly bad: {int(fp.sum())}: " + ", ".join(f"{r} {c}" for r, c in Counter(rows.reject_reason[fp]).items()))
    fn = bad & ~rejected
    if fn.any():
        print(f"truly bad but kept: {int(fn.sum())}: " + ", ".join(
            f"{DISTRACTOR_KINDS.get(int(k), k)} {c}" for k, c in Counter(rows.gt_distractor[fn]).items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--views", type=int, default=39)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--distractors", type=float, default=0.3, help="fraction of broken objects in the second dataset (0: skip it)")
    ap.add_argument("--keep", type=Path, default=None, help="write the datasets under this folder (honest/, distractors/) and keep them")
    args = ap.parse_args()
    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="g3d-framing-")
        base = Path(tmp.name)
    else:
        base = args.keep
        base.mkdir(parents=True, exist_ok=True)
    try:
        honest(args, base / "honest")
        if args.distractors > 0:
            with_distractors(args, base / "distractors")
        if args.keep is not None:
            print(f"datasets kept in {base}/honest and {base}/distractors")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
