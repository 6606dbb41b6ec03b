"""Reading an FP32 ONNX with its spec, and writing a precision ONNX with spec metadata and sidecar."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.fileio import atomic_path, sha256_file
from fcn_deploy.spec import ModelSpec, spec_from_onnx, store_in_onnx, write_sidecar

if TYPE_CHECKING:  # pragma: no cover
    import onnx


def load_onnx(path: str | os.PathLike[str]) -> tuple[onnx.ModelProto, ModelSpec]:
    """Load an fcn-deploy ONNX model and the spec stored in its metadata."""
    onnx = require("onnx")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX model not found: {path}", "export one first with 'fcn-deploy export', or pass its path")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ArtifactError(f"cannot read ONNX model {path} ({exc})") from exc
    return model, spec_from_onnx(model, str(path))


def save_onnx(
    model: onnx.ModelProto,
    path: str | os.PathLike[str],
    spec: ModelSpec,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Store ``spec`` in the model's metadata, write it atomically, then write its sidecar."""
    onnx = require("onnx")
    store_in_onnx(model, spec)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    sidecar = {"onnx_sha256": sha256_file(path)}
    sidecar.update(extra or {})
    write_sidecar(path, spec, sidecar)
    return path


# ops that only move or relabel values: the real producer of an output lies behind them
PASSTHROUGH_OPS = ("Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Cast")


def tensor_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every typed value (inputs, outputs, value_info, initializers)."""
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def output_producers(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute the graph outputs, walking back through pass-through ops."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    for output in model.graph.output:
        node = producers.get(output.name)
        while node is not None:
            names.append(node.name)
            if node.op_type not in PASSTHROUGH_OPS and node.op_type != "ArgMax":
                break
            node = producers.get(node.input[0])
    return list(dict.fromkeys(names))
