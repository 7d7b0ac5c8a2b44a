"""``g3d annotate pull DIR``: export the annotations, convert them to pixels, validate, write.

Writes ``annotations/pose_bins.parquet`` (view_id int32, azimuth_bin string, azimuth_deg float64
(bin centre), elevation_deg float64, rejected bool, annotator string, updated_at string ISO 8601),
``annotations/keypoints.parquet`` (view_id int32, sample_id int64, name string, x, y float64 in
pixels of the stored image with origin at its top-left corner, visible bool) and, for masks,
``annotations/mask_polygons.parquet`` (view_id, sample_id, label, points float64 [2K] pixels,
annotator, updated_at).

Label Studio stores keypoints in percent of the image the annotator saw: ``px = x / 100 *
original_width`` (likewise y with ``original_height``). It does not check results against the
label config, so pull does, and reports each problem by name (:data:`ISSUE_NAMES`) instead of
dropping it silently:

``unknown_label``       a label or choice the config does not offer (the point or choice is dropped)
``unknown_control``     a result from a control the config does not have (dropped)
``bad_result``          a malformed result: several choices in a single choice, a point with no or
                        several labels, a polygon with fewer than 3 points (dropped)
``out_of_image``        a point or polygon vertex outside the image (dropped)
``size_mismatch``       original_width/height differ from the stored image (the point is dropped)
``duplicate_keypoint``  one keypoint clicked more than once in an annotation (all copies dropped)
``missing_choice``      a pose annotation without an azimuth bin that does not reject the view
``conflict``            several submitted annotations of one task disagree (the latest is kept)
``unannotated_view``    a view nobody annotated (or only skipped)
``unannotated_task``    a keypoint/mask task nobody annotated while its view has other answers
``unknown_task``        a task g3d did not push for this dataset (ignored)

Of several non-cancelled annotations of a task the latest (``updated_at``) wins. A pull that
misses views does not replace an existing file unless ``overwrite`` is set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from g3d.annotate import configs
from g3d.annotate.client import Connection, ConnectionConfig, LabelStudioError, connect
from g3d.annotate.dataset import DatasetInfo, default_title, load_record, read_dataset_info
from g3d.datasets.folder import KEYPOINTS, MASK_POLYGONS, POSE_BINS
from g3d.datasets import folder as dsf
from g3d.datasets import io as dsio
from g3d.errors import UsageError

ISSUE_NAMES = (
    "unknown_label",
    "unknown_control",
    "bad_result",
    "out_of_image",
    "size_mismatch",
    "duplicate_keypoint",
    "missing_choice",
    "conflict",
    "unannotated_view",
    "unannotated_task",
    "unknown_task",
)
CONFLICT_PX = 2.0  # two keypoint answers further apart than this (pixels) disagree
OUTPUT = {"poses": POSE_BINS, "keypoints": KEYPOINTS, "masks": MASK_POLYGONS}


@dataclass(frozen=True)
class Issue:
    """One problem found in the export, reported by name."""

    name: str  # one of ISSUE_NAMES
    kind: str  # "poses" | "keypoints" | "masks"
    view_id: int | None
    sample_id: int | None
    task_id: int | None
    detail: str

    def __str__(self) -> str:
        where = [f"{self.kind}"]
        if self.view_id is not None:
            where.append(f"view {self.view_id}")
        if self.sample_id is not None:
            where.append(f"object {self.sample_id}")
        if self.task_id is not None:
            where.append(f"(task {self.task_id})")
        return f"{self.name}: {' '.join(where)}: {self.detail}"


@dataclass
class PullConfig:
    """Arguments of ``g3d annotate pull``."""

    folder: Path  # dataset folder
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    kinds: tuple[str, ...] | None = None  # task kinds to pull; None = every kind pushed (annotate/projects.json)
    overwrite: bool = False  # replace existing annotation files even when this pull misses views


@dataclass
class KindReport:
    """The pull of one task kind."""

    kind: str
    project_id: int
    title: str
    tasks: int  # tasks in the project
    annotated_tasks: int  # tasks with at least one submitted (not cancelled) annotation
    rows: int  # rows converted (pose views, keypoints, polygons)
    views_expected: list[int]
    views_annotated: list[int]
    issues: list[Issue]
    written: Path | None  # the file written, or None
    kept_existing: str | None  # why an existing file was left alone
    export_seconds: float

    @property
    def complete(self) -> bool:
        return set(self.views_expected) <= set(self.views_annotated)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.issues:
            out[i.name] = out.get(i.name, 0) + 1
        return out


@dataclass
class PullReport:
    kinds: list[KindReport]
    url: str
    seconds: float

    @property
    def issues(self) -> list[Issue]:
        return [i for k in self.kinds for i in k.issues]


# -- parsing one annotation -------------------------------------------------------------------
class _Sink:
    def __init__(self, kind: str, view: int | None, sample: int | None, task: int | None) -> None:
        self.kind, self.view, self.sample, self.task = kind, view, sample, task
        self.issues: list[Issue] = []

    def __call__(self, name: str, detail: str) -> None:
        self.issues.append(Issue(name, self.kind, self.view, self.sample, self.task, detail))


def _single_choice(item: dict[str, Any], what: str, issue: _Sink) -> str | None:
    if item.get("type") != "choices":
        issue("bad_result", f"{what} result of type {item.get('type')!r}, expected 'choices'")
        return None
    choices = (item.get("value") or {}).get("choices")
    if isinstance(choices, str):
        choices = [choices]
    if not isinstance(choices, list) or len(choices) != 1:
        issue("bad_result", f"{what} holds {len(choices) if isinstance(choices, list) else 'no'} choices {choices!r}, expected exactly one")
        return None
    return str(choices[0])


def parse_pose(result: list[dict[str, Any]], schema: configs.LabelSchema, issue: _Sink) -> dict[str, Any] | None:
    """Result JSON of a pose task -> {azimuth_bin, azimuth_deg, elevation_deg, rejected}, or None."""
    azimuth = elevation = None
    rejected = False
    for item in result or []:
        name = item.get("from_name")
        if name == configs.AZIMUTH:
            c = _single_choice(item, "azimuth", issue)
            if c is not None and c not in schema.azimuth:
                issue("unknown_label", f"azimuth bin {c!r} is not one of {', '.join(schema.azimuth)}")
            elif c is not None:
                azimuth = c
        elif name == configs.ELEVATION:
            c = _single_choice(item, "elevation", issue)
            if c is not None and c not in schema.elevation:
                issue("unknown_label", f"elevation bin {c!r} is not one of {', '.join(schema.elevation)}")
            elif c is not None:
                elevation = c
        elif name == configs.REJECT:
            c = _single_choice(item, "reject", issue)
            if c is not None and c != configs.REJECT_VALUE:
                issue("unknown_label", f"reject choice {c!r} is not {configs.REJECT_VALUE!r}")
            elif c is not None:
                rejected = True
        else:
            issue("unknown_control", f"result from {name!r}, which the {schema.kind} config does not have ({', '.join(schema.controls)})")
    if azimuth is None and not rejected:
        issue("missing_choice", "no valid azimuth bin chosen and the view is not rejected")
        return None
    b = schema.azimuth.get(azimuth) if azimuth else None
    if elevation is not None:
        el = schema.elevation[elevation]
    elif b is not None:
        el = b.elevation_deg
    else:
        el = float("nan")
    return {
        "azimuth_bin": azimuth,
        "azimuth_deg": b.azimuth_deg if b is not None else float("nan"),
        "elevation_deg": float(el),
        "rejected": rejected,
    }


def _size(item: dict[str, Any], stored: tuple[int, int], issue: _Sink, what: str) -> tuple[float, float] | None:
    ow, oh = item.get("original_width"), item.get("original_height")
    if ow is None or oh is None:
        return float(stored[0]), float(stored[1])
    if (int(ow), int(oh)) != tuple(stored):
        issue("size_mismatch", f"{what} was placed on a {ow}x{oh} image but the stored image is {stored[0]}x{stored[1]}")
        return None
    return float(ow), float(oh)


def _inside(x: float, y: float, w: float, h: float, eps: float = 1e-6) -> bool:
    return -eps <= x <= w + eps and -eps <= y <= h + eps


def parse_keypoints(result: list[dict[str, Any]], schema: configs.LabelSchema, stored: tuple[int, int], issue: _Sink) -> list[tuple[str, float, float, bool]]:
    """Result JSON of a keypoint task -> [(name, x px, y px, visible)] in the preset's order."""
    points: dict[str, list[tuple[float, float, str | None]]] = {}
    occluded: set[str] = set()
    for item in result or []:
        name = item.get("from_name")
        if name == configs.VISIBILITY:
            c = _single_choice(item, "visibility", issue)
            if c is not None and c != configs.OCCLUDED_VALUE:
                issue("unknown_label", f"visibility choice {c!r} is not {configs.OCCLUDED_VALUE!r}")
            elif c is not None and item.get("id") is not None:
                occluded.add(str(item["id"]))
            continue
        if name != configs.KEYPOINTS:
            issue("unknown_control", f"result from {name!r}, which the keypoint config does not have ({', '.join(schema.controls)})")
            continue
        value = item.get("value") or {}
        labels = value.get("keypointlabels")
        if item.get("type") != "keypointlabels" or not isinstance(labels, list) or len(labels) != 1:
            issue("bad_result", f"keypoint result with labels {labels!r} (type {item.get('type')!r}): expected exactly one label")
            continue
        label = str(labels[0])
        if label not in schema.keypoints:
            issue("unknown_label", f"label {label!r} is not a {schema.class_name} keypoint")
            continue
        try:
            xp, yp = float(value["x"]), float(value["y"])
        except (KeyError, TypeError, ValueError):
            issue("bad_result", f"keypoint {label!r} has no numeric x/y")
            continue
        size = _size(item, stored, issue, f"keypoint {label!r}")
        if size is None:
            continue
        x, y = xp / 100.0 * size[0], yp / 100.0 * size[1]
        if not _inside(x, y, size[0], size[1]):
            issue("out_of_image", f"keypoint {label!r} at ({x:.1f}, {y:.1f}) px is outside the {size[0]:.0f}x{size[1]:.0f} image")
            continue
        points.setdefault(label, []).append((x, y, str(item["id"]) if item.get("id") is not None else None))
    out = []
    for label in schema.keypoints:
        pts = points.get(label, [])
        if len(pts) > 1:
            where = ", ".join(f"({x:.1f}, {y:.1f})" for x, y, _ in pts)
            issue("duplicate_keypoint", f"keypoint {label!r} placed {len(pts)} times at {where}: all dropped")
        elif pts:
            x, y, rid = pts[0]
            out.append((label, x, y, rid not in occluded))
    return out


