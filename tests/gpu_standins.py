"""Recording stand-ins for ``tensorrt`` and ``cuda.bindings.runtime``: the TensorRT path run on a CPU machine.

``StandIns.install`` puts them in ``sys.modules``, so every ``require("tensorrt")`` and
``require("cuda.bindings.runtime")`` of the package gets them. Every call is recorded in order with its
arguments (``calls``); a test makes a call fail by naming it in ``fail`` with the value it should give: a CUDA
error code for a cudart function, a return value (False, None, -1) or an exception for a TensorRT method, or a
function of the call's arguments that returns one of those (``PASS``: succeed this time). "Device" memory is
host memory here, so copies really move bytes. The stand-ins provide only names that exist in the TensorRT API
listings and in cuda.bindings.runtime (checked by tests/test_trt_api_names.py).
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

TRT_VERSION = "10.16.1.11"
GPU_NAME, COMPUTE_CAPABILITY = "Stand-in GPU", (8, 9)
RUNTIME_VERSION, DRIVER_VERSION = 13000, 13000  # CUDA 13.0 runtime, a driver that supports it
PLAN = b"stand-in plan"
CACHE_PREFIX = b"stand-in timing cache " + TRT_VERSION.encode() + b":"
PASS = object()  # what a failure function returns for a call that should succeed this time


class StandIns:
    """The stand-in modules, the calls made on them and the failures to simulate."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: dict[str, Any] = {}
        self.device: dict[int, ctypes.Array] = {}  # live cudaMalloc allocations
        self.host: dict[int, ctypes.Array] = {}  # live cudaMallocHost allocations
        self.streams: set[int] = set()  # live streams (their native handles)
        self.profile = ((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 128, 128))
        self.num_classes = 21
        self.label_value = 7  # what the engine writes into its labels output
        self.tensorrt = _tensorrt_module(self)
        self.cudart = _cudart_module(self)
        self.utils = _utils_module()

    def install(self, monkeypatch: Any) -> StandIns:
        """Make ``tensorrt``, ``cuda.bindings.runtime`` and ``cuda.bindings.utils`` these stand-ins."""
        for name, module in (("tensorrt", self.tensorrt), ("cuda.bindings.runtime", self.cudart),
                             ("cuda.bindings.utils", self.utils)):
            monkeypatch.setitem(sys.modules, name, module)
        return self

    def record(self, name: str, args: tuple[Any, ...], result: Callable[[], Any]) -> Any:
        """Record a call, then give the failure the test asked for, or ``result()``."""
        self.calls.append((name, args))
        if name not in self.fail:
            return result()
        failure = self.fail[name]
        if callable(failure):
            failure = failure(args)
            if failure is PASS:
                return result()
        if isinstance(failure, BaseException):
            raise failure
        return failure

    def names(self) -> list[str]:
        """The names of the calls made, in order."""
        return [name for name, _ in self.calls]

    def args_of(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of ``name``, in order."""
        return [args for call, args in self.calls if call == name]

    def leaks(self) -> dict[str, int]:
        """What is still allocated: device buffers, pinned buffers, streams."""
        return {"device": len(self.device), "host": len(self.host), "streams": len(self.streams)}


# --- tensorrt ------------------------------------------------------------------------------------


class _Listed:
    """A stand-in for the TensorRT class named ``listed`` (whose public names must all exist there)."""

    listed = ""

    def __init__(self, standins: StandIns) -> None:
        self._s = standins


def _tensorrt_module(s: StandIns) -> types.ModuleType:
    class Severity(enum.IntEnum):
        ERROR = 1
        WARNING = 2

    class Logger(_Listed):
        listed = "Logger"
        WARNING = Severity.WARNING
        ERROR = Severity.ERROR

        def __init__(self, severity: Severity = Severity.WARNING) -> None:
            super().__init__(s)
            s.record("Logger", (severity,), lambda: None)

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 5

    class MemoryPoolType(enum.IntEnum):
        WORKSPACE = 0

    class BuilderFlag(enum.IntEnum):
        TF32 = 7

    class TensorIOMode(enum.IntEnum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    class DataType(enum.IntEnum):
        FLOAT = 0
        UINT8 = 5

    def nptype(dtype: DataType) -> type:
        return {DataType.FLOAT: np.float32, DataType.UINT8: np.uint8}[dtype]

    class Dims(tuple):
        listed = "Dims"

    class INetworkDefinition(_Listed):
        listed = "INetworkDefinition"

    class OnnxParser(_Listed):
        listed = "OnnxParser"
        num_errors = 0

        def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
            super().__init__(s)

        def parse(self, model: bytes, path: str) -> bool:
            return s.record("OnnxParser.parse", (path,), lambda: True)

    class IOptimizationProfile(_Listed):
        listed = "IOptimizationProfile"

        def set_shape(self, name: str, low: Dims, opt: Dims, high: Dims) -> None:
            s.record("IOptimizationProfile.set_shape", (name, tuple(low), tuple(opt), tuple(high)), lambda: None)

    class ITimingCache(_Listed):
        listed = "ITimingCache"

        def __init__(self, content: bytes) -> None:
            super().__init__(s)
            self._content = content

        def serialize(self) -> bytes:
            return s.record("ITimingCache.serialize", (), lambda: CACHE_PREFIX + self._content)

    class IBuilderConfig(_Listed):
        listed = "IBuilderConfig"

        def __init__(self) -> None:
            super().__init__(s)
            self._cache: ITimingCache | None = None

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            s.record("IBuilderConfig.set_memory_pool_limit", (pool, size), lambda: None)

        def clear_flag(self, flag: BuilderFlag) -> None:
            s.record("IBuilderConfig.clear_flag", (flag,), lambda: None)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            return s.record("IBuilderConfig.add_optimization_profile", (profile,), lambda: 0)

        def create_timing_cache(self, blob: bytes) -> ITimingCache:
            """An empty cache from b'', the cache from a blob this version wrote, a failure on any other blob."""
            blob = bytes(blob)

            def create() -> ITimingCache:
                if blob and not blob.startswith(CACHE_PREFIX):
                    raise RuntimeError("Error Code 1: Serialization (timing cache from another TensorRT version)")
                return ITimingCache(blob[len(CACHE_PREFIX):] + b"+")

            return s.record("IBuilderConfig.create_timing_cache", (blob,), create)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            def accept() -> bool:
                self._cache = cache
                return True

            return s.record("IBuilderConfig.set_timing_cache", (cache, ignore_mismatch), accept)

        def get_timing_cache(self) -> ITimingCache | None:
            return s.record("IBuilderConfig.get_timing_cache", (), lambda: self._cache)  # None when none was set

    class Builder(_Listed):
        listed = "Builder"

        def __init__(self, logger: Logger) -> None:
            super().__init__(s)
            s.record("Builder", (), lambda: None)

        def create_network(self, flags: int) -> INetworkDefinition:
            return s.record("Builder.create_network", (flags,), lambda: INetworkDefinition(s))

        def create_builder_config(self) -> IBuilderConfig:
            return s.record("Builder.create_builder_config", (), IBuilderConfig)

        def create_optimization_profile(self) -> IOptimizationProfile:
            return s.record("Builder.create_optimization_profile", (), lambda: IOptimizationProfile(s))

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
            return s.record("Builder.build_serialized_network", (), lambda: PLAN)

    class IExecutionContext(_Listed):
        listed = "IExecutionContext"

        def __init__(self, engine: ICudaEngine) -> None:
            super().__init__(s)
            self._engine, self._shape, self._addresses = engine, (0, 0, 0, 0), {}

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            def accept() -> bool:
                self._shape = tuple(shape)
                return True

            return s.record("IExecutionContext.set_input_shape", (name, tuple(shape)), accept)

        def get_tensor_shape(self, name: str) -> Dims:
            n, _, h, w = self._shape
            shapes = {"image": self._shape, "logits": (n, s.num_classes, h, w), "labels": (n, h, w)}
            return s.record("IExecutionContext.get_tensor_shape", (name,), lambda: Dims(shapes[name]))

        def set_tensor_address(self, name: str, memory: int) -> bool:
            def accept() -> bool:
                self._addresses[name] = int(memory)
                return True

            return s.record("IExecutionContext.set_tensor_address", (name, memory), accept)

        def execute_async_v3(self, stream_handle: int) -> bool:
            def run() -> bool:
                if int(stream_handle) not in s.streams:  # SupportsInt, as the binding takes it
                    raise ValueError(f"execute_async_v3 got {stream_handle!r}, which is not a live stream's handle")
                n, _, h, w = self._shape
                if "labels" in self._addresses:
                    ctypes.memset(self._addresses["labels"], s.label_value, n * h * w)
                return True

            return s.record("IExecutionContext.execute_async_v3", (stream_handle,), run)

    class ICudaEngine(_Listed):
        listed = "ICudaEngine"
        _io = (("image", TensorIOMode.INPUT, DataType.FLOAT), ("logits", TensorIOMode.OUTPUT, DataType.FLOAT),
              ("labels", TensorIOMode.OUTPUT, DataType.UINT8))

        @property
        def num_io_tensors(self) -> int:
            return len(self._io)

        def get_tensor_name(self, index: int) -> str:
            return self._io[index][0]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return {n: mode for n, mode, _ in self._io}[name]

        def get_tensor_dtype(self, name: str) -> DataType:
            return {n: dtype for n, _, dtype in self._io}[name]

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
            return s.record("ICudaEngine.get_tensor_profile_shape", (name, profile_index),
                            lambda: [Dims(d) for d in s.profile])

        def create_execution_context(self) -> IExecutionContext:
            return s.record("ICudaEngine.create_execution_context", (), lambda: IExecutionContext(self))

    class Runtime(_Listed):
        listed = "Runtime"

        def __init__(self, logger: Logger) -> None:
            super().__init__(s)
            s.record("Runtime", (), lambda: None)

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
            return s.record("Runtime.deserialize_cuda_engine", (bytes(serialized_engine),),
                            lambda: ICudaEngine(s) if bytes(serialized_engine) == PLAN else None)

    module = types.ModuleType("tensorrt")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    module.__version__ = TRT_VERSION
    for value in (Logger, NetworkDefinitionCreationFlag, MemoryPoolType, BuilderFlag, TensorIOMode, DataType, nptype,
                  Dims,
                  INetworkDefinition, OnnxParser, IOptimizationProfile, ITimingCache, IBuilderConfig, Builder,
                  IExecutionContext, ICudaEngine, Runtime):
        setattr(module, value.__name__, value)
    return module


# --- cuda.bindings.runtime -----------------------------------------------------------------------


def _cudart_module(s: StandIns) -> types.ModuleType:
    class cudaError_t(enum.IntEnum):  # noqa: N801 (the CUDA name)
        cudaSuccess = 0
        cudaErrorInvalidValue = 1
        cudaErrorMemoryAllocation = 2
        cudaErrorInsufficientDriver = 35
        cudaErrorNoDevice = 100

    class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStream_t:  # noqa: N801
        def __init__(self, init_value: int = 0) -> None:
            self._handle = int(init_value)

        def getPtr(self) -> int:  # noqa: N802 (the cuda-bindings name): the address of the wrapper's storage
            return id(self)

        def __int__(self) -> int:
            s.calls.append(("int(cudaStream_t)", ()))  # deprecated in cuda-bindings 12.9.1 and 13
            return self._handle

    class cudaDeviceProp:  # noqa: N801
        def __init__(self) -> None:
            self.name = GPU_NAME.encode() + b"\0" * 8
            self.major, self.minor = COMPUTE_CAPABILITY

    def call(name: str, args: tuple[Any, ...], result: Callable[[], Any]) -> tuple[Any, ...]:
        """(cudaSuccess, *values) or (error, None) when the test made ``name`` fail."""
        s.calls.append((name, args))
        failure = s.fail.get(name)
        if callable(failure):
            failure = failure(args)
        if failure is not None and failure is not PASS:
            return cudaError_t(failure), None
        value = result()
        return (cudaError_t.cudaSuccess,) if value is None else (cudaError_t.cudaSuccess, value)

    def allocate(store: dict[int, ctypes.Array], size: int) -> int:
        buffer = (ctypes.c_char * max(int(size), 1))()
        store[ctypes.addressof(buffer)] = buffer
        return ctypes.addressof(buffer)

    def create_stream() -> cudaStream_t:
        stream = cudaStream_t(0x5000 + len(s.calls))
        s.streams.add(stream._handle)
        return stream

    def copy(dst: int, src: int, count: int) -> None:
        ctypes.memmove(dst, src, count)

    def free(store: dict[int, ctypes.Array], ptr: int) -> None:
        assert ptr in store, f"freeing {ptr:#x}, which is not allocated (a double free?)"
        del store[ptr]

    functions = {
        "cudaGetDeviceCount": lambda: call("cudaGetDeviceCount", (), lambda: 1),
        "cudaGetDeviceProperties": lambda device: call("cudaGetDeviceProperties", (device,), cudaDeviceProp),
        "cudaRuntimeGetVersion": lambda: call("cudaRuntimeGetVersion", (), lambda: RUNTIME_VERSION),
        "cudaDriverGetVersion": lambda: call("cudaDriverGetVersion", (), lambda: DRIVER_VERSION),
        "cudaSetDevice": lambda device: call("cudaSetDevice", (device,), lambda: None),
        "cudaStreamCreate": lambda: call("cudaStreamCreate", (), create_stream),
        "cudaStreamDestroy": lambda stream: call("cudaStreamDestroy", (stream,),
                                                 lambda: s.streams.discard(stream._handle)),
        "cudaStreamSynchronize": lambda stream: call("cudaStreamSynchronize", (stream,), lambda: None),
        "cudaMalloc": lambda size: call("cudaMalloc", (size,), lambda: allocate(s.device, size)),
        "cudaFree": lambda ptr: call("cudaFree", (ptr,), lambda: free(s.device, ptr)),
        "cudaMallocHost": lambda size: call("cudaMallocHost", (size,), lambda: allocate(s.host, size)),
        "cudaFreeHost": lambda ptr: call("cudaFreeHost", (ptr,), lambda: free(s.host, ptr)),
        "cudaMemcpyAsync": lambda dst, src, count, kind, stream: call(
            "cudaMemcpyAsync", (dst, src, count, kind, stream), lambda: copy(dst, src, count)),
        "cudaGetErrorString": lambda error: (cudaError_t.cudaSuccess, f"stand-in text of {error.name}".encode()),
    }
    module = types.ModuleType("cuda.bindings.runtime")
    module.__spec__ = importlib.machinery.ModuleSpec("cuda.bindings.runtime", None)
    for value in (cudaError_t, cudaMemcpyKind, cudaStream_t, cudaDeviceProp):
        setattr(module, value.__name__, value)
    for name, function in functions.items():
        setattr(module, name, function)
    return module


def _utils_module() -> types.ModuleType:
    """cuda.bindings.utils as in cuda-bindings 12.9.1+ and 13: the native handle behind a wrapper object."""

    def get_cuda_native_handle(obj: Any) -> int:
        return int(obj._handle)

    module = types.ModuleType("cuda.bindings.utils")
    module.__spec__ = importlib.machinery.ModuleSpec("cuda.bindings.utils", None)
    module.get_cuda_native_handle = get_cuda_native_handle
    return module


def tensorrt_classes(module: types.ModuleType) -> dict[str, type]:
    """The stand-in classes of the tensorrt module, by the TensorRT class each one stands for."""
    return {value.listed: value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, _Listed | tuple) and getattr(value, "listed", "")}


def public_names(cls: type) -> set[str]:
    """The names a stand-in class offers (its own, not object's or the _Listed base's)."""
    return {name for klass in cls.__mro__ if klass not in (object, tuple, _Listed)
            for name in vars(klass) if not name.startswith("_") and name != "listed"}
