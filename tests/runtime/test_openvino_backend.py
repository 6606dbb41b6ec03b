"""The OpenVINO backend: parity with PyTorch, the spec checks it shares with ONNX Runtime, BF16, INT8, the cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from fcn_deploy.contract import ONNX_METADATA_KEY
from fcn_deploy.errors import (
    ArtifactError,
    InputError,
    MissingComponentError,
    ShapeError,
)
from fcn_deploy.runtime import BackendChoice, open_backend, parse_device_string
from fcn_deploy.runtime import openvino_backend as ovb
from fcn_deploy.runtime.openvino_backend import (
    OpenVinoBackend,
    OpenVinoOptions,
    bf16_unsupported_reason,
    cpu_flags,
)
from fcn_deploy.spec import ModelSpec, ShapeRange

RANGE = ShapeRange((1, 32, 32), (1, 64, 64), (4, 256, 256))


@pytest.fixture(scope="module")
def openvino():
    """The openvino module; the tests that need it skip where the 'openvino' extra is not installed."""
    return pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'fcn-deploy[openvino]')")


@pytest.fixture(scope="module")
def exported(openvino, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A random-weight checkpoint, its float export and its uint8-input export with the argmax in the graph."""
    torch = pytest.importorskip("torch")
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model

    folder = tmp_path_factory.mktemp("openvino_backend")
    torch.manual_seed(1)
    checkpoint = save_checkpoint(
        folder / "fcn32s.pt", build_model("fcn32s", 21), Checkpoint(spec=ModelSpec(arch="fcn32s", shape_range=RANGE))
    )
    plain = export_onnx(checkpoint, folder / "fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path
    fused = export_onnx(checkpoint, folder / "fcn-u8.onnx", ExportConfig(
        with_preprocess=True, with_argmax=True, verify=False, progress=False)).onnx_path
    return checkpoint, plain, fused


@pytest.fixture(scope="module")
def native_bf16(openvino) -> str | None:
    """None where this CPU runs BF16 natively, else the reason the backend gives for refusing it."""
    return bf16_unsupported_reason(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"), cpu_flags())


def _options(tmp_path: Path, precision: str = "f32") -> OpenVinoOptions:
    return OpenVinoOptions(precision=precision, cache_dir=tmp_path / "cache")


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(1) == b.argmax(1)))


@pytest.mark.slow
@pytest.mark.parametrize(("batch", "height", "width"), [(1, 32, 32), (2, 64, 96), (1, 160, 224), (4, 32, 256)])
def test_openvino_f32_matches_pytorch(exported, tmp_path: Path, batch: int, height: int, width: int) -> None:
    checkpoint, plain, _ = exported
    x = np.random.default_rng(batch * height + width).standard_normal((batch, 3, height, width), dtype=np.float32)
    with open_backend(checkpoint, "cpu") as reference, OpenVinoBackend(plain, "cpu", _options(tmp_path)) as candidate:
        expected, logits = reference.infer(x), candidate.infer(x)
        assert candidate.precision == "f32"
    assert logits.shape == expected.shape == (batch, 21, height, width)
    assert logits.dtype == np.float32
    assert np.max(np.abs(logits - expected)) <= 1e-3 * np.max(np.abs(expected))
    assert _agreement(logits, expected) >= 0.9999


@pytest.mark.slow
def test_uint8_input_and_labels_output(exported, tmp_path: Path) -> None:
    _, plain, fused = exported
    rgb = np.random.default_rng(3).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    with OpenVinoBackend(fused, "cpu", _options(tmp_path)) as backend, open_backend(fused, "cpu") as ort:
        assert backend.has_labels and backend.name == "openvino" and backend.device == "cpu"
        labels, logits = backend.infer_labels(rgb), backend.infer(rgb)
        expected = ort.infer(rgb)
        with pytest.raises(ShapeError, match="N×H×W×3 uint8"):
            backend.infer(np.zeros((1, 3, 64, 96), np.float32))
    assert labels.dtype == np.uint8 and labels.shape == (2, 64, 96)
    assert np.array_equal(labels, logits.argmax(1))
    assert np.max(np.abs(logits - expected)) <= 1e-3 * np.max(np.abs(expected))


