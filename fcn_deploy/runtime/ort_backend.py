"""The ONNX Runtime backend: an fcn-deploy ONNX file on the CPU, or on CUDA when it really runs there.

onnxruntime-gpu lists the CUDA provider even where it cannot load (no driver, no device, missing CUDA
libraries) and then silently runs on the CPU. The session's actual providers are therefore checked:
an explicit 'cuda' that cannot be honoured is a MissingComponentError saying why. 'auto' asks the NVIDIA driver
first and tries the CUDA provider only where it reports a device, so a machine without one never loads the CUDA
libraries.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fcn_deploy.contract import TensorSignature, read_onnx_spec, require_artifact
from fcn_deploy.deps import require
from fcn_deploy.devices import check_device, cuda_device_count, driver_reports_cuda_device
from fcn_deploy.errors import ArtifactError, InputError, MissingComponentError
from fcn_deploy.heap import return_freed_heap
from fcn_deploy.runtime.base import Backend
from fcn_deploy.runtime.runtime_spec import checked_runtime_spec
from fcn_deploy.spec import ModelSpec

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
_ORT_DEFAULT_SEVERITY = 2  # warning
_ORT_SILENT_SEVERITY = 4  # fatal only
_ARENA_SAME_AS_REQUESTED = 1  # ONNX Runtime's ArenaExtendStrategy kSameAsRequested (the default doubles)


class OrtBackend(Backend):
    """An fcn-deploy ONNX model in an ONNX Runtime session (device 'auto', 'cpu' or 'cuda')."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], device: str = "auto", *, threads: int = 0) -> None:
        device = check_device(device)
        if threads < 0:
            raise InputError(f"threads must be 0 (ONNX Runtime's default) or positive, got {threads}")
        self.path = require_artifact(path)
        try:
            self._session, self._device = open_session(self.path, device, threads)
        except ArtifactError:
            read_onnx_spec(self.path)  # says what is wrong with a foreign or damaged file, where it can
            raise
        # the spec and the checks come from the session (ONNX Runtime has read the file once already): a foreign
        # or inconsistent file is refused before any inference, without parsing the model again in Python
        super().__init__(session_spec(self._session, self.path))
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        self._input_dtype = np.float16 if self._session.get_inputs()[0].type == "tensor(float16)" else None
        self._output_names = [o.name for o in self._session.get_outputs()]

    @property
    def device(self) -> str:
        return self._device

    def _run(self, batch: np.ndarray, names: list[str], options: Any = None) -> dict[str, np.ndarray]:
        """The named outputs of one session run on a validated batch (FP16-input graphs get float16; logits float32)."""
        feed = batch.astype(self._input_dtype) if self._input_dtype is not None else batch
        values = self._session.run(names, {self.spec.input_name: np.ascontiguousarray(feed)}, options)
        outputs = dict(zip(names, values))
        if self.spec.output_name in outputs:
            outputs[self.spec.output_name] = outputs[self.spec.output_name].astype(np.float32, copy=False)
        return outputs

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch, [self.spec.output_name])[self.spec.output_name]

    _labels_supported = True

    def _infer_labels(self, batch: np.ndarray) -> np.ndarray:
        name = self.spec.labels_name
        return self._run(batch, [name])[name].astype(np.uint8, copy=False)

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every graph output by name (logits as float32, plus labels for --with-argmax exports)."""
        self.require_open()
        self.check_input(batch)
        return self._run(batch, self._output_names)

    def _release_working_memory(self) -> None:
        """Shrink ONNX Runtime's CPU arena: its shrink option takes effect at the end of a run, so the smallest
        input the model takes runs with it (about 240 MiB handed back after a 1024×1024 fcn32s pass, measured)."""
        ort = require("onnxruntime")
        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        count, height, width = self.spec.shape_range.min
        self._run(self.spec.to_model_input(np.zeros((count, height, width, 3), np.uint8)), [self.spec.output_name],
                  options)

    def _release(self) -> None:
        self._session = None


# --- sessions ------------------------------------------------------------------------------------

# ONNX Runtime's type strings for the element types the spec checks use (ONNX TensorProto numbers)
_ORT_ELEM_TYPES = {"tensor(float)": 1, "tensor(uint8)": 2, "tensor(int64)": 7, "tensor(float16)": 10}


def _signature(node_arg: Any) -> TensorSignature:
    """A session input or output as a TensorSignature (unknown types as 0, symbolic dims as None)."""
    dims = tuple(d if isinstance(d, int) else None for d in node_arg.shape)
    return TensorSignature(node_arg.name, _ORT_ELEM_TYPES.get(node_arg.type, 0), dims)


def session_spec(session: Any, path: Path) -> ModelSpec:
    """The spec in the session's model metadata, checked against its sidecar and the session's inputs/outputs."""
    inputs = [_signature(arg) for arg in session.get_inputs()]
    outputs = [_signature(arg) for arg in session.get_outputs()]
    return checked_runtime_spec(session.get_modelmeta().custom_metadata_map, inputs, outputs, path)


def session_options(ort: ModuleType, threads: int = 0, quiet: bool = False) -> Any:
    """CPU-tuned options: all graph optimisations, sequential execution, ONNX Runtime's thread default, and the
    process's shared CPU arena.

    The memory pattern is off: it reserves a second plan-sized block per input shape (87 MiB more peak for a
    1024×1024 fcn32s pass, measured) and saved no time on these graphs.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_mem_pattern = False
    options.intra_op_num_threads = threads
    if shared_cpu_arena(ort):
        options.add_session_config_entry("session.use_env_allocators", "1")
    if quiet:
        options.log_severity_level = _ORT_SILENT_SEVERITY
    return options


