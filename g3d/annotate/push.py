"""``g3d annotate push poses|keypoints|masks DIR``: create (or reuse) a project and import tasks.

Tasks (one per view for poses; one per view and reference object for keypoints; a handful of
images for masks) carry ``view_id``, ``sample_id`` and the dataset id in their data. Their images
are written under ``DIR/annotate/<kind>/`` and reach the server by

* **local files** when the server shares the disk: a Label Studio local-files storage on that
  folder (never synced, so it creates no tasks itself) makes ``/data/local-files/?d=<path>``
  readable, and the tasks are imported as JSON pointing at those URLs (thousands in seconds);
* **upload** otherwise: the PNGs are posted to the project (``commit_to_project=false``) and the
  tasks point at the uploaded copies.

``images="auto"`` tries local files and falls back to upload, saying why. Pushing again adds only
the tasks the project lacks. Pre-annotations (predictions) come from the last pull, or from the
built-in generator's ground truth, each marked by its ``model_version``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import quote

import numpy as np

from g3d.annotate import configs
from g3d.annotate.client import Connection, ConnectionConfig, LabelStudioError, connect, error_detail, resolve
from g3d.annotate.dataset import (
    DatasetInfo,
    annotate_dir,
    default_title,
    load_record,
    read_dataset_info,
    read_rows,
    save_record,
)
from g3d.datasets.folder import KEYPOINTS, POSE_BINS
from g3d.datasets import io as dsio
from g3d.errors import DatasetError, UsageError

MODEL_TRUTH = "g3d ground truth (built-in generator)"
MODEL_PREVIOUS = "g3d previous pull"
MODEL_MASK = "g3d stored mask"
IMPORT_BATCH = 1000  # tasks per import request
UPLOAD_BATCH = 50  # files per upload request (Label Studio accepts at most 100)
NEVER = "^$"  # regex of the local-files storage: matches no file, so a sync never adds tasks


@dataclass
class PushConfig:
    """Arguments of ``g3d annotate push``."""

    folder: Path  # dataset folder
    kind: Literal["poses", "keypoints", "masks"]  # which tasks
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    title: str | None = None  # project title; None = "<folder> <kind> <dataset id>"
    images: Literal["auto", "local-files", "upload"] = "auto"  # how images reach the server
    document_root: Path | None = None  # the server's LOCAL_FILES_DOCUMENT_ROOT; None = $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT or probe
    grid_objects: int = 6  # objects shown in each pose task's grid
    objects_per_view: int = 1  # keypoint tasks per view (the same reference objects in every view)
    mask_images: int = 20  # mask tasks, spread over the views
    predictions: Literal["auto", "previous", "ground-truth", "none"] = "auto"  # pre-annotations: auto = previous pull, else ground truth


@dataclass
class PushReport:
    """What a push did."""

    kind: str
    url: str
    project_id: int
    title: str
    created: bool  # the project was made by this push (else reused)
    tasks_imported: int
    tasks_existing: int  # already in the project, left alone
    views_without_images: list[int]  # views with no kept image (no task)
    images: str  # "local-files" or "upload"
    images_note: str | None  # why auto fell back to upload
    predictions: dict[str, int]  # model_version -> tasks pre-annotated
    image_dir: Path
    seconds: float
    timings: dict[str, float]  # images / project / transfer / import seconds


# -- images -----------------------------------------------------------------------------------
def _write_if_changed(path: Path, data: bytes) -> None:
    """Write a task image atomically (temporary name, then rename) unless it is already there.

    No fsync: task images are a cache re-made from the image shards on every push, and an fsync
    per file would cost seconds per thousand tasks.
    """
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    tmp = dsio.tmp_path_for(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _grid_png(images: list[np.ndarray], min_cell: int = 128) -> bytes:
    """uint8 [h, w, 3] images -> one PNG of a near-square grid (cells upscaled to >= min_cell px)."""
    import cv2

    from g3d.datasets.previews import grid
    from g3d.datasets.schema import encode_png

    n = len(images)
    cols = max(1, math.ceil(math.sqrt(n * 1.5)))
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    h, w = images[0].shape[:2]
    f = max(1, math.ceil(min_cell / max(1, w)))
    cells = np.full((rows, cols, h * f, w * f, 3), 255, np.uint8)
    for i, im in enumerate(images):
        if f > 1:
            im = cv2.resize(im, (w * f, h * f), interpolation=cv2.INTER_NEAREST)
        cells[i // cols, i % cols] = im
    return encode_png(grid(cells, pad=4), compression=3)


@dataclass
class _Task:
    key: tuple[int, ...]  # (view,) for poses; (view, sample) otherwise
    file: str  # image file name under annotate/<kind>/
    data: dict[str, Any]
    predictions: list[dict[str, Any]]


def _pose_tasks(info: DatasetInfo, cfg: PushConfig) -> tuple[list[_Task], list[int], dict[str, bytes]]:
    from g3d.datasets.schema import decode_png

    if cfg.grid_objects < 1:
        raise UsageError(f"--grid-objects {cfg.grid_objects}: show at least 1 object per pose task")
    chosen = {v: info.kept_samples(v)[: cfg.grid_objects] for v in info.views}
    missing = [v for v, ss in chosen.items() if not ss]
    rows = read_rows(info.folder, {(v, s) for v, ss in chosen.items() for s in ss}, ["image"])
    tasks, files = [], {}
    for v, ss in chosen.items():
        if not ss:
            continue
        name = f"view_{v:03d}.png"
        files[name] = _grid_png([decode_png(rows[(v, s)]["image"]["bytes"]) for s in ss])
        tasks.append(_Task((v,), name, {"view_id": v, "samples": ss}, []))
    return tasks, missing, files


def _reference_samples(info: DatasetInfo, count: int) -> list[int]:
    """The ``count`` objects kept in the most views (ties: lower id): the same objects in every view."""
    kept = {}
    for s, k in zip(info.sample_ids, info.keep):
        kept[int(s)] = kept.get(int(s), 0) + int(k)
    return [s for s, _ in sorted(kept.items(), key=lambda kv: (-kv[1], kv[0]))][:count]


def _image_tasks(info: DatasetInfo, pairs: list[tuple[int, int]]) -> tuple[list[_Task], dict[str, bytes]]:
    rows = read_rows(info.folder, set(pairs), ["image"])
    tasks, files = [], {}
    for v, s in pairs:
        name = f"view_{v:03d}_sample_{s:06d}.png"
        files[name] = rows[(v, s)]["image"]["bytes"]  # the stored PNG itself: pixels map back exactly
        w, h = info.sizes[(v, s)]
        tasks.append(_Task((v, s), name, {"view_id": v, "sample_id": s, "width": w, "height": h}, []))
    return tasks, files


def _keypoint_pairs(info: DatasetInfo, cfg: PushConfig) -> tuple[list[tuple[int, int]], list[int]]:
    if cfg.objects_per_view < 1:
        raise UsageError(f"--objects-per-view {cfg.objects_per_view}: annotate at least 1 object per view")
    refs = _reference_samples(info, max(cfg.objects_per_view * 4, cfg.objects_per_view + 8))
    pairs, missing = [], []
    for v in info.views:
        kept = set(info.kept_samples(v))
        mine = [s for s in refs if s in kept][: cfg.objects_per_view]
        if len(mine) < cfg.objects_per_view:  # the usual objects were filtered out here: take others
            mine += [s for s in sorted(kept) if s not in mine][: cfg.objects_per_view - len(mine)]
        if not mine:
            missing.append(v)
        pairs += [(v, s) for s in sorted(mine)]
    return pairs, missing


def _mask_pairs(info: DatasetInfo, cfg: PushConfig) -> tuple[list[tuple[int, int]], list[int]]:
    if cfg.mask_images < 1:
        raise UsageError(f"--mask-images {cfg.mask_images}: push at least 1 image")
    kept = {v: info.kept_samples(v) for v in info.views}
    pairs, depth = [], 0
    while len(pairs) < cfg.mask_images and any(len(ss) > depth for ss in kept.values()):
        for v in info.views:  # round robin: one object per view, then the next one...
            if depth < len(kept[v]) and len(pairs) < cfg.mask_images:
                pairs.append((v, kept[v][depth]))
        depth += 1
    return pairs, [v for v, ss in kept.items() if not ss]


# -- predictions ------------------------------------------------------------------------------
def _nearest(values: dict[str, float], x: float, period: float | None) -> str:
    def dist(a: float) -> float:
        d = abs(a - x)
        return min(d, period - d) if period else d

    return min(values, key=lambda k: dist(values[k]))


def nearest_pose_bin(schema: configs.LabelSchema, azimuth_deg: float, elevation_deg: float) -> tuple[str, str]:
    """(azimuth choice, elevation choice) nearest to a camera's angles (azimuth wraps at 360)."""
    az = _nearest({k: b.azimuth_deg for k, b in schema.azimuth.items()}, azimuth_deg % 360.0, 360.0)
    el = _nearest(schema.elevation, elevation_deg, None)
    return az, el