@pytest.mark.slow
def test_inputs_are_checked_against_the_spec(exported, tmp_path: Path) -> None:
    with OpenVinoBackend(exported[1], "cpu", _options(tmp_path)) as backend:
        assert backend.spec.shape_range == RANGE and backend.spec.precision == "fp32"
        with pytest.raises(ShapeError, match="100×100 is not a multiple of 32"):
            backend.infer(np.zeros((1, 3, 100, 100), np.float32))
        with pytest.raises(ShapeError, match="outside the model's supported range"):
            backend.infer(np.zeros((5, 3, 32, 32), np.float32))
    with pytest.raises(InputError, match="was closed"):
        backend.infer(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.slow
def test_second_load_comes_from_the_cache(exported, tmp_path: Path) -> None:
    options = _options(tmp_path)
    with OpenVinoBackend(exported[1], "cpu", options) as first:
        assert not first.loaded_from_cache
    assert any(options.cache_dir.iterdir())
    with OpenVinoBackend(exported[1], "cpu", options) as second:
        assert second.loaded_from_cache
        second.infer(np.zeros((1, 3, 32, 32), np.float32))
    with OpenVinoBackend(exported[1], "cpu", OpenVinoOptions(cache_dir=None)) as uncached:
        assert not uncached.loaded_from_cache


@pytest.mark.slow
def test_bf16_runs_natively_or_is_refused_with_the_reason(exported, tmp_path: Path, native_bf16) -> None:
    checkpoint, plain, _ = exported
    if native_bf16 is not None:
        with pytest.raises(MissingComponentError, match="precision 'bf16' refused") as info:
            OpenVinoBackend(plain, "cpu", _options(tmp_path, "bf16"))
        assert info.value.exit_code == 2
        return
    x = np.random.default_rng(5).standard_normal((1, 3, 96, 128), dtype=np.float32)
    with open_backend(checkpoint, "cpu") as reference, OpenVinoBackend(plain, "cpu", _options(tmp_path, "bf16")) as bf16:
        assert bf16.precision == "bf16"
        expected, logits = reference.infer(x), bf16.infer(x)
    assert logits.dtype == np.float32
    difference = np.max(np.abs(logits - expected)) / np.max(np.abs(expected))
    assert 0 < difference <= 0.05  # really computed in bfloat16 (8-bit mantissa), and close
    assert _agreement(logits, expected) >= 0.95  # random weights: many near-ties; trained models agree more


@pytest.mark.slow
def test_bf16_is_refused_on_a_cpu_without_native_bf16(exported, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ovb, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    with pytest.raises(MissingComponentError, match="none of the native BF16 instructions") as info:
        OpenVinoBackend(exported[1], "cpu", _options(tmp_path, "bf16"))
    assert info.value.exit_code == 2
    assert not (tmp_path / "cache").exists()  # refused before anything was compiled


def test_bf16_support_reads_openvino_capabilities_and_cpu_flags() -> None:
    assert "does not offer BF16" in bf16_unsupported_reason(["FP32", "INT8"], frozenset({"avx512_bf16"}))
    assert "none of the native BF16" in bf16_unsupported_reason(["FP32", "BF16"], frozenset({"avx512f"}))
    assert bf16_unsupported_reason(["FP32", "BF16"], frozenset({"avx512_bf16"})) is None
    assert bf16_unsupported_reason(["FP32", "BF16"], frozenset({"amx_bf16", "amx_tile"})) is None
    assert bf16_unsupported_reason(["BF16"], None) is None  # flags unreadable: OpenVINO's word counts


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == frozenset({"fpu", "avx2", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") is None


@pytest.mark.slow
def test_int8_qdq_model_runs_close_to_its_onnxruntime_result(openvino, random_onnx, precision_voc_dir, tmp_path) -> None:
    from fcn_deploy.precision.calibrate import CalibrationConfig, calibrate_int8

    config = CalibrationConfig(data_dir=precision_voc_dir, num=4, crop=(64, 96), method="minmax", target="cpu",
                               out=tmp_path / "fcn.int8-cpu.onnx", calibration_dir=tmp_path / "calibration")
    int8 = calibrate_int8(random_onnx, config).path
    x = np.random.default_rng(9).standard_normal((1, 3, 64, 96), dtype=np.float32)
    with open_backend(int8, "cpu") as ort, OpenVinoBackend(int8, "cpu", _options(tmp_path)) as ov:
        assert ov.spec.precision == "int8"
        expected, logits = ort.infer(x), ov.infer(x)
    assert np.max(np.abs(logits - expected)) <= 0.1 * np.max(np.abs(expected))
    assert _agreement(logits, expected) >= 0.9


def _without_spec(source: Path, target: Path) -> Path:
    model = onnx.load(str(source))
    kept = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(target))
    return target


@pytest.mark.slow
def test_foreign_and_contradicting_files_are_refused_like_onnxruntime_refuses_them(exported, tmp_path: Path) -> None:
    _, plain, _ = exported
    with pytest.raises(ArtifactError, match="not an fcn-deploy ONNX model"):
        OpenVinoBackend(_without_spec(plain, tmp_path / "foreign.onnx"), "cpu", _options(tmp_path))
    model = onnx.load(str(plain))
    spec = ModelSpec.from_json(next(p.value for p in model.metadata_props if p.key == ONNX_METADATA_KEY))
    wrong = spec.replace(num_classes=19, class_names=spec.class_names[:19], palette=spec.palette[:19])
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            prop.value = wrong.to_json()
    onnx.save(model, str(tmp_path / "edited.onnx"))
    with pytest.raises(ArtifactError, match="has 21 classes, the spec 19"):
        OpenVinoBackend(tmp_path / "edited.onnx", "cpu", _options(tmp_path))
    copy = tmp_path / "copy.onnx"
    shutil.copy(plain, copy)
    document = json.loads(Path(f"{plain}.json").read_text())
    document["spec"]["shape_range"]["opt"] = [2, 64, 64]
    Path(f"{copy}.json").write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="disagree on shape_range"):
        OpenVinoBackend(copy, "cpu", _options(tmp_path))


def test_garbage_file_is_refused(openvino, tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(ArtifactError):
        OpenVinoBackend(path, "cpu", _options(tmp_path))


def test_cuda_and_bad_options_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "fcn.onnx"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="runs on the CPU"):
        OpenVinoBackend(path, "cuda")
    with pytest.raises(InputError, match="unknown OpenVINO precision 'fp16'"):
        OpenVinoOptions(precision="fp16")
    with pytest.raises(InputError, match="threads"):
        OpenVinoOptions(threads=-1)


def test_backend_choice_rejects_what_it_cannot_honour(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="OpenVINO inference precision"):
        BackendChoice("onnxruntime", "bf16")
    with pytest.raises(InputError, match="unknown backend 'openvin'"):
        BackendChoice("openvin")
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(InputError, match="--backend openvino cannot run model.pt"):
        open_backend(checkpoint, "cpu", BackendChoice("openvino"))
    assert BackendChoice("openvino", "bf16").label() == "openvino-bf16"


def test_device_strings_of_the_c_api() -> None:
    assert parse_device_string("cuda") == ("cuda", BackendChoice())
    assert parse_device_string("openvino") == ("cpu", BackendChoice("openvino"))
    assert parse_device_string("openvino:bf16") == ("cpu", BackendChoice("openvino", "bf16"))
    with pytest.raises(InputError, match="unknown device 'openvino:fp16'"):
        parse_device_string("openvino:fp16")


def test_missing_openvino_names_the_extra(openvino_missing, tmp_path: Path) -> None:
    path = tmp_path / "fcn.onnx"
    path.write_bytes(b"")
    with pytest.raises(MissingComponentError, match="openvino") as info:
        OpenVinoBackend(path, "cpu")
    assert "fcn-deploy[openvino]" in (info.value.hint or "")


def test_the_cache_defaults_to_an_absolute_per_user_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FCN_DEPLOY_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert OpenVinoOptions().cache_dir == tmp_path / "xdg" / "fcn-deploy" / "openvino"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert OpenVinoOptions().cache_dir == tmp_path / "home" / ".cache" / "fcn-deploy" / "openvino"
    assert OpenVinoOptions().cache_dir.is_absolute()


def test_the_cache_variable_of_the_c_library_moves_or_turns_off_this_cache_too(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FCN_DEPLOY_CACHE_DIR", "chosen")
    assert OpenVinoOptions().cache_dir == tmp_path / "chosen"  # made absolute: a later chdir does not move it
    monkeypatch.setenv("FCN_DEPLOY_CACHE_DIR", "")
    assert OpenVinoOptions().cache_dir is None


def test_an_unwritable_cache_folder_is_a_warning_and_no_cache(openvino, tiny_fcn: Path, tmp_path: Path,
                                                              capsys) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    with OpenVinoBackend(tiny_fcn, "cpu", OpenVinoOptions(cache_dir=blocker / "cache")) as backend:
        assert not backend.loaded_from_cache
        backend.infer(np.zeros((1, 3, 32, 32), np.float32))
    assert "warning: cannot create the OpenVINO cache folder" in capsys.readouterr().err


def test_a_read_only_cache_folder_is_a_warning_and_no_cache(openvino, tiny_fcn: Path, tmp_path: Path, monkeypatch,
                                                            capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setattr(ovb.os, "access", lambda path, mode: False)  # as for a user without write permission
    with OpenVinoBackend(tiny_fcn, "cpu", OpenVinoOptions(cache_dir=locked)) as backend:
        backend.infer(np.zeros((1, 3, 32, 32), np.float32))
    assert "is not writable; compiling without a cache" in capsys.readouterr().err
    assert not any(locked.iterdir())


def test_release_working_memory_calls_openvinos_release_memory(openvino, tiny_fcn: Path, tmp_path: Path) -> None:
    calls = []
    with OpenVinoBackend(tiny_fcn, "cpu", OpenVinoOptions(cache_dir=None)) as backend:
        backend.infer(np.zeros((1, 3, 32, 32), np.float32))
        compiled = backend._compiled
        backend._compiled = type("Recorder", (), {"release_memory": lambda self: calls.append("release_memory")})()
        backend.release_working_memory()
        backend._compiled = compiled
        backend.release_working_memory()  # the real call runs too
        assert backend.infer(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 21, 32, 32)
    assert calls == ["release_memory"]


def test_the_inference_precisions_are_one_list() -> None:
    from fcn_deploy.runtime import base

    assert ovb.OV_PRECISIONS is base.INFERENCE_PRECISIONS
    assert "INFERENCE_PRECISIONS = " not in Path(ovb.__file__).read_text()


def test_openvino_in_a_process_a_test_starts_records_and_sends_no_usage_data(openvino, private_home: Path) -> None:
    """``import openvino`` starts Intel's telemetry unless the user said no: the tests' home folder says no."""
    env = {name: value for name, value in os.environ.items() if name != "CI"}  # CI=true would say no by itself
    subprocess.run([sys.executable, "-c", "import openvino"], check=True, env=env, timeout=120)
    assert (private_home / "intel").is_dir() and Path.home() == private_home
    assert sorted(p.name for p in (private_home / "intel").iterdir()) == ["openvino_telemetry"]  # no client id
