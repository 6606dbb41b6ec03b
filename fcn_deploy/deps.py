"""Lazy imports of heavy optional modules, with an error naming what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from fcn_deploy.errors import MissingComponentError

# module name -> how to install it
_INSTALL_HINTS = {
    "torch": "pip install 'torch>=2.4' 'torchvision>=0.19' (base dependencies of fcn-deploy)",
    "torchvision": "pip install 'torchvision>=0.19' (a base dependency of fcn-deploy)",
    "onnx": "pip install onnx (a base dependency of fcn-deploy)",
    "onnxscript": "pip install onnxscript (needed by the torch.onnx dynamo exporter)",
    "onnxruntime": "pip install onnxruntime-gpu (Linux x86_64) or onnxruntime (elsewhere); never both",
    "tensorrt": "pip install 'fcn-deploy[tensorrt]' (CUDA 13) or 'fcn-deploy[tensorrt-cu12]' (CUDA 12) on a machine "
                "with an NVIDIA GPU and driver",
    "cuda": "pip install 'fcn-deploy[tensorrt]' or 'fcn-deploy[tensorrt-cu12]' (installs cuda-python)",
    "cuda.bindings": "pip install 'fcn-deploy[tensorrt]' or 'fcn-deploy[tensorrt-cu12]' (installs cuda-python)",
    "pytriton": "pip install 'fcn-deploy[serve]' (PyTriton with its tritonserver; needs numpy < 2)",
    "tritonclient": "pip install 'fcn-deploy[serve]' (tritonclient with HTTP and gRPC)",
    "google.protobuf": "pip install 'fcn-deploy[serve]' (protobuf, for Triton model configs)",
    "openvino": "pip install 'fcn-deploy[openvino]' (the OpenVINO backend: --backend openvino)",
    "cffi": "pip install 'fcn-deploy[capi]' (installs cffi, needed by 'fcn-deploy capi build')",
    "ray": "pip install 'fcn-deploy[ray]' (Ray Data; on the driver and on every node of the cluster)",
    "pyarrow": "pip install 'fcn-deploy[ray]' (installs Ray Data and pyarrow)",
    "tifffile": "pip install 'fcn-deploy[tiff]' (tifffile, imagecodecs and zarr: windowed TIFF reading and writing)",
    "zarr": "pip install 'fcn-deploy[tiff]' (tifffile, imagecodecs and zarr: windowed TIFF reading and writing)",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise MissingComponentError saying which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        hint = _INSTALL_HINTS.get(module) or _INSTALL_HINTS.get(root) or f"pip install {root}"
        raise MissingComponentError(f"the Python module '{module}' is not available ({exc})", hint) from exc
