"""FP16 ONNX conversion: FP16 weights and compute, FP32 graph inputs/outputs, overflow-prone ops kept FP32.

Kept in FP32 (with Cast nodes at the borders):
- everything before the first Conv (in-graph preprocessing of uint8 input: /255, -mean, /std),
- the upsampling head, from the last convolutions to the graph outputs (the logits path: the upsampler
  sums many taps, and the argmax over classes compares its values), plus any ArgMax,
- reductions (ReduceSum/ReduceMean/Softmax/...), whose long sums overflow or lose precision in FP16,
- float inputs that are parameters rather than data (Resize scales).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcn_deploy.contract import load_onnx, save_onnx
from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError
from fcn_deploy.fileio import sha256_file
from fcn_deploy.precision.graph import head_nodes, tensor_elem_types
from fcn_deploy.spec import QuantizationInfo

if TYPE_CHECKING:  # pragma: no cover
    import onnx

FP32_OP_TYPES = frozenset(
    {"ReduceSum", "ReduceMean", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Softmax", "LogSoftmax",
     "CumSum", "Range", "RandomNormal", "RandomUniform", "ArgMax"}
)
# op -> input indices that must stay FP32 even inside an FP16 region
_PARAMETER_INPUTS = {"Resize": (2,), "Upsample": (1,)}
_FLOAT_TYPES = (1, 10)  # TensorProto.FLOAT, TensorProto.FLOAT16


@dataclass(frozen=True)
class Fp16Result:
    """What the conversion wrote and which nodes it kept in FP32."""

    path: Path
    fp16_nodes: int
    fp32_nodes: tuple[str, ...]


def convert_fp16(onnx_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Fp16Result:
    """Write the FP16 version of an FP32 fcn-deploy ONNX (spec precision 'fp16', sidecar included)."""
    model, spec = load_onnx(onnx_path)
    if spec.precision != "fp32":
        raise ArtifactError(f"{onnx_path} has precision '{spec.precision}'", "convert the FP32 export, e.g. export/fcn.onnx")
    converted, kept = to_fp16(model)
    notes = "fp32 kept: " + ", ".join(kept)
    new_spec = spec.replace(precision="fp16", quantization=QuantizationInfo(notes=notes))
    path = save_onnx(converted, out, new_spec, {"source_onnx": str(onnx_path), "fp32_nodes": list(kept),
                                                "source_onnx_sha256": sha256_file(onnx_path)})
    return Fp16Result(path, sum(1 for n in converted.graph.node if n.op_type != "Cast") - len(kept), tuple(kept))


def to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Convert a float32 ModelProto to mixed FP16/FP32; returns the model and the nodes kept in FP32."""
    onnx = require("onnx")
    inferred = _inferred_and_named(model)
    elem = tensor_elem_types(inferred)
    keep = _fp32_nodes(inferred)
    new = onnx.ModelProto()
    new.CopyFrom(inferred)
    _rewrite(new, elem, keep)
    del new.graph.value_info[:]
    onnx.checker.check_model(new)
    return new, [n.name for n in inferred.graph.node if n.name in keep]


def _inferred_and_named(model: onnx.ModelProto) -> onnx.ModelProto:
    """A shape-inferred copy whose nodes all have names (the FP32 keep-set is a set of node names)."""
    inferred = require("onnx").shape_inference.infer_shapes(model)
    for index, node in enumerate(inferred.graph.node):
        node.name = node.name or f"{node.op_type}_{index}"
    return inferred


def _fp32_nodes(model: onnx.ModelProto) -> set[str]:
    """Nodes that stay in FP32: preprocessing before the first Conv, output producers, reductions."""
    keep = set(head_nodes(model))
    from_input = {v.name for v in model.graph.input}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            break
        if from_input.intersection(node.input):
            keep.add(node.name)
            from_input.update(node.output)
    keep.update(n.name for n in model.graph.node if n.op_type in FP32_OP_TYPES)
    return keep


