"""Fixtures of the serving tests: the serve environment, a random-weight ONNX, test images and servers on
127.0.0.1 (free ports, folders in the test's tmp dir, every process stopped by its PID whatever happens).

The serving stack (PyTriton, tritonclient, protobuf) needs numpy < 2, so these tests run in the serve
environment (``.venv-serve``, made by scripts/setup.sh); elsewhere the fixtures that need it skip with the reason.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 90.0


@pytest.fixture(scope="session")
def serve_stack() -> None:
    """PyTriton and tritonclient are importable (the ``serve`` extra); skip with the reason otherwise."""
    for module in ("pytriton.triton", "tritonclient.http", "tritonclient.grpc", "google.protobuf.text_format"):
        pytest.importorskip(module, reason=f"{module} is missing: serving tests run in the serve environment "
                                           "(.venv-serve, made by scripts/setup.sh; pip install 'fcn-deploy[serve]')")


@pytest.fixture(scope="session")
def openvino_runtime() -> None:
    """OpenVINO is importable (the ``openvino`` extra, in both environments); skip with the reason otherwise."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'fcn-deploy[openvino]')")


@pytest.fixture(scope="session")
def config_schema() -> None:
    """tritonclient's model_config_pb2 and protobuf's text format are importable; skip with the reason otherwise."""
    for module in ("tritonclient.grpc.model_config_pb2", "google.protobuf.text_format"):
        pytest.importorskip(module, reason=f"{module} is missing: pip install 'fcn-deploy[serve]' (.venv-serve)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """The real VOC sample images where present (8 JPEGs of about 500×375), else 6 synthetic VOC-sized JPEGs."""
    sample = REPO_ROOT.parent / "shared" / "voc-sample" / "VOCdevkit" / "VOC2012" / "JPEGImages"
    if sample.is_dir() and any(sample.glob("*.jpg")):
        return sample
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(375, 500), (500, 375), (333, 500), (281, 500), (375, 500), (366, 500)]):
        (folder / f"synthetic_{index}.jpg").write_bytes(encode(rng.integers(0, 255, (height, width, 3), np.uint8), "JPEG"))
    return folder


@dataclass
class Server:
    """A server process and how to reach it."""

    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_ready(ready, process: subprocess.Popen, log: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll ``ready()`` until it is true; fail with the log if the process ends or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.5)
    pytest.fail(f"the server was not ready within {timeout_s:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int | None:
    """Signal ``process`` and wait; then kill whatever is left of its process group. Returns its exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    return process.returncode


def server_env(tmp: Path) -> dict[str, str]:
    """Environment of a server under test: temporary folders inside ``tmp``, this checkout's package first."""
    env = dict(os.environ)
    (tmp / "tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp / "tmp")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def start_server(model: Path, tmp: Path, *extra: str, ports: list[int] | None = None, host: str | None = "127.0.0.1",
                 prelude: str = "", env: dict[str, str] | None = None) -> Server:
    """``fcn-deploy serve MODEL`` with free ports (or ``ports``) on ``host`` (None: no --host, serve's default),
    run in ``tmp`` (OpenVINO's cache goes there), not waited for; the caller stops it (``stop_process``).
    ``prelude``: Python run in the server's process before the command (stand-ins for a test); ``env`` adds
    environment variables."""
    tmp.mkdir(parents=True, exist_ok=True)
    ports = ports or [free_port() for _ in range(3)]
    log_path = tmp / "serve.log"
    start = ["-m", "fcn_deploy.cli"] if not prelude else [
        "-c", f"{prelude}\nimport sys\nfrom fcn_deploy.cli import run\nsys.exit(run(sys.argv[1:]))"]
    command = [sys.executable, *start, "serve", str(model), *(["--host", host] if host is not None else []),
               "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
               "--workspace", str(tmp / "workspace"), "--device", "cpu", *extra]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**server_env(tmp), **(env or {})}, cwd=tmp, start_new_session=True)
    return Server(process, *ports, log_path)


