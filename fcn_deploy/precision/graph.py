"""Graph facts the precision passes share: element types of every value and the upsampling head."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import onnx


# ops that only move or relabel values: the real producer of an output lies behind them
PASSTHROUGH_OPS = ("Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Cast")
# where the walk back from the outputs stops: the convolutional body, and shape reads of it
_HEAD_BOUNDARY_OPS = ("Conv", "Shape")


def tensor_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every typed value (inputs, outputs, value_info, initializers)."""
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes between the last convolutions and the graph outputs, in graph order.

    That is the upsampling head (a ConvTranspose, or its MatMul form with the pads, slices and transposes
    around it), the logits and any ArgMax: found by walking back from every output and stopping at Conv
    nodes and at Shape nodes (shape arithmetic reads no values). FP16 keeps these in FP32 and INT8 leaves
    them unquantised: argmax compares the logits, and the head holds a small share of the FLOPs.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name for t in model.graph.initializer}
    head: set[int] = set()
    pending = [o.name for o in model.graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or id(node) in head or node.op_type in _HEAD_BOUNDARY_OPS:
            continue
        head.add(id(node))
        pending.extend(name for name in node.input if name and name not in initializers)
    return [node.name for node in model.graph.node if id(node) in head]
