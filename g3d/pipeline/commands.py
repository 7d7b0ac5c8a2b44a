"""The ``g3d pipeline`` command (parses, calls :func:`g3d.pipeline.run.run_pipeline`, reports)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def pipeline_command(
    config: Path = typer.Argument(..., help="The pipeline config file (TOML): folder, then \\[synth] \\[filter] \\[annotate] \\[sfm] \\[train] \\[eval] tables."),
    force: Optional[List[str]] = typer.Option(None, "--force", help="Run this stage even if it is current (repeatable): synth, filter, sfm, train, eval."),
) -> None:
    """Run synth -> filter -> annotate (push; pull once answered) -> sfm-init -> train -> eval from one config file.

    Each finished stage records a token in FOLDER/pipeline.json (a hash of its table and of what it
    read), and a rerun skips the stages whose token is unchanged. While pushed Label Studio tasks are
    unanswered the pipeline stops after the pull, names the views and exits with status 3: answer
    them, then rerun the same line. The API key comes from $LABEL_STUDIO_API_KEY (or the variable
    named by api_key_env in \\[annotate]), never from the file.

    A commented example is examples/pipeline.toml in the repository; relative paths in the file
    are relative to the file.
    """
    from g3d.pipeline.config import STAGES, load
    from g3d.pipeline.run import WAITING, run_pipeline
    from g3d.reporting import console, progress

    bad = [s for s in force or [] if s not in STAGES]
    if bad:
        raise typer.BadParameter(f"{', '.join(bad)}: stages are {', '.join(STAGES)}", param_hint="--force")
    cfg = load(config)
    with progress() as prog:
        rep = run_pipeline(cfg, log=lambda m: console.print(m, highlight=False), progress=prog, force=tuple(force or ()))
    for line in rep.lines():
        typer.echo(line)
    if rep.waiting:
        raise typer.Exit(WAITING)
