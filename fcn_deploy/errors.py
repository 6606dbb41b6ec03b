"""The one exception hierarchy of fcn-deploy; the CLI maps each class to an exit code."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# C0 and C1 controls, DEL, the Unicode line and paragraph separators and the bidirectional overrides: characters
# that end a line or move the cursor when printed, so a file name holding one could forge an output line
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character escaped (a newline as ``\\n``): printed, it is one line."""
    return CONTROL_CHARACTERS.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


class FcnDeployError(Exception):
    """Root of every error the library raises on purpose.

    ``hint`` says how to fix the problem; the CLI prints it after the message. ``details`` are lines that
    belong under the message (a listing); messages never hold line breaks themselves, so that the CLI can
    escape every control character in what it prints.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = tuple(details)

    def __str__(self) -> str:
        text = "".join([self.message, *(f"\n  {line}" for line in self.details)])
        return text if not self.hint else f"{text}\n  fix: {self.hint}"

    def one_line(self) -> str:
        """The message (its details joined by '; ') with its fix in brackets, for logs, summaries and the C API."""
        text = self.message + (" " + "; ".join(self.details) if self.details else "")
        return text + (f" (fix: {self.hint})" if self.hint else "")


class InputError(FcnDeployError):
    """Bad usage or bad input: a missing file, a malformed dataset, an option out of range."""

    exit_code = 1


class ArtifactError(InputError):
    """A model file that is not an fcn-deploy artifact, or whose spec contradicts its graph."""


class ShapeError(InputError):
    """An input tensor that the model's contract does not accept (dtype, alignment, range)."""


class MissingComponentError(FcnDeployError):
    """A required component is missing: a Python package, TensorRT, a CUDA device."""

    exit_code = 2


class BatchFailure(FcnDeployError):
    """A batch command finished, but some of its inputs failed; ``summary`` is the run's summary."""

    exit_code = 3

    def __init__(self, message: str, hint: str | None = None, summary: Any = None) -> None:
        super().__init__(message, hint)
        self.summary = summary


class Interrupted(FcnDeployError):
    """A run stopped by Ctrl-C (exit 130) or SIGTERM (exit 143) after saving what it had done."""

    def __init__(self, message: str, hint: str | None = None, summary: Any = None, signal_name: str = "SIGINT") -> None:
        super().__init__(message, hint)
        self.summary = summary
        self.signal_name = signal_name
        self.exit_code = 143 if signal_name == "SIGTERM" else 130


def describe(exc: BaseException, one_line: bool = True) -> str:
    """The text of any exception: ours with their fix (in brackets, or on a second line), others with their type."""
    if isinstance(exc, FcnDeployError):
        return exc.one_line() if one_line else str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