@functools.cache
def shared_cpu_arena(ort: ModuleType) -> bool:
    """Register, once per process, a CPU arena that grows by what is asked for, for every session to share.

    Each session's own arena grows to the next power of two: 57 MiB more peak for a 1024×1024 fcn32s pass
    (measured, same speed), and one arena per open session. False where ONNX Runtime refuses the registration
    (then each session keeps its own).
    """
    try:
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(memory, ort.OrtArenaCfg({"arena_extend_strategy": _ARENA_SAME_AS_REQUESTED}))
    except Exception:  # an older onnxruntime without these, or an allocator already registered by the host
        return False
    return True


@contextlib.contextmanager
def _quiet_ort(ort: ModuleType) -> Iterator[None]:
    """Silence ONNX Runtime's process-wide logger (the failed-CUDA-provider noise) for a moment."""
    ort.set_default_logger_severity(_ORT_SILENT_SEVERITY)
    try:
        yield
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)


def _new_session(ort: ModuleType, path: Path, providers: list[str], options: Any) -> Any:
    """InferenceSession, with ONNX Runtime's load failures turned into ArtifactError."""
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ArtifactError(f"ONNX Runtime cannot load {path} ({exc})", "re-export it with 'fcn-deploy export'") from exc
    finally:  # ONNX Runtime frees its parsed model once the session is built: 90 MiB for a 53 MB fcn32s, measured
        return_freed_heap()
    return session


def open_session(path: Path, device: str, threads: int = 0) -> tuple[Any, str]:
    """A session on the requested device and the device it really runs on ('cpu' or 'cuda')."""
    ort = require("onnxruntime")
    cuda_build = CUDA_PROVIDER in ort.get_available_providers()
    if device == "cuda" and not cuda_build:
        raise MissingComponentError(
            f"device 'cuda' requested but this onnxruntime ({ort.__version__}) is a CPU-only build",
            "pip install onnxruntime-gpu (and uninstall onnxruntime), or pass --device cpu",
        )
    if device == "cpu" or not cuda_build or (device == "auto" and not driver_reports_cuda_device()):
        return _new_session(ort, path, [CPU_PROVIDER], session_options(ort, threads)), "cpu"
    _preload_cuda_libraries(ort)
    with _quiet_ort(ort):
        session = _new_session(ort, path, [CUDA_PROVIDER, CPU_PROVIDER], session_options(ort, threads, quiet=True))
    if CUDA_PROVIDER in session.get_providers():
        return session, "cuda"
    if device == "cuda":
        raise MissingComponentError(
            f"device 'cuda' requested but ONNX Runtime cannot use CUDA here: {cuda_unavailable_reason(ort)}",
            "run on a machine with an NVIDIA GPU, driver, CUDA and cuDNN, or pass --device cpu",
        )
    return session, "cpu"  # ONNX Runtime fell back to its CPU provider


def _preload_cuda_libraries(ort: ModuleType) -> None:
    """Let onnxruntime-gpu find CUDA/cuDNN from the nvidia-* pip packages (a no-op where absent)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    with contextlib.redirect_stdout(sys.stderr), contextlib.suppress(Exception):
        preload()


def _loadable(library: str) -> bool:
    """True when the dynamic loader finds ``library``."""
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def cuda_unavailable_reason(ort: ModuleType) -> str:
    """Why ONNX Runtime's CUDA provider did not load: no driver, no device, or missing CUDA libraries."""
    if not sys.platform.startswith("linux"):
        return "the CUDA provider failed to load (check the NVIDIA driver, CUDA and cuDNN installation)"
    if not _loadable("libcuda.so.1"):
        return "no NVIDIA driver is installed (libcuda.so.1 not found), so there is no CUDA device"
    if cuda_device_count() == 0:
        return "the NVIDIA driver reports no usable CUDA device"
    try:
        cuda_version = str(importlib.import_module("onnxruntime.capi.build_and_package_info").cuda_version)
    except (ImportError, AttributeError):
        cuda_version = ""
    major = cuda_version.split(".")[0] if cuda_version else ""
    needed = [f"libcudart.so.{major}", f"libcublasLt.so.{major}"] if major else []
    missing = [lib for lib in needed + ["libcudnn.so.9"] if not _loadable(lib)]
    if missing:
        return (
            f"CUDA libraries not found: {', '.join(missing)} (onnxruntime-gpu {ort.__version__} needs "
            f"CUDA {cuda_version or '12+'} and cuDNN 9; pip install 'fcn-deploy[gpu]' installs them)"
        )
    return "the CUDA provider failed to load although driver, device and libraries were found"
