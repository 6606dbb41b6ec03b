"""The OpenVINO backend: an fcn-deploy ONNX file (FP32, FP16 or INT8 Q/DQ) or OpenVINO IR (``.xml`` + ``.bin``
from ``fcn-deploy build --target openvino``) compiled for the CPU by OpenVINO.

``precision`` is OpenVINO's inference precision hint: 'f32' computes in float32, 'bf16' lets the CPU plugin run
convolutions and matrix multiplies in bfloat16 (no calibration data needed). BF16 is only accepted on a CPU that
computes it natively (AVX-512 BF16 or AMX); elsewhere it is refused with the reason instead of being emulated
slowly. An IR built for BF16 carries the hint in its runtime info and runs in BF16 (``precision`` 'f32', the
default, leaves the IR's own hint in place). The IR keeps the spec where OpenVINO puts an ONNX file's metadata
(runtime info ``framework`` / ``fcn_deploy.spec``), so it is read the same way as the ONNX. Compiled models go to
OpenVINO's cache (``CACHE_DIR``, a per-user cache folder by default), so the second load skips compilation; a
cache folder that cannot be written is a warning and no cache, never a refused model.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.contract import (
    IR_SUFFIX,
    ONNX_METADATA_KEY,
    OV_METADATA_SECTION,
    TensorSignature,
    check_spec_against_signatures,
    ir_weights_path,
    read_onnx_spec,
    read_sidecar,
    require_artifact,
    spec_from_metadata,
)
from fcn_deploy.deps import require
from fcn_deploy.devices import check_device
from fcn_deploy.errors import ArtifactError, InputError, MissingComponentError
from fcn_deploy.fileio import sha256_file
from fcn_deploy.progress import log
from fcn_deploy.runtime.base import INFERENCE_PRECISIONS, Backend
from fcn_deploy.runtime.runtime_spec import checked_runtime_spec
from fcn_deploy.spec import ModelSpec

OV_PRECISIONS = INFERENCE_PRECISIONS  # one list, kept in runtime.base
CPU_DEVICE = "CPU"
# where an IR keeps the compile properties OpenVINO applies by itself (the C++ library gets BF16 from it too)
RUNTIME_OPTIONS_SECTION = "runtime_options"
PRECISION_HINT = "INFERENCE_PRECISION_HINT"
IR_HINT = "rebuild it with 'fcn-deploy build --target openvino'"
#: CPU flags (as /proc/cpuinfo names them) that mean native BF16 arithmetic
BF16_CPU_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")
_CPUINFO = Path("/proc/cpuinfo")
# OpenVINO element type names -> ONNX TensorProto numbers the spec checks use
_OV_ELEM_TYPES = {"f32": 1, "u8": 2, "i64": 7, "f16": 10}


#: moves the compiled-model cache (set and empty: no cache), for this package and the native C library alike
CACHE_DIR_VARIABLE = "FCN_DEPLOY_CACHE_DIR"


def default_cache_dir() -> Path | None:
    """The folder for OpenVINO's compiled models: $FCN_DEPLOY_CACHE_DIR (set and empty: None, no cache), else the
    per-user $XDG_CACHE_HOME/fcn-deploy/openvino (absolute; default ~/.cache), the native library's too, so every
    workspace of one user shares it and no run writes a cache into the current folder."""
    chosen = os.environ.get(CACHE_DIR_VARIABLE)
    if chosen is not None:
        return Path(chosen).absolute() if chosen else None
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return (root / "fcn-deploy" / "openvino").absolute()


@dataclass(frozen=True)
class OpenVinoOptions:
    """How to compile: inference precision hint, cache folder (None: no cache), threads (0: OpenVINO's default)."""

    precision: str = "f32"
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    threads: int = 0

    def __post_init__(self) -> None:
        if self.precision not in OV_PRECISIONS:
            raise InputError(f"unknown OpenVINO precision {self.precision!r}", f"use one of: {', '.join(OV_PRECISIONS)}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise InputError(f"threads must be 0 (OpenVINO's default) or positive, got {self.threads}")


def cpu_flags(cpuinfo: Path = _CPUINFO) -> frozenset[str] | None:
    """The CPU feature flags the kernel reports (Linux), or None where they cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def bf16_unsupported_reason(capabilities: Collection[str], flags: frozenset[str] | None) -> str | None:
    """Why BF16 cannot run natively here (None: it can), from OpenVINO's CPU capabilities and the CPU flags."""
    if "BF16" not in capabilities:
        return f"OpenVINO's CPU plugin does not offer BF16 here (its OPTIMIZATION_CAPABILITIES: {', '.join(capabilities)})"
    if flags is not None and not flags.intersection(BF16_CPU_FLAGS):
        return f"this CPU has none of the native BF16 instructions ({' or '.join(BF16_CPU_FLAGS)}), BF16 would be emulated"
    return None


def _require_openvino() -> Any:
    """The openvino module, or MissingComponentError naming the extra."""
    return require("openvino")


def _rt_section(model: Any, section: str) -> dict[str, str]:
    """One section of the model's runtime info as strings (empty when absent)."""
    info = model.get_rt_info()
    found = info[section] if section in info else {}
    items = found.items() if hasattr(found, "items") else []
    return {str(key): value.astype(str) if hasattr(value, "astype") else str(value) for key, value in items}


def _metadata(model: Any) -> dict[str, str]:
    """The ONNX metadata map OpenVINO keeps in the model's runtime info ('framework'); an IR keeps it there too."""
    return _rt_section(model, OV_METADATA_SECTION)


def ir_precision_hint(model: Any) -> str | None:
    """The inference precision an IR asks for in its runtime info ('bf16'), or None."""
    hint = _rt_section(model, RUNTIME_OPTIONS_SECTION).get(PRECISION_HINT)
    return {"bf16": "bf16", "bfloat16": "bf16", "f32": "f32", "float32": "f32"}.get(hint or "", None)


def _port_name(port: Any, metadata: dict[str, str]) -> str:
    """The port's name as the ONNX graph has it: a tensor may carry several names after OpenVINO's fusions."""
    names = port.get_names()
    spec_json = metadata.get(ONNX_METADATA_KEY, "")
    named = sorted(name for name in names if f'"{name}"' in spec_json)
    return named[0] if named else port.get_any_name()


def _signature(port: Any, metadata: dict[str, str]) -> TensorSignature:
    """An OpenVINO model input or output as a TensorSignature (dynamic dims as None)."""
    dims = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    elem = _OV_ELEM_TYPES.get(port.get_element_type().get_type_name(), 0)
    return TensorSignature(_port_name(port, metadata), elem, dims)


class OpenVinoBackend(Backend):
    """An fcn-deploy ONNX model compiled by OpenVINO for the CPU (device 'auto' or 'cpu')."""

    name = "openvino"
    _labels_supported = True

    def __init__(self, path: str | os.PathLike[str], device: str = "auto", options: OpenVinoOptions = OpenVinoOptions()) -> None:
        if check_device(device) == "cuda":
            raise InputError("the OpenVINO backend runs on the CPU, device 'cuda' was requested",
                             "pass --device cpu (or auto), or use --backend onnxruntime/tensorrt on CUDA")
        self.path = require_artifact(path)
        is_ir = self.path.suffix.lower() == IR_SUFFIX
        ov = _require_openvino()
        core = ov.Core()
        model = _read_ir(core, self.path) if is_ir else _read_model(core, self.path)
        hint = ir_precision_hint(model) if is_ir else None
        if options.precision == "f32" and hint is not None:
            options = OpenVinoOptions(precision=hint, cache_dir=options.cache_dir, threads=options.threads)
        self.options = options
        if options.precision == "bf16":
            reason = bf16_unsupported_reason(core.get_property(CPU_DEVICE, "OPTIMIZATION_CAPABILITIES"), cpu_flags())
            if reason is not None:
                raise MissingComponentError(f"precision 'bf16' refused: {reason}",
                                            "use --precision f32 (or an f32 IR), or an INT8 model for speed")
        metadata = _metadata(model)
        inputs = [_signature(p, metadata) for p in model.inputs]
        outputs = [_signature(p, metadata) for p in model.outputs]
        spec = (checked_ir_spec(metadata, inputs, outputs, self.path) if is_ir
                else checked_runtime_spec(metadata, inputs, outputs, self.path))
        super().__init__(spec)
        self._compiled = core.compile_model(model, CPU_DEVICE, _compile_config(options))
        self._request = self._compiled.create_infer_request()
        self._input_dtype = np.float16 if model.inputs[0].get_element_type().get_type_name() == "f16" else None
        self._outputs = {name: port for port in self._compiled.outputs for name in port.get_names()}

    @property
    def precision(self) -> str:
        """The inference precision the compiled model really uses ('f32' or 'bf16')."""
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return str(hint.get_type_name() if hasattr(hint, "get_type_name") else hint)

    @property
    def loaded_from_cache(self) -> bool:
        """True when OpenVINO took the compiled model from the cache instead of compiling it."""
        return bool(self._compiled.get_property("LOADED_FROM_CACHE"))

    def _run(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """The named outputs (copied out of OpenVINO's buffers) of one inference on a validated batch."""
        feed = batch.astype(self._input_dtype) if self._input_dtype is not None else np.ascontiguousarray(batch)
        self._request.infer({0: feed}, share_inputs=True)
        return {name: np.array(self._request.get_tensor(self._outputs[name]).data) for name in names}

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        name = self.spec.output_name
        return self._run(batch, [name])[name].astype(np.float32, copy=False)

    def _infer_labels(self, batch: np.ndarray) -> np.ndarray:
        name = self.spec.labels_name
        return self._run(batch, [name])[name].astype(np.uint8, copy=False)

    def _release_working_memory(self) -> None:
        """OpenVINO's CompiledModel.release_memory: the CPU plugin frees its intermediate buffers until the next run."""
        self._compiled.release_memory()

    def _release(self) -> None:
        self._request = None
        self._compiled = None


def checked_ir_spec(metadata: dict[str, str], inputs: list[TensorSignature], outputs: list[TensorSignature],
                    path: Path) -> ModelSpec:
    """An IR's spec (runtime info), checked against its sidecar, whose SHA-256 of the .xml and the .bin must match
    (the build refuses non-finite weights; a pair changed since is refused), and against the model's signatures."""
    spec = spec_from_metadata(metadata, str(path))
    side_spec, document = read_sidecar(path)
    if side_spec != spec:
        raise ArtifactError(f"{path} and its sidecar disagree on the model's spec", IR_HINT)
    for file, key in ((path, "xml_sha256"), (ir_weights_path(path), "bin_sha256")):
        if document.get(key) != sha256_file(file):
            raise ArtifactError(f"{file.name} is not the file its sidecar describes (SHA-256 differs or not recorded)",
                                IR_HINT)
    check_spec_against_signatures(inputs, outputs, spec, str(path))
    return spec


def read_ir_signatures(path: Path) -> tuple[ModelSpec, list[TensorSignature], list[TensorSignature], str | None]:
    """An IR's checked spec, its inputs and outputs and the precision hint in its runtime info, without compiling it
    (what a model repository needs to describe it)."""
    core = _require_openvino().Core()
    model = _read_ir(core, path)
    metadata = _metadata(model)
    inputs = [_signature(p, metadata) for p in model.inputs]
    outputs = [_signature(p, metadata) for p in model.outputs]
    return checked_ir_spec(metadata, inputs, outputs, path), inputs, outputs, ir_precision_hint(model)


def _read_ir(core: Any, path: Path) -> Any:
    """OpenVINO's model of an IR (.xml and its .bin); a missing weights file or an unreadable IR is an ArtifactError."""
    weights = ir_weights_path(path)
    if not weights.is_file():
        raise ArtifactError(f"the IR {path} has no weights file {weights.name} beside it", IR_HINT)
    try:
        return core.read_model(str(path), str(weights))
    except Exception as exc:  # openvino raises RuntimeError subclasses of its own
        raise ArtifactError(f"OpenVINO cannot read the IR {path} ({exc})", IR_HINT) from exc


def _read_model(core: Any, path: Path) -> Any:
    """OpenVINO's model of an ONNX file; a file it cannot read is an ArtifactError saying what is wrong."""
    try:
        return core.read_model(str(path))
    except Exception as exc:  # openvino raises RuntimeError subclasses of its own
        read_onnx_spec(path)  # names the problem of a foreign or damaged file, where it can
        raise ArtifactError(f"OpenVINO cannot read {path} ({exc})", "re-export it with 'fcn-deploy export'") from exc


def _compile_config(options: OpenVinoOptions) -> dict[str, Any]:
    """Compile properties: one latency-oriented stream, the precision hint, the cache and the thread count."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": options.precision}
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = options.threads
    if options.cache_dir is not None and usable_cache_dir(options.cache_dir):
        config["CACHE_DIR"] = str(options.cache_dir)
    return config


def usable_cache_dir(folder: Path) -> bool:
    """Create the cache folder as needed; False (with a warning) when it cannot be created or written: the model
    is then compiled without a cache, never refused."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log(f"warning: cannot create the OpenVINO cache folder {folder} ({exc}); compiling without a cache")
        return False
    if not os.access(folder, os.W_OK | os.X_OK):
        log(f"warning: the OpenVINO cache folder {folder} is not writable; compiling without a cache")
        return False
    return True


def openvino_version() -> str:
    """The installed OpenVINO version, or why there is none (for reports)."""
    try:
        return str(_require_openvino().get_version())
    except MissingComponentError as exc:
        return f"not installed ({exc.message})"


__all__ = ["BF16_CPU_FLAGS", "OV_PRECISIONS", "OpenVinoBackend", "OpenVinoOptions", "bf16_unsupported_reason",
           "checked_ir_spec", "cpu_flags", "default_cache_dir", "ir_precision_hint", "openvino_version"]
