"""Time to push and pull annotation tasks through a real, local Label Studio.

Starts its own Label Studio (``.venv-ls``, see scripts/label-studio-venv.sh) on 127.0.0.1 with a
temporary data dir, makes a built-in dataset of 39 views x 52 objects (2028 images, 64 px), and
measures:

1. pose bins, 39 views: push (grid images + one task per view), 39 answers through the API,
   pull (export, validation, pose_bins.parquet);
2. keypoints, 39 views x 12 keypoints: push, 39 answers of 12 keypoints through the API, pull;
3. 2028 image tasks (keypoints on every object): push by local files, and by upload (the
   baseline, same run, same images), then every pre-annotation accepted in bulk and pulled.

Ratios are against the upload baseline measured in the same run.

    python bench/annotate.py            # about 4-5 minutes on 2 cores (1 minute of it: migrations)
    python bench/annotate.py --quick    # a smoke run: 8 views x 6 objects
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

from g3d.annotate.client import ConnectionConfig, connect  # noqa: E402
from g3d.annotate.dataset import read_rows  # noqa: E402
from g3d.annotate.pull import PullConfig, pull  # noqa: E402
from g3d.annotate.push import PushConfig, keypoint_result, nearest_pose_bin, pose_result, push  # noqa: E402
from g3d.annotate.configs import pose_schema  # noqa: E402
from g3d.annotate.server import LabelStudioServer, ServeConfig  # noqa: E402
from g3d.classes import get_preset  # noqa: E402
from g3d.synth.sampling import SynthConfig, run_synth  # noqa: E402


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def answer_poses(conn, project_id, folder) -> int:
    import pyarrow.parquet as pq

    schema = pose_schema(get_preset("car"))
    vp = pq.read_table(folder / "viewpoints.parquet").to_pandas().set_index("view_id")
    n = 0
    for t in conn.sdk.tasks.list(project=project_id, page_size=1000):
        v = int(t.data["view_id"])
        conn.sdk.annotations.create(id=t.id, result=pose_result(*nearest_pose_bin(schema, vp.loc[v, "gt_azimuth_deg"], 0.0)))
        n += 1
    return n


def answer_keypoints(conn, project_id, folder) -> int:
    """Every one of the 12 keypoints per task: visible ones where they are, hidden ones marked occluded."""
    names = get_preset("car").keypoints
    tasks = list(conn.sdk.tasks.list(project=project_id, page_size=1000))
    rows = read_rows(folder, {(int(t.data["view_id"]), int(t.data["sample_id"])) for t in tasks}, ["keypoints_2d", "keypoints_visible", "width", "height"])
    n = 0
    for t in tasks:
        r = rows[(int(t.data["view_id"]), int(t.data["sample_id"]))]
        w, h = r["width"], r["height"]
        xy = np.clip(np.asarray(r["keypoints_2d"]).reshape(-1, 2), 0.5, [w - 0.5, h - 0.5])
        pts = [(names[i], float(x), float(y), bool(vis)) for i, ((x, y), vis) in enumerate(zip(xy, r["keypoints_visible"]))]
        conn.sdk.annotations.create(id=t.id, result=keypoint_result(pts, w, h))
        n += len(pts)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 views x 6 objects")
    ap.add_argument("--views", type=int, default=39)
    ap.add_argument("--samples", type=int, default=52, help="objects per view (39 x 52 = 2028 image tasks)")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--label-studio", default=None, help="label-studio command (default: $G3D_LABEL_STUDIO or .venv-ls)")
    args = ap.parse_args()
    if args.quick:
        args.views, args.samples = 8, 6
    tmp = Path(tempfile.mkdtemp(prefix="g3d-bench-annotate-"))
    figures: list[tuple[str, str]] = []

    def fig(name: str, value: str) -> None:
        figures.append((name, value))
        print(f"{name:<58} {value}", flush=True)

    try:
        folder = tmp / "data" / "car"
        rep, s = timed(run_synth, SynthConfig(out=folder, views=args.views, samples=args.samples, resolution=args.resolution, batch_size=64, candidates=4 * args.views))
        print(f"dataset: {args.views} views x {args.samples} objects at {args.resolution} px made in {s:.1f} s (not part of the figures)")
        server = LabelStudioServer(ServeConfig(data_dir=tmp / "ls", document_root=tmp / "data", port=18600, executable=args.label_studio))
        _, s = timed(server.start)
        fig("server first start (migrations + start), s", f"{s:.1f}  (init {server.init_seconds:.1f})")
        try:
            cc = ConnectionConfig(url=server.url, api_key=server.personal_access_token, timeout=300)
            conn = connect(cc)
            v = args.views

            # 1. pose bins
            r, s = timed(push, PushConfig(folder=folder, kind="poses", connection=cc))
            fig(f"poses: push {v} view tasks (grid images, local files), s", f"{s:.2f}  (images {r.timings['images']:.2f})")
            n, s = timed(answer_poses, conn, r.project_id, folder)
            fig(f"poses: {n} answers through the API, s per answer", f"{s / n:.3f}")
            p, s = timed(pull, PullConfig(folder=folder, connection=cc, kinds=("poses",)))
            assert p.kinds[0].complete and not p.kinds[0].issues
            fig(f"poses: pull {v} views, s", f"{s:.2f}  (export {p.kinds[0].export_seconds:.2f})")

            # 2. keypoints, one object per view
            r, s = timed(push, PushConfig(folder=folder, kind="keypoints", connection=cc))
            fig(f"keypoints: push {v} view tasks (local files), s", f"{s:.2f}")
            n, s = timed(answer_keypoints, conn, r.project_id, folder)
            fig(f"keypoints: {v} answers of 12 keypoints through the API, s per answer", f"{s / v:.3f}")
            p, s = timed(pull, PullConfig(folder=folder, connection=cc, kinds=("keypoints",)))
            assert p.kinds[0].complete and p.kinds[0].rows == n, (p.kinds[0].rows, n)
            fig(f"keypoints: pull {v} views x 12 keypoints ({n} points), s", f"{s:.2f}  (export {p.kinds[0].export_seconds:.2f})")

            # 3. thousands of image tasks: upload (baseline) vs local files
            many = args.samples
            shutil.rmtree(folder / "annotate" / "keypoints")  # both pushes write their images afresh
            up, s_up = timed(push, PushConfig(folder=folder, kind="keypoints", connection=cc, title="bench upload", images="upload", objects_per_view=many))
            shutil.rmtree(folder / "annotate" / "keypoints")
            lf, s_lf = timed(push, PushConfig(folder=folder, kind="keypoints", connection=cc, title="bench local files", images="local-files", objects_per_view=many))
            assert up.images == "upload" and lf.images == "local-files" and up.tasks_imported == lf.tasks_imported
            k = lf.tasks_imported
            split = lambda r: ", ".join(f"{k} {v:.2f}" for k, v in r.timings.items())  # noqa: E731
            fig(f"image tasks: push {k} by upload (baseline), s", f"{s_up:.2f}  ({k / s_up:.0f} tasks/s; {split(up)})")
            fig(f"image tasks: push {k} by local files, s", f"{s_lf:.2f}  ({k / s_lf:.0f} tasks/s; {split(lf)})")
            fig("image tasks: local files speed-up over upload", f"{s_up / s_lf:.1f}x")
            _, s = timed(conn.sdk.actions.create, id="predictions_to_annotations", project=lf.project_id, selected_items={"all": True, "excluded": []})
            fig(f"image tasks: accept {k} pre-annotations in bulk (server), s", f"{s:.2f}")
            p, s = timed(pull, PullConfig(folder=folder, connection=cc, kinds=("keypoints",)))
            kr = p.kinds[0]
            assert kr.annotated_tasks == k and kr.complete, (kr.annotated_tasks, k)
            fig(f"image tasks: pull {k} annotated tasks ({kr.rows} keypoints), s", f"{s:.2f}  (export {kr.export_seconds:.2f})")
            conn.close()
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
