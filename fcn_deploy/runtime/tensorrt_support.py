"""TensorRT and CUDA availability for the engine build and the TensorRT backend.

cuda-python calls return ``(err, *values)``; ``cuda_call`` turns a failure into CudaError naming the call.
``require_tensorrt`` names everything that is missing at once, so a user fixes the machine in one go; automatic
model choice asks the same question through ``tensorrt_unavailable``. TensorRT keeps one logger per process,
so the build and every backend share the one ``tensorrt_logger`` makes.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fcn_deploy.contract import ENGINE_SUFFIXES, read_sidecar
from fcn_deploy.deps import require
from fcn_deploy.errors import FcnDeployError, MissingComponentError

TRT_INSTALL_HINT = ("on a machine with an NVIDIA GPU: pip install 'fcn-deploy[tensorrt]' (CUDA 13, NVIDIA driver 580 "
                    "or newer), or 'fcn-deploy[tensorrt-cu12]' (CUDA 12, driver 525 or newer)")
CUDA12_PAIR_HINT = ("use the CUDA 12 pair: uninstall the CUDA 13 TensorRT and cuda-python packages ('pip list | grep "
                    "-i -e tensorrt -e cuda' lists them), then pip install 'fcn-deploy[tensorrt-cu12]'; or update the "
                    "NVIDIA driver to 580 or newer")
INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver
ENGINE_FORMAT = "fcn-deploy-engine-1"  # the sidecar layout of an engine this package writes and reads
_LOGGER_LOCK = threading.Lock()
_logger: tuple[Any, Any] | None = None  # (the tensorrt module, its one logger)


class CudaError(FcnDeployError):
    """A CUDA runtime call failed; the message names the call and CUDA's error."""


def cuda_call(name: str, result: Any) -> Any:
    """Unpack a cuda-python (err, *values) result; a failure becomes CudaError naming ``name``."""
    cudart = require("cuda.bindings.runtime")
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(err)
        raise CudaError(f"CUDA call {name} failed: {getattr(err, 'name', err)} ({text.decode(errors='replace')})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def native_handle(obj: Any) -> int:
    """The CUDA handle a cuda-bindings object wraps, as an int (what TensorRT's ``stream_handle`` takes).

    cuda-bindings 12.9.1 and 13 provide ``get_cuda_native_handle`` and deprecate ``int(obj)``; older ones have
    only ``int(obj)``. (``getPtr()`` is the address of the wrapper's storage, not the handle.)
    """
    try:
        getter = importlib.import_module("cuda.bindings.utils").get_cuda_native_handle
    except (ImportError, AttributeError):
        return int(obj)
    return int(getter(obj))


def _cuda_version(number: int) -> str:
    """CUDA's encoded version (13000) as text ('13.0')."""
    return f"{number // 1000}.{number % 1000 // 10}"


def _no_device(cudart: Any, err: Any) -> MissingComponentError:
    """Why cudaGetDeviceCount found no usable device, with the fix for that case."""
    if int(err) != INSUFFICIENT_DRIVER:
        return MissingComponentError(f"no CUDA GPU is available ({getattr(err, 'name', err)})", TRT_INSTALL_HINT)
    _, runtime = cudart.cudaRuntimeGetVersion()
    _, driver = cudart.cudaDriverGetVersion()
    if not driver:
        return MissingComponentError("no NVIDIA driver is installed (cudaErrorInsufficientDriver)", TRT_INSTALL_HINT)
    needed = f"CUDA {_cuda_version(runtime)}" if runtime else "its CUDA version"
    message = (f"the NVIDIA driver is too old for this CUDA runtime: it supports up to CUDA {_cuda_version(driver)}, "
               f"the installed cuda-python needs {needed} (cudaErrorInsufficientDriver)")
    hint = CUDA12_PAIR_HINT if runtime >= 13000 and driver >= 12000 else "update the NVIDIA driver"
    return MissingComponentError(message, hint)


def gpu_info(device: int = 0) -> dict[str, Any]:
    """Name and compute capability of a CUDA device (MissingComponentError when there is none or it is unusable)."""
    cudart = require("cuda.bindings.runtime")
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        raise _no_device(cudart, err)
    if not count:
        raise MissingComponentError("no CUDA GPU is available (0 devices)", TRT_INSTALL_HINT)
    props = cuda_call("cudaGetDeviceProperties", cudart.cudaGetDeviceProperties(device))
    name = props.name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"name": name, "compute_capability": f"{props.major}.{props.minor}", "device": device}


