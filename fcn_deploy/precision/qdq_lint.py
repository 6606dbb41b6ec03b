"""Check an INT8 Q/DQ ONNX against TensorRT's explicit-quantisation rules before any GPU sees it.

TensorRT accepts QuantizeLinear/DequantizeLinear pairs only with int8 data and zero points of 0
(symmetric), per-channel weight scales need an explicit axis, per-channel Q/DQ needs opset >= 13, and
this project keeps the logits in floating point (a quantised output produced ~4% exact top-2 ties).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError
from fcn_deploy.precision.graph import PASSTHROUGH_OPS, tensor_elem_types

if TYPE_CHECKING:  # pragma: no cover
    import onnx

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
MIN_QDQ_OPSET = 13
# weight-consuming op -> the weight axis that holds output channels (ConvTranspose weights are C_in×C_out×k×k)
_WEIGHT_CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1, "Gemm": 0, "MatMul": 1}


@dataclass(frozen=True)
class LintIssue:
    """One broken rule at one node."""

    node: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.node}: {self.rule} ({self.detail})"


def lint_qdq(model: onnx.ModelProto) -> list[LintIssue]:
    """Every TensorRT explicit-quantisation rule the model breaks; an empty list means it passes."""
    graph = model.graph
    issues: list[LintIssue] = []
    qdq_nodes = [n for n in graph.node if n.op_type in QDQ_OPS and n.domain in ("", "ai.onnx")]
    contrib = [n for n in graph.node if n.op_type in QDQ_OPS and n.domain not in ("", "ai.onnx")]
    issues += [LintIssue(_name(n), "standard-domain", f"Q/DQ in domain '{n.domain}' is unknown to TensorRT") for n in contrib]
    if not qdq_nodes and not contrib:
        issues.append(LintIssue("<graph>", "has-qdq", "no QuantizeLinear/DequantizeLinear nodes: not an explicit INT8 model"))
        return issues
    opset = _default_opset(model)
    if opset < MIN_QDQ_OPSET:
        issues.append(LintIssue("<graph>", "opset", f"opset {opset} < {MIN_QDQ_OPSET}; per-channel Q/DQ needs opset 13+"))
    initializers = {t.name: t for t in graph.initializer}
    types = tensor_elem_types(model)
    for node in qdq_nodes:
        issues += _check_zero_point(node, initializers)
        issues += _check_int8_type(node, initializers, types)
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            issues += _check_weight_axis(node, initializers, graph)
    issues += _check_outputs_float(graph)
    return issues


def check_qdq(path: str | os.PathLike[str]) -> None:
    """Raise ArtifactError naming every offending node when the INT8 ONNX at ``path`` breaks a rule."""
    onnx = require("onnx")
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ArtifactError(f"cannot read ONNX model {path} ({exc})") from exc
    issues = lint_qdq(model)
    if issues:
        listing = [str(issue) for issue in issues[:40]]
        more = [f"... and {len(issues) - 40} more"] if len(issues) > 40 else []
        raise ArtifactError(
            f"{path} breaks TensorRT's explicit-quantisation rules at {len(issues)} place(s):",
            "re-run 'fcn-deploy calibrate --target tensorrt' (int8 symmetric, zero points 0, float logits)",
            details=listing + more,
        )


# --- single rules ----------------------------------------------------------------------------------


def _name(node: onnx.NodeProto) -> str:
    return node.name or f"<{node.op_type} -> {node.output[0] if node.output else '?'}>"


def _default_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _check_zero_point(node: onnx.NodeProto, initializers: dict) -> list[LintIssue]:
    """The zero point must be present (else Q's output is uint8) and all zeros."""
    numpy_helper = require("onnx.numpy_helper")
    if len(node.input) < 3 or not node.input[2]:
        if node.op_type == "QuantizeLinear":
            return [LintIssue(_name(node), "zero-point", "no zero point: the output defaults to uint8")]
        return []
    zp_name = node.input[2]
    if zp_name not in initializers:
        return [LintIssue(_name(node), "zero-point", f"zero point '{zp_name}' is not a constant initializer")]
    values = numpy_helper.to_array(initializers[zp_name])
    if np.any(values != 0):
        return [LintIssue(_name(node), "zero-point", f"zero point '{zp_name}' is {values.ravel()[:4].tolist()}, must be 0")]
    return []


def _check_int8_type(node: onnx.NodeProto, initializers: dict, types: dict[str, int]) -> list[LintIssue]:
    """The quantised side (Q output, DQ input) must be int8."""
    onnx = require("onnx")
    int8 = onnx.TensorProto.INT8
    if len(node.input) >= 3 and node.input[2] in initializers:
        elem = initializers[node.input[2]].data_type
    else:
        quantised = node.output[0] if node.op_type == "QuantizeLinear" else node.input[0]
        elem = types.get(quantised, 0)
    if elem and elem != int8:
        name = onnx.TensorProto.DataType.Name(elem)
        return [LintIssue(_name(node), "int8-type", f"quantised type is {name}, TensorRT needs INT8")]
    return []


def _check_weight_axis(node: onnx.NodeProto, initializers: dict, graph: onnx.GraphProto) -> list[LintIssue]:
    """A per-channel weight DQ must set ``axis`` to the consumer's output-channel axis."""
    numpy_helper = require("onnx.numpy_helper")
    scale = initializers.get(node.input[1])
    if scale is None or int(np.prod(scale.dims)) <= 1:
        return []
    axis_attr = [a for a in node.attribute if a.name == "axis"]
    if not axis_attr:
        return [LintIssue(_name(node), "weight-axis", "per-channel weight scale without an explicit 'axis'")]
    axis = axis_attr[0].i
    weight = initializers[node.input[0]]
    if numpy_helper.to_array(scale).size != weight.dims[axis]:
        return [LintIssue(_name(node), "weight-axis", f"axis {axis} has {weight.dims[axis]} channels, scale has {numpy_helper.to_array(scale).size}")]
    issues = []
    for consumer in graph.node:
        if node.output[0] in consumer.input[1:2] and consumer.op_type in _WEIGHT_CHANNEL_AXIS:
            want = _WEIGHT_CHANNEL_AXIS[consumer.op_type]
            if axis != want:
                issues.append(LintIssue(_name(node), "weight-axis", f"axis {axis} but {consumer.op_type} needs {want}"))
    return issues


def _check_outputs_float(graph: onnx.GraphProto) -> list[LintIssue]:
    """No graph output may come out of (or go into) a Q/DQ, directly or through pass-through ops."""
    producers = {out: node for node in graph.node for out in node.output}
    issues = []
    for output in graph.output:
        tensor = output.name
        node = producers.get(tensor)
        while node is not None and node.op_type in PASSTHROUGH_OPS:
            node = producers.get(node.input[0])
        if node is not None and node.op_type in QDQ_OPS:
            issues.append(LintIssue(_name(node), "float-logits", f"graph output '{output.name}' is quantised"))
        for consumer in graph.node:
            if consumer.op_type == "QuantizeLinear" and tensor in consumer.input[:1]:
                issues.append(LintIssue(_name(consumer), "float-logits", f"graph output '{output.name}' is quantised"))
    return issues
