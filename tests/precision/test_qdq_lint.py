"""The Q/DQ linter: TensorRT's explicit-quantisation rules, failures naming the offending nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from fcn_deploy.errors import ArtifactError
from fcn_deploy.precision.qdq_lint import check_qdq, lint_qdq

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

helper, numpy_helper, TP = onnx.helper, onnx.numpy_helper, onnx.TensorProto


def _graph(zero_point: np.ndarray, quantise_output: bool, weight_axis: bool = True, opset: int = 17):
    """x -> Q/DQ -> Conv(weight via per-channel DQ) [-> Q/DQ] -> y."""
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "x_scale"),
        numpy_helper.from_array(zero_point, "x_zp"),
        numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "w_q"),
        numpy_helper.from_array(np.full(4, 0.05, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="input_Q"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="input_DQ"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="weight_DQ",
                         **({"axis": 0} if weight_axis else {})),
        helper.make_node("Conv", ["x_dq", "w"], ["conv" if quantise_output else "y"], name="conv"),
    ]
    if quantise_output:
        nodes += [
            helper.make_node("QuantizeLinear", ["conv", "x_scale", "x_zp"], ["y_q"], name="logits_Q"),
            helper.make_node("DequantizeLinear", ["y_q", "x_scale", "x_zp"], ["y"], name="logits_DQ"),
        ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TP.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [1, 4, 4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_clean_graph_passes() -> None:
    model = _graph(np.array(0, np.int8), quantise_output=False)
    onnx.checker.check_model(model)
    assert lint_qdq(model) == []


def test_bad_graph_is_rejected_naming_each_node(tmp_path: Path) -> None:
    bad = _graph(np.array(128, np.uint8), quantise_output=True, weight_axis=False)
    rules = {(issue.node, issue.rule) for issue in lint_qdq(bad)}
    assert ("input_Q", "zero-point") in rules
    assert ("input_Q", "int8-type") in rules
    assert ("logits_DQ", "float-logits") in rules
    assert ("weight_DQ", "weight-axis") in rules
    path = tmp_path / "bad.onnx"
    onnx.save(bad, str(path))
    with pytest.raises(ArtifactError) as caught:
        check_qdq(path)
    for name in ("input_Q", "input_DQ", "logits_DQ", "weight_DQ"):
        assert name in str(caught.value)  # one detail line per offending node


def test_missing_zero_point_old_opset_and_no_qdq() -> None:
    model = _graph(np.array(0, np.int8), quantise_output=False, opset=12)
    del model.graph.node[0].input[2]
    rules = {(issue.node, issue.rule) for issue in lint_qdq(model)}
    assert ("input_Q", "zero-point") in rules and ("<graph>", "opset") in rules
    plain = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TP.FLOAT, [1])], [helper.make_tensor_value_info("y", TP.FLOAT, [1])]))
    assert [issue.rule for issue in lint_qdq(plain)] == ["has-qdq"]
