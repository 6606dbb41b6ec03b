"""The artifact contract: an artifact and its spec are read and written here, and nowhere else.

The spec travels in an ONNX model's metadata (``fcn_deploy.spec``) and in a JSON sidecar beside every
artifact (``fcn.onnx`` -> ``fcn.onnx.json``). Readers cross-check the three (metadata, sidecar, graph) and
refuse a file whose parts disagree, so a later stage never runs a model under the wrong contract.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.fileio import Place, atomic_path, sha256_file, write_text_atomic
from fcn_deploy.spec import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    import onnx

ONNX_METADATA_KEY = "fcn_deploy.spec"
ONNX_SUFFIX = ".onnx"
ENGINE_SUFFIXES: tuple[str, ...] = (".engine", ".plan")
IR_SUFFIX = ".xml"  # an OpenVINO IR: the graph (.xml) beside its weights (.bin of the same stem)
IR_WEIGHTS_SUFFIX = ".bin"
# where OpenVINO keeps an ONNX file's metadata in a model's runtime info, and so where an IR keeps the spec
OV_METADATA_SECTION = "framework"
EXPORT_HINT = "export the model with 'fcn-deploy export CHECKPOINT'"
# onnx TensorProto element types used by the graph checks
FLOAT, UINT8, INT64, FLOAT16 = 1, 2, 7, 10
_ELEM_NAMES = {FLOAT: "float32", UINT8: "uint8", INT64: "int64", FLOAT16: "float16"}


# --- ONNX metadata (works on any ModelProto; no onnx import needed) -------------------------------


def store_in_onnx(proto: Any, spec: ModelSpec) -> None:
    """Store ``spec`` in an ONNX model's metadata under ONNX_METADATA_KEY, replacing an older value."""
    kept = [p for p in proto.metadata_props if p.key != ONNX_METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=ONNX_METADATA_KEY, value=spec.to_json())


def spec_from_onnx(proto: Any, source: str) -> ModelSpec:
    """The spec in an ONNX model's metadata; ArtifactError for a model fcn-deploy did not export."""
    return spec_from_metadata({prop.key: prop.value for prop in proto.metadata_props}, source)


def spec_from_metadata(metadata: Mapping[str, str], source: str) -> ModelSpec:
    """The spec in an ONNX model's metadata map (from the proto, or from a runtime session's model meta)."""
    if ONNX_METADATA_KEY in metadata:
        return ModelSpec.from_json(metadata[ONNX_METADATA_KEY], source=f"{source} metadata")
    raise ArtifactError(
        f"{source} is not an fcn-deploy ONNX model (no '{ONNX_METADATA_KEY}' metadata)",
        "export it with 'fcn-deploy export CHECKPOINT'; other ONNX models lack the spec "
        "(classes, normalisation, alignment) it needs",
    )


# --- sidecars ------------------------------------------------------------------------------------