def pose_result(azimuth: str | None, elevation: str | None, rejected: bool = False) -> list[dict[str, Any]]:
    """The result JSON the web UI writes for a pose task."""
    out = []
    for name, value in ((configs.AZIMUTH, azimuth), (configs.ELEVATION, elevation)):
        if value is not None:
            out.append({"from_name": name, "to_name": configs.IMAGE, "type": "choices", "value": {"choices": [value]}})
    if rejected:
        out.append({"from_name": configs.REJECT, "to_name": configs.IMAGE, "type": "choices", "value": {"choices": [configs.REJECT_VALUE]}})
    return out


def keypoint_result(points: list[tuple[str, float, float, bool]], width: int, height: int, prefix: str = "kp") -> list[dict[str, Any]]:
    """The result JSON the web UI writes for keypoints: (name, x px, y px, visible) -> percent."""
    out = []
    for i, (name, x, y, visible) in enumerate(points):
        rid = f"{prefix}{i}"
        value = {"x": 100.0 * x / width, "y": 100.0 * y / height, "width": 100.0 * 2.0 / width, "keypointlabels": [name]}
        out.append(
            {
                "id": rid,
                "from_name": configs.KEYPOINTS,
                "to_name": configs.IMAGE,
                "type": "keypointlabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": value,
            }
        )
        if not visible:
            out.append(
                {
                    "id": rid,
                    "from_name": configs.VISIBILITY,
                    "to_name": configs.IMAGE,
                    "type": "choices",
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                    "value": {"x": value["x"], "y": value["y"], "width": value["width"], "choices": [configs.OCCLUDED_VALUE]},
                }
            )
    return out


