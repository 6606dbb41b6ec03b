"""Lazy imports of heavy optional modules, with an error naming what to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from fcn_deploy.errors import MissingComponentError

# PyTorch is not part of the runtime install: training, export from checkpoints, imports of PyTorch models,
# the PyTorch backend and parity against a checkpoint need the extra
TORCH_HINT = ("pip install 'fcn-deploy[torch]' (PyTorch, torchvision and onnxscript: training, export, imports of "
              "PyTorch models, checkpoints)")

# module name -> how to install it
_INSTALL_HINTS = {
    "torch": TORCH_HINT,
    "torchvision": TORCH_HINT,
    "onnxscript": TORCH_HINT,
    "onnx": "pip install onnx (a base dependency of fcn-deploy)",
    "onnxruntime": "pip install onnxruntime-gpu (Linux x86_64) or onnxruntime (elsewhere); never both",
    "tensorrt": "pip install 'fcn-deploy[tensorrt]' (CUDA 13) or 'fcn-deploy[tensorrt-cu12]' (CUDA 12) on a machine "
                "with an NVIDIA GPU and driver",
    "cuda": "pip install 'fcn-deploy[tensorrt]' or 'fcn-deploy[tensorrt-cu12]' (installs cuda-python)",
    "cuda.bindings": "pip install 'fcn-deploy[tensorrt]' or 'fcn-deploy[tensorrt-cu12]' (installs cuda-python)",
    "pytriton": "pip install 'fcn-deploy[serve]' (PyTriton with its tritonserver; needs numpy < 2)",
    "tritonclient": "pip install 'fcn-deploy[serve]' (tritonclient with HTTP and gRPC)",
    "google.protobuf": "pip install 'fcn-deploy[serve]' (protobuf, for Triton model configs)",
    "openvino": "pip install 'fcn-deploy[openvino]' (the OpenVINO backend: --backend openvino)",
    "nncf": "pip install 'fcn-deploy[openvino]' (NNCF: the INT8 OpenVINO IR of 'build --target openvino')",
    "cffi": "pip install 'fcn-deploy[capi]' (installs cffi, needed by 'fcn-deploy capi build')",
    "ray": "pip install 'fcn-deploy[ray]' (Ray Data; on the driver and on every node of the cluster)",
    "pyarrow": "pip install 'fcn-deploy[ray]' (installs Ray Data and pyarrow)",
    "tifffile": "pip install 'fcn-deploy[tiff]' (tifffile, imagecodecs and zarr: windowed TIFF reading and writing)",
    "zarr": "pip install 'fcn-deploy[tiff]' (tifffile, imagecodecs and zarr: windowed TIFF reading and writing)",
    "av": "pip install 'fcn-deploy[video]' (PyAV: video files decoded and encoded frame by frame)",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise MissingComponentError saying which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        hint = _INSTALL_HINTS.get(module) or _INSTALL_HINTS.get(root) or f"pip install {root}"
        raise MissingComponentError(f"the Python module '{module}' is not available ({exc})", hint) from exc


def installed(module: str) -> bool:
    """True when ``module`` can be imported, found without importing it (e.g. whether the torch extra is there)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a module with no spec
        return False