@contextlib.contextmanager
def running_server(model: Path, tmp: Path, *extra: str, prelude: str = "",
                   env: dict[str, str] | None = None) -> Iterator[Server]:
    """``start_server``, ready (its model answers); stopped (by PID) whatever happens."""
    import tritonclient.http as http

    server = start_server(model, tmp, *extra, prelude=prelude, env=env)
    try:
        client = http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        try:
            wait_ready(lambda: client.is_model_ready("fcn_segment"), server.process, server.log_path)
        finally:
            client.close()
        yield server
    finally:
        stop_process(server.process)


def process_tree_texts(pid: int) -> dict[str, str]:
    """The command line and environment of ``pid`` and of each of its descendants, by '/proc/PID/FILE'."""
    texts = {}
    for each in (pid, *descendants(pid)):
        for name in ("cmdline", "environ"):
            with contextlib.suppress(OSError):
                texts[f"/proc/{each}/{name}"] = Path(f"/proc/{each}/{name}").read_bytes().replace(b"\0", b" ").decode(
                    "utf-8", errors="replace")
    return texts


def _proc_net_address(hex_address: str) -> str:
    """An address of /proc/net/tcp or tcp6 (32-bit words in host byte order) as text; IPv4-mapped ones as IPv4."""
    words = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        words = b"".join(words[i:i + 4][::-1] for i in range(0, len(words), 4))
    address = ipaddress.ip_address(words)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def listening_addresses(ports: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket of this machine that listens on one of ``ports``, IPv4 and IPv6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port = local.split(":")
                if state == "0A" and int(port, 16) in ports:  # 0A: LISTEN
                    found.add((_proc_net_address(address), int(port, 16)))
    return found


def raw_http_call(port: int, method: str, path: str, headers: dict[str, str],
                  timeout_s: float = 10.0) -> tuple[int, str]:
    """The status and body an HTTP server on 127.0.0.1:``port`` answers to a request with ``headers`` written
    byte for byte (no client library checks or rewrites a name: HTTP clients refuse a name holding ':')."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 0", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # until the server closes the connection
            with contextlib.suppress(socket.timeout):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("utf-8", errors="replace")


def _hpack_int(value: int) -> bytes:
    """An HPACK integer with a 7-bit prefix (RFC 7541 5.1), no flag bits."""
    if value < 127:
        return bytes([value])
    out, value = [127], value - 127
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes([*out, value])


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def raw_grpc_call(port: int, method: str, metadata: dict[bytes, bytes], timeout_s: float = 10.0) -> bytes:
    """Everything a gRPC server on 127.0.0.1:``port`` answers to an empty-message call of ``method``, sent as raw
    HTTP/2 frames with ``metadata`` exactly as given (no client library checks or rewrites a key)."""
    headers = {b":method": b"POST", b":scheme": b"http", b":path": method.encode(), b":authority": b"127.0.0.1",
               b"content-type": b"application/grpc", b"te": b"trailers", **metadata}
    block = b"".join(b"\x00" + _hpack_int(len(k)) + k + _hpack_int(len(v)) + v for k, v in headers.items())
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0, b"") + _h2_frame(1, 4, 1, block)
                     + _h2_frame(0, 1, 1, b"\x00" * 5))
        deadline = time.monotonic() + timeout_s
        while b"grpc-status" not in answer and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
    return answer


@pytest.fixture(scope="module")
def server(serve_stack, random_onnx, tmp_path_factory) -> Iterator[Server]:  # noqa: F811
    """One server of the random-weight ONNX for a test module (images over 200,000 pixels are refused)."""
    with running_server(random_onnx, tmp_path_factory.mktemp("server"), "--max-pixels", "200000",
                        "--max-batch", "8", "--max-queue-delay-us", "20000") as running:
        yield running
