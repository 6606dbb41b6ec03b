"""``fcn-deploy build``: precision ONNX first, then a clear exit 2 without TensorRT/GPU; options and profiles."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from fcn_deploy.build import (
    BuildConfig,
    make_precision_onnx,
    parse_dims,
    resolve_profile,
)
from fcn_deploy.cli import run
from fcn_deploy.contract import read_sidecar
from fcn_deploy.errors import InputError, MissingComponentError
from fcn_deploy.runtime.tensorrt_support import require_tensorrt
from fcn_deploy.spec import INPUT_UINT8_NHWC, ModelSpec, ShapeRange

pytest.importorskip("onnxruntime")


def _skip_if_gpu_stack_present() -> None:
    """These tests are about the machine without TensorRT or a CUDA device."""
    if importlib.util.find_spec("tensorrt") is not None:
        try:
            require_tensorrt()
        except MissingComponentError:
            return
        pytest.skip("TensorRT and a CUDA GPU are present: the missing-component path cannot be exercised")


def _copy_export(onnx_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of an FP32 export (and sidecar) under export/ of a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "export").mkdir()
    for source in (onnx_path, onnx_path.with_name(onnx_path.name + ".json")):
        shutil.copy(source, tmp_path / "export" / source.name)
    return tmp_path / "export" / onnx_path.name


@pytest.fixture
def workspace(random_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The random-weight export in a fresh working directory."""
    return _copy_export(random_onnx, tmp_path, monkeypatch)


def test_fp16_build_writes_onnx_then_exits_2(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    _skip_if_gpu_stack_present()
    code = run(["build", str(workspace), "--fp16", "--skip-parity"])
    err = capsys.readouterr().err
    assert code == 2
    assert "TensorRT" in err and "pip install 'fcn-deploy[tensorrt]'" in err
    fp16 = workspace.with_name("fcn.fp16.onnx")
    assert fp16.is_file() and read_sidecar(fp16)[0].precision == "fp16"
    assert not Path("engines").exists() or not any(Path("engines").iterdir())
    before = fp16.stat().st_mtime_ns
    assert run(["build", str(workspace), "--fp16", "--skip-parity"]) == 2
    assert fp16.stat().st_mtime_ns == before  # reused: made from this very export
    assert "reusing" in capsys.readouterr().err


def test_int8_build_calibrates_then_exits_2(workspace: Path, precision_voc_dir: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    _skip_if_gpu_stack_present()
    code = run(["build", str(workspace), "--int8", "--calib-data", str(precision_voc_dir), "--calib-num", "4",
                "--calib-crop", "64x96", "--calib-method", "minmax", "--skip-parity"])
    assert code == 2, capsys.readouterr().err
    int8 = workspace.with_name("fcn.int8.onnx")
    spec, document = read_sidecar(int8)
    assert spec.precision == "int8" and spec.quantization.target == "tensorrt"
    assert document["source_onnx_sha256"]
    assert Path("calibration/fcn.int8.crops.json").is_file()


def test_int8_without_calibration_data_is_refused(workspace: Path) -> None:
    with pytest.raises(InputError, match="--calib-data"):
        make_precision_onnx(workspace, BuildConfig(precision="int8"))


@pytest.mark.parametrize("flags", [[], ["--fp16", "--int8"], ["--fp32", "--fp16", "--int8"]])
def test_exactly_one_precision(workspace: Path, flags: list[str], capsys: pytest.CaptureFixture) -> None:
    assert run(["build", str(workspace), *flags]) == 1
    assert "exactly one precision" in capsys.readouterr().err


@pytest.mark.slow
def test_fp16_build_runs_parity_before_stopping(precision_onnx: Path, precision_checkpoint: Path,
                                                precision_voc_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _skip_if_gpu_stack_present()
    workspace = _copy_export(precision_onnx, tmp_path, monkeypatch)
    code = run(["build", str(workspace), "--fp16", "--reference", str(precision_checkpoint),
                "--parity-data", str(precision_voc_dir)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "fp16 parity" in err and "PASS" in err
    assert Path("calibration/parity-fcn.fp16.md").is_file()


def test_profile_defaults_to_the_spec_range_and_checks_given_ones() -> None:
    spec = ModelSpec(arch="fcn32s", shape_range=ShapeRange((1, 64, 64), (2, 320, 480), (4, 512, 512)))
    assert resolve_profile(spec, None) == ((1, 3, 64, 64), (2, 3, 320, 480), (4, 3, 512, 512))
    nhwc = spec.replace(input_format=INPUT_UINT8_NHWC)
    assert resolve_profile(nhwc, None)[2] == (4, 512, 512, 3)
    given = ((1, 3, 64, 64), (1, 3, 128, 128), (2, 3, 256, 256))
    assert resolve_profile(spec, given) == given
    with pytest.raises(InputError, match="multiple of 32"):
        resolve_profile(spec, ((1, 3, 64, 64), (1, 3, 100, 128), (2, 3, 256, 256)))
    with pytest.raises(InputError, match="outside"):
        resolve_profile(spec, ((1, 3, 64, 64), (1, 3, 128, 128), (8, 3, 256, 256)))
    with pytest.raises(InputError, match="ordered"):
        resolve_profile(spec, ((2, 3, 64, 64), (1, 3, 128, 128), (2, 3, 256, 256)))
    assert parse_dims("1x3x320x480", "--opt") == (1, 3, 320, 480)
    with pytest.raises(InputError, match="NxCxHxW"):
        parse_dims("320x480", "--opt")
