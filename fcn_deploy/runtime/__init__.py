"""Runtime backends behind one protocol; ``open_backend`` picks one by artifact type."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.runtime.base import Backend

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def open_backend(path: str | os.PathLike[str], device: Device = "auto") -> Backend:
    """Open a checkpoint (.pt/.pth), ONNX file (.onnx) or TensorRT engine (.engine/.plan)."""
    path = Path(path)
    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}", f"use one of: {', '.join(DEVICES)}")
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        from fcn_deploy.runtime.torch_backend import TorchBackend

        return TorchBackend(path, device)
    if suffix == ".onnx":
        from fcn_deploy.runtime.ort_backend import OrtBackend

        return OrtBackend(path, device)
    if suffix in (".engine", ".plan"):
        from fcn_deploy.runtime.trt_backend import TensorRTBackend

        return TensorRTBackend(path, device)
    raise ArtifactError(
        f"{path} is not an fcn-deploy artifact (unknown suffix {suffix!r})",
        "pass a checkpoint (.pt), an ONNX file (.onnx) or a TensorRT engine (.engine)",
    )


__all__ = ["Backend", "DEVICES", "Device", "open_backend"]
