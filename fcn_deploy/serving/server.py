"""``fcn-deploy serve``: the segmenter behind the real ``tritonserver`` binary, through PyTriton.

The model ``fcn_segment`` takes one encoded image per request and returns the mask PNG, the labels and an error
text (``fcn_deploy.serving.contract``). Triton forms batches across requests of any image size; the callable
takes the list of requests as it is (no concatenation) and answers each with its own outputs, so one bad
request fails alone. Each instance owns its Segmenter (a Segmenter runs one call at a time). KServe v2 over
HTTP and gRPC, health and metrics endpoints come from Triton; the model-repository, shared-memory, statistics,
trace and logging endpoints need the server's token. SIGINT or SIGTERM stops it: in-flight requests finish,
then Triton and its stubs exit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcn_deploy.deps import require
from fcn_deploy.devices import DEVICES, Device
from fcn_deploy.errors import FcnDeployError, InputError
from fcn_deploy.imageio import DEFAULT_MAX_PIXELS
from fcn_deploy.progress import log
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.segmenter import Segmenter, SegmenterConfig, open_segmenter
from fcn_deploy.serving.contract import (
    ERROR_OUTPUT,
    IMAGE_INPUT,
    LABELS_OUTPUT,
    MASK_OUTPUT,
    SERVED_MODEL_NAME,
    answer,
)
from fcn_deploy.serving.tritonserver import python_backend_env

#: Triton endpoints that need the server's token (load/unload models, shared memory, statistics, ...)
PROTECTED_ENDPOINTS: tuple[str, ...] = ("model-repository", "shared-memory", "statistics", "trace", "logging")
TOKEN_HEADER = "triton-access-token"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_WATCH_SECONDS = 1.0


def _port(value: int, name: str) -> int:
    if not 1 <= value <= 65535:
        raise InputError(f"{name} must be a port number (1-65535), got {value}")
    return value


@dataclass(frozen=True)
class ServeConfig:
    """Options of ``fcn-deploy serve``; ``token=None`` makes a random admin token that is never shown."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    instances: int = 1
    max_batch: int = 8
    max_queue_delay_us: int = 2000
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    device: Device = "auto"
    backend: BackendChoice = BackendChoice()  # the runtime and precision hint, as ``infer --backend/--precision``
    segmenter: SegmenterConfig = SegmenterConfig()
    workspace: Path | None = None  # PyTriton's model store and sockets; None: a temporary folder
    token: str | None = field(default=None, repr=False)
    exit_timeout_s: int = 30  # how long in-flight requests may take to finish on a stop

    def __post_init__(self) -> None:
        ports = [_port(self.http_port, "the HTTP port"), _port(self.grpc_port, "the gRPC port"),
                 _port(self.metrics_port, "the metrics port")]
        if len(set(ports)) != 3:
            raise InputError(f"the HTTP, gRPC and metrics ports must differ, got {ports}")
        if not self.host:
            raise InputError("the host address is empty", "use 127.0.0.1 (this machine only) or an address to bind")
        for name in ("instances", "max_batch", "exit_timeout_s"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', ' ')} must be positive, got {getattr(self, name)}")
        if self.max_queue_delay_us < 0:
            raise InputError(f"the queue delay must be 0 or more microseconds, got {self.max_queue_delay_us}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise InputError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}", f"use one of: {', '.join(DEVICES)}")
        if self.token is not None and len(self.token) < 16:
            raise InputError("the admin token is shorter than 16 characters", "use a long random token")


class SegmentCallable:
    """One instance of the served model: its own Segmenter, a list of requests in, one answer per request out."""

    def __init__(self, segmenter: Segmenter, max_pixels: int | None) -> None:
        self.segmenter = segmenter
        self.max_pixels = max_pixels

    def __call__(self, requests: list[Any]) -> list[dict[str, Any]]:
        images = [request[IMAGE_INPUT] if IMAGE_INPUT in request else None for request in requests]
        return [outcome.as_outputs() for outcome in answer(self.segmenter, images, self.max_pixels)]


def _bind(triton: Any, callables: list[SegmentCallable], config: ServeConfig) -> None:
    """Register ``fcn_segment`` with its tensors, dynamic batching and one instance per callable."""
    import numpy as np

    model_config = require("pytriton.model_config")
    tensor = model_config.Tensor
    triton.bind(
        model_name=SERVED_MODEL_NAME,
        infer_func=callables,
        inputs=[tensor(name=IMAGE_INPUT, dtype=np.bytes_, shape=(1,))],
        outputs=[tensor(name=MASK_OUTPUT, dtype=np.bytes_, shape=(1,)),
                 tensor(name=LABELS_OUTPUT, dtype=np.uint8, shape=(-1, -1)),
                 tensor(name=ERROR_OUTPUT, dtype=np.bytes_, shape=(1,))],
        config=model_config.ModelConfig(
            max_batch_size=config.max_batch,
            batcher=model_config.DynamicBatcher(max_queue_delay_microseconds=config.max_queue_delay_us)),
        strict=False,
    )


def _triton(config: ServeConfig) -> Any:
    """A PyTriton server bound to ``config.host`` with the admin endpoints behind the token."""
    triton_module = require("pytriton.triton")
    triton_config = triton_module.TritonConfig(
        http_address=config.host, http_port=config.http_port, grpc_address=config.host, grpc_port=config.grpc_port,
        metrics_address=config.host, metrics_port=config.metrics_port, allow_metrics=True,
        exit_timeout_secs=config.exit_timeout_s,
    )
    security = triton_module.TritonSecurityConfig(access_token=config.token or secrets.token_urlsafe(32),
                                                  restricted_endpoints=list(PROTECTED_ENDPOINTS))
    return triton_module.Triton(config=triton_config, workspace=config.workspace, security_config=security)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Any:
    """SIGINT and SIGTERM set ``stop`` (instead of raising in the middle of a request); handlers restored after."""
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(model: str | os.PathLike[str], config: ServeConfig = ServeConfig(),
          on_ready: Callable[[], None] | None = None, stop: threading.Event | None = None) -> None:
    """Serve ``model`` as ``fcn_segment`` until SIGINT/SIGTERM (or ``stop``); returns after a graceful stop.

    The model is opened first, exactly as ``infer`` opens it: a backend that cannot run here (a missing runtime,
    BF16 without native support, a file the backend cannot read) is refused before anything of the server starts.
    """
    stop = stop or threading.Event()
    died = False
    with contextlib.ExitStack() as stack:
        segmenters = [stack.enter_context(open_segmenter(model, config.device, config.segmenter, config.backend))
                      for _ in range(config.instances)]
        require("pytriton.triton")
        os.environ.update(python_backend_env())  # Triton and its Python stubs inherit this environment
        triton = _triton(config)
        with _stop_on_signals(stop):
            try:
                _bind(triton, [SegmentCallable(s, config.max_pixels) for s in segmenters], config)
                triton.run()
                backend = segmenters[0].backend
                hint = "" if config.backend.precision == "f32" else f"-{config.backend.precision}"
                log(f"serving {model} as '{SERVED_MODEL_NAME}' ({backend.name}{hint}/{backend.device}, "
                    f"{config.instances} instance(s), batches up to {config.max_batch}): "
                    f"HTTP {config.host}:{config.http_port}, gRPC {config.host}:{config.grpc_port}, "
                    f"metrics {config.host}:{config.metrics_port}; stop with Ctrl-C or SIGTERM")
                if on_ready is not None:
                    on_ready()
                while not stop.wait(_WATCH_SECONDS):
                    if not triton.is_alive():
                        died = True
                        break
            finally:
                log("stopping: finishing in-flight requests")
                triton.stop()
    if died:
        raise FcnDeployError("the Triton server stopped unexpectedly", "see its log lines above")
    log("stopped")


__all__ = ["PROTECTED_ENDPOINTS", "SegmentCallable", "ServeConfig", "TOKEN_HEADER", "serve"]