def parse_polygons(result: list[dict[str, Any]], schema: configs.LabelSchema, stored: tuple[int, int], issue: _Sink) -> list[tuple[str, np.ndarray]]:
    """Result JSON of a mask task -> [(label, float [K, 2] pixels)]."""
    out = []
    for item in result or []:
        name = item.get("from_name")
        if name != configs.MASK:
            issue("unknown_control", f"result from {name!r}, which the mask config does not have ({', '.join(schema.controls)})")
            continue
        value = item.get("value") or {}
        labels = value.get("polygonlabels")
        if item.get("type") != "polygonlabels" or not isinstance(labels, list) or len(labels) != 1:
            issue("bad_result", f"polygon with labels {labels!r}: expected exactly one label")
            continue
        label = str(labels[0])
        if label not in schema.mask_labels:
            issue("unknown_label", f"polygon label {label!r} is not one of {', '.join(schema.mask_labels)}")
            continue
        try:
            pts = np.asarray(value.get("points"), dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            issue("bad_result", "polygon points are not [[x, y], ...] numbers")
            continue
        if len(pts) < 3:
            issue("bad_result", f"polygon with {len(pts)} points: at least 3 needed")
            continue
        size = _size(item, stored, issue, "polygon")
        if size is None:
            continue
        px = pts / 100.0 * np.array(size)
        if not all(_inside(x, y, size[0], size[1]) for x, y in px):
            issue("out_of_image", "polygon has vertices outside the image")
            continue
        out.append((label, px))
    return out


# -- choosing among several annotations --------------------------------------------------------
def _when(a: dict[str, Any]) -> tuple[datetime, int]:
    s = a.get("updated_at") or a.get("created_at") or ""
    try:
        t = datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    except ValueError:
        t = datetime.min
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return t, int(a.get("id") or 0)


def _annotator(a: dict[str, Any], users: dict[int, str]) -> str:
    who = a.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or who.get("username") or who.get("id"))
    if who is None:
        return ""
    return users.get(int(who), str(who))


