"""Default artifact choice: an engine only where the TensorRT backend itself says it can run."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcn_deploy.workspace import default_model

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

INSUFFICIENT_DRIVER = 35


def _workspace(tmp_path: Path) -> Path:
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "fcn.onnx").write_bytes(b"")
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "fcn.fp16.engine").write_bytes(b"")
    return tmp_path


def _default_model(device: str, workspace: Path) -> Path:
    """The automatic choice as ``infer`` makes it."""
    from fcn_deploy.runtime.tensorrt_support import tensorrt_unavailable

    return default_model(device, workspace, engine_unavailable=tensorrt_unavailable)  # type: ignore[arg-type]


def test_engine_is_chosen_where_the_backend_check_passes(gpu_standins, tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    assert _default_model("auto", workspace) == workspace / "engines" / "fcn.fp16.engine"
    assert _default_model("cpu", workspace) == workspace / "export" / "fcn.onnx"


def test_driver_too_old_for_the_cuda_runtime_falls_back_to_onnx(gpu_standins, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """The driver reports a GPU, but the CUDA runtime cuda-python links needs a newer driver (error 35)."""
    monkeypatch.setattr(gpu_standins.cudart, "cudaDriverGetVersion",
                        lambda: (gpu_standins.cudart.cudaError_t.cudaSuccess, 12080))
    gpu_standins.fail["cudaGetDeviceCount"] = INSUFFICIENT_DRIVER
    workspace = _workspace(tmp_path)
    assert _default_model("auto", workspace) == workspace / "export" / "fcn.onnx"
    assert "driver is too old" in capsys.readouterr().err


def test_timing_cache_is_named_by_tensorrt_version_compute_capability_and_gpu() -> None:
    from fcn_deploy.workspace import timing_cache_path

    assert timing_cache_path("10.16.1.11", "8.9", "NVIDIA L4") == Path(
        "calibration/timing-10.16.1.11-sm89-NVIDIA-L4.cache")
    assert timing_cache_path("11.4.0.106", "12.0", "NVIDIA RTX PRO 6000", Path("c")) == Path(
        "c/timing-11.4.0.106-sm120-NVIDIA-RTX-PRO-6000.cache")