def sidecar_path(artifact: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of an artifact: ``fcn.onnx`` -> ``fcn.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def ir_weights_path(ir: str | os.PathLike[str]) -> Path:
    """The weights file OpenVINO reads beside an IR: ``fcn.int8.xml`` -> ``fcn.int8.bin``."""
    return Path(ir).with_suffix(IR_WEIGHTS_SUFFIX)


def with_sidecar(what: str, artifact: str | os.PathLike[str]) -> list[Place]:
    """An artifact and its sidecar (and an IR's weights file) as places a command reads or writes (for
    ``fileio.check_outputs_apart``)."""
    places = [Place(what, Path(artifact)), Place(f"the sidecar of {what}", sidecar_path(artifact))]
    if Path(artifact).suffix.lower() == IR_SUFFIX:
        places.append(Place(f"the weights of {what}", ir_weights_path(artifact)))
    return places


def write_sidecar(
    artifact: str | os.PathLike[str], spec: ModelSpec, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``{"spec": ..., **extra}`` next to ``artifact`` (atomically) and return its path."""
    payload: dict[str, Any] = {"spec": spec.to_dict()}
    payload.update(extra or {})
    path = sidecar_path(artifact)
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(artifact: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, Any]]:
    """Read an artifact's sidecar: the spec and the whole JSON document."""
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ArtifactError(
            f"{artifact} has no sidecar {path.name}",
            "keep the .json file that fcn-deploy wrote next to the artifact, or re-run the stage that made it",
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read sidecar {path} ({exc})",
                            "delete the damaged sidecar and re-run the stage that made the artifact") from exc
    if not isinstance(document, dict):
        raise ArtifactError(f"sidecar {path} holds a JSON {type(document).__name__}, not an object",
                            "delete the damaged sidecar and re-run the stage that made the artifact")
    return ModelSpec.from_dict(document.get("spec", {}), source=str(path)), document


def check_sidecar(path: Path, spec: ModelSpec) -> bool:
    """ArtifactError when the sidecar's spec (or recorded hash) disagrees with the ONNX file.

    Returns True when the sidecar records the file's SHA-256 and it matched: the file is the one fcn-deploy wrote.
    """
    side_spec, document = read_sidecar(path)
    if side_spec != spec:
        ours, theirs = spec.to_dict(), side_spec.to_dict()
        fields = sorted(k for k in ours if ours[k] != theirs.get(k))
        raise ArtifactError(
            f"{path} and its sidecar {sidecar_path(path).name} disagree on {', '.join(fields)}",
            "the sidecar belongs to another export: re-export, or delete the stale sidecar",
        )
    recorded = document.get("onnx_sha256")
    if recorded and recorded != sha256_file(path):
        raise ArtifactError(
            f"{sidecar_path(path).name} was written for a different {path.name} (SHA-256 differs)",
            "re-export, or delete the stale sidecar",
        )
    return bool(recorded)


# --- non-finite weights --------------------------------------------------------------------------------

NON_FINITE_HINT = ("the weights come from a training run that diverged, or the file was damaged: use an earlier "
                   "checkpoint (<arch>-best.pt), or train again with a lower --lr")
_FLOAT_TYPES = {FLOAT, FLOAT16, 11}  # the float element types numpy reads (11: float64); bfloat16 is not checked


def non_finite_message(source: str, names: Sequence[str]) -> str:
    """The one wording of 'these weights hold NaN or infinity', for checkpoints, state dicts and ONNX files."""
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return (f"{source} holds non-finite weights (NaN or infinity) in {len(names)} tensor(s): {shown}; a model with "
            "them predicts nothing useful (every pixel NaN, shown as background)")


def non_finite_initializers(proto: onnx.ModelProto) -> list[str]:
    """Names of the float initializers and Constant values of an ONNX graph that hold a NaN or an infinity."""
    import numpy as np

    numpy_helper = require("onnx.numpy_helper")
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        if node.op_type == "Constant":
            tensors.extend(a.t for a in node.attribute if a.name == "value" and a.HasField("t"))
    return [t.name or "(constant)" for t in tensors
            if t.data_type in _FLOAT_TYPES and not np.isfinite(numpy_helper.to_array(t)).all()]


_FINITE_ONNX_HINT = "make the model again from a checkpoint with finite weights (every stage refuses others)"


def check_finite_onnx(proto: onnx.ModelProto, source: str, hint: str = _FINITE_ONNX_HINT) -> None:
    """ArtifactError when the graph's weights hold a NaN or an infinity."""
    bad = non_finite_initializers(proto)
    if bad:
        raise ArtifactError(non_finite_message(source, bad), hint)


def check_finite_onnx_file(path: Path) -> None:
    """ArtifactError when the weights of the ONNX file at ``path`` hold a NaN or an infinity (parses the file)."""
    onnx = require("onnx")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ArtifactError(f"{path} is not a readable ONNX model ({exc})", EXPORT_HINT) from exc
    check_finite_onnx(proto, str(path))


# --- ONNX artifacts --------------------------------------------------------------------------------


def require_artifact(path: str | os.PathLike[str], what: str = "ONNX model", hint: str = EXPORT_HINT) -> Path:
    """``path`` as a Path when it is a file; the one 'not found' error of every reader otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}", hint)
    return path


def load_onnx(path: str | os.PathLike[str], *, weights: bool = True) -> tuple[onnx.ModelProto, ModelSpec]:
    """An fcn-deploy ONNX model and its spec, checked against its sidecar (where present) and its graph.

    ``weights=False`` leaves external weight files unread (enough for the checks).
    """
    onnx = require("onnx")
    path = require_artifact(path)
    try:
        proto = onnx.load(str(path), load_external_data=weights)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ArtifactError(f"{path} is not a readable ONNX model ({exc})", EXPORT_HINT) from exc
    spec = spec_from_onnx(proto, str(path))
    if sidecar_path(path).is_file():
        check_sidecar(path, spec)
    check_spec_against_graph(proto, spec, str(path))
    return proto, spec


def read_onnx_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """The spec of an fcn-deploy ONNX, cross-checked with its sidecar (if present) and its graph."""
    return load_onnx(path, weights=False)[1]


def save_onnx(
    model: onnx.ModelProto,
    path: str | os.PathLike[str],
    spec: ModelSpec,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Store ``spec`` in the model's metadata, write it atomically, then write its sidecar."""
    onnx = require("onnx")
    check_finite_onnx(model, str(path))
    store_in_onnx(model, spec)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    sidecar = {"onnx_sha256": sha256_file(path)}
    sidecar.update(extra or {})
    write_sidecar(path, spec, sidecar)
    return path


# --- spec against graph ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSignature:
    """A graph input or output as the spec checks see it: name, ONNX element type, dims (None: symbolic)."""

    name: str
    elem_type: int
    dims: tuple[int | None, ...]

    def describe(self) -> str:
        dims = "×".join(str(d) if d is not None else "?" for d in self.dims)
        return f"'{self.name}' {_ELEM_NAMES.get(self.elem_type, f'type {self.elem_type}')} {dims}"


def _signature(value_info: Any) -> TensorSignature:
    """The signature of an ONNX ValueInfoProto."""
    tensor_type = value_info.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    return TensorSignature(value_info.name, tensor_type.elem_type, dims)


def check_spec_against_graph(proto: onnx.ModelProto, spec: ModelSpec, source: str) -> None:
    """ArtifactError when the graph's inputs/outputs contradict the spec (names, rank, dtype, classes)."""
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [_signature(i) for i in proto.graph.input if i.name not in initializers]
    check_spec_against_signatures(inputs, [_signature(o) for o in proto.graph.output], spec, source)


def labels_dtype_of(proto: onnx.ModelProto, spec: ModelSpec) -> str | None:
    """The element type of the graph's labels output ('uint8' or 'int64'), None when the spec names none.

    Recorded in sidecars so that a server declares what an engine built from the graph really returns.
    """
    if not spec.labels_name:
        return None
    for output in proto.graph.output:
        if output.name == spec.labels_name:
            elem_type = _signature(output).elem_type
            return _ELEM_NAMES.get(elem_type, f"type {elem_type}")
    raise ArtifactError(f"the graph has no labels output '{spec.labels_name}' although its spec names one",
                        "re-export it with 'fcn-deploy export'")


def check_spec_against_signatures(
    inputs: Sequence[TensorSignature], outputs: Sequence[TensorSignature], spec: ModelSpec, source: str
) -> None:
    """ArtifactError when a model's inputs/outputs (from its graph or a runtime session) contradict the spec."""
    problems: list[str] = []
    by_name = {o.name: o for o in outputs}
    if [i.name for i in inputs] != [spec.input_name]:
        problems.append(f"inputs are {[i.name for i in inputs]}, the spec names one input '{spec.input_name}'")
    else:
        problems += _input_problems(inputs[0], spec)
    expected = [spec.output_name] + ([spec.labels_name] if spec.labels_name else [])
    if sorted(by_name) != sorted(expected):
        problems.append(f"outputs are {sorted(by_name)}, the spec names {expected}")
    else:
        problems += _output_problems(by_name[spec.output_name], by_name.get(spec.labels_name or ""), spec)
    if problems:
        raise ArtifactError(
            f"{source}: the model spec contradicts the graph: " + "; ".join(problems),
            "the file was modified after export; re-export it with 'fcn-deploy export'",
        )


def _input_problems(value: TensorSignature, spec: ModelSpec) -> list[str]:
    """Rank, dtype and channel count of the image input."""
    allowed = {UINT8} if spec.takes_uint8 else ({FLOAT, FLOAT16} if spec.precision == "fp16" else {FLOAT})
    dims = value.dims
    problems = []
    if value.elem_type not in allowed or len(dims) != 4 or dims[spec.channel_axis] not in (3, None):
        problems.append(f"input {value.describe()} is not {spec.layout_name} (input_format {spec.input_format})")
    return problems


def _output_problems(logits: TensorSignature, labels: TensorSignature | None, spec: ModelSpec) -> list[str]:
    """Rank, dtype and class count of the logits (and labels) outputs."""
    problems = []
    dims = logits.dims
    if logits.elem_type not in (FLOAT, FLOAT16) or len(dims) != 4:
        problems.append(f"output {logits.describe()} is not N×C×H×W float logits")
    elif dims[1] is not None and dims[1] != spec.num_classes:
        problems.append(f"output {logits.describe()} has {dims[1]} classes, the spec {spec.num_classes}")
    if labels is not None and (labels.elem_type not in (UINT8, INT64) or len(labels.dims) != 3):
        problems.append(f"labels output {labels.describe()} is not N×H×W uint8/int64")
    return problems
