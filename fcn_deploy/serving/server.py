"""``fcn-deploy serve``: the segmenter behind the real ``tritonserver`` binary, through PyTriton.

The model ``fcn_segment`` takes one encoded image per row of a request and returns the mask PNG, the labels and
an error text for each (``fcn_deploy.serving.contract``). Triton forms batches across requests of any image
size; the callable takes the list of requests as it is (no concatenation) and answers each with its own
outputs, so one bad image fails alone. Each instance owns its Segmenter (a Segmenter runs one call at a time). KServe v2 over
HTTP and gRPC, health, statistics and metrics endpoints come from Triton.

tritonserver takes an access token only on its command line, which every local user can read (``ps``), so
``serve`` gives it none: the model-repository, shared-memory, trace and logging endpoints are closed to every
client, behind a header name that neither HTTP/1.1 nor gRPC can carry (it holds a ':'). tritonserver loads
``fcn_segment`` from PyTriton's model store before it opens its ports, so nothing needs to load a model over
the network and ``/v2/health/ready`` cannot answer before the model is ready. SIGINT or SIGTERM stops it:
in-flight requests finish, then Triton and its stubs exit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    request_outputs,
)
from fcn_deploy.serving.tritonserver import python_backend_env

#: Triton endpoints closed to every client (model loading runs code; shared memory maps this user's memory)
CLOSED_ENDPOINTS: tuple[str, ...] = ("model-repository", "shared-memory", "trace", "logging")
#: the header Triton would want before opening them: no HTTP/1.1 header name nor gRPC metadata key holds a ':'
CLOSED_HEADER = "closed:fcn-deploy-serve"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_WATCH_SECONDS = 1.0
_START_POLL_SECONDS = 0.2
_LOG_PREFIX = re.compile(r"^[EWIF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ")  # tritonserver's (glog's) line prefix
_REASON = re.compile(r"failed to start|already in use|error: creating server|failed to load|bad option", re.IGNORECASE)


def _port(value: int, name: str) -> int:
    if not 1 <= value <= 65535:
        raise InputError(f"{name} must be a port number (1-65535), got {value}")
    return value


@dataclass(frozen=True)
class ServeConfig:
    """Options of ``fcn-deploy serve``."""

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
    exit_timeout_s: int = 30  # how long in-flight requests may take to finish on a stop
    start_timeout_s: int = 300  # how long tritonserver may take to load the model and open its ports

    def __post_init__(self) -> None:
        ports = [_port(port, f"the {what} port") for what, _, port in _ports(self)]
        if len(set(ports)) != 3:
            raise InputError(f"the HTTP, gRPC and metrics ports must differ, got {ports}")
        if not self.host:
            raise InputError("the host address is empty", "use 127.0.0.1 (this machine only) or an address to bind")
        for name in ("instances", "max_batch", "exit_timeout_s", "start_timeout_s"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', ' ')} must be positive, got {getattr(self, name)}")
        if self.max_queue_delay_us < 0:
            raise InputError(f"the queue delay must be 0 or more microseconds, got {self.max_queue_delay_us}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise InputError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}", f"use one of: {', '.join(DEVICES)}")


class SegmentCallable:
    """One instance of the served model: its own Segmenter, a list of requests in, one answer per request out
    (a row per image of the request)."""

    def __init__(self, segmenter: Segmenter, max_pixels: int | None) -> None:
        self.segmenter = segmenter
        self.max_pixels = max_pixels

    def __call__(self, requests: list[Any]) -> list[dict[str, Any]]:
        images = [request[IMAGE_INPUT] if IMAGE_INPUT in request else None for request in requests]
        return [request_outputs(outcomes) for outcomes in answer(self.segmenter, images, self.max_pixels)]


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


def _served_triton_class() -> type:
    """PyTriton's Triton, started the way ``serve`` needs it (PyTriton 0.7; its private hooks are used here only).

    The model store is local, so tritonserver loads the bound model at start-up (``--load-model=*``) before it
    opens its ports; the process is started without waiting, so ``serve`` can watch it; and PyTriton's check of
    the log settings (an endpoint closed here) is skipped.
    """
    triton_module = require("pytriton.triton")

    class ServedTriton(triton_module.Triton):  # type: ignore[misc, valid-type]
        def _initialize_server(self) -> None:
            super()._initialize_server()
            self._log_level_checker._log_settings = {}  # closed endpoint: nothing to read, nothing to warn about

        def start_process(self) -> None:
            self._run_server()

        def process_alive(self) -> bool:
            return self._triton_server is not None and self._triton_server.is_alive()

        def process_log(self) -> str:
            return self._triton_server.logs() if self._triton_server is not None else ""

    return ServedTriton


def _triton(config: ServeConfig) -> Any:
    """A PyTriton server bound to ``config.host``, the admin endpoints closed, no token anywhere."""
    triton_module = require("pytriton.triton")
    closed = f"{','.join(CLOSED_ENDPOINTS)}:{CLOSED_HEADER}=closed"
    triton_config = triton_module.TritonConfig(
        http_address=config.host, http_port=config.http_port, grpc_address=config.host, grpc_port=config.grpc_port,
        metrics_address=config.host, metrics_port=config.metrics_port, allow_metrics=True,
        exit_timeout_secs=config.exit_timeout_s, http_restricted_api=closed, grpc_restricted_protocol=closed,
    )
    return _served_triton_class()(
        config=triton_config, workspace=config.workspace,
        triton_lifecycle_policy=triton_module.TritonLifecyclePolicy(launch_triton_on_startup=False,
                                                                    local_model_store=True),
        security_config=triton_module.TritonSecurityConfig(restricted_endpoints=[]))


def _ports(config: ServeConfig) -> list[tuple[str, str, int]]:
    """(what, option, port) of each port ``serve`` listens on."""
    return [("HTTP", "--http-port", config.http_port), ("gRPC", "--grpc-port", config.grpc_port),
            ("metrics", "--metrics-port", config.metrics_port)]


def check_ports_free(config: ServeConfig) -> None:
    """InputError naming the address and the option when ``config.host`` cannot be bound on one of the ports."""
    for what, option, port in _ports(config):
        try:
            family, kind, proto, _, address = socket.getaddrinfo(config.host, port, type=socket.SOCK_STREAM,
                                                                 flags=socket.AI_PASSIVE)[0]
            with contextlib.closing(socket.socket(family, kind, proto)) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except socket.gaierror as exc:
            raise InputError(f"cannot bind to host {config.host!r} ({exc.strerror})",
                             "use 127.0.0.1 (this machine only) or an address of this machine") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"{config.host}:{port} is already in use (the {what} port)",
                                 f"stop what listens there, or choose another port with {option}") from None
            raise InputError(f"cannot bind to {config.host}:{port} ({exc.strerror})",
                             "use 127.0.0.1 (this machine only) or an address of this machine") from None


def check_command_line_values(config: ServeConfig) -> None:
    """InputError for a value with white space that would reach tritonserver's command line: PyTriton splits that
    line at white space, so tritonserver would get broken options and exit."""
    workspace = str(config.workspace) if config.workspace is not None else tempfile.gettempdir()
    for what, value, fix in (("the host", config.host, "use an address such as 127.0.0.1"),
                             ("the workspace", workspace, "use a folder whose path has no spaces (--workspace, "
                                                          "or TMPDIR for the default temporary one)")):
        if any(character.isspace() for character in value):
            raise InputError(f"{what} {value!r} contains white space, which tritonserver's options cannot carry", fix)


def _start_failure(log_text: str, config: ServeConfig) -> FcnDeployError:
    """The error for a tritonserver that exited while starting: its own reason (last lines saying so), the fix."""
    lines = [_LOG_PREFIX.sub("", line.strip()).strip('" ') for line in log_text.splitlines()]
    reasons = ([line for line in lines if _REASON.search(line)]
               or [line for line in lines if line.lower().startswith("error")])
    reason = "; ".join(dict.fromkeys(reasons[-2:])) or "it gave no reason"
    if "already in use" in reason:
        options = ", ".join(option for _, option, _ in _ports(config))
        return FcnDeployError(f"tritonserver could not start: {reason}",
                              f"stop what listens there, or choose other ports ({options})")
    return FcnDeployError(f"tritonserver could not start: {reason}", "see its log lines above")


def _loopback(host: str) -> str:
    """The address to reach a server bound to ``host`` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _wait_until_model_ready(triton: Any, config: ServeConfig, stop: threading.Event) -> bool:
    """Wait until tritonserver answers that ``fcn_segment`` is ready; False if ``stop`` was set first.

    Raises FcnDeployError with tritonserver's own message as soon as its process exits, and after
    ``config.start_timeout_s`` without the model ready.
    """
    http = require("tritonclient.http")
    client = http.InferenceServerClient(f"{_loopback(config.host)}:{config.http_port}", connection_timeout=5.0,
                                        network_timeout=5.0)
    deadline = time.monotonic() + config.start_timeout_s
    try:
        while not stop.is_set():
            if not triton.process_alive():
                raise _start_failure(triton.process_log(), config)
            with contextlib.suppress(Exception):  # not listening yet: the model is still loading
                if client.is_model_ready(SERVED_MODEL_NAME):
                    return True
            if time.monotonic() > deadline:
                raise FcnDeployError(f"'{SERVED_MODEL_NAME}' was not ready {config.start_timeout_s} s after start",
                                     "see tritonserver's log lines above")
            stop.wait(_START_POLL_SECONDS)
        return False
    finally:
        client.close()


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
    check_command_line_values(config)
    check_ports_free(config)
    with contextlib.ExitStack() as stack:
        segmenters = [stack.enter_context(open_segmenter(model, config.device, config.segmenter, config.backend))
                      for _ in range(config.instances)]
        require("pytriton.triton")
        os.environ.update(python_backend_env())  # Triton and its Python stubs inherit this environment
        triton = _triton(config)
        with _stop_on_signals(stop):
            try:
                _bind(triton, [SegmentCallable(s, config.max_pixels) for s in segmenters], config)
                triton.start_process()
                if not _wait_until_model_ready(triton, config, stop):
                    return
                triton.connect()
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


__all__ = ["CLOSED_ENDPOINTS", "CLOSED_HEADER", "SegmentCallable", "ServeConfig", "check_command_line_values",
           "check_ports_free", "serve"]
