"""``fcn-deploy triton export``: a standard Triton model repository from an fcn-deploy ONNX file, engine or IR.

The repository holds two models:

- ``<name>``: the network itself, ``1/model.onnx`` (platform ``onnxruntime_onnx``), ``1/model.plan`` (platform
  ``tensorrt_plan``, its sidecar carried along as ``1/model.plan.json``) or ``1/model.xml`` + ``1/model.bin``
  (``backend: "openvino"``: Triton's OpenVINO backend, CPU instances; the sidecar as ``1/model.xml.json``; a BF16
  IR's precision hint travels in the IR's runtime info and is stated in ``parameters``), with inputs and outputs
  from the spec (batch through ``max_batch_size``, height and width -1), dynamic batching, an instance group and
  the spec in ``parameters``;
- ``<name>_segment``: the whole segmenter on Triton's Python backend. It takes encoded images and returns the
  palette PNG, the labels and an error text (``fcn_deploy.serving.contract``), running the network either by
  calling ``<name>`` inside Triton (``network_runtime: triton``) or in its own process (``in_process``).

Every config is parsed against Triton's schema and cross-checked with the artifact before the repository is
renamed into place; nothing is left behind on failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fcn_deploy.contract import IR_SUFFIX, ir_weights_path, read_sidecar, sidecar_path, with_sidecar
from fcn_deploy.errors import ArtifactError, InputError, Interrupted
from fcn_deploy.fileio import (
    TEMP_SUFFIX,
    Place,
    check_output_dir,
    check_outputs_apart,
    folder_lock,
    remove_stale_temps,
)
from fcn_deploy.interrupts import signals_interrupt
from fcn_deploy.runtime import BackendChoice, chosen_backend, suffix_backend
from fcn_deploy.serving.contract import (
    ERROR_OUTPUT,
    IMAGE_INPUT,
    LABELS_OUTPUT,
    MASK_OUTPUT,
)
from fcn_deploy.serving.model_config import (
    Enum,
    config_schema,
    data_type_name,
    parameters_of,
    parse_config,
    string_parameters,
    to_pbtxt,
)
from fcn_deploy.serving.triton_versions import check_plan_for_triton
from fcn_deploy.spec import INPUT_UINT8_NHWC, ModelSpec

TritonDevice = Literal["cpu", "gpu"]
NetworkRuntime = Literal["triton", "in_process"]
TRITON_DEVICES: tuple[str, ...] = ("cpu", "gpu")
NETWORK_RUNTIMES: tuple[str, ...] = ("triton", "in_process")
SEGMENT_SUFFIX = "_segment"
TENSORRT_PLATFORM = "tensorrt_plan"
OPENVINO_BACKEND = "openvino"  # Triton's OpenVINO backend (openvino_backend): model.xml + model.bin
CONFIG_NAME = "config.pbtxt"
VERSION = "1"
SPEC_PARAMETER = "fcn_deploy.spec"
PYTHON_MODEL_SHIM = (
    '"""Triton Python-backend entry point of the fcn-deploy segmenter (fcn-deploy must be installed for the\n'
    'Python that runs this backend)."""\n\n'
    "from fcn_deploy.serving.python_model import TritonPythonModel  # noqa: F401\n"
)
# ONNX element types -> Triton data types (the ones fcn-deploy artifacts use)
_ONNX_TO_TRITON = {1: "TYPE_FP32", 2: "TYPE_UINT8", 7: "TYPE_INT64", 10: "TYPE_FP16"}
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(frozen=True)
class RepositoryConfig:
    """Options of ``triton export``; ``max_batch=None`` takes the artifact's maximum batch, ``device=None`` the
    artifact's natural device (gpu for engines, cpu for ONNX)."""

    name: str = "fcn"
    max_batch: int | None = None
    instances: int = 1
    max_queue_delay_us: int = 2000
    device: TritonDevice | None = None
    network_runtime: NetworkRuntime = "triton"
    backend: BackendChoice = BackendChoice()  # the runtime of an in-process network ('auto': by the file's suffix)
    max_pixels: int | None = None
    overwrite: bool = False
    triton_version: str | None = None  # NGC tag of the Triton container: a plan must match its TensorRT
    triton_tensorrt: str | None = None  # that container's TensorRT as the user read it (for a tag not in the table)

    def __post_init__(self) -> None:
        if not self.name or set(self.name) - _NAME_CHARS or self.name.startswith("."):
            raise InputError(f"model name {self.name!r} is not a valid Triton model name",
                             "use letters, digits, '_', '-' and '.' (not leading)")
        if self.max_batch is not None and self.max_batch < 1:
            raise InputError(f"max batch must be positive, got {self.max_batch}")
        if self.instances < 1:
            raise InputError(f"instances must be positive, got {self.instances}")
        if self.max_queue_delay_us < 0:
            raise InputError(f"the queue delay must be 0 or more microseconds, got {self.max_queue_delay_us}")
        if self.triton_tensorrt is not None and self.triton_version is None:
            raise InputError("--triton-tensorrt states the TensorRT version of the container --triton-version names, "
                             "and no --triton-version was given", "give the container's NGC tag with --triton-version")
        if self.device is not None and self.device not in TRITON_DEVICES:
            raise InputError(f"unknown device {self.device!r}", f"use one of: {', '.join(TRITON_DEVICES)}")
        if self.network_runtime not in NETWORK_RUNTIMES:
            raise InputError(f"unknown network runtime {self.network_runtime!r}",
                             f"use one of: {', '.join(NETWORK_RUNTIMES)}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise InputError(f"max_pixels must be positive, got {self.max_pixels}")


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output as Triton sees it: name, TYPE_* data type, dims without the batch axis."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class Artifact:
    """The network file to serve: its kind, spec, tensors and (for engines and IRs) the sidecar document."""

    path: Path
    platform: str  # Triton's platform ('onnxruntime_onnx', 'tensorrt_plan') or backend ('openvino')
    file_name: str  # model.onnx, model.plan or model.xml
    spec: ModelSpec
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    sidecar: dict[str, Any] | None = None
    inference_precision: str | None = None  # an IR's precision hint ('f32', 'bf16'), carried in the IR itself

    @property
    def is_plan(self) -> bool:
        return self.platform == TENSORRT_PLATFORM

    @property
    def is_ir(self) -> bool:
        return self.platform == OPENVINO_BACKEND

    def files(self) -> dict[Path, str]:
        """The files the version folder holds: the network (an IR's weights beside it) and any sidecar."""
        files = {self.path: self.file_name}
        if self.is_ir:
            files[ir_weights_path(self.path)] = str(ir_weights_path(Path(self.file_name)))
        if self.sidecar is not None:
            files[sidecar_path(self.path)] = sidecar_path(Path(self.file_name)).name
        return files

    def runtime_field(self) -> dict[str, str]:
        """How config.pbtxt names what runs the network: a platform, or (OpenVINO) a backend."""
        return {"backend": self.platform} if self.is_ir else {"platform": self.platform}


@dataclass(frozen=True)
class RepositoryResult:
    """What ``export_repository`` wrote."""

    repository: Path
    network: Path  # REPO/<name>
    segment: Path  # REPO/<name>_segment
    platform: str


# --- reading the artifact -----------------------------------------------------------------------


def _batchless(dims: tuple[int | None, ...]) -> tuple[int, ...]:
    """Graph dims without the batch axis, symbolic ones as -1."""
    return tuple(-1 if d is None or d == 0 else int(d) for d in dims[1:])


_LABELS_TO_TRITON = {"uint8": "TYPE_UINT8", "int64": "TYPE_INT64"}


def _engine_tensors(path: Path, spec: ModelSpec, sidecar: dict[str, Any]) -> tuple[tuple[TensorInfo, ...],
                                                                                   tuple[TensorInfo, ...]]:
    """Inputs and outputs of an engine built from ``spec``, the labels in the dtype its build recorded."""
    if spec.input_format == INPUT_UINT8_NHWC:
        image = TensorInfo(spec.input_name, "TYPE_UINT8", (-1, -1, 3))
    else:
        image = TensorInfo(spec.input_name, "TYPE_FP32", (3, -1, -1))
    outputs = [TensorInfo(spec.output_name, "TYPE_FP32", (spec.num_classes, -1, -1))]
    if spec.labels_name:
        labels_dtype = sidecar.get("labels_dtype")
        if labels_dtype not in _LABELS_TO_TRITON:
            raise ArtifactError(f"the sidecar of {path} records labels dtype {labels_dtype!r}, not one of "
                                f"{', '.join(_LABELS_TO_TRITON)}: Triton would refuse a guessed type",
                                "rebuild the engine with 'fcn-deploy build' (it records the labels dtype)")
        outputs.append(TensorInfo(spec.labels_name, _LABELS_TO_TRITON[labels_dtype], (-1, -1)))
    return (image,), tuple(outputs)


def _onnx_tensors(path: Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The graph's real inputs and outputs (names, types, dims) as Triton tensors."""
    from fcn_deploy.deps import require

    onnx = require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in proto.graph.initializer}

    def info(value: Any) -> TensorInfo:
        tensor = value.type.tensor_type
        if tensor.elem_type not in _ONNX_TO_TRITON:
            raise ArtifactError(f"{path}: tensor '{value.name}' has ONNX element type {tensor.elem_type}, "
                                "which fcn-deploy does not serve")
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        return TensorInfo(value.name, _ONNX_TO_TRITON[tensor.elem_type], _batchless(dims))

    inputs = tuple(info(i) for i in proto.graph.input if i.name not in initializers)
    return inputs, tuple(info(o) for o in proto.graph.output)


def _read_ir(path: Path) -> Artifact:
    """An IR's spec (checked against its sidecar's hashes and its ports, as every stage opening it checks), its
    ports as Triton tensors, its sidecar document and the precision hint the IR itself carries."""
    from fcn_deploy.runtime.openvino_backend import IR_HINT, read_ir_signatures

    spec, inputs, outputs, hint = read_ir_signatures(path)

    def info(signature: Any) -> TensorInfo:
        if signature.elem_type not in _ONNX_TO_TRITON:
            raise ArtifactError(f"{path}: port '{signature.name}' has a type fcn-deploy does not serve", IR_HINT)
        return TensorInfo(signature.name, _ONNX_TO_TRITON[signature.elem_type], _batchless(signature.dims))

    return Artifact(path, OPENVINO_BACKEND, "model.xml", spec, tuple(map(info, inputs)), tuple(map(info, outputs)),
                    read_sidecar(path)[1], inference_precision=hint or "f32")


def read_artifact(path: str | os.PathLike[str]) -> Artifact:
    """An fcn-deploy ONNX file (spec checked against its graph), TensorRT engine or OpenVINO IR (with its
    sidecar)."""
    from fcn_deploy.contract import ENGINE_SUFFIXES

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from fcn_deploy.contract import read_onnx_spec

        spec = read_onnx_spec(path)
        inputs, outputs = _onnx_tensors(path)
        return Artifact(path, "onnxruntime_onnx", "model.onnx", spec, inputs, outputs)
    if suffix in ENGINE_SUFFIXES:
        spec, document = read_sidecar(path)
        inputs, outputs = _engine_tensors(path, spec, document)
        return Artifact(path, TENSORRT_PLATFORM, "model.plan", spec, inputs, outputs, document)
    if suffix == IR_SUFFIX:
        return _read_ir(path)
    raise ArtifactError(
        f"{path}: Triton serves ONNX files, TensorRT engines and OpenVINO IRs, not {suffix or 'this file'}",
        "export the checkpoint first: fcn-deploy export CHECKPOINT, then triton export export/fcn.onnx",
    )


# --- the configs --------------------------------------------------------------------------------


def _tensor_fields(tensor: TensorInfo) -> dict[str, Any]:
    return {"name": tensor.name, "data_type": Enum(tensor.data_type), "dims": list(tensor.dims)}


def _spec_parameters(spec: ModelSpec) -> dict[str, str]:
    """The spec in readable parameters, plus the whole spec as JSON."""
    shapes = spec.shape_range
    return {
        "classes": ",".join(spec.class_names),
        "palette": ";".join(",".join(str(c) for c in color) for color in spec.palette),
        "mean": ",".join(f"{v:g}" for v in spec.mean),
        "std": ",".join(f"{v:g}" for v in spec.std),
        "alignment": str(spec.alignment),
        "input_format": spec.input_format,
        "shape_min": "x".join(map(str, shapes.min)),
        "shape_opt": "x".join(map(str, shapes.opt)),
        "shape_max": "x".join(map(str, shapes.max)),
        "precision": spec.precision,
        SPEC_PARAMETER: spec.to_json(),
    }


def _checked_max_batch(config: RepositoryConfig, spec: ModelSpec) -> int:
    """The requested max batch, refused above what the artifact supports."""
    supported = spec.shape_range.max[0]
    if config.max_batch is None:
        return supported
    if config.max_batch > supported:
        raise InputError(f"max batch {config.max_batch} exceeds the model's maximum batch of {supported}",
                         f"use --max-batch {supported} or less, or re-export with a larger shape range")
    return config.max_batch


def _checked_device(config: RepositoryConfig, artifact: Artifact) -> TritonDevice:
    """The instance kind: engines only on a GPU; IRs only on the CPU; ONNX on either."""
    if artifact.is_ir and config.device == "gpu":
        raise InputError("an OpenVINO IR runs on the CPU (Triton's openvino backend), not with --device gpu",
                         "drop --device gpu, or export the ONNX file or the TensorRT engine for a GPU server")
    if artifact.is_plan:
        if config.device == "cpu":
            raise InputError("a TensorRT plan runs on a GPU only, not with --device cpu",
                             "export the ONNX file for a CPU server, or use --device gpu")
        return "gpu"
    return config.device or "cpu"


def network_config(artifact: Artifact, config: RepositoryConfig) -> dict[str, Any]:
    """config.pbtxt values of the network model."""
    device = _checked_device(config, artifact)
    parameters = _spec_parameters(artifact.spec)
    if config.triton_version is not None and not artifact.is_plan:
        raise InputError(f"--triton-version checks the TensorRT version of a plan; {artifact.path.name} is run by "
                         f"{'OpenVINO' if artifact.is_ir else 'ONNX Runtime'}",
                         "drop --triton-version, or export the TensorRT engine")
    if artifact.is_ir:
        parameters.update(ir_precision=str(artifact.sidecar.get("precision", "")),
                          inference_precision=artifact.inference_precision or "f32",
                          openvino_version=str(artifact.sidecar.get("openvino_version", "")))
    elif artifact.sidecar is not None:
        if config.triton_version is not None:
            server = check_plan_for_triton(artifact.path, artifact.sidecar, config.triton_version,
                                           config.triton_tensorrt)
            parameters.update(triton_version=server.tag, triton_tensorrt=server.version,
                              triton_tensorrt_source=server.source)
        for key in ("tensorrt_version", "gpu", "compute_capability"):
            parameters[key] = str(artifact.sidecar.get(key, ""))
    return {
        "name": config.name,
        **artifact.runtime_field(),
        "max_batch_size": _checked_max_batch(config, artifact.spec),
        "input": [_tensor_fields(t) for t in artifact.inputs],
        "output": [_tensor_fields(t) for t in artifact.outputs],
        "dynamic_batching": {"max_queue_delay_microseconds": config.max_queue_delay_us},
        "instance_group": [{"count": config.instances, "kind": Enum("KIND_GPU" if device == "gpu" else "KIND_CPU")}],
        "parameters": string_parameters(parameters),
    }


def segment_tensors() -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The served segmenter's inputs and outputs (see ``fcn_deploy.serving.contract``)."""
    return ((TensorInfo(IMAGE_INPUT, "TYPE_STRING", (1,)),),
            (TensorInfo(MASK_OUTPUT, "TYPE_STRING", (1,)), TensorInfo(LABELS_OUTPUT, "TYPE_UINT8", (-1, -1)),
             TensorInfo(ERROR_OUTPUT, "TYPE_STRING", (1,))))


def _checked_backend(config: RepositoryConfig, artifact: Artifact, device: TritonDevice) -> None:
    """Refuse a backend choice the segmenter model could not honour when Triton loads it.

    Whether the serving machine has OpenVINO and native BF16 is checked when the model loads there (the
    repository may be served elsewhere); what the files and options alone decide is refused here.
    """
    backend = chosen_backend(artifact.path, config.backend)
    if backend == suffix_backend(artifact.path):
        return
    if config.network_runtime != "in_process":
        raise InputError(f"--backend {backend} runs the network inside the segmenter model, but "
                         f"--segment-network {config.network_runtime} runs it as the '{config.name}' model "
                         f"on Triton's {artifact.platform} platform",
                         "add --segment-network in_process, or drop --backend")
    if backend == "openvino" and device == "gpu":
        raise InputError("the OpenVINO backend runs on the CPU, --device gpu was requested",
                         "use --device cpu (the default for ONNX), or drop --backend openvino")


def segment_config(artifact: Artifact, config: RepositoryConfig) -> dict[str, Any]:
    """config.pbtxt values of the Python-backend segmenter model."""
    device = _checked_device(config, artifact)
    _checked_backend(config, artifact, device)
    inputs, outputs = segment_tensors()
    parameters = {
        "network_model": config.name,
        "network_file": artifact.file_name,
        "network_runtime": config.network_runtime,
        "network_backend": config.backend.backend,
        "network_precision": config.backend.precision,
        "network_max_batch": str(_checked_max_batch(config, artifact.spec)),
        "device": "cuda" if device == "gpu" else "cpu",
        "max_pixels": str(config.max_pixels) if config.max_pixels is not None else "",
        SPEC_PARAMETER: artifact.spec.to_json(),
    }
    return {
        "name": config.name + SEGMENT_SUFFIX,
        "backend": "python",
        "max_batch_size": _checked_max_batch(config, artifact.spec),
        "input": [_tensor_fields(t) for t in inputs],
        "output": [_tensor_fields(t) for t in outputs],
        "dynamic_batching": {"max_queue_delay_microseconds": config.max_queue_delay_us},
        "instance_group": [{"count": config.instances, "kind": Enum("KIND_CPU")}],
        "parameters": string_parameters(parameters),
    }


def check_config(text: str, source: str, name: str, inputs: tuple[TensorInfo, ...],
                 outputs: tuple[TensorInfo, ...], platform: str | None = None, backend: str | None = None) -> Any:
    """Parse ``text`` against Triton's schema and check it against the model it describes; returns the message."""
    parsed = parse_config(text, source)
    problems = []
    if parsed.name != name:
        problems.append(f"name is {parsed.name!r}, the model folder is {name!r}")
    if platform is not None and parsed.platform != platform:
        problems.append(f"platform is {parsed.platform!r}, the artifact needs {platform!r}")
    if backend is not None and parsed.backend != backend:
        problems.append(f"backend is {parsed.backend!r}, expected {backend!r}")
    for kind, declared, actual in (("input", parsed.input, inputs), ("output", parsed.output, outputs)):
        described = {t.name: (data_type_name(t.data_type), tuple(t.dims)) for t in declared}
        expected = {t.name: (t.data_type, t.dims) for t in actual}
        if sorted(described) != sorted(expected):
            problems.append(f"{kind}s are {sorted(described)}, the model has {sorted(expected)}")
            continue
        for tensor_name, (data_type, dims) in expected.items():
            got_type, got_dims = described[tensor_name]
            if got_type != data_type:
                problems.append(f"{kind} '{tensor_name}' is {got_type}, the model's is {data_type}")
            if len(got_dims) != len(dims) or any(g != d and -1 not in (g, d) for g, d in zip(got_dims, dims)):
                problems.append(f"{kind} '{tensor_name}' has dims {list(got_dims)}, the model's are {list(dims)}")
    if parsed.max_batch_size < 1:
        problems.append("max_batch_size must be at least 1 (the batch axis is the model's first)")
    if problems:
        raise ArtifactError(f"{source} does not match its model: " + "; ".join(problems),
                            "regenerate it with 'fcn-deploy triton export'")
    return parsed


# --- writing ------------------------------------------------------------------------------------


def _write_model(folder: Path, text: str) -> None:
    folder.joinpath(VERSION).mkdir(parents=True)
    folder.joinpath(CONFIG_NAME).write_text(text, encoding="utf-8")


def export_repository(
    model: str | os.PathLike[str], out: str | os.PathLike[str], config: RepositoryConfig = RepositoryConfig()
) -> RepositoryResult:
    """Write ``<name>`` and ``<name>_segment`` into the repository ``out``, validated, then renamed into place.

    Every location and the config schema are checked before anything is created; temporaries a killed export
    left in ``out`` are removed, and Ctrl-C or SIGTERM removes this export's own.
    """
    model, out = Path(model), Path(out)
    targets = [out / config.name, out / (config.name + SEGMENT_SUFFIX)]
    check_outputs_apart([Place("--out", out), *(Place("the model folder", t, whole=True) for t in targets)],
                        with_sidecar("the model", model))
    check_output_dir(out, "--out")
    _check_targets(targets, config.overwrite)
    artifact = read_artifact(model)
    network_text = to_pbtxt(network_config(artifact, config))
    segment_text = to_pbtxt(segment_config(artifact, config))
    config_schema()  # a missing component stops here, before the repository folder is made
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, wait=True), signals_interrupt(signal.SIGTERM) as received:
        remove_stale_temps(out, recursive=False)
        try:
            _stage_and_rename(artifact, out, targets, network_text, segment_text)
        except KeyboardInterrupt:
            stopped_by = received[-1] if received else "SIGINT"
            raise Interrupted(f"triton export stopped by {stopped_by}; its temporary files were removed",
                              "run it again (add --overwrite if a model folder was replaced)",
                              signal_name=stopped_by) from None
    return RepositoryResult(out, targets[0], targets[1], artifact.platform)


