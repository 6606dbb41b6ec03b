"""``fcn-deploy client``: segment images against a Triton server, writing what ``fcn-deploy infer`` writes.

Each image file is sent as it is (its encoded bytes) to the server's segmenter model (``fcn_segment`` of
``fcn-deploy serve``, or ``<name>_segment`` of an exported repository) over KServe v2 HTTP or gRPC; the returned
palette PNG is written as the mask, and ``summary.json`` lists every image as ``infer``'s summary does. A request
that fails (a bad image, an error response) fails only that image; a server that does not answer, or whose
model is not ready, stops the run with one error before any image is sent.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from fcn_deploy.deps import require
from fcn_deploy.errors import BatchFailure, FcnDeployError, InputError, printable
from fcn_deploy.fileio import write_bytes_atomic, write_text_atomic
from fcn_deploy.imageio import read_file_bytes
from fcn_deploy.infer import (
    ImageJob,
    ImageRecord,
    InferSummary,
    check_locations,
    find_images,
    image_job,
    plan_images,
    summary_location,
)
from fcn_deploy.progress import log
from fcn_deploy.serving.contract import (
    ERROR_OUTPUT,
    IMAGE_INPUT,
    MASK_OUTPUT,
    SERVED_MODEL_NAME,
)

PROTOCOLS: tuple[str, ...] = ("http", "grpc")
READY_TIMEOUT_S = 30.0  # how long the readiness check before the first image may wait for an answer
_DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


@dataclass(frozen=True)
class Endpoint:
    """Where the server listens: protocol and host:port."""

    protocol: str
    address: str

    def __str__(self) -> str:
        return f"{self.protocol}://{self.address}"


def parse_url(url: str) -> Endpoint:
    """``http://host:port``, ``grpc://host:port`` or ``host:port`` (HTTP) as an Endpoint; InputError otherwise."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in PROTOCOLS or not parsed.hostname or parsed.path not in ("", "/"):
        raise InputError(f"cannot use server URL {url!r}", "use http://HOST:PORT or grpc://HOST:PORT")
    try:
        port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    except ValueError as exc:
        raise InputError(f"server URL {url!r} has a bad port ({exc})") from None
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return Endpoint(parsed.scheme, f"{host}:{port}")


@dataclass(frozen=True)
class ClientConfig:
    """Options of a client run; ``summary=None`` writes ``<out_dir>/summary.json``."""

    model_name: str = SERVED_MODEL_NAME
    concurrency: int = 4
    timeout_s: float = 300.0
    recursive: bool = False
    overwrite: bool = False
    summary: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InputError(f"concurrency must be positive, got {self.concurrency}")
        if self.timeout_s <= 0:
            raise InputError(f"the timeout must be positive, got {self.timeout_s}")


class RemoteSegmenter:
    """A connection to the segmenter model; not thread-safe (give each thread its own)."""

    def __init__(self, endpoint: Endpoint, model_name: str = SERVED_MODEL_NAME, timeout_s: float = 300.0) -> None:
        self.endpoint = endpoint
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._module = require(f"tritonclient.{endpoint.protocol}")
        self._utils = require("tritonclient.utils")
        if endpoint.protocol == "http":
            self._client = self._module.InferenceServerClient(endpoint.address, connection_timeout=timeout_s,
                                                              network_timeout=timeout_s)
        else:
            self._client = self._module.InferenceServerClient(endpoint.address)

    def segment(self, data: bytes, outputs: tuple[str, ...] = (MASK_OUTPUT, ERROR_OUTPUT)) -> dict[str, np.ndarray]:
        """Send one encoded image; the requested outputs without the batch axis. InputError with the server's
        message when the request failed."""
        tensor = self._module.InferInput(IMAGE_INPUT, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[data]], dtype=object))
        wanted = [self._module.InferRequestedOutput(name) for name in outputs]
        try:
            if self.endpoint.protocol == "http":
                result = self._client.infer(self.model_name, [tensor], outputs=wanted, timeout=int(self.timeout_s))
            else:
                result = self._client.infer(self.model_name, [tensor], outputs=wanted,
                                            client_timeout=self.timeout_s)
        except self._utils.InferenceServerException as exc:
            raise InputError(f"the server refused the request: {exc.message()}") from None
        values = {name: result.as_numpy(name)[0] for name in outputs}
        error = values.get(ERROR_OUTPUT)
        if error is not None and error.reshape(-1)[0]:
            raise InputError(_text(error.reshape(-1)[0]))
        return values

    def model_ready(self) -> bool:
        """Whether the server has the model loaded and ready; FcnDeployError when no server answers."""
        try:
            if self.endpoint.protocol == "http":
                return bool(self._client.is_model_ready(self.model_name))
            return bool(self._client.is_model_ready(self.model_name, client_timeout=self.timeout_s))
        except Exception as exc:  # refused, reset, timed out, not a Triton server: each library raises its own
            reason = getattr(exc, "message", None)
            reason = reason() if callable(reason) else f"{type(exc).__name__}: {exc}"
            raise FcnDeployError(f"no Triton server answers at {self.endpoint} ({reason})",
                                 "start one (fcn-deploy serve), or check the URL and port") from None

    def close(self) -> None:
        self._client.close()