def _rewrite(model: onnx.ModelProto, elem: dict[str, int], keep: set[str]) -> None:
    """Retag every float tensor by its producer's precision and put Casts where precisions meet."""
    onnx = require("onnx")
    helper, numpy_helper = onnx.helper, require("onnx.numpy_helper")
    FLOAT, HALF = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    current: dict[str, int] = {v.name: v.type.tensor_type.elem_type for v in graph.input}  # runtime type of each tensor
    half_inits: dict[str, str] = {}
    casts: dict[tuple[str, int], str] = {}
    nodes = []
    for node in graph.node:
        want = FLOAT if node.name in keep else HALF
        for i, name in enumerate(node.input):
            if not name or elem.get(name) not in _FLOAT_TYPES:
                continue
            if i in _PARAMETER_INPUTS.get(node.op_type, ()):
                continue
            if name in inits and want == HALF:
                if name not in half_inits:
                    half_inits[name] = f"{name}__fp16"
                    array = numpy_helper.to_array(inits[name])
                    graph.initializer.append(numpy_helper.from_array(_to_half(array), half_inits[name]))
                node.input[i] = half_inits[name]
            elif name not in inits and current.get(name, FLOAT) != want:
                key = (name, want)
                if key not in casts:
                    casts[key] = f"{name}__to_{'fp16' if want == HALF else 'fp32'}"
                    nodes.append(helper.make_node("Cast", [name], [casts[key]], name=f"Cast_{casts[key]}", to=want))
                node.input[i] = casts[key]
        if want == HALF:
            _retag_node(node, FLOAT, HALF)
        for out in node.output:
            if elem.get(out) in _FLOAT_TYPES:
                current[out] = want
        nodes.append(node)
    for output in graph.output:
        if elem.get(output.name) == FLOAT and current.get(output.name) == HALF:
            raise ArtifactError(f"graph output '{output.name}' would be FP16; its producer must stay FP32")
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    survivors = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(survivors)


def _to_half(array: np.ndarray) -> np.ndarray:
    """Round float32 weights to float16, clipping to its finite range instead of producing inf."""
    finfo = np.finfo(np.float16)
    return np.clip(array, finfo.min, finfo.max).astype(np.float16)


def _retag_node(node: onnx.NodeProto, old: int, new: int) -> None:
    """Inside an FP16 node: Cast(to=float) becomes Cast(to=half); float Constant values become half."""
    numpy_helper = require("onnx.numpy_helper")
    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == old:
            attr.i = new
        if node.op_type in ("Constant", "ConstantOfShape") and attr.name == "value" and attr.t.data_type == old:
            attr.t.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(attr.t)), attr.t.name))


def emulate_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An FP32 graph that rounds like the FP16 one: FP16-rounded weights, every FP16-region tensor cast to
    float16 and back. ONNX Runtime's CPU provider upcasts FP16 graphs (and drops such cast pairs itself),
    so only this makes a CPU run show the effect of FP16 storage between layers.
    """
    onnx = require("onnx")
    helper, numpy_helper = onnx.helper, require("onnx.numpy_helper")
    FLOAT, HALF = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    emulated = _inferred_and_named(model)
    graph = emulated.graph
    elem = tensor_elem_types(emulated)
    inits = {t.name: t for t in graph.initializer}
    keep = _fp32_nodes(emulated)
    half_region = [n for n in graph.node if n.name not in keep]
    for name in {x for n in half_region for x in n.input if x in inits and inits[x].data_type == FLOAT}:
        rounded = _to_half(numpy_helper.to_array(inits[name])).astype(np.float32)
        inits[name].CopyFrom(numpy_helper.from_array(rounded, name))
    produced_half = {o for n in half_region for o in n.output if elem.get(o) == FLOAT}
    fed_half = {x for n in half_region for x in n.input if elem.get(x) == FLOAT and x not in inits}
    renamed: dict[str, str] = {}
    nodes = []
    for name in [v.name for v in graph.input if v.name in fed_half]:
        nodes += _round_trip(helper, name, FLOAT, HALF, renamed)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
        nodes.append(node)
        for out in node.output:
            if out in produced_half or (out in fed_half and node.name in keep):
                nodes += _round_trip(helper, out, FLOAT, HALF, renamed)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return emulated


def _round_trip(helper: Any, name: str, full: int, half: int, renamed: dict[str, str]) -> list:
    """Cast ``name`` to float16 and back; later consumers read the rounded copy."""
    renamed[name] = f"{name}__fp16_rounded"
    return [
        helper.make_node("Cast", [name], [f"{name}__fp16"], name=f"EmulateFp16_{name}_a", to=half),
        helper.make_node("Cast", [f"{name}__fp16"], [renamed[name]], name=f"EmulateFp16_{name}_b", to=full),
    ]
