"""``g3d annotate push|pull|serve``: thin Typer commands over :mod:`g3d.annotate`.

Registered by the main app with ``app.add_typer(annotate_app, name="annotate")``. Only typer,
pathlib and typing are imported here; the stage (and label_studio_sdk) load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from g3d.reporting import CommandGroup

annotate_app = typer.Typer(
    cls=CommandGroup,
    name="annotate",
    help="Per-view annotation in Label Studio: push pose-bin, keypoint and mask tasks, pull the answers back as pixels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_URL_HELP = "Label Studio URL, e.g. http://127.0.0.1:8080 (default: $LABEL_STUDIO_URL)."
_KEY_HELP = "Personal access token (Account & Settings) or legacy token (default: $LABEL_STUDIO_API_KEY)."


@annotate_app.command("push")
def push_command(
    kind: str = typer.Argument(..., help="Task kind: poses (one per view), keypoints (one per view and object) or masks."),
    folder: Path = typer.Argument(..., help="A dataset folder written by g3d synth."),
    url: Optional[str] = typer.Option(None, "--url", help=_URL_HELP),
    api_key: Optional[str] = typer.Option(None, "--api-key", help=_KEY_HELP),
    title: Optional[str] = typer.Option(None, help="Project title (created, or reused when it is g3d's for this dataset). Default: '<folder> <kind> <dataset id>'."),
    images: str = typer.Option("auto", help="How images reach the server: local-files (server shares the disk), upload, or auto (local files, else upload)."),
    document_root: Optional[Path] = typer.Option(None, help="The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, when known (default: probed)."),
    grid_objects: int = typer.Option(6, help="Objects shown in each pose task's grid."),
    objects_per_view: int = typer.Option(1, help="Keypoint tasks per view (the same reference objects in every view)."),
    mask_images: int = typer.Option(20, help="Mask tasks, spread over the views."),
    predictions: str = typer.Option("auto", help="Pre-annotations: auto (last pull, else the built-in generator's ground truth), previous, ground-truth, none."),
) -> None:
    """Create (or reuse) a Label Studio project for DIR and import its tasks with pre-annotations."""
    from rich.markup import escape

    from g3d.annotate.client import ConnectionConfig
    from g3d.annotate.push import PushConfig, push
    from g3d.reporting import console

    cfg = PushConfig(
        folder=folder,
        kind=kind,  # type: ignore[arg-type]
        connection=ConnectionConfig(url=url, api_key=api_key),
        title=title,
        images=images,  # type: ignore[arg-type]
        document_root=document_root,
        grid_objects=grid_objects,
        objects_per_view=objects_per_view,
        mask_images=mask_images,
        predictions=predictions,  # type: ignore[arg-type]
    )
    with console.status(f"pushing {kind} tasks"):
        r = push(cfg, log=lambda m: console.print(f"[yellow]note:[/] {escape(m)}", highlight=False, soft_wrap=True))
    state = "new" if r.created else "existing"
    console.print(
        f"[green]{r.kind}[/]: {r.tasks_imported} tasks imported into {state} project {r.title!r} (id {r.project_id}) at {r.url}"
        + (f", {r.tasks_existing} already there" if r.tasks_existing else "")
        + f"; images by {r.images}; {r.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    for model, n in r.predictions.items():
        console.print(f"  pre-annotated {n} tasks from {model}", highlight=False, soft_wrap=True)
    if r.views_without_images:
        console.print(f"  [yellow]views with no kept image (no task)[/]: {', '.join(map(str, r.views_without_images))}", highlight=False, soft_wrap=True)
    console.print(f"  annotate at {r.url}/projects/{r.project_id}/data, then: g3d annotate pull {folder}", highlight=False, soft_wrap=True)


@annotate_app.command("pull")
def pull_command(
    folder: Path = typer.Argument(..., help="The dataset folder whose tasks were pushed."),
    url: Optional[str] = typer.Option(None, "--url", help=_URL_HELP),
    api_key: Optional[str] = typer.Option(None, "--api-key", help=_KEY_HELP),
    kind: Optional[list[str]] = typer.Option(None, "--kind", help="Pull only this kind (poses, keypoints, masks); repeatable. Default: every pushed kind."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing annotation files even when this pull misses views."),
    max_issues: int = typer.Option(40, help="Issues printed per kind (all are counted)."),
) -> None:
    """Export the annotations, validate them against the label config, write annotations/*.parquet."""
    from rich.markup import escape

    from g3d.annotate.client import ConnectionConfig
    from g3d.annotate.pull import PullConfig, pull
    from g3d.reporting import console

    cfg = PullConfig(folder=folder, connection=ConnectionConfig(url=url, api_key=api_key), kinds=tuple(kind) if kind else None, overwrite=overwrite)
    with console.status("pulling annotations"):
        report = pull(cfg)
    for k in report.kinds:
        where = f"-> {k.written}" if k.written else "(no file written)"
        console.print(
            f"[green]{k.kind}[/]: {len(k.views_annotated)}/{len(k.views_expected)} views annotated, "
            f"{k.annotated_tasks}/{k.tasks} tasks, {k.rows} rows {where}",
            highlight=False,
            soft_wrap=True,
        )
        if k.kept_existing:
            console.print(f"  [yellow]warning:[/] {escape(k.kept_existing)}", highlight=False, soft_wrap=True)
        for issue in k.issues[:max_issues]:
            console.print(f"  [yellow]{escape(str(issue))}[/]", highlight=False, soft_wrap=True)
        if len(k.issues) > max_issues:
            counts = ", ".join(f"{n} {name}" for name, n in sorted(k.counts().items()))
            console.print(f"  ... {len(k.issues) - max_issues} more issues (in all: {counts})", highlight=False, soft_wrap=True)


def _default_data_dir() -> Path:
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "g3d" / "label-studio"


@annotate_app.command("serve")
def serve_command(
    data_dir: Optional[Path] = typer.Option(None, help="Label Studio's database and media (default: $XDG_DATA_HOME/g3d/label-studio)."),
    port: int = typer.Option(8080, help="First port tried (Label Studio takes the next free one)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on; the default lets only this machine connect."),
    document_root: Optional[Path] = typer.Option(None, help="Folder whose subfolders Label Studio may serve as local files: a parent of your datasets (default: the current folder)."),
    username: str = typer.Option("g3d@localhost", help="The user's email (first start only)."),
    no_legacy_tokens: bool = typer.Option(False, "--no-legacy-tokens", help="Accept personal access tokens only."),
    label_studio: Optional[str] = typer.Option(None, "--label-studio", help="The label-studio command (default: $G3D_LABEL_STUDIO, .venv-ls, PATH)."),
) -> None:
    """Start a local Label Studio for one user and print how to connect; Ctrl-C stops it.

    Label Studio is not a g3d dependency: install it in its own environment with
    scripts/label-studio-venv.sh (or `pip install label-studio` in any virtual environment).
    """
    import signal
    import time

    from g3d.annotate.server import LabelStudioServer, ServeConfig
    from g3d.reporting import console

    cfg = ServeConfig(
        data_dir=data_dir or _default_data_dir(),
        document_root=document_root or Path.cwd(),
        host=host,
        port=port,
        username=username,
        legacy_tokens_enabled=not no_legacy_tokens,
        executable=label_studio,
    )
    server = LabelStudioServer(cfg, log=lambda m: console.print(m, highlight=False, soft_wrap=True))

    def _term(signum, frame):  # SIGTERM to g3d stops the server too
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    try:
        with console.status("starting Label Studio (the first start runs migrations: 30-60 s)"):
            server.start()
        console.print(f"[green]Label Studio[/] at {server.url} (data: {server.data_dir}; local files under {Path(cfg.document_root).resolve()})", highlight=False, soft_wrap=True)
        console.print(f"  log in as {server.username} / {server.password}", highlight=False, soft_wrap=True)
        console.print(f"  export LABEL_STUDIO_URL={server.url}", highlight=False, soft_wrap=True)
        console.print(f"  export LABEL_STUDIO_API_KEY={server.personal_access_token}", highlight=False, soft_wrap=True)
        if cfg.legacy_tokens_enabled:
            console.print(f"  (legacy token, also accepted: {server.legacy_token})", highlight=False, soft_wrap=True)
        console.print("Ctrl-C stops it.", highlight=False, soft_wrap=True)
        while server.running:
            time.sleep(1.0)
        console.print(f"[red]Label Studio stopped by itself[/]: see {server.log_path}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("stopping Label Studio", highlight=False, soft_wrap=True)
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