def _same(kind: str, a: Any, b: Any) -> bool:
    if kind == "poses":
        if a is None or b is None:
            return a is b
        return (a["azimuth_bin"], a["rejected"]) == (b["azimuth_bin"], b["rejected"]) and (
            a["elevation_deg"] == b["elevation_deg"] or (a["elevation_deg"] != a["elevation_deg"] and b["elevation_deg"] != b["elevation_deg"])
        )
    if kind == "keypoints":
        pa, pb = {n: (x, y, v) for n, x, y, v in a}, {n: (x, y, v) for n, x, y, v in b}
        if set(pa) != set(pb):
            return False
        return all(abs(pa[n][0] - pb[n][0]) <= CONFLICT_PX and abs(pa[n][1] - pb[n][1]) <= CONFLICT_PX and pa[n][2] == pb[n][2] for n in pa)
    if len(a) != len(b):
        return False
    return all(la == lb and len(pa) == len(pb) and np.allclose(pa, pb, atol=CONFLICT_PX) for (la, pa), (lb, pb) in zip(a, b))


def _summary(kind: str, content: Any) -> str:
    if kind == "poses":
        if content is None:
            return "nothing valid"
        return ("rejected " if content["rejected"] else "") + str(content["azimuth_bin"] or "")
    if kind == "keypoints":
        return f"{len(content)} keypoints"
    return f"{len(content)} polygons"