def polygon_result(label: str, points: np.ndarray, width: int, height: int, rid: str = "poly0") -> dict[str, Any]:
    """One polygon (float [K, 2] pixels) as the web UI writes it (percent points)."""
    pct = [[100.0 * float(x) / width, 100.0 * float(y) / height] for x, y in points]
    return {
        "id": rid,
        "from_name": configs.MASK,
        "to_name": configs.IMAGE,
        "type": "polygonlabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"points": pct, "closed": True, "polygonlabels": [label]},
    }


def _mask_polygon(png: bytes) -> np.ndarray | None:
    """The outline of the largest blob of a mask PNG, float [K, 2] pixel corners, or None."""
    import cv2

    from g3d.datasets.schema import decode_png

    m = (decode_png(png, grey=True) > 127).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    c = cv2.approxPolyDP(c, 0.75, True).reshape(-1, 2).astype(np.float64)
    return c + 0.5 if len(c) >= 3 else None


def _previous(folder: Path, name: str):
    from g3d.datasets.annotations import read_annotation_table

    return read_annotation_table(folder, name)


def _add_predictions(info: DatasetInfo, cfg: PushConfig, schema: configs.LabelSchema, tasks: list[_Task]) -> dict[str, int]:
    mode = cfg.predictions
    if mode not in ("auto", "previous", "ground-truth", "none"):
        raise UsageError(f"--predictions {mode!r}: choose auto, previous, ground-truth or none")
    counts: dict[str, int] = {}
    if mode == "none":
        return counts
    use_prev = mode in ("auto", "previous")
    use_truth = mode in ("auto", "ground-truth")

    def add(task: _Task, model: str, result: list[dict[str, Any]]) -> None:
        task.predictions = [{"model_version": model, "score": 1.0, "result": result}]
        counts[model] = counts.get(model, 0) + 1

    if cfg.kind == "poses":
        prev = _previous(info.folder, POSE_BINS) if use_prev else None
        prev_rows = {int(r.view_id): r for r in prev.itertuples()} if prev is not None else {}
        for t in tasks:
            v = t.key[0]
            r = prev_rows.get(v)
            if r is not None and (r.azimuth_bin in schema.azimuth or r.rejected):
                az = r.azimuth_bin if r.azimuth_bin in schema.azimuth else None
                el = _nearest(schema.elevation, float(r.elevation_deg), None) if r.elevation_deg == r.elevation_deg else None
                add(t, MODEL_PREVIOUS, pose_result(az, el, bool(r.rejected)))
            elif use_truth and v in info.gt_azimuth:
                add(t, MODEL_TRUTH, pose_result(*nearest_pose_bin(schema, info.gt_azimuth[v], info.gt_elevation.get(v, 0.0))))
    elif cfg.kind == "keypoints":
        prev = _previous(info.folder, KEYPOINTS) if use_prev else None
        by_task: dict[tuple[int, int], list] = {}
        if prev is not None:
            for r in prev.itertuples():
                by_task.setdefault((int(r.view_id), int(r.sample_id)), []).append((r.name, float(r.x), float(r.y), bool(r.visible)))
        truth = {}
        if use_truth and info.has_truth:
            truth = read_rows(info.folder, {t.key for t in tasks if t.key not in by_task}, ["keypoints_2d", "keypoints_visible"])
        names = info.preset.keypoints
        for t in tasks:
            w, h = t.data["width"], t.data["height"]
            if t.key in by_task:
                add(t, MODEL_PREVIOUS, keypoint_result(by_task[t.key], w, h))
            elif t.key in truth and truth[t.key]["keypoints_2d"] is not None:
                xy = np.asarray(truth[t.key]["keypoints_2d"], dtype=np.float64).reshape(-1, 2)
                vis = truth[t.key]["keypoints_visible"]
                pts = [(names[i], x, y, True) for i, ((x, y), ok) in enumerate(zip(xy, vis)) if ok and 0 <= x <= w and 0 <= y <= h]
                add(t, MODEL_TRUTH, keypoint_result(pts, w, h))
    else:
        masks = read_rows(info.folder, {t.key for t in tasks}, ["mask"]) if use_truth else {}
        for t in tasks:
            m = masks.get(t.key, {}).get("mask")
            poly = _mask_polygon(m["bytes"]) if m else None
            if poly is not None:
                add(t, MODEL_MASK, [polygon_result(schema.mask_labels[0], poly, t.data["width"], t.data["height"])])
    return counts