def check_model_ready(endpoint: Endpoint, model_name: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """One clear error, before any image is sent, when no server answers at ``endpoint`` or its model is not ready."""
    probe = RemoteSegmenter(endpoint, model_name, timeout_s)
    try:
        ready = probe.model_ready()
    finally:
        probe.close()
    if not ready:
        raise FcnDeployError(f"the server at {endpoint} has no ready model '{model_name}'",
                             "wait until it has loaded the model, or name the served model with --model-name "
                             f"({SERVED_MODEL_NAME} for fcn-deploy serve, <name>_segment for an exported repository)")


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _png_size(png: bytes) -> tuple[int, int]:
    """(height, width) of a PNG from its header."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.height, image.width


def _resolve_inputs(paths: list[Path], out_dir: Path, recursive: bool) -> tuple[Path, list[Path]]:
    """(base folder, image paths relative to it) from one folder or a list of image files."""
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0], find_images(paths[0], recursive, out_dir)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"not a folder or an image file: {', '.join(map(str, missing))}",
                         "pass one folder, or image files")
    bases = {p.resolve().parent for p in paths}
    if len(bases) != 1:
        raise InputError("image files from several folders", "pass files of one folder, or the folder itself")
    return paths[0].parent, [Path(p.name) for p in paths]


def segment_remote(
    url: str, paths: list[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
    config: ClientConfig = ClientConfig(),
) -> InferSummary:
    """Segment the images (a folder or files) on the server at ``url``; masks and summary as ``infer`` writes them.

    Raises BatchFailure (after writing the summary) if any image failed.
    """
    endpoint = parse_url(url)
    out_dir = Path(out_dir)
    in_dir, relatives = _resolve_inputs([Path(p) for p in paths], out_dir, config.recursive)
    summary_path = summary_location(config.summary, out_dir)
    # the server answers a PNG for every image, TIFF inputs included
    check_locations(None, in_dir, out_dir, summary_path, relatives, overlay=False, tiff_masks=False)
    plan = plan_images(in_dir, out_dir, relatives, config.overwrite, overlay=False, tiff_masks=False)
    todo = [image_job(in_dir, out_dir, relative, overlay=False, tiff_masks=False) for relative in plan.todo]
    if todo:
        check_model_ready(endpoint, config.model_name, min(config.timeout_s, READY_TIMEOUT_S))
    records = list(plan.records)
    local = threading.local()
    connections: list[RemoteSegmenter] = []
    lock = threading.Lock()

    def connection() -> RemoteSegmenter:
        if not hasattr(local, "segmenter"):
            local.segmenter = RemoteSegmenter(endpoint, config.model_name, config.timeout_s)
            with lock:
                connections.append(local.segmenter)
        return local.segmenter

    def run(job: ImageJob) -> ImageRecord:
        started = time.perf_counter()
        try:
            data = read_file_bytes(job.source)
            png = connection().segment(data)[MASK_OUTPUT].reshape(-1)[0]
            height, width = _png_size(png)
            write_bytes_atomic(job.mask, png)
        except (InputError, OSError) as exc:
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            if config.progress:
                log(f"error: {printable(job.relative)}: {printable(message)}")
            return ImageRecord(job.relative, "failed", error=message)
        milliseconds = round((time.perf_counter() - started) * 1000.0, 2)
        return ImageRecord(job.relative, "ok", height, width, None, 0, milliseconds, job.output)

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(config.concurrency, thread_name_prefix="fcn-client") as pool:
            records += list(pool.map(run, todo))
    finally:
        for segmenter in connections:
            segmenter.close()
    summary = InferSummary(
        model=f"{endpoint}/{config.model_name}", backend="triton", device="remote", in_dir=str(in_dir),
        out_dir=str(out_dir), summary_path=str(summary_path),
        config={**asdict(config), "summary": str(config.summary) if config.summary else None, "url": str(endpoint)},
        seconds=time.perf_counter() - started, images=tuple(sorted(records, key=lambda r: r.path)),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(summary_path, json.dumps(summary.to_dict(), indent=2) + "\n")
    failed = summary.count("failed")
    if failed:
        error = BatchFailure(f"{failed} of {len(summary.images)} images failed (listed in {summary_path})",
                             "fix or remove those files and run again; finished masks are kept and skipped")
        error.summary = summary  # type: ignore[attr-defined]
        raise error
    return summary


__all__ = ["ClientConfig", "Endpoint", "RemoteSegmenter", "check_model_ready", "parse_url", "segment_remote"]
