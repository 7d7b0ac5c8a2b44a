"""StyleGAN-R on the built-in generator: what the mapping network learns, beside its baselines and ceiling.

1. An inverse-graphics run (``--inverse RUN``, or one trained here: built-in cars, 300 objects x 39 views
   at 64 px, `g3d train --camera-head` defaults for ``--inverse-steps``).
2. `g3d neural train` stage 1 for ``--steps`` on it, timed (``--ablation``: again with one change each; ``--views-baseline``:
   the first of them alone, the camera MLP on the dataset's cameras only); then `g3d neural eval`: camera error at the
   dataset's views, at new cameras and for photos between the views (beside a constant camera), parameter errors of shape, paint and
   background, swap leakage ratios and silhouette IoU, for the mapping, the mapping with its gate ignored,
   the average latent, and the identity (the true latents: the ceiling).
3. ``--pictures DIR``: `g3d neural swap` and `g3d neural render` on held-out cars of the dataset
   (DIR/neural_swap.png, DIR/neural_render.png and DIR/neural_turntable.gif), and a plain photo (no @VIEW) of a new
   car between the views, its camera from the head (DIR/neural_render_plain.png).

    python bench/neural.py [--quick] [--inverse RUN] [--steps 1500] [--threads 1] [--workdir DIR] [--pictures docs]
                           [--cameras auto] [--between 0.5] [--camera-batch 256] [--views-baseline | --ablation]
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


def inverse_run(tmp: Path, samples: int, views: int, steps: int) -> Path:
    from g3d.synth.sampling import SynthConfig, run_synth
    from g3d.train.loop import TrainConfig, train

    data, run = tmp / "car", tmp / "run"
    run_synth(SynthConfig(out=data, samples=samples, views=views, resolution=64, seed=1))
    t0 = time.perf_counter()
    train(TrainConfig(folder=str(data), out=str(run), resolution=64, batch_size=8, steps=steps, preview_every=10**9,
                      checkpoint_every=max(1, steps // 4), camera_head=True))  # g3d train's defaults; the head: plain photos (no @VIEW)
    print(f"inverse-graphics run: {samples} cars x {views} views, {steps} steps, {time.perf_counter() - t0:.0f} s")
    return run


def pictures(nrun: Path, out: Path) -> None:
    """The swap figure and a turntable of held-out cars, through the CLI commands themselves."""
    from typer.testing import CliRunner

    from g3d.cli import app
    from g3d.datasets.manifest import read_manifest
    from g3d.neural.train import load_neural
    from g3d.train.data import first_test_sample

    import json

    cfg, _, src = load_neural(nrun)
    manifest = read_manifest(Path(src.dataset))
    first = first_test_sample(manifest.samples, json.loads((Path(src.run) / "config.json").read_text())["holdout"])  # the run's held-out cars
    V = manifest.views
    held = manifest.samples - first
    photos = [f"{first + k % held}:{(5 + 7 * k) % V}" for k in range(4)]
    runner = CliRunner()
    out.mkdir(parents=True, exist_ok=True)
    r = runner.invoke(app, ["neural", "swap", str(nrun), *photos, "--out", str(out / "neural_swap.png"), "--shape-from", "0",
                            "--texture-from", "1", "--background-from", "2"])
    print(r.output.strip())
    if r.exit_code:
        raise SystemExit(f"g3d neural swap failed: {r.output.strip()}")
    tmp = Path(tempfile.mkdtemp())
    r = runner.invoke(app, ["neural", "render", str(nrun), photos[3], "--out", str(tmp), "--views", "8"])
    print(r.output.strip())
    if r.exit_code:
        raise SystemExit(f"g3d neural render failed: {r.output.strip()}")
    shutil.copy(tmp / "sheet.png", out / "neural_render.png")
    shutil.copy(tmp / "turntable.gif", out / "neural_turntable.gif")
    print(f"pictures: {out / 'neural_swap.png'} (photos {', '.join(photos)}), {out / 'neural_render.png'}, {out / 'neural_turntable.gif'}")
    if src.has_head:  # a plain photo (no @VIEW) of a new car between the dataset's views: its camera from the head
        import cv2

        from g3d.neural.sources import draw_latents, head_cameras

        ws, _ = draw_latents(src, 11, 0, 1, between=1.0, stream=6)
        with torch.no_grad():
            img = ((src.G.synthesis(ws)[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        cv2.imwrite(str(tmp / "photo.png"), np.ascontiguousarray(img[..., ::-1]))
        r = runner.invoke(app, ["neural", "render", str(nrun), str(tmp / "photo.png"), "--out", str(tmp / "plain"), "--views", "8"])
        if r.exit_code:
            raise SystemExit(f"g3d neural render of a plain photo failed: {r.output.strip()}")
        vt = src.G.viewpoint_truth(ws[:, list(src.layout.viewpoint_rows)], src.layout.viewpoint_rows)
        x = torch.from_numpy(np.ascontiguousarray(cv2.resize(img, (src.W, src.H), interpolation=cv2.INTER_AREA))).permute(2, 0, 1).float()[None] / 255
        from g3d import cameras as camlib

        c = head_cameras(src, x)
        az, el, _ = camlib.to_azimuth_elevation(c.R.double().numpy(), c.t.double().numpy())
        shutil.copy(tmp / "plain" / "sheet.png", out / "neural_render_plain.png")
        print(f"plain photo (no @VIEW; a new car between the views, true camera azimuth {vt['azimuth_deg'][0] % 360:.1f}, elevation "
              f"{vt['elevation_deg'][0]:.1f}; the head's {az[0] % 360:.1f}, {el[0]:.1f}): {out / 'neural_render_plain.png'}")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small data and budget: checks that the script runs")
    ap.add_argument("--inverse", type=Path, default=None, help="an inverse-graphics run (default: train one here)")
    ap.add_argument("--inverse-steps", type=int, default=7000)
    ap.add_argument("--steps", type=int, default=1500, help="stage-1 steps (the paper: 700)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--gate-lr", type=float, default=None)
    ap.add_argument("--entropy-weight", type=float, default=None)
    ap.add_argument("--cameras", default="auto", help="g3d neural train --cameras: truth, head, views or auto")
    ap.add_argument("--between", type=float, default=0.5, help="g3d neural train --between")
    ap.add_argument("--camera-batch", type=int, default=256, help="g3d neural train --camera-batch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=64, help="held-out latents evaluated")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--pictures", type=Path, default=None)
    ap.add_argument("--ablation", action="store_true", help="also: the gate per dimension (the paper's), the codes trained through "
                    "the blend (no own L2), and a faster gate")
    ap.add_argument("--views-baseline", action="store_true", help="also (alone of the ablation): the camera MLP trained on the "
                    "dataset's cameras only (--cameras views), the baseline of the cameras between the views")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from g3d.neural.evaluate import evaluate_neural
    from g3d.neural.train import NeuralConfig, load_neural, train_neural

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(args.workdir or tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        run = args.inverse or inverse_run(tmp, *((12, 4, 20) if args.quick else (300, 39, args.inverse_steps)))
        steps = 20 if args.quick else args.steps
        kw = {k: v for k, v in (("lr", args.lr), ("gate_lr", args.gate_lr), ("entropy_weight", args.entropy_weight)) if v is not None}
        kw.update(cameras=args.cameras, between=args.between, camera_batch=args.camera_batch)
        nrun = tmp / "neural"
        shutil.rmtree(nrun, ignore_errors=True)
        t0 = time.perf_counter()
        train_neural(NeuralConfig(inverse=str(run), out=str(nrun), stage1_steps=steps, preview_every=10**9, **kw))
        secs = time.perf_counter() - t0
        cfg, mapping, src = load_neural(nrun)
        print(f"g3d neural train, stage 1, {steps} steps, batch {cfg.batch_size}, {args.threads} thread(s): {secs:.0f} s "
              f"({secs / steps:.2f} s/step){' with ' + str(kw) if kw else ''}")
        rep = evaluate_neural(mapping, src, cfg.seed, 8 if args.quick else args.n)
        for line in rep.lines():
            print("  " + line)
        c, lk = rep.camera, rep.leakage["mapped"]
        print(f"  acceptance: azimuth error {c['az_views']:.1f} < 10 deg: {c['az_views'] < 10}; leakage ratios "
              f"{', '.join(f'{k} {v:.1f}' for k, v in lk.items())} >= 5: {all(v >= 5 for v in lk.values())}; "
              f"silhouette IoU {rep.iou['mapped']:.3f} >= 0.8: {rep.iou['mapped'] >= 0.8}; azimuth error at new cameras "
              f"{c['az_new']:.1f} <= 3 deg: {c['az_new'] <= 3} (camera source: {src.camera_source})")
        if args.pictures:
            pictures(nrun, args.pictures)
        if args.ablation or args.views_baseline:
            print(f"\nablation ({steps} steps each, the rest as above): leakage ratio shape / texture / background; parameter error "
                  "shape / paint / background; camera azimuth error at the views / at new cameras")
            for name, change in (("the dataset's cameras only (--cameras views)", dict(cameras="views")),
                                 ("gate per dimension (the paper's)", dict(gate_per="dim")),
                                 ("codes trained through the blend (source_weight 0)", dict(source_weight=0.0)),
                                 ("a faster gate (gate_lr 1e-2, entropy_weight 0.03)", dict(gate_lr=1e-2, entropy_weight=0.03)))[:None if args.ablation else 1]:
                out = tmp / f"abl_{next(iter(change))}"
                shutil.rmtree(out, ignore_errors=True)
                train_neural(NeuralConfig(inverse=str(run), out=str(out), stage1_steps=steps, preview_every=10**9, **{**kw, **change}))
                c2, m2, s2 = load_neural(out)
                r = evaluate_neural(m2, s2, c2.seed, 8 if args.quick else args.n)
                lk, e = r.leakage["mapped"], r.errors["mapped"]
                print(f"  {name:<52} {lk['shape']:6.1f} {lk['texture']:6.1f} {lk['background']:6.1f}   {e['shape']:.2f} {e['paint']:.2f} "
                      f"{e['background']:.2f}   {r.camera['az_views']:.1f} / {r.camera['az_new']:.1f}", flush=True)


if __name__ == "__main__":
    main()
