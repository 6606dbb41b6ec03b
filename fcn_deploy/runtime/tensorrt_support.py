"""TensorRT and CUDA availability for the engine build and the TensorRT backend.

cuda-python calls return ``(err, *values)``; ``cuda_call`` turns a failure into CudaError naming the call.
``require_tensorrt`` names everything that is missing at once, so a user fixes the machine in one go.
"""

from __future__ import annotations

from typing import Any

from fcn_deploy.deps import require
from fcn_deploy.errors import FcnDeployError, MissingComponentError

TRT_INSTALL_HINT = "pip install 'fcn-deploy[tensorrt]' on a machine with an NVIDIA GPU, driver and CUDA 12+"


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


def gpu_info(device: int = 0) -> dict[str, Any]:
    """Name and compute capability of a CUDA device (MissingComponentError when there is none)."""
    cudart = require("cuda.bindings.runtime")
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or not count:
        reason = getattr(err, "name", str(err)) if err != cudart.cudaError_t.cudaSuccess else "0 devices"
        raise MissingComponentError(f"no CUDA GPU is available ({reason})", TRT_INSTALL_HINT)
    props = cuda_call("cudaGetDeviceProperties", cudart.cudaGetDeviceProperties(device))
    name = props.name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"name": name, "compute_capability": f"{props.major}.{props.minor}", "device": device}


def require_tensorrt() -> tuple[Any, dict[str, Any]]:
    """(tensorrt module, GPU info), or MissingComponentError naming everything that is missing."""
    missing = []
    trt = gpu = None
    try:
        trt = require("tensorrt")
    except MissingComponentError:
        missing.append("TensorRT (the 'tensorrt' Python package)")
    try:
        gpu = gpu_info()
    except MissingComponentError as exc:
        missing.append(exc.message)
    if missing:
        raise MissingComponentError("cannot build or run a TensorRT engine: missing " + "; ".join(missing),
                                    TRT_INSTALL_HINT)
    return trt, gpu