def _check_targets(targets: list[Path], overwrite: bool) -> None:
    """The model folders to write are absent, or (with ``overwrite``) model folders: not files, not links."""
    for target in targets:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            kind = "a link" if target.is_symlink() else "a file"
            raise InputError(f"{target} is {kind}, not a model folder; --overwrite replaces model folders only",
                             f"move {target} away, or pick another --name")
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise InputError(f"{', '.join(map(str, existing))} already exist(s)", "pass --overwrite to replace them")


def _stage_and_rename(artifact: Artifact, out: Path, targets: list[Path], network_text: str,
                      segment_text: str) -> None:
    """Write both models into a temporary folder in ``out``, check them, rename them onto ``targets``."""
    staging = Path(tempfile.mkdtemp(prefix=f".{targets[0].name}.", suffix=TEMP_SUFFIX, dir=out))
    try:
        network_dir, segment_dir = staging / targets[0].name, staging / targets[1].name
        _write_model(network_dir, network_text)
        for source, name in artifact.files().items():
            shutil.copyfile(source, network_dir / VERSION / name)
        _write_model(segment_dir, segment_text)
        (segment_dir / VERSION / "model.py").write_text(PYTHON_MODEL_SHIM, encoding="utf-8")
        # an IR is read back from the repository: its copied .xml and .bin must match the sidecar's hashes
        check_repository_model(network_dir, read_artifact(network_dir / VERSION / artifact.file_name)
                               if artifact.is_ir else artifact)
        check_config(segment_text, str(segment_dir / CONFIG_NAME), segment_dir.name, *segment_tensors(),
                     backend="python")
        for target, staged in zip(targets, (network_dir, segment_dir)):
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_repository_model(folder: Path, artifact: Artifact | None = None) -> Any:
    """Validate ``folder/config.pbtxt`` against the schema and against the artifact in ``folder/1``."""
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise ArtifactError(f"{folder} has no {CONFIG_NAME}")
    if artifact is None:
        names = ("model.onnx", "model.plan", "model.xml")
        files = [folder / VERSION / name for name in names if (folder / VERSION / name).is_file()]
        if not files:
            raise ArtifactError(f"{folder / VERSION} holds none of {', '.join(names)}")
        artifact = read_artifact(files[0])
    parsed = check_config(config_path.read_text(encoding="utf-8"), str(config_path), folder.name, artifact.inputs,
                          artifact.outputs, **artifact.runtime_field())
    if parameters_of(parsed).get(SPEC_PARAMETER) not in (None, artifact.spec.to_json()):
        raise ArtifactError(f"{config_path}: its spec parameter differs from the artifact's spec",
                            "regenerate it with 'fcn-deploy triton export'")
    return parsed


__all__ = ["Artifact", "RepositoryConfig", "RepositoryResult", "check_config", "check_repository_model",
           "export_repository", "network_config", "read_artifact", "segment_config", "segment_tensors"]
