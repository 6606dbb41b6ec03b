"""Runtime backends behind one protocol; ``open_backend`` picks one by artifact type."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Literal

from fcn_deploy.checkpoint import CHECKPOINT_SUFFIXES
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.runtime.base import Backend

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
ENGINE_SUFFIXES: tuple[str, ...] = (".engine", ".plan")


def cuda_device_count() -> int | None:
    """CUDA devices the NVIDIA driver reports, asked without any CUDA library (None: no driver to ask)."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        if driver.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    except (OSError, AttributeError):
        return None


def open_backend(path: str | os.PathLike[str], device: Device = "auto") -> Backend:
    """Open a checkpoint (.pt/.pth), ONNX file (.onnx) or TensorRT engine (.engine/.plan)."""
    path = Path(path)
    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}", f"use one of: {', '.join(DEVICES)}")
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        from fcn_deploy.runtime.torch_backend import TorchBackend

        return TorchBackend(path, device)
    if suffix == ".onnx":
        from fcn_deploy.runtime.ort_backend import OrtBackend

        return OrtBackend(path, device)
    if suffix in ENGINE_SUFFIXES:
        from fcn_deploy.runtime.trt_backend import TensorRTBackend

        return TensorRTBackend(path, device)
    raise ArtifactError(
        f"{path} is not an fcn-deploy artifact (unknown suffix {suffix!r})",
        "pass a checkpoint (.pt), an ONNX file (.onnx) or a TensorRT engine (.engine)",
    )


__all__ = ["Backend", "DEVICES", "Device", "ENGINE_SUFFIXES", "cuda_device_count", "open_backend"]