# -- converting an export ----------------------------------------------------------------------
@dataclass
class Converted:
    rows: list[dict[str, Any]]
    issues: list[Issue]
    tasks: int
    annotated_tasks: int
    views_annotated: list[int]
    views_expected: list[int]


def convert_export(kind: str, tasks: list[dict[str, Any]], info: DatasetInfo, users: dict[int, str] | None = None) -> Converted:
    """Label Studio's JSON export of one project -> validated rows and named issues.

    ``tasks`` is the export (a list of tasks, each with ``data`` and ``annotations``). Rows are
    dicts with the columns of the kind's output file.
    """
    users = users or {}
    schema = configs.schema_for(kind, info.preset)
    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    annotated_views: set[int] = set()
    task_views: dict[int, list[tuple[int, bool]]] = {}  # view -> [(task id, annotated)]
    skipped_views: set[int] = set()
    ours = 0
    annotated = 0
    for task in tasks:
        data = task.get("data") or {}
        tid = task.get("id")
        try:
            v = int(data["view_id"])
            s = int(data["sample_id"]) if kind != "poses" else None
        except (KeyError, TypeError, ValueError):
            issues.append(Issue("unknown_task", kind, None, None, tid, "task data has no view_id/sample_id: not pushed by g3d, ignored"))
            continue
        sink = _Sink(kind, v, s, tid)
        if data.get("g3d_dataset") not in (None, info.dataset_id) or data.get("g3d_kind") not in (None, kind):
            sink("unknown_task", f"task of dataset {data.get('g3d_dataset')} / kind {data.get('g3d_kind')}, not this {kind} project's: ignored")
            issues += sink.issues
            continue
        if v not in info.views or (s is not None and (v, s) not in info.sizes):
            sink("unknown_task", "the dataset has no such view/object: ignored")
            issues += sink.issues
            continue
        ours += 1
        anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not anns:
            if task.get("annotations"):
                skipped_views.add(v)
            task_views.setdefault(v, []).append((tid, False))
            continue
        annotated += 1
        anns.sort(key=_when)
        stored = info.sizes.get((v, s)) if s is not None else None
        parsed = []
        for a in anns:
            one = _Sink(kind, v, s, tid)
            if kind == "poses":
                content = parse_pose(a.get("result"), schema, one)
            elif kind == "keypoints":
                content = parse_keypoints(a.get("result"), schema, stored, one)
            else:
                content = parse_polygons(a.get("result"), schema, stored, one)
            parsed.append((a, content, one.issues))
        win, content, win_issues = parsed[-1]
        issues += win_issues
        others = [(a, c) for a, c, _ in parsed[:-1] if not _same(kind, c, content)]
        if others:
            desc = "; ".join(f"{_summary(kind, c)} by {_annotator(a, users)} at {a.get('updated_at')}" for a, c in others)
            sink("conflict", f"{len(anns)} annotations disagree: kept {_summary(kind, content)} by {_annotator(win, users)} at {win.get('updated_at')} over {desc}")
            issues += sink.issues
        who, when = _annotator(win, users), str(win.get("updated_at") or win.get("created_at") or "")
        got = False
        if kind == "poses" and content is not None:
            rows.append({"view_id": v, **content, "annotator": who, "updated_at": when})
            got = True
        elif kind == "keypoints":
            for name, x, y, vis in content:
                rows.append({"view_id": v, "sample_id": s, "name": name, "x": x, "y": y, "visible": vis})
            got = bool(content)
        elif kind == "masks":
            for label, pts in content:
                rows.append({"view_id": v, "sample_id": s, "label": label, "points": pts.reshape(-1).tolist(), "annotator": who, "updated_at": when})
            got = bool(content)
        task_views.setdefault(v, []).append((tid, got))
        if got:
            annotated_views.add(v)
    expected = list(info.views) if kind in ("poses", "keypoints") else sorted(task_views)
    for v in expected:
        if v in annotated_views:
            for tid, ok in task_views.get(v, []):
                if not ok and kind != "poses":
                    issues.append(Issue("unannotated_task", kind, v, None, tid, "nobody annotated this task (its view has other answers)"))
            continue
        if any(i.view_id == v and i.name == "missing_choice" for i in issues):
            continue  # already reported by name
        if v not in task_views:
            detail = "no task for this view in the project (not pushed, or deleted)"
        elif v in skipped_views:
            detail = "only skipped (cancelled) annotations"
        else:
            detail = "nobody annotated this view"
        ids = [tid for tid, _ in task_views.get(v, [])]
        issues.append(Issue("unannotated_view", kind, v, None, ids[0] if len(ids) == 1 else None, detail))
    return Converted(rows, issues, ours, annotated, sorted(annotated_views), expected)


