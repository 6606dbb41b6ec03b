"""Runtime backends behind one protocol; ``open_backend`` picks one by artifact type or by the backend asked for.

Each backend module imports its runtime (torch, onnxruntime, openvino, tensorrt) only when a model is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fcn_deploy.checkpoint import CHECKPOINT_SUFFIXES
from fcn_deploy.contract import ENGINE_SUFFIXES, IR_SUFFIX, ONNX_SUFFIX
from fcn_deploy.devices import DEVICES, Device, check_device, cuda_device_count
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.runtime.base import INFERENCE_PRECISIONS, Backend

#: runtimes that can run an artifact; 'auto' picks one from the file's suffix
BACKENDS: tuple[str, ...] = ("auto", "pytorch", "onnxruntime", "openvino", "tensorrt")
_SUFFIX_BACKENDS = {"pytorch": "a checkpoint (.pt)", "onnxruntime": "an ONNX file (.onnx)",
                    "openvino": "an ONNX file (.onnx) or an OpenVINO IR (.xml)",
                    "tensorrt": "a TensorRT engine (.engine)"}

MODEL_HINT = ("pass the path of a checkpoint (.pt), ONNX file (.onnx), OpenVINO IR (.xml) or engine (.engine); "
              "'fcn-deploy export' writes export/fcn.onnx")


@dataclass(frozen=True)
class BackendChoice:
    """Which runtime runs an artifact ('auto': by suffix) and the inference precision hint (OpenVINO only)."""

    backend: str = "auto"
    precision: str = "f32"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"unknown backend {self.backend!r}", f"use one of: {', '.join(BACKENDS)}")
        if self.precision not in INFERENCE_PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}", f"use one of: {', '.join(INFERENCE_PRECISIONS)}")
        if self.precision != "f32" and self.backend != "openvino":
            raise InputError(f"precision {self.precision!r} is an OpenVINO inference precision",
                             "add --backend openvino with an ONNX model (other backends run the artifact's own precision)")

    def label(self) -> str:
        """Short name for reports: 'auto', 'openvino', 'openvino-bf16'."""
        return self.backend if self.precision == "f32" else f"{self.backend}-{self.precision}"


def parse_device_string(text: str) -> tuple[Device, BackendChoice]:
    """A device string as the C API takes it -> (device, backend choice).

    'auto', 'cpu' and 'cuda' choose the backend by the model's suffix; 'openvino', 'openvino:f32' and
    'openvino:bf16' run an ONNX model with OpenVINO on the CPU.
    """
    if text in DEVICES:
        return check_device(text), BackendChoice()
    backend, _, precision = text.partition(":")
    if backend == "openvino" and precision in ("",) + INFERENCE_PRECISIONS:
        return "cpu", BackendChoice("openvino", precision or "f32")
    raise InputError(f"unknown device {text!r}",
                     "use 'auto', 'cpu', 'cuda', 'openvino', 'openvino:f32' or 'openvino:bf16'")


def suffix_backend(path: Path) -> str:
    """The backend that runs a file by its suffix ('pytorch', 'onnxruntime', 'openvino' or 'tensorrt')."""
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return "pytorch"
    if suffix == ONNX_SUFFIX:
        return "onnxruntime"
    if suffix == IR_SUFFIX:
        return "openvino"
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    raise ArtifactError(
        f"{path} is not an fcn-deploy artifact (unknown suffix {suffix!r})",
        "pass a checkpoint (.pt), an ONNX file (.onnx), an OpenVINO IR (.xml) or a TensorRT engine (.engine)",
    )


def chosen_backend(path: Path, choice: BackendChoice) -> str:
    """The backend to run ``path`` with: the suffix's, or the one asked for when it can read that file.

    Reads only the suffix, so a command can refuse a wrong choice before it opens anything.
    """
    by_suffix = suffix_backend(path)
    wanted = by_suffix if choice.backend == "auto" else choice.backend
    readers = {"onnxruntime": "openvino"} if by_suffix == "onnxruntime" else {}
    if wanted not in (by_suffix, readers.get(by_suffix)):
        raise InputError(f"--backend {wanted} cannot run {path.name}; it runs {_SUFFIX_BACKENDS[wanted]}",
                         f"pass {_SUFFIX_BACKENDS[wanted]}, or drop --backend")
    return wanted


def open_backend(
    path: str | os.PathLike[str], device: Device = "auto", choice: BackendChoice = BackendChoice(), *, threads: int = 0
) -> Backend:
    """Open a checkpoint (.pt/.pth), ONNX file (.onnx), OpenVINO IR (.xml) or TensorRT engine (.engine/.plan) with the
    chosen runtime.

    ``threads`` caps the CPU threads of one inference (0: the runtime's default; TensorRT ignores it).
    """
    if threads < 0:
        raise InputError(f"threads must be 0 (the runtime's default) or positive, got {threads}")
    path = Path(path)
    device = check_device(device)
    if not path.exists():
        raise InputError(f"model file not found: {path}", MODEL_HINT)
    backend = chosen_backend(path, choice)
    if backend == "pytorch":
        from fcn_deploy.runtime.torch_backend import TorchBackend

        return TorchBackend(path, device, threads=threads)
    if backend == "openvino":
        from fcn_deploy.runtime.openvino_backend import OpenVinoBackend, OpenVinoOptions

        return OpenVinoBackend(path, device, OpenVinoOptions(precision=choice.precision, threads=threads))
    if backend == "onnxruntime":
        from fcn_deploy.runtime.ort_backend import OrtBackend

        return OrtBackend(path, device, threads=threads)
    from fcn_deploy.runtime.trt_backend import TensorRTBackend

    return TensorRTBackend(path, device)


# DEVICES, Device, ENGINE_SUFFIXES and cuda_device_count stay importable from here (their homes are lower)
__all__ = ["BACKENDS", "Backend", "BackendChoice", "DEVICES", "Device", "ENGINE_SUFFIXES", "INFERENCE_PRECISIONS",
           "chosen_backend", "cuda_device_count", "open_backend", "parse_device_string", "suffix_backend"]
