"""Progress reporting on stderr: a rich progress bar plus plain one-line messages."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def stderr_console() -> Console:
    """A console on stderr, so progress never mixes with a command's result on stdout."""
    return Console(stderr=True, highlight=False)


def log(message: str) -> None:
    """One plain progress line on stderr."""
    stderr_console().print(message, markup=False, soft_wrap=True)


@contextlib.contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[..., None]]:
    """A transient bar on stderr; yields ``advance(steps=1, status="")``. Silent when stderr is not a terminal."""
    console = stderr_console()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total, status="")

        def advance(steps: int = 1, status: str = "") -> None:
            bar.update(task, advance=steps, status=status)

        yield advance


def rows_status(done: int, total: int, done_before: int, elapsed_s: float) -> str:
    """'tile row 12/40, ETA 3m05s': rows done and the time left at this run's rate (rows done before it, by a
    run it resumes, are not counted in the rate)."""
    text = f"tile row {done}/{total}"
    ran = done - done_before
    if ran <= 0 or done >= total:
        return text
    left = round(elapsed_s / ran * (total - done))
    return f"{text}, ETA {left // 60}m{left % 60:02d}s"