def rows_table(kind: str, rows: list[dict[str, Any]]):
    """The Arrow table of the kind's output file (columns and types of the agreed format)."""
    import pyarrow as pa

    if kind == "poses":
        rows = sorted(rows, key=lambda r: r["view_id"])
        schema = pa.schema(
            [
                ("view_id", pa.int32()),
                ("azimuth_bin", pa.string()),
                ("azimuth_deg", pa.float64()),
                ("elevation_deg", pa.float64()),
                ("rejected", pa.bool_()),
                ("annotator", pa.string()),
                ("updated_at", pa.string()),
            ]
        )
        for r in rows:
            for c in ("azimuth_deg", "elevation_deg"):
                if r[c] != r[c]:
                    r[c] = None
    elif kind == "keypoints":
        rows = sorted(rows, key=lambda r: (r["view_id"], r["sample_id"]))  # stable: keypoints stay in preset order
        schema = pa.schema(
            [("view_id", pa.int32()), ("sample_id", pa.int64()), ("name", pa.string()), ("x", pa.float64()), ("y", pa.float64()), ("visible", pa.bool_())]
        )
    else:
        rows = sorted(rows, key=lambda r: (r["view_id"], r["sample_id"]))
        schema = pa.schema(
            [
                ("view_id", pa.int32()),
                ("sample_id", pa.int64()),
                ("label", pa.string()),
                ("points", pa.list_(pa.float64())),
                ("annotator", pa.string()),
                ("updated_at", pa.string()),
            ]
        )
    return pa.Table.from_pylist(rows, schema=schema)