def require_tensorrt() -> tuple[Any, dict[str, Any]]:
    """(tensorrt module, GPU info), or MissingComponentError naming everything that is missing."""
    missing: list[str] = []
    hints: list[str] = []
    trt = gpu = None
    try:
        trt = require("tensorrt")
    except MissingComponentError:
        missing.append("TensorRT is not installed (the 'tensorrt' Python package)")
    try:
        gpu = gpu_info()
    except MissingComponentError as exc:
        missing.append(exc.message)
        hints.append(exc.hint or TRT_INSTALL_HINT)
    if missing:
        hint = hints[0] if hints and hints[0] != TRT_INSTALL_HINT else TRT_INSTALL_HINT
        raise MissingComponentError("cannot build or run a TensorRT engine: " + "; ".join(missing), hint)
    return trt, gpu


def tensorrt_unavailable() -> str | None:
    """Why a TensorRT engine cannot run here (the same check as the backend's), None when it can."""
    try:
        require_tensorrt()
    except MissingComponentError as exc:
        return exc.message
    return None


def tensorrt_logger(trt: Any) -> Any:
    """The process's one TensorRT logger (warnings and errors), made on first use.

    TensorRT holds on to the first logger it is given; a second one per builder or backend (``serve`` with
    several instances) could leave it with a logger that was already freed.
    """
    global _logger
    with _LOGGER_LOCK:
        if _logger is None or _logger[0] is not trt:  # another module object only where tests swap TensorRT
            logger = trt.Logger(trt.Logger.WARNING)
            _logger = (trt, logger)
        return _logger[1]


def engine_parity_note(sidecar: Mapping[str, Any]) -> str:
    """One line on the parity gate an engine's build recorded: passed (on what, with which figures) or skipped."""
    record = sidecar.get("parity")
    if not isinstance(record, Mapping):
        return "parity gate: not recorded (an engine built before the gate was recorded; rebuild to record it)"
    status = record.get("status", "?")
    if status == "skipped":
        return f"parity gate: skipped on purpose with --no-parity ({record.get('reason', 'no reason given')})"
    if status == "not_needed":
        line = f"parity gate: not needed ({record.get('reason', '')}); data {record.get('data', '?')}"
    else:
        figures = f"agreement {100 * float(record.get('agreement', float('nan'))):.3f}%"
        if record.get("delta_miou") is not None:
            figures += f", ΔmIoU {100 * float(record['delta_miou']):+.2f} pt"
        line = f"parity gate: {status} on {record.get('data', '?')} ({figures})"
    engine = record.get("engine")
    if isinstance(engine, Mapping) and engine.get("agreement") is not None:
        line += (f"; the engine itself on the same data: agreement {100 * float(engine['agreement']):.3f}%"
                 f" ({'within' if engine.get('passed') else 'OUTSIDE'} the gate's thresholds)")
    return line


def engine_build_notes(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """For a TensorRT engine: its parity gate line and the math its FP32 layers use (empty for other files)."""
    path = Path(path)
    if path.suffix.lower() not in ENGINE_SUFFIXES or not path.is_file():
        return ()
    try:
        _, sidecar = read_sidecar(path)
    except FcnDeployError:
        return ()  # opening the engine reports a missing or damaged sidecar with its fix
    notes = [engine_parity_note(sidecar)]
    if sidecar.get("fp32_math"):
        notes.append(f"FP32 math: {sidecar['fp32_math']}")
    return tuple(notes)
