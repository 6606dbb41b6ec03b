"""The one exception hierarchy of fcn-deploy; the CLI maps each class to an exit code."""

from __future__ import annotations


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
    """A batch command finished, but some of its inputs failed."""

    exit_code = 3
