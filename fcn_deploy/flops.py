"""Analytic FLOP counts of a model for a given input size, from its ONNX graph or its torch module.

Convolutions, transposed convolutions and matrix products are counted once each as 2×MACs (one
multiply and one add per weight use), whatever their weights hold: that is the work the kernels do.
Element-wise ops, pooling and normalisation are ignored (they are a rounding error for an FCN).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

# ONNX ops whose weight tensor is input 1 laid out as (Cout, Cin/groups, kh, kw)
_CONV_OPS = ("Conv", "ConvInteger")
# QLinearConv: x, x_scale, x_zp, w, ... -> weight is input 3
_QLINEAR_CONV_WEIGHT = 3


@dataclass(frozen=True)
class FlopCount:
    """FLOPs (2×MACs) of one forward pass, with the per-op split for reports."""

    total: int
    conv: int
    conv_transpose: int
    matmul: int

    @property
    def gflop(self) -> float:
        """Total in GFLOP (1e9)."""
        return self.total / 1e9


def _conv_macs(output_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> int:
    """MACs of a convolution: every output element reads Cin/groups × kernel-area weights."""
    return math.prod(output_shape) * math.prod(weight_shape[1:])


def _conv_transpose_macs(input_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> int:
    """MACs of a transposed convolution: every input element scatters into Cout/groups × kernel-area outputs."""
    return math.prod(input_shape) * math.prod(weight_shape[1:])


def _matmul_macs(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> int:
    """MACs of (…, M, K) @ (…, K, N) with broadcast batch dimensions: output elements × K."""
    k, m = a_shape[-1], (a_shape[-2] if len(a_shape) > 1 else 1)
    n = b_shape[-1] if len(b_shape) > 1 else 1
    a_batch, b_batch = a_shape[:-2], b_shape[:-2]
    rank = max(len(a_batch), len(b_batch))
    padded_a, padded_b = (1,) * (rank - len(a_batch)) + a_batch, (1,) * (rank - len(b_batch)) + b_batch
    return math.prod(max(x, y) for x, y in zip(padded_a, padded_b)) * m * n * k


# --- ONNX ----------------------------------------------------------------------------------------


def onnx_flops(path: str | os.PathLike[str], input_shape: tuple[int, ...]) -> FlopCount:
    """Count FLOPs of an ONNX model whose first graph input gets the concrete ``input_shape``."""
    onnx = require("onnx")
    source = str(path)
    try:
        model = onnx.load(source, load_external_data=False)  # a private copy: its input shape is set below
    except Exception as exc:  # onnx raises DecodeError and others
        raise ArtifactError(f"cannot read ONNX model {source} ({exc})") from exc
    initializer_names = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializer_names]
    if not inputs:
        raise ArtifactError(f"{source} has no graph input")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ArtifactError(f"{source} takes a rank-{len(dims)} input, got shape {tuple(input_shape)}")
    for dim, value in zip(dims, input_shape):
        dim.ClearField("dim_param")
        dim.dim_value = int(value)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # shape inference raises InferenceError and others
        raise ArtifactError(f"cannot infer the tensor shapes of {source} ({exc})") from exc
    shapes = _known_shapes(inferred)
    conv = conv_transpose = matmul = 0
    for node in inferred.graph.node:
        if node.op_type in _CONV_OPS or node.op_type == "QLinearConv":
            weight = node.input[_QLINEAR_CONV_WEIGHT if node.op_type == "QLinearConv" else 1]
            conv += _conv_macs(_shape(shapes, node.output[0], source), _shape(shapes, weight, source))
        elif node.op_type == "ConvTranspose":
            conv_transpose += _conv_transpose_macs(
                _shape(shapes, node.input[0], source), _shape(shapes, node.input[1], source)
            )
        elif node.op_type in ("MatMul", "Gemm", "MatMulInteger"):
            a, b = _shape(shapes, node.input[0], source), _shape(shapes, node.input[1], source)
            if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
                b = tuple(reversed(b))
            matmul += _matmul_macs(a, b)
    return FlopCount(total=2 * (conv + conv_transpose + matmul), conv=2 * conv,
                     conv_transpose=2 * conv_transpose, matmul=2 * matmul)


def _known_shapes(model) -> dict[str, tuple[int, ...]]:
    """Every tensor name with a fully known static shape: inputs, outputs, value_info, initializers."""
    shapes: dict[str, tuple[int, ...]] = {}
    graph = model.graph
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        if all(d >= 0 for d in dims):
            shapes[info.name] = dims
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _shape(shapes: dict[str, tuple[int, ...]], name: str, source: str) -> tuple[int, ...]:
    """The static shape of tensor ``name``; ArtifactError when shape inference could not resolve it."""
    if name not in shapes:
        raise ArtifactError(f"{source}: the shape of tensor {name!r} is not static, so its FLOPs cannot be counted")
    return shapes[name]


# --- torch ---------------------------------------------------------------------------------------


def torch_flops(model: nn.Module, input_shape: tuple[int, ...]) -> FlopCount:
    """Count FLOPs of a torch module on ``input_shape`` (N, C, H, W), on the meta device (no compute)."""
    torch = require("torch")
    nn = require("torch.nn")
    counts = {"conv": 0, "conv_transpose": 0, "matmul": 0}

    def hook(module, inputs, output) -> None:
        weight = tuple(module.weight.shape)
        if isinstance(module, nn.ConvTranspose2d):
            counts["conv_transpose"] += _conv_transpose_macs(tuple(inputs[0].shape), weight)
        elif isinstance(module, nn.Conv2d):
            counts["conv"] += _conv_macs(tuple(output.shape), weight)
        else:  # Linear: weight is (out, in)
            counts["matmul"] += _matmul_macs(tuple(inputs[0].shape), tuple(reversed(weight)))

    meta_model = copy.deepcopy(model).to("meta")
    handles = [m.register_forward_hook(hook) for m in meta_model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            meta_model(torch.empty(*input_shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    conv, conv_transpose, matmul = counts["conv"], counts["conv_transpose"], counts["matmul"]
    return FlopCount(total=2 * (conv + conv_transpose + matmul), conv=2 * conv,
                     conv_transpose=2 * conv_transpose, matmul=2 * matmul)
