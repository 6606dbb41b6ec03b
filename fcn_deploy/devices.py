"""Device names and the checks behind them: one place that says what 'auto', 'cpu' and 'cuda' mean.

A CUDA request that cannot be honoured is always an error with the reason, never a silent CPU run.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Literal, cast

from fcn_deploy.deps import require
from fcn_deploy.errors import InputError, MissingComponentError

if TYPE_CHECKING:  # pragma: no cover
    import torch

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def check_device(device: str, option: str = "device") -> Device:
    """``device`` as a Device, or InputError naming the accepted values."""
    if device not in DEVICES:
        raise InputError(f"unknown {option} {device!r}", f"use one of: {', '.join(DEVICES)}")
    return cast(Device, device)


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


def driver_reports_cuda_device() -> bool:
    """True when the NVIDIA driver reports a CUDA device: what 'auto' asks before it loads any CUDA library (the
    runtimes' CUDA providers map cuBLAS, cuDNN, cuFFT, cuRAND and NVRTC, about 190 MiB, even where they find no
    device)."""
    return (cuda_device_count() or 0) > 0


def torch_device(name: str, option: str = "device") -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N' as a torch.device; 'auto' is CUDA when PyTorch sees a device."""
    torch = require("torch")
    available = torch.cuda.is_available()
    if name == "auto":
        return torch.device("cuda" if available else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda" and not name.startswith("cuda:"):
        raise InputError(f"unknown {option} {name!r}", f"use one of: {', '.join(DEVICES)} (cuda:N for a particular GPU)")
    if not available:
        reason = ("this PyTorch is a CPU-only build" if torch.version.cuda is None
                  else f"PyTorch (CUDA {torch.version.cuda}) finds no CUDA device or NVIDIA driver")
        shown = f"{option} {name}" if option.startswith("--") else f"{option} {name!r}"  # a flag as it was typed
        raise MissingComponentError(f"{shown} requested but {reason}",
                                    "run on a machine with an NVIDIA GPU and driver, or pass --device cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"bad {option} {name!r} ({exc})") from exc
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"{option} {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device