# -- project ----------------------------------------------------------------------------------
def _marker(info: DatasetInfo, kind: str) -> str:
    return f"g3d {kind} tasks of dataset {info.dataset_id}"


def find_project(conn: Connection, title: str) -> Any | None:
    """The project titled ``title`` (exactly), or None."""
    with conn.api("listing projects"):
        for p in conn.sdk.projects.list(page_size=100):
            if p.title == title:
                return p
    return None


def _ensure_project(conn: Connection, info: DatasetInfo, kind: str, title: str, schema: configs.LabelSchema) -> tuple[Any, bool]:
    if not 3 <= len(title) <= 50:
        raise UsageError(f"--title {title!r} has {len(title)} characters: Label Studio wants 3 to 50")
    marker = _marker(info, kind)
    p = find_project(conn, title)
    if p is not None:
        with conn.api(f"reading project {title!r}"):
            p = conn.sdk.projects.get(id=p.id)
        if not configs.same_config(p.label_config or "", schema.xml):
            raise LabelStudioError(
                f"project {title!r} (id {p.id}) on {conn.url} has a different label config than g3d's {kind} config: "
                "pass another --title, or delete that project"
            )
        if marker not in (p.description or ""):
            raise LabelStudioError(
                f"project {title!r} (id {p.id}) on {conn.url} was not made by g3d for this dataset ({info.dataset_id}): pass another --title"
            )
        return p, False
    description = (
        f"{marker}: {info.preset.name}, {len(info.views)} views, folder {info.folder.resolve()}. "
        "Pushed by `g3d annotate push`; pull the answers with `g3d annotate pull`."
    )
    with conn.api(f"creating project {title!r}"):
        p = conn.sdk.projects.create(title=title, label_config=schema.xml, description=description)
    return p, True


