"""FP16 conversion: FP16 weights and compute, FP32 I/O and logits path, and the FP16-emulating parity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fcn_deploy.contract import load_onnx, read_sidecar
from fcn_deploy.errors import ArtifactError
from fcn_deploy.precision.fp16 import convert_fp16, emulate_fp16


@pytest.fixture(scope="module")
def fp16(random_onnx: Path, tmp_path_factory: pytest.TempPathFactory):
    return convert_fp16(random_onnx, tmp_path_factory.mktemp("fp16") / "fcn.fp16.onnx")


def _run(path_or_model, x: np.ndarray) -> np.ndarray:
    data = path_or_model.SerializeToString() if hasattr(path_or_model, "SerializeToString") else str(path_or_model)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_fp16_graph_types(fp16, random_onnx: Path) -> None:
    model, spec = load_onnx(fp16.path)
    graph = model.graph
    assert spec.precision == "fp16" and read_sidecar(fp16.path)[0] == spec
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_weights = {n.input[1] for n in graph.node if n.op_type == "Conv"}
    inits = {t.name: t for t in graph.initializer}
    assert conv_weights and all(inits[w].data_type == onnx.TensorProto.FLOAT16 for w in conv_weights)
    producers = {out: node for node in graph.node for out in node.output}
    logits = producers[spec.output_name]
    assert logits.name in fp16.fp32_nodes and inits[logits.input[1]].data_type == onnx.TensorProto.FLOAT
    assert fp16.path.stat().st_size < 0.6 * random_onnx.stat().st_size


def test_fp16_close_to_fp32_and_emulation_rounds(fp16, random_onnx: Path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 96), dtype=np.float32)
    reference = _run(random_onnx, x)
    half = _run(fp16.path, x)
    emulated = _run(emulate_fp16(onnx.load(str(random_onnx))), x)
    scale = np.abs(reference).max()
    assert half.dtype == np.float32 and half.shape == reference.shape
    assert np.abs(half - reference).max() <= 2e-2 * scale
    assert np.abs(emulated - reference).max() <= 2e-2 * scale
    assert np.abs(emulated - half).max() > 0  # the emulation really rounds where the CPU run does not


def test_only_fp32_exports_are_converted(fp16, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="precision 'fp16'"):
        convert_fp16(fp16.path, tmp_path / "again.onnx")


@pytest.mark.slow
def test_fp16_parity_on_the_trained_model(precision_onnx: Path, precision_checkpoint: Path,
                                          precision_voc_dir: Path, tmp_path: Path) -> None:
    from fcn_deploy.parity import ParityConfig
    from fcn_deploy.parity.gate import check_precision

    fp16 = convert_fp16(precision_onnx, tmp_path / "fcn.fp16.onnx")
    result = check_precision(fp16.path, precision_checkpoint, precision_voc_dir,
                             ParityConfig(device="cpu", report=tmp_path / "fp16.md", progress=False))
    print(result.summary())
    assert "emulated" in result.emulated
    assert result.artifact_report is not None and result.artifact_report.argmax_agreement >= 0.995
    assert result.report.argmax_agreement >= 0.995
    assert result.passed
