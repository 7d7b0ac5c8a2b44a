"""``g3d pipeline CONFIG``: synth -> filter -> annotate (push; pull once answered) -> sfm-init -> train -> eval.

Each stage that finishes records in ``<folder>/pipeline.json`` a token and a run id: the token is a
hash of its own table of the config file and of what it consumed (the run id of the stage before
it; for sfm-init also the content of the pulled annotation files; for train the content of
``cameras.parquet``), the run id is new each time the stage runs. A rerun skips every stage
whose token is unchanged, so after answering the tasks in Label Studio a researcher reruns the same
line: push adds nothing, pull fetches the answers, and only what depends on them runs again.
Annotation always pushes and pulls (answers arrive between runs); while some pushed tasks are not
answered the pipeline stops there, says how many, and exits with :data:`WAITING`.
An interrupted training resumes (its token is recorded when it starts); a train token that changed
(new cameras, other settings) starts the run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from g3d.pipeline.config import PipelineConfig

STATE = "pipeline.json"
WAITING = 3  # exit status while annotation tasks are unanswered


@dataclass
class StageResult:
    name: str
    status: str  # ran | current (skipped: its token is unchanged) | waiting | off (not in the config)
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)


@dataclass
class PipelineReport:
    stages: list[StageResult]
    waiting: str | None = None  # what the annotators still have to do
    eval: Any = None  # EvalReport of the last stage, when it ran or was current

    def lines(self) -> list[str]:
        out = []
        for s in self.stages:
            head = f"{s.name}: {s.status}" + (f" ({s.seconds:.0f} s)" if s.status == "ran" else "")
            out.append(head)
            out.extend("  " + x for x in s.lines)
        if self.waiting:
            out.append(self.waiting)
        return out


def token(*parts: Any) -> str:
    """A stable hash of JSON-able parts (sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def files_digest(paths: list[Path]) -> str:
    """Hash of the names and contents of ``paths`` (missing ones count as missing)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
    return h.hexdigest()[:16]


class _State:
    def __init__(self, folder: Path) -> None:
        self.path = folder / STATE
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def token(self, stage: str) -> str | None:
        return self.data.get(stage, {}).get("token")

    def run_id(self, stage: str) -> str | None:
        """A new id each time the stage runs: what the stages after it hash, so a rerun (forced or not) reaches them."""
        return self.data.get(stage, {}).get("run")

    def record(self, stage: str, tok: str, **extra: Any) -> None:
        import uuid

        from g3d.datasets import io as dsio

        self.data[stage] = {"token": tok, "run": uuid.uuid4().hex[:12], "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}
        dsio.write_json(self.path, self.data)


def run_pipeline(cfg: PipelineConfig, log: Callable[[str], None] | None = None, progress=None,
                 force: tuple[str, ...] = ()) -> PipelineReport:
    """Run every stage of ``cfg`` that is not current (``force``: stage names to run regardless)."""
    log = log or (lambda m: None)
    folder = cfg.folder
    report = PipelineReport([])
    raw = cfg.raw
    state = _State(folder) if folder.is_dir() else None

    def stale(stage: str, tok: str) -> bool:
        return stage in force or state is None or state.token(stage) != tok

    # synth
    t0 = time.perf_counter()
    tok_synth = token("synth", raw.get("synth"))
    if stale("synth", tok_synth):
        from g3d.synth.sampling import run_synth

        log("synth ...")
        rep = run_synth(cfg.synth, progress=progress, log=log)
        state = state or _State(folder)
        state.record("synth", tok_synth)
        report.stages.append(StageResult("synth", "ran", time.perf_counter() - t0, [f"{rep.rows_written} images written to {folder} ({rep.samples} objects x {rep.views} views)"]))
    else:
        report.stages.append(StageResult("synth", "current"))

    # filter
    t0 = time.perf_counter()
    tok_filter = token("filter", raw.get("filter"), state.run_id("synth"))
    if stale("filter", tok_filter):
        from g3d.filters.run import run_filter

        log("filter ...")
        rep = run_filter(cfg.filter, progress=progress, log=log)
        state.record("filter", tok_filter)
        report.stages.append(StageResult("filter", "ran", time.perf_counter() - t0, [f"kept {rep.kept} of {rep.rows} images ({rep.segmenter})"]))
    else:
        report.stages.append(StageResult("filter", "current"))

    # annotate (push, then pull) and sfm-init
    cameras_dep = None
    if cfg.annotate is not None:
        t0 = time.perf_counter()
        waiting = _annotate(cfg, log, report)
        report.stages[-1].seconds = time.perf_counter() - t0
        if waiting:
            report.waiting = waiting
            return report
        from g3d.datasets import folder as dsf
        from g3d.datasets.cameras import has_camera_file

        ann = sorted((folder / dsf.ANNOTATIONS).glob("*.parquet"))
        tok_sfm = token("sfm", raw.get("sfm"), state.run_id("filter"), files_digest(ann))
        t0 = time.perf_counter()
        if stale("sfm", tok_sfm) or not has_camera_file(folder):
            from g3d.sfm.run import run_sfm_init

            log("sfm-init ...")
            rep = run_sfm_init(cfg.sfm, log_fn=log)
            state.record("sfm", tok_sfm)
            report.stages.append(StageResult("sfm-init", "ran", time.perf_counter() - t0, rep.lines()))
        else:
            report.stages.append(StageResult("sfm-init", "current"))
        cameras_dep = files_digest([folder / dsf.CAMERAS])
    else:
        report.stages.append(StageResult("annotate", "off"))

    if cfg.train is None:
        report.stages.append(StageResult("train", "off"))
        return report
    # train: its token is recorded when it starts, so an interrupted run resumes; another token starts again
    from g3d.train.loop import train

    t0 = time.perf_counter()
    tok_train = token("train", raw.get("train"), state.run_id("filter"), cameras_dep)
    run_dir = Path(cfg.train.out)
    if stale("train", tok_train) or state.data.get("train", {}).get("finished") is not True:
        # Start again only a run this pipeline started with other inputs (or when forced); a run folder it
        # did not start is resumed, or refused by g3d train when its settings differ.
        restart = (state.token("train") not in (None, tok_train)) or "train" in force
        log("train ..." + (" (starting the run again: its inputs or settings changed)" if restart and run_dir.exists() else ""))
        state.record("train", tok_train, finished=False)
        rep = train(cfg.train, progress=progress, log=log, overwrite=restart and run_dir.exists())
        state.record("train", tok_train, finished=True)
        report.stages.append(StageResult("train", "ran", time.perf_counter() - t0, [f"{rep.steps_done} steps in {rep.out} (cameras from {rep.camera_source})"]))
    else:
        report.stages.append(StageResult("train", "current"))

    # eval
    from g3d.train.evaluate import evaluate

    t0 = time.perf_counter()
    tok_eval = token("eval", raw.get("eval"), state.data["train"].get("run"))
    out = run_dir / "eval.json"
    if stale("eval", tok_eval) or not out.is_file():
        rep = evaluate(run_dir, folder, cfg.eval.device, cfg.eval.batch)
        from g3d.datasets import io as dsio

        dsio.write_json(out, rep.__dict__)
        state.record("eval", tok_eval)
        report.eval = rep
        report.stages.append(StageResult("eval", "ran", time.perf_counter() - t0, rep.lines()[:-1] + [f"written to {out}"]))
    else:
        report.stages.append(StageResult("eval", "current", lines=[f"{out}"]))
        report.eval = json.loads(out.read_text())
    return report


def _annotate(cfg: PipelineConfig, log, report: PipelineReport) -> str | None:
    """Push every kind (adds nothing when pushed before), pull; the waiting message, or None when complete."""
    from g3d.annotate.client import ConnectionConfig
    from g3d.annotate.pull import PullConfig, pull
    from g3d.annotate.push import PushConfig, push

    a = cfg.annotate
    conn = ConnectionConfig(url=a.url, api_key=os.environ.get(a.api_key_env))
    lines = []
    for kind in a.kinds:
        log(f"annotate push {kind} ...")
        p = push(PushConfig(folder=cfg.folder, kind=kind, connection=conn, images=a.images,
                            document_root=Path(a.document_root) if a.document_root else None,
                            grid_objects=a.grid_objects, objects_per_view=a.objects_per_view), log=log)
        lines.append(f"{kind}: project {p.project_id} ({p.title})")
    log("annotate pull ...")
    rep = pull(PullConfig(folder=cfg.folder, connection=conn, kinds=tuple(a.kinds)), log=log)
    missing = []
    for k in rep.kinds:
        lines.append(f"{k.kind}: {k.annotated_tasks} of {k.tasks} tasks answered, {len(k.issues)} issues")
        if not k.complete:
            left = sorted(set(k.views_expected) - set(k.views_annotated))
            missing.append(f"{k.kind}: views {', '.join(map(str, left[:12]))}{' ...' if len(left) > 12 else ''} unanswered "
                           f"({rep.url.rstrip('/')}/projects/{k.project_id})")
    report.stages.append(StageResult("annotate", "waiting" if missing else "ran", lines=lines))
    if missing:
        return ("waiting for annotations -- " + "; ".join(missing)
                + f": answer them in Label Studio, then rerun `g3d pipeline {cfg.path}`")
    return None