# -- pull -------------------------------------------------------------------------------------
def _project_for(conn: Connection, info: DatasetInfo, kind: str, record: dict[str, Any]) -> tuple[int, str] | None:
    from g3d.annotate.push import find_project

    entry = record.get(kind) or {}
    title = entry.get("title") or default_title(info, kind)
    if entry.get("project_id") is not None:
        r = conn.request("GET", f"/api/projects/{int(entry['project_id'])}", ok=(200, 404), what="reading the project")
        if r.status_code == 200 and r.json().get("title") == title:
            return int(entry["project_id"]), title
    p = find_project(conn, title)
    return (int(p.id), title) if p is not None else None


def pull(cfg: PullConfig, log: Callable[[str], None] | None = None) -> PullReport:
    """Export every pushed project of ``cfg.folder``, validate, convert and write the annotations."""
    log = log or (lambda m: None)
    t_start = time.perf_counter()
    info = read_dataset_info(cfg.folder)
    record = load_record(cfg.folder)
    if cfg.kinds is not None:
        bad = [k for k in cfg.kinds if k not in configs.KINDS]
        if bad:
            raise UsageError(f"unknown task kind {bad[0]!r}: choose from {', '.join(configs.KINDS)}")
    kinds = list(cfg.kinds) if cfg.kinds else [k for k in configs.KINDS if k in record] or list(configs.KINDS)
    conn = connect(cfg.connection)
    reports = []
    try:
        for kind in kinds:
            found = _project_for(conn, info, kind, record)
            if found is None:
                title = (record.get(kind) or {}).get("title") or default_title(info, kind)
                if cfg.kinds or kind in record:
                    raise LabelStudioError(f"no project titled {title!r} on {conn.url}: run `g3d annotate push {kind} {cfg.folder}` first")
                continue
            pid, title = found
            t0 = time.perf_counter()
            with conn.api(f"exporting project {title!r}"):
                tasks = conn.sdk.projects.exports.as_json(pid, timeout=int(max(60, conn.timeout)))
            export_s = time.perf_counter() - t0
            conv = convert_export(kind, tasks, info, conn.users())
            out = Path(cfg.folder) / dsf.ANNOTATIONS / OUTPUT[kind]
            written, kept = None, None
            complete = set(conv.views_expected) <= set(conv.views_annotated)
            if not conv.rows:
                kept = "nothing annotated yet: no file written"
            elif not complete and out.exists() and not cfg.overwrite:
                missing = sorted(set(conv.views_expected) - set(conv.views_annotated))
                kept = (
                    f"kept the existing {out.name}: this pull misses {len(missing)} of {len(conv.views_expected)} views "
                    f"({', '.join(map(str, missing[:8]))}{', ...' if len(missing) > 8 else ''}); pass --overwrite to replace it"
                )
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                dsio.write_table(out, rows_table(kind, conv.rows))
                written = out
            if kept:
                log(f"{kind}: {kept}")
            reports.append(
                KindReport(
                    kind=kind,
                    project_id=pid,
                    title=title,
                    tasks=conv.tasks,
                    annotated_tasks=conv.annotated_tasks,
                    rows=len(conv.rows),
                    views_expected=conv.views_expected,
                    views_annotated=conv.views_annotated,
                    issues=conv.issues,
                    written=written,
                    kept_existing=kept,
                    export_seconds=export_s,
                )
            )
        if not reports:
            raise LabelStudioError(f"no g3d projects of {cfg.folder} on {conn.url}: run `g3d annotate push poses {cfg.folder}` first")
        return PullReport(reports, conn.url, time.perf_counter() - t_start)
    finally:
        conn.close()
