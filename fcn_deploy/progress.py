"""Progress reporting on stderr: a rich progress bar plus plain one-line messages, at the verbosity the command
line chose (``--quiet``: nothing but errors; ``--verbose``: every detail, such as every image's line)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


QUIET, NORMAL, VERBOSE = 0, 1, 2
SCREEN_LINES = 20  # per-item lines shown before the rest are only counted (unless verbose)


@dataclass
class _Verbosity:
    level: int = NORMAL


_verbosity = _Verbosity()


def set_verbosity(level: int) -> None:
    """QUIET, NORMAL or VERBOSE for every message of this process from now on."""
    _verbosity.level = level


def stderr_console() -> Console:
    """A console on stderr, so progress never mixes with a command's result on stdout."""
    return Console(stderr=True, highlight=False)


def log(message: str) -> None:
    """One plain progress line on stderr (none when quiet)."""
    if _verbosity.level >= NORMAL:
        stderr_console().print(message, markup=False, soft_wrap=True)


class ItemLines:
    """One line per item of a batch (image, file) up to a screenful; past it, the rest are counted and one line
    at the end says how many and where their details are. ``--verbose`` shows them all."""

    def __init__(self, noun: str, details_in: str) -> None:
        self.noun, self.details_in = noun, details_in
        self.shown = self.held = 0

    def line(self, message: str) -> None:
        """Show ``message`` while within a screenful (always when verbose), else count it."""
        if _verbosity.level >= VERBOSE or self.shown < SCREEN_LINES:
            log(message)
            self.shown += 1
        else:
            self.held += 1

    def close(self) -> None:
        """The closing line for the items not shown, if any."""
        if self.held:
            log(f"  ... and {self.held} more {self.noun} (not listed: --verbose lists them; {self.details_in})")


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
    disabled = not console.is_terminal or _verbosity.level < NORMAL
    with Progress(*columns, console=console, transient=True, disable=disabled) as bar:
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
