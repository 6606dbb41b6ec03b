"""TensorRT runtime backend: a serialized engine run with execute_async_v3 on its own CUDA stream.

Memory and streams come from cuda-python (``cuda.bindings.runtime``). Device buffers (one per I/O tensor)
are reused and grown on demand; pinned host staging buffers exist only for the input and the outputs
actually read; batches go up to the profile's maximum. Before deserialising, the engine's sidecar is
compared with the plan's hash, the running TensorRT version and the GPU, so a plan built elsewhere gives a
clear ArtifactError instead of a failure inside TensorRT; the plan is read once, and the bytes hashed are the
bytes deserialised.

Threads: one execution context, its stream and its pinned buffers serve one batch at a time. A lock held
from setting the input shape to copying the result out of the pinned buffer serialises callers, so the
C API, ``serve`` and any other multi-threaded caller may share one backend; for concurrent runs on the GPU,
open one backend per worker (``serve --instances``), each with its own context and stream.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.contract import read_sidecar
from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.runtime.base import Backend
from fcn_deploy.runtime.tensorrt_support import (
    ENGINE_FORMAT,
    CudaError,
    cuda_call,
    native_handle,
    require_tensorrt,
    tensorrt_logger,
)
from fcn_deploy.spec import ModelSpec


def engine_mismatches(sidecar: Mapping[str, Any], tensorrt_version: str, gpu_name: str,
                      compute_capability: str) -> list[str]:
    """What differs between the machine an engine was built on (its sidecar) and this one."""
    problems = []
    built = str(sidecar.get("tensorrt_version", ""))
    if built != tensorrt_version:
        problems.append(f"built with TensorRT {built or '?'}, running TensorRT {tensorrt_version}")
    if str(sidecar.get("compute_capability", "")) != compute_capability:
        problems.append(f"built for compute capability {sidecar.get('compute_capability', '?')}, "
                        f"this GPU has {compute_capability}")
    if str(sidecar.get("gpu", "")) != gpu_name:
        problems.append(f"built on GPU '{sidecar.get('gpu', '?')}', this GPU is '{gpu_name}'")
    return problems


REBUILD_HINT = "rebuild the engine with 'fcn-deploy build'; it writes the plan and its sidecar together"


def check_engine_format(path: Path, sidecar: Mapping[str, Any]) -> None:
    """ArtifactError when the sidecar is not one this package writes for engines (format, plan hash)."""
    found = sidecar.get("format")
    if found != ENGINE_FORMAT:
        raise ArtifactError(f"the sidecar of {path} has engine format {found!r}; this fcn-deploy reads "
                            f"{ENGINE_FORMAT!r}", REBUILD_HINT)
    if not sidecar.get("engine_sha256"):
        raise ArtifactError(f"the sidecar of {path} records no engine_sha256, so it cannot be tied to the plan",
                            REBUILD_HINT)


def check_engine_matches_sidecar(path: Path, plan: bytes, sidecar: Mapping[str, Any]) -> None:
    """ArtifactError when the sidecar records another plan than ``plan`` (the bytes read from ``path``)."""
    if sidecar.get("engine_sha256") != hashlib.sha256(plan).hexdigest():
        raise ArtifactError(f"the sidecar of {path} describes another plan (its recorded hash differs)", REBUILD_HINT)


def check_engine_compatible(path: Path, sidecar: Mapping[str, Any], tensorrt_version: str, gpu: Mapping[str, Any]) -> None:
    """ArtifactError saying to rebuild when the engine was built for another TensorRT or GPU."""
    problems = engine_mismatches(sidecar, tensorrt_version, str(gpu.get("name", "")),
                                 str(gpu.get("compute_capability", "")))
    if problems:
        raise ArtifactError(
            f"{path} does not fit this machine: " + "; ".join(problems),
            "TensorRT engines are specific to the TensorRT version and GPU: rebuild it here with "
            "'fcn-deploy build --fp32|--fp16|--int8'",
        )


class _DeviceBuffer:
    """A device allocation that grows on demand (never shrinks) and frees itself on close."""

    _alloc, _free = "cudaMalloc", "cudaFree"

    def __init__(self, cudart: Any) -> None:
        self.cudart, self.ptr, self.size = cudart, 0, 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.size:
            self.close()
            self.ptr = cuda_call(self._alloc, getattr(self.cudart, self._alloc)(nbytes))
            self.size = nbytes
        return self.ptr

    def close(self) -> None:
        if self.ptr:
            cuda_call(self._free, getattr(self.cudart, self._free)(self.ptr))
            self.ptr, self.size = 0, 0


class _PinnedBuffer(_DeviceBuffer):
    """Page-locked host memory, viewed as a numpy array of the requested shape."""

    _alloc, _free = "cudaMallocHost", "cudaFreeHost"

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        raw = (ctypes.c_byte * max(nbytes, 1)).from_address(self.ensure(max(nbytes, 1)))
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class TensorRTBackend(Backend):
    """A TensorRT engine (.engine/.plan with its JSON sidecar) on a CUDA GPU."""

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], device: str = "auto") -> None:
        if device == "cpu":
            raise InputError("a TensorRT engine runs on a CUDA GPU only, not with --device cpu",
                             "use the ONNX model for CPU inference, or --device cuda/auto")
        self.path = Path(path)
        spec, document = read_sidecar(self.path)
        super().__init__(spec)
        trt, gpu = require_tensorrt()
        check_engine_format(self.path, document)
        check_engine_compatible(self.path, document, trt.__version__, gpu)
        plan = self.path.read_bytes()  # hashed and deserialised: the same bytes
        check_engine_matches_sidecar(self.path, plan, document)
        self._trt = trt
        self._lock = threading.Lock()
        self._cudart = cudart = require("cuda.bindings.runtime")
        cuda_call("cudaSetDevice", cudart.cudaSetDevice(int(gpu.get("device", 0))))
        try:
            self._open(spec, plan)
        except BaseException:
            self._release_quietly()
            raise

    def _open(self, spec: ModelSpec, plan: bytes) -> None:
        """Deserialise the engine and create its context, stream and buffers (``__init__`` frees them on failure)."""
        trt, cudart = self._trt, self._cudart
        self._runtime = trt.Runtime(tensorrt_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise ArtifactError(f"TensorRT could not deserialise {self.path}", "rebuild it with 'fcn-deploy build'")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ArtifactError(f"TensorRT could not create an execution context for {self.path}")
        self._stream = cuda_call("cudaStreamCreate", cudart.cudaStreamCreate())
        self._stream_handle = native_handle(self._stream)
        self._names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._outputs = [n for n in self._names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._device_buffers = {n: _DeviceBuffer(cudart) for n in self._names}
        self._host_buffers: dict[str, _PinnedBuffer] = {}  # the input and the outputs read back, made on first use
        self._max_batch = int(self._engine.get_tensor_profile_shape(spec.input_name, 0)[2][0])

    @property
    def device(self) -> str:
        return "cuda"

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))

    _labels_supported = True

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:  # the copy leaves the pinned buffer before another caller may reuse it
            return np.array(self._execute(batch, self.spec.output_name), dtype=np.float32, copy=True)

    def _infer_labels(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._execute(batch, self.spec.labels_name).astype(np.uint8, copy=True)

    def _host_view(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The pinned host buffer of tensor ``name`` as an array of ``shape`` (allocated on first use)."""
        if name not in self._host_buffers:
            self._host_buffers[name] = _PinnedBuffer(self._cudart)
        return self._host_buffers[name].view(shape, self._dtype(name))

    def _set_address(self, name: str, address: int) -> None:
        """Bind tensor ``name`` to device memory; ArtifactError when TensorRT refuses."""
        if not self._context.set_tensor_address(name, address):
            raise ArtifactError(f"TensorRT refused the device address of tensor '{name}' of {self.path}")

    def _execute(self, batch: np.ndarray, wanted: str) -> np.ndarray:
        """Run the engine on ``batch`` and copy back only output ``wanted`` (a view of its pinned buffer).

        The caller holds ``self._lock`` until it has copied the result out.
        """
        cudart, context, spec = self._cudart, self._context, self.spec
        if batch.shape[0] > self._max_batch:
            raise InputError(f"batch {batch.shape[0]} exceeds the engine profile's maximum {self._max_batch}")
        if not context.set_input_shape(spec.input_name, tuple(batch.shape)):
            raise InputError(f"the engine does not accept input shape {tuple(batch.shape)}")
        host_in = self._host_view(spec.input_name, tuple(batch.shape))
        host_in[...] = batch
        d_in = self._device_buffers[spec.input_name].ensure(host_in.nbytes)
        self._set_address(spec.input_name, d_in)
        for name in self._outputs:  # every output needs device memory; only ``wanted`` is copied back
            shape = tuple(context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * self._dtype(name).itemsize
            self._set_address(name, self._device_buffers[name].ensure(max(nbytes, 1)))
        host = self._host_view(wanted, tuple(context.get_tensor_shape(wanted)))
        try:
            cuda_call("cudaMemcpyAsync(H2D)", cudart.cudaMemcpyAsync(
                d_in, host_in.ctypes.data, host_in.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))
            if not context.execute_async_v3(self._stream_handle):
                raise ArtifactError(f"TensorRT execute_async_v3 failed on {self.path} for shape {tuple(batch.shape)}")
            cuda_call(f"cudaMemcpyAsync(D2H {wanted})", cudart.cudaMemcpyAsync(
                host.ctypes.data, self._device_buffers[wanted].ptr, host.nbytes,
                cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))
        except BaseException:
            self._drain_stream()
            raise
        cuda_call("cudaStreamSynchronize", cudart.cudaStreamSynchronize(self._stream))
        return host

    def _drain_stream(self) -> None:
        """After a failed enqueue or copy: wait for what was queued (it may still read the pinned input) before
        the next batch can rewrite it; the original failure is what the caller sees."""
        try:
            cuda_call("cudaStreamSynchronize", self._cudart.cudaStreamSynchronize(self._stream))
        except CudaError:
            pass

    def _release(self) -> None:
        """Free every buffer and the stream, even when one free fails; then raise the first failure."""
        with self._lock:  # never while another thread runs a batch
            failures = self._release_quietly()
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise CudaError(failures[0].message + more, failures[0].hint)

    def _release_quietly(self) -> list[CudaError]:
        """Free what is held, each step whatever the others did; returns the failures."""
        failures: list[CudaError] = []
        buffers = (*getattr(self, "_device_buffers", {}).values(), *getattr(self, "_host_buffers", {}).values())
        for buffer in buffers:
            try:
                buffer.close()
            except CudaError as exc:
                buffer.ptr, buffer.size = 0, 0  # never freed twice
                failures.append(exc)
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            try:
                cuda_call("cudaStreamDestroy", self._cudart.cudaStreamDestroy(stream))
            except CudaError as exc:
                failures.append(exc)
        self._context = self._engine = self._runtime = None
        return failures
