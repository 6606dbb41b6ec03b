"""TensorRT/CUDA availability with recording stand-ins: a too-old driver, no driver, no device, native handles."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fcn_deploy.errors import MissingComponentError

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

INSUFFICIENT_DRIVER, NO_DEVICE = 35, 100


def test_a_driver_too_old_for_the_cuda_runtime_names_the_cuda12_pair(gpu_standins, monkeypatch) -> None:
    from fcn_deploy.runtime import tensorrt_support

    gpu_standins.fail["cudaGetDeviceCount"] = INSUFFICIENT_DRIVER
    monkeypatch.setattr(gpu_standins.cudart, "cudaDriverGetVersion",
                        lambda: (gpu_standins.cudart.cudaError_t.cudaSuccess, 12080))
    with pytest.raises(MissingComponentError) as caught:
        tensorrt_support.gpu_info()
    message, hint = caught.value.message, caught.value.hint
    assert "driver is too old" in message and "CUDA 12.8" in message and "CUDA 13.0" in message
    assert "no CUDA GPU" not in message
    assert "fcn-deploy[tensorrt-cu12]" in hint
    with pytest.raises(MissingComponentError) as both:
        tensorrt_support.require_tensorrt()
    assert "driver is too old" in both.value.message and "fcn-deploy[tensorrt-cu12]" in both.value.hint
    assert both.value.exit_code == 2


def test_error_35_without_any_driver_says_no_driver(gpu_standins, monkeypatch) -> None:
    from fcn_deploy.runtime import tensorrt_support

    gpu_standins.fail["cudaGetDeviceCount"] = INSUFFICIENT_DRIVER
    monkeypatch.setattr(gpu_standins.cudart, "cudaDriverGetVersion",
                        lambda: (gpu_standins.cudart.cudaError_t.cudaSuccess, 0))
    with pytest.raises(MissingComponentError, match="no NVIDIA driver") as caught:
        tensorrt_support.gpu_info()
    assert "fcn-deploy[tensorrt]" in caught.value.hint


@pytest.mark.parametrize(("failure", "words"), [(NO_DEVICE, "cudaErrorNoDevice"), (None, "0 devices")])
def test_no_device_is_reported_as_such(gpu_standins, monkeypatch, failure, words) -> None:
    from fcn_deploy.runtime import tensorrt_support

    if failure is None:
        monkeypatch.setattr(gpu_standins.cudart, "cudaGetDeviceCount",
                            lambda: (gpu_standins.cudart.cudaError_t.cudaSuccess, 0))
    else:
        gpu_standins.fail["cudaGetDeviceCount"] = failure
    with pytest.raises(MissingComponentError, match="no CUDA GPU") as caught:
        tensorrt_support.gpu_info()
    assert words in caught.value.message


def test_a_working_stack_gives_the_gpu_and_no_reason(gpu_standins) -> None:
    from fcn_deploy.runtime import tensorrt_support

    trt, gpu = tensorrt_support.require_tensorrt()
    assert trt is gpu_standins.tensorrt
    assert gpu == {"name": "Stand-in GPU", "compute_capability": "8.9", "device": 0}
    assert tensorrt_support.tensorrt_unavailable() is None
    gpu_standins.fail["cudaGetDeviceCount"] = INSUFFICIENT_DRIVER
    assert "driver is too old" in tensorrt_support.tensorrt_unavailable()


def test_native_handle_uses_the_handle_getter_and_falls_back_to_int(gpu_standins, monkeypatch) -> None:
    from fcn_deploy.runtime.tensorrt_support import native_handle

    stream = gpu_standins.cudart.cudaStream_t(0x5123)
    assert native_handle(stream) == 0x5123
    assert "int(cudaStream_t)" not in gpu_standins.names()  # the deprecated path is not taken
    assert native_handle(stream) != stream.getPtr()
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", None)  # cuda-python 12.6.1 .. 12.9.0: no utils module
    assert native_handle(stream) == 0x5123
    assert "int(cudaStream_t)" in gpu_standins.names()


def test_tensorrt_extras_stay_below_the_next_major_version() -> None:
    """The code is checked against the TensorRT 10.16 and 11.4 API listings: a TensorRT 12 must not install."""
    import re
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    for extra in ("tensorrt", "tensorrt-cu12"):
        for requirement in extras[extra]:
            name = re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0]
            if name.startswith(("tensorrt", "cuda-python")):
                assert re.search(r",<\d+\b", requirement), f"{extra}: {requirement} has no upper bound"
            if name.startswith("tensorrt"):
                assert requirement.endswith(",<12"), requirement


@pytest.mark.parametrize(("record", "words"), [
    (None, ["not recorded", "rebuild"]),
    ({"status": "skipped", "reason": "checked by hand"}, ["skipped on purpose with --no-parity (checked by hand)"]),
    ({"status": "not_needed", "reason": "an FP32 engine", "data": "VOC (split 'val')",
      "engine": {"agreement": 0.9992, "passed": True}}, ["not needed (an FP32 engine)", "engine itself", "99.920%"]),
    ({"status": "passed", "data": "8 synthetic 320x480 crops", "agreement": 0.9971, "delta_miou": -0.002,
      "engine": {"agreement": 0.97, "passed": False}}, ["passed on 8 synthetic", "99.710%", "-0.20 pt", "OUTSIDE"]),
])
def test_the_parity_note_says_what_the_build_recorded(record, words: list[str]) -> None:
    from fcn_deploy.runtime.tensorrt_support import engine_parity_note

    note = engine_parity_note({} if record is None else {"parity": record})
    assert all(word in note for word in words), note
