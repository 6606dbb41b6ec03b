"""The one exception hierarchy of fcn-deploy; the CLI maps each class to an exit code."""

from __future__ import annotations

from typing import Any


class FcnDeployError(Exception):
    """Root of every error the library raises on purpose.

    ``hint`` says how to fix the problem; the CLI prints it after the message.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"

    def one_line(self) -> str:
        """The message with its fix in brackets, for logs, summaries and the C API's last error."""
        return self.message + (f" (fix: {self.hint})" if self.hint else "")


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
