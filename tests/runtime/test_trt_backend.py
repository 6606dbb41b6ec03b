"""The TensorRT backend: sidecar/machine compatibility (pure Python), missing components, and GPU runs."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.errors import ArtifactError, InputError, MissingComponentError
from fcn_deploy.runtime.trt_backend import check_engine_compatible, engine_mismatches

BUILT = {"tensorrt_version": "10.16.1.11", "gpu": "NVIDIA L4", "compute_capability": "8.9"}


def test_matching_machine_has_no_mismatch() -> None:
    assert engine_mismatches(BUILT, "10.16.1.11", "NVIDIA L4", "8.9") == []


@pytest.mark.parametrize(
    ("version", "gpu", "capability", "words"),
    [
        ("11.4.0.106", "NVIDIA L4", "8.9", ["TensorRT 10.16.1.11", "11.4.0.106"]),
        ("10.16.1.11", "NVIDIA A100-SXM4-40GB", "8.0", ["compute capability 8.9", "8.0", "NVIDIA A100"]),
        ("10.16.1.11", "NVIDIA GeForce RTX 4090", "8.9", ["NVIDIA L4", "RTX 4090"]),
    ],
)
def test_mismatch_names_what_differs(version: str, gpu: str, capability: str, words: list[str]) -> None:
    problems = engine_mismatches(BUILT, version, gpu, capability)
    assert problems
    text = "; ".join(problems)
    assert all(word in text for word in words)
    with pytest.raises(ArtifactError, match="rebuild") as caught:
        check_engine_compatible(Path("fcn.fp16.engine"), BUILT, version, {"name": gpu, "compute_capability": capability})
    assert "fcn.fp16.engine" in caught.value.message


def test_sidecar_without_build_facts_is_a_mismatch() -> None:
    assert len(engine_mismatches({}, "10.16.1.11", "NVIDIA L4", "8.9")) == 3


def _engine_with_sidecar(tmp_path: Path, random_onnx: Path) -> Path:
    engine = tmp_path / "fcn.fp32.engine"
    engine.write_bytes(b"not a plan")
    shutil.copy(random_onnx.with_name(random_onnx.name + ".json"), tmp_path / "fcn.fp32.engine.json")
    return engine


def test_without_tensorrt_opening_an_engine_exits_2(random_onnx: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: the missing-component path cannot be exercised")
    from fcn_deploy.runtime import open_backend

    with pytest.raises(MissingComponentError, match="TensorRT") as caught:
        open_backend(_engine_with_sidecar(tmp_path, random_onnx), "auto")
    assert caught.value.exit_code == 2 and "fcn-deploy[tensorrt]" in caught.value.hint


def test_cpu_device_is_refused(random_onnx: Path, tmp_path: Path) -> None:
    from fcn_deploy.runtime.trt_backend import TensorRTBackend

    with pytest.raises(InputError, match="CUDA GPU only"):
        TensorRTBackend(_engine_with_sidecar(tmp_path, random_onnx), "cpu")


# --- GPU: need TensorRT and a CUDA device -----------------------------------------------------------


@pytest.fixture(scope="session")
def gpu_stack():
    """(tensorrt, gpu info), or a skip naming what is missing."""
    from fcn_deploy.runtime.tensorrt_support import require_tensorrt

    try:
        return require_tensorrt()
    except MissingComponentError as exc:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {exc.message}")


@pytest.fixture(scope="module")
def engines(gpu_stack, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """FP32, FP16 and INT8 engines of the trained export (profile batch 1..2, 64..128 px), and its checkpoint."""
    from fcn_deploy.build import BuildConfig, build

    # resolved only now, so that a machine without TensorRT skips before any training
    precision_onnx = request.getfixturevalue("precision_onnx")
    precision_voc_dir = request.getfixturevalue("precision_voc_dir")
    folder = tmp_path_factory.mktemp("engines")
    onnx_path = folder / precision_onnx.name
    for source in (precision_onnx, precision_onnx.with_name(precision_onnx.name + ".json")):
        shutil.copy(source, folder / source.name)
    profile = ((1, 3, 64, 64), (1, 3, 64, 96), (2, 3, 128, 128))
    built = {}
    for precision in ("fp32", "fp16", "int8"):
        config = BuildConfig(precision=precision, calib_data=precision_voc_dir, calib_num=8, calib_crop=(64, 96),  # type: ignore[arg-type]
                             calib_method="minmax", profile=profile, workspace_gib=1.0, skip_parity=True,
                             timing_cache=folder / "timing.cache", calibration_dir=folder, engines_dir=folder)
        built[precision] = build(onnx_path, config).engine
    built["checkpoint"] = request.getfixturevalue("precision_checkpoint")
    return built


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "min_agreement"), [("fp32", 0.999), ("fp16", 0.995), ("int8", 0.98)])
def test_engine_matches_pytorch_across_the_profile(engines, precision: str, min_agreement: float) -> None:
    from fcn_deploy.runtime import open_backend

    engine = engines[precision]
    assert engine.read_bytes()[:4] != b"{\"sp"  # a plain plan, no header of ours
    with open_backend(engine, "cuda") as trt_backend, open_backend(engines["checkpoint"], "cpu") as reference:
        for batch, height, width in ((1, 64, 64), (2, 64, 96), (1, 128, 128), (2, 96, 128)):
            x = np.random.default_rng(height + width).standard_normal((batch, 3, height, width), dtype=np.float32)
            logits, expected = trt_backend.infer(x), reference.infer(x)
            assert logits.shape == expected.shape == (batch, 21, height, width)
            assert np.mean(logits.argmax(1) == expected.argmax(1)) >= min_agreement


@pytest.mark.gpu
def test_engine_sidecar_records_the_build(engines, gpu_stack) -> None:
    from fcn_deploy.contract import read_sidecar

    trt, gpu = gpu_stack
    spec, document = read_sidecar(engines["fp16"])
    assert document["tensorrt_version"] == trt.__version__ and document["gpu"] == gpu["name"]
    assert document["compute_capability"] == gpu["compute_capability"] and document["precision"] == "fp16"
    assert document["profile"]["max"] == [2, 3, 128, 128] and spec.shape_range.max == (2, 128, 128)


@pytest.mark.gpu
def test_engine_from_another_machine_is_refused(engines, tmp_path: Path) -> None:
    import json

    from fcn_deploy.runtime import open_backend

    engine = tmp_path / "other.engine"
    shutil.copy(engines["fp32"], engine)
    document = json.loads(Path(str(engines["fp32"]) + ".json").read_text())
    document["compute_capability"] = "1.0"
    Path(str(engine) + ".json").write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="rebuild"):
        open_backend(engine, "cuda")
