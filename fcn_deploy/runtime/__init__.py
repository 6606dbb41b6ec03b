"""Runtime backends behind one protocol; ``open_backend`` picks one by artifact type.

Each backend module imports its runtime (torch, onnxruntime, tensorrt) only when a model is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from fcn_deploy.checkpoint import CHECKPOINT_SUFFIXES
from fcn_deploy.contract import ENGINE_SUFFIXES, ONNX_SUFFIX
from fcn_deploy.devices import DEVICES, Device, check_device, cuda_device_count
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.runtime.base import Backend


def open_backend(path: str | os.PathLike[str], device: Device = "auto", *, threads: int = 0) -> Backend:
    """Open a checkpoint (.pt/.pth), ONNX file (.onnx) or TensorRT engine (.engine/.plan).

    ``threads`` caps the CPU threads of one inference (0: the runtime's default; TensorRT ignores it).
    """
    if threads < 0:
        raise InputError(f"threads must be 0 (the runtime's default) or positive, got {threads}")
    path = Path(path)
    device = check_device(device)
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        from fcn_deploy.runtime.torch_backend import TorchBackend

        return TorchBackend(path, device, threads=threads)
    if suffix == ONNX_SUFFIX:
        from fcn_deploy.runtime.ort_backend import OrtBackend

        return OrtBackend(path, device, threads=threads)
    if suffix in ENGINE_SUFFIXES:
        from fcn_deploy.runtime.trt_backend import TensorRTBackend

        return TensorRTBackend(path, device)
    raise ArtifactError(
        f"{path} is not an fcn-deploy artifact (unknown suffix {suffix!r})",
        "pass a checkpoint (.pt), an ONNX file (.onnx) or a TensorRT engine (.engine)",
    )


# DEVICES, Device, ENGINE_SUFFIXES and cuda_device_count stay importable from here (their homes are lower)
__all__ = ["Backend", "DEVICES", "Device", "ENGINE_SUFFIXES", "cuda_device_count", "open_backend"]
