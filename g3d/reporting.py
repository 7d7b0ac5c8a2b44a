"""What every command module shares: the console (stderr), one-line failures, progress bars.

Below the CLI (``g3d/cli.py`` and the stages' ``commands.py`` import it; it imports none of them), and
light: rich and typer only, no torch.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, NoReturn

import typer
import typer.core
from rich.console import Console

from g3d.errors import G3DError

console = Console(stderr=True)


class CommandGroup(typer.core.TyperGroup):
    """The click group of every g3d Typer app: a :class:`G3DError` raised by any of its commands (sub-apps
    included, and through ``CliRunner`` as well as the console script) is reported once, here, by
    :func:`fail`: one red line on stderr and the error's exit code. Commands just raise."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except G3DError as exc:
            fail(exc)


def error(message: str) -> None:
    """Print ``message`` as one red ``error:`` line on stderr (never wrapped, markup in it shown as text)."""
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(exc: G3DError) -> NoReturn:
    """Print ``exc`` as one red line on stderr and exit with its code (2 for usage and data errors)."""
    error(str(exc))
    raise typer.Exit(exc.exit_code)


@contextmanager
def progress() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A rich progress display; yields ``factory(description, total) -> advance(n)``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as prog:

        def factory(description: str, total: int) -> Callable[[int], None]:
            task = prog.add_task(description, total=total)
            return lambda n: prog.advance(task, n)

        yield factory