def _existing_keys(conn: Connection, project_id: int, kind: str) -> set[tuple[int, ...]]:
    keys = set()
    with conn.api("listing the project's tasks"):
        for t in conn.sdk.tasks.list(project=project_id, page_size=1000, fields="all"):
            d = t.data or {}
            if d.get("g3d_kind") != kind or "view_id" not in d:
                continue
            keys.add((int(d["view_id"]),) if kind == "poses" else (int(d["view_id"]), int(d.get("sample_id", -1))))
    return keys


# -- getting images to the server --------------------------------------------------------------
def _local_files_urls(conn: Connection, project_id: int, image_dir: Path, names: list[str], root_hint: Path | None) -> dict[str, str]:
    """Serve ``image_dir`` through a local-files storage; name -> URL. Raises LabelStudioError when the server cannot."""
    import os

    image_dir = image_dir.resolve()
    with conn.api("listing local-files storages"):
        storages = conn.sdk.import_storage.local.list(project=project_id)
    if not any(os.path.normpath(s.path or "") == str(image_dir) for s in storages):
        from label_studio_sdk.core.api_error import ApiError

        try:
            conn.sdk.import_storage.local.create(
                project=project_id,
                path=str(image_dir),
                regex_filter=NEVER,
                use_blob_urls=True,
                title="g3d task images",
                description="Tasks are imported by g3d; this storage only serves their images (its filter matches no file: do not sync).",
            )
        except ApiError as exc:
            if exc.status_code == 401:
                raise conn.refused(401, exc.body) from None
            raise LabelStudioError(f"the server cannot serve {image_dir} as local files ({error_detail(exc.body)})") from None
    # Find the server's document root: the ancestor under which ?d=<relative path> returns our file.
    probe = names[0]
    want = (image_dir / probe).read_bytes()
    candidates = []
    for hint in (root_hint, os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")):
        if hint:
            candidates.append(Path(hint).resolve())
    candidates += list(image_dir.parents)
    seen = set()
    for root in candidates:
        if root in seen or (root != image_dir and root not in image_dir.parents):
            continue
        seen.add(root)
        rel = (image_dir / probe).relative_to(root).as_posix()
        r = conn.request("GET", f"/data/local-files/?d={quote(rel)}", ok=(200, 403, 404), what="probing local files")
        if r.status_code == 200 and r.content == want:
            prefix = image_dir.relative_to(root).as_posix()
            return {n: f"/data/local-files/?d={quote(prefix + '/' + n)}" for n in names}
    raise LabelStudioError(f"the server accepted {image_dir} as local files but does not serve them back: pass --document-root, or --images upload")


def _upload_urls(conn: Connection, project_id: int, image_dir: Path, names: list[str]) -> dict[str, str]:
    """Upload the files (not as tasks); name -> URL of the uploaded copy."""
    import json

    urls: dict[str, str] = {}
    for i in range(0, len(names), UPLOAD_BATCH):
        chunk = names[i : i + UPLOAD_BATCH]
        files = [(f"file{j}", (n, (image_dir / n).read_bytes(), "image/png")) for j, n in enumerate(chunk)]
        r = conn.request("POST", f"/api/projects/{project_id}/import", params={"commit_to_project": "false"}, files=files, what="uploading images")
        ids = r.json().get("file_upload_ids", [])
        r = conn.request("GET", f"/api/projects/{project_id}/file-uploads", params={"ids": json.dumps(ids)}, what="listing uploads")
        for f in r.json():
            stored = f["file"]  # upload/<project>/<8 hex>-<name>
            base = stored.rsplit("/", 1)[-1]
            original = base.split("-", 1)[1] if "-" in base else base
            if original in chunk:
                urls[original] = "/data/" + stored.lstrip("/")
    lost = [n for n in names if n not in urls]
    if lost:
        raise LabelStudioError(f"{len(lost)} uploaded images were not found on {conn.url} afterwards (first: {lost[0]}): push again")
    return urls


# -- push -------------------------------------------------------------------------------------
def push(cfg: PushConfig, log: Callable[[str], None] | None = None) -> PushReport:
    """Create or reuse the project of ``cfg.kind`` for ``cfg.folder`` and import its missing tasks."""
    log = log or (lambda m: None)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if cfg.kind not in configs.KINDS:
        raise UsageError(f"unknown task kind {cfg.kind!r}: choose one of {', '.join(configs.KINDS)}")
    if cfg.images not in ("auto", "local-files", "upload"):
        raise UsageError(f"--images {cfg.images!r}: choose auto, local-files or upload")
    info = read_dataset_info(cfg.folder)
    resolve(cfg.connection)  # a missing or malformed --url / key fails here, before anything is written
    schema = configs.schema_for(cfg.kind, info.preset)

    # 1. Tasks and their images, on disk first (connect only once the dataset is known good).
    t0 = time.perf_counter()
    if cfg.kind == "poses":
        tasks, missing, files = _pose_tasks(info, cfg)
    else:
        pairs, missing = _keypoint_pairs(info, cfg) if cfg.kind == "keypoints" else _mask_pairs(info, cfg)
        tasks, files = _image_tasks(info, pairs)
    if not tasks:
        raise DatasetError(f"{cfg.folder} has no kept images to annotate: check the filter results (keep column)")
    image_dir = annotate_dir(cfg.folder, cfg.kind)
    image_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        _write_if_changed(image_dir / name, data)
    timings["images"] = time.perf_counter() - t0

    conn = connect(cfg.connection)
    try:
        t0 = time.perf_counter()
        title = cfg.title or default_title(info, cfg.kind)
        project, created = _ensure_project(conn, info, cfg.kind, title, schema)
        have = set() if created else _existing_keys(conn, project.id, cfg.kind)
        todo = [t for t in tasks if t.key not in have]
        predictions = _add_predictions(info, cfg, schema, todo)
        timings["project"] = time.perf_counter() - t0

        # 2. Images to the server.
        t0 = time.perf_counter()
        mode, note, urls = cfg.images, None, {}
        names = [t.file for t in todo]
        if todo and mode in ("auto", "local-files"):
            try:
                urls = _local_files_urls(conn, project.id, image_dir, names, cfg.document_root)
                mode = "local-files"
            except LabelStudioError as exc:
                if cfg.images == "local-files":
                    raise LabelStudioError(f"{exc}: start the server with local files under a parent of {cfg.folder}, or use --images upload") from None
                note = f"local files unavailable ({exc}); uploaded instead"
                log(note)
                mode = "upload"
        if todo and mode == "upload":
            urls = _upload_urls(conn, project.id, image_dir, names)
        previous = load_record(cfg.folder).get(cfg.kind, {})
        if not todo:  # nothing sent: the tasks keep the way their images were sent before
            mode = previous.get("images", cfg.images) if previous.get("project_id") == project.id else cfg.images
        timings["transfer"] = time.perf_counter() - t0

        # 3. Tasks.
        t0 = time.perf_counter()
        payload = []
        for t in todo:
            data = {"image": urls[t.file], **t.data, "g3d_kind": cfg.kind, "g3d_dataset": info.dataset_id}
            item: dict[str, Any] = {"data": data}
            if t.predictions:
                item["predictions"] = t.predictions
            payload.append(item)
        for i in range(0, len(payload), IMPORT_BATCH):
            with conn.api(f"importing tasks into {title!r}"):
                conn.sdk.projects.import_tasks(id=project.id, request=payload[i : i + IMPORT_BATCH], return_task_ids=True)
        timings["import"] = time.perf_counter() - t0
        report = PushReport(
            kind=cfg.kind,
            url=conn.url,
            project_id=int(project.id),
            title=title,
            created=created,
            tasks_imported=len(todo),
            tasks_existing=len(tasks) - len(todo),
            views_without_images=missing,
            images=mode,
            images_note=note,
            predictions=predictions,
            image_dir=image_dir,
            seconds=time.perf_counter() - t_start,
            timings=timings,
        )
        save_record(
            cfg.folder,
            cfg.kind,
            {
                "url": conn.url,
                "project_id": report.project_id,
                "title": title,
                "dataset_id": info.dataset_id,
                "images": mode,
                "tasks": len(tasks),
                "views": sorted({t.key[0] for t in tasks}),
                "pushed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
        return report
    finally:
        conn.close()
