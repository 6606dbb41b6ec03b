"""``fcn-deploy serve`` and ``fcn-deploy client`` against a real server on 127.0.0.1 (free ports, bounded loops)."""

from __future__ import annotations

import io
import re
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serving.conftest import (
    START_TIMEOUT_S,
    alive,
    descendants,
    encode,
    free_port,
    listening_addresses,
    process_tree_texts,
    raw_grpc_call,
    raw_http_call,
    running_server,
    start_server,
    stop_process,
    wait_ready,
)

from fcn_deploy.cli import run
from fcn_deploy.errors import InputError
from fcn_deploy.infer import InferConfig, infer_folder
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.serving.client import ClientConfig, parse_url, segment_remote
from fcn_deploy.serving.server import CLOSED_HEADER, ServeConfig, _triton, check_command_line_values


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


@pytest.mark.slow
def test_served_masks_equal_infer_over_http_and_grpc(server, random_onnx, image_dir, tmp_path) -> None:
    infer_folder(random_onnx, image_dir, tmp_path / "infer", InferConfig(device="cpu", progress=False))
    expected = _masks(tmp_path / "infer")
    assert len(expected) >= 6
    for url in (server.http_url, server.grpc_url):
        out = tmp_path / url.split(":")[0]
        summary = segment_remote(url, [image_dir], out, ClientConfig(concurrency=3, progress=False))
        assert summary.count("ok") == len(expected) and summary.count("failed") == 0
        served = _masks(out)
        assert served.keys() == expected.keys()
        for name, labels in expected.items():
            assert np.array_equal(served[name], labels), name
            assert (out / name).read_bytes() == (tmp_path / "infer" / name).read_bytes()
        assert (out / "summary.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("model, options", [("random_onnx", ("--backend", "openvino", "--precision", "f32")),
                                            ("tiny_ir", ())], ids=["onnx-on-openvino", "openvino-ir"])
def test_served_masks_with_openvino_equal_infer_with_openvino(serve_stack, openvino_runtime, model, options,
                                                               image_dir, tmp_path, monkeypatch, request) -> None:
    monkeypatch.chdir(tmp_path)  # whatever the model writes beside the working folder stays in tmp_path
    path = request.getfixturevalue(model)
    openvino = BackendChoice("openvino")
    infer_folder(path, image_dir, tmp_path / "infer", InferConfig(device="cpu", backend=openvino, progress=False))
    expected = _masks(tmp_path / "infer")
    assert len(expected) >= 6
    with running_server(path, tmp_path / "srv", *options) as server:  # an IR takes OpenVINO by its suffix
        summary = segment_remote(server.http_url, [image_dir], tmp_path / "served", ClientConfig(progress=False))
        assert "(openvino/cpu," in server.log()
    assert summary.count("ok") == len(expected) and summary.count("failed") == 0
    served = _masks(tmp_path / "served")
    assert served.keys() == expected.keys()
    for name, labels in expected.items():
        assert np.array_equal(served[name], labels), name


@pytest.mark.slow
def test_a_batch_mixing_good_and_bad_requests(server, image_dir) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    good = sorted(image_dir.glob("*.jpg"))[0].read_bytes()
    bad = [b"not an image", good[: len(good) // 3], b"", encode(np.zeros((500, 500, 3), np.uint8))]
    payloads = [good, bad[0], good, bad[1], good, bad[2], good, bad[3]]
    client = http.InferenceServerClient(f"127.0.0.1:{server.http_port}", concurrency=len(payloads))
    try:
        before = client.get_inference_statistics("fcn_segment")["model_stats"][0]
        pending = []
        for payload in payloads:
            tensor = http.InferInput("image", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[payload]], dtype=object))
            pending.append(client.async_infer("fcn_segment", [tensor]))
        wrong = http.InferInput("image", [1, 3], "UINT8")  # Triton itself refuses a wrong dtype/shape, alone
        wrong.set_data_from_numpy(np.zeros((1, 3), np.uint8))
        with pytest.raises(InferenceServerException, match=r"^\[400\] .*data-type is 'UINT8', but model "
                                                          r"'fcn_segment' expects 'BYTES'"):
            client.infer("fcn_segment", [wrong])
        results = [p.get_result(timeout=120) for p in pending]
        errors = [r.as_numpy("error")[0, 0].decode() for r in results]
        assert [not e for e in errors] == [True, False, True, False, True, False, True, False]
        assert "not a readable image" in errors[1] and "cannot decode" in errors[3]
        assert "empty" in errors[5] and "exceeds the limit of 200000" in errors[7]
        assert all(e.startswith("image: ") and " of " not in e.split(":")[0] for e in errors if e)  # no batch places
        shapes = {r.as_numpy("labels")[0].shape for r, e in zip(results, errors) if not e}
        assert shapes == {Image.open(sorted(image_dir.glob("*.jpg"))[0]).size[::-1]}
        after = client.get_inference_statistics("fcn_segment")["model_stats"][0]
        executed = int(after["execution_count"]) - int(before["execution_count"])
        assert executed < len(payloads)  # requests were batched together (and still answered one by one)
        assert client.is_model_ready("fcn_segment")
    finally:
        client.close()


def _restricted_headers(texts: dict[str, str]) -> set[tuple[str, str]]:
    """Every (header, value) that a restricted-endpoint option of a command line shown in ``texts`` asks for."""
    found = set()
    for text in texts.values():
        for match in re.finditer(r"--(?:http-restricted-api|grpc-restricted-protocol)[= ](\S+)", text):
            header, _, value = match.group(1).split(":", 1)[1].partition("=")
            found.add((header, value))
    return found


@pytest.mark.slow
def test_admin_endpoints_stay_closed_to_whatever_our_processes_show(server) -> None:
    import tritonclient.http as http

    texts = process_tree_texts(server.process.pid)
    assert any("tritonserver" in text for text in texts.values())  # tritonserver's own command line was read
    assert not [where for where, text in texts.items() if "triton-access-token" in text]
    candidates = _restricted_headers(texts) | {("triton-access-token", "")}
    assert len(candidates) > 1  # the closed endpoints' header was found on tritonserver's command line
    client = http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_inference_statistics("fcn_segment")["model_stats"][0]["name"] == "fcn_segment"  # open
        refused = f"This API is restricted, expecting header '{CLOSED_HEADER}'"
        grpc_refused = f"This protocol is restricted, expecting header 'triton-grpc-protocol-{CLOSED_HEADER}'"
        for header, value in candidates:
            for method, path in (("GET", "/v2/logging"), ("POST", "/v2/repository/models/fcn_segment/load"),
                                 ("POST", "/v2/repository/models/fcn_segment/unload")):
                status, body = raw_http_call(server.http_port, method, path, {header: value})
                assert status == 403 and refused in body, (method, path, header, status, body)
            grpc_header = f"triton-grpc-protocol-{header}".encode()
            answer = raw_grpc_call(server.grpc_port, "/inference.GRPCInferenceService/LogSettings",
                                   {grpc_header: value.encode()})
            assert b"grpc-status" in answer and b"grpc-status\x010" not in answer, answer[-300:]
            # gRPC itself refuses a key holding ':' (the stream's headers are malformed); Triton refuses the others
            reason = b"Missing :method header" if ":" in header else grpc_refused.encode()
            assert reason in answer, answer
        assert client.is_model_ready("fcn_segment")
    finally:
        client.close()


@pytest.mark.slow
def test_health_ready_and_the_serving_line_wait_for_the_model_on_this_machine_only(serve_stack, random_onnx,
                                                                                 tmp_path) -> None:
    """Started without --host: once ready, every port serve opened listens on 127.0.0.1 alone."""
    import tritonclient.http as http

    server = start_server(random_onnx, tmp_path / "srv", host=None)
    client = http.InferenceServerClient(f"127.0.0.1:{server.http_port}", connection_timeout=2.0, network_timeout=2.0)
    early: list[str] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and server.process.poll() is None:
            said_serving = "serving " in server.log()
            try:
                server_ready = client.is_server_ready()
            except Exception:  # not listening yet
                server_ready = False
            model_ready = server_ready and client.is_model_ready("fcn_segment")
            if (server_ready or said_serving) and not model_ready:
                early.append(f"server ready {server_ready}, 'serving' logged {said_serving}, model not ready")
            if said_serving and model_ready:
                break
            time.sleep(0.02)
        assert "serving " in server.log(), server.log()
        assert not early, early[:3]
        ports = [server.http_port, server.grpc_port, server.metrics_port]
        assert listening_addresses(ports) == {("127.0.0.1", port) for port in ports}
    finally:
        client.close()
        stop_process(server.process)


@pytest.mark.slow
def test_a_port_in_use_is_refused_at_once(serve_stack, random_onnx, tmp_path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = start_server(random_onnx, tmp_path / "srv", ports=[port, free_port(), free_port()])
        try:
            code = server.process.wait(START_TIMEOUT_S)
        finally:
            stop_process(server.process)
    assert code == 1
    assert f"127.0.0.1:{port} is already in use (the HTTP port)" in server.log()
    assert "--http-port" in server.log() and "Traceback" not in server.log()


@pytest.mark.slow
def test_a_tritonserver_that_cannot_start_stops_serve_with_its_own_message(serve_stack, random_onnx,
                                                                          tmp_path) -> None:
    """The port check skipped: tritonserver itself meets the taken port and exits; serve stops at once."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = start_server(random_onnx, tmp_path, host=None, ports=[port, free_port(), free_port()],
                              prelude="import fcn_deploy.serving.server as server\n"
                                      "server.check_ports_free = lambda config: None")
        try:
            code = server.process.wait(START_TIMEOUT_S)  # a bound, not a timing claim: the fault is a 300 s wait
        finally:
            stop_process(server.process)
    text = server.log_path.read_text(errors="replace")
    assert code == 1, text[-3000:]
    error = [line for line in text.splitlines() if line.startswith("error: ")]
    assert error and "tritonserver could not start" in error[0] and "already in use" in error[0], text[-3000:]
    assert any(line.strip().startswith("fix: ") and "--http-port" in line for line in text.splitlines())
    assert "PyTritonClientTimeoutError" not in text and "Traceback" not in text


@pytest.mark.slow
def test_a_request_of_several_images_gets_a_row_per_image(server, image_dir) -> None:
    import tritonclient.http as http

    first, second = (p.read_bytes() for p in sorted(image_dir.glob("*.jpg"))[:2])
    small = encode(np.zeros((40, 30, 3), np.uint8))
    client = http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        tensor = http.InferInput("image", [4, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[first], [b"not an image"], [small], [second]], dtype=object))
        result = client.infer("fcn_segment", [tensor])
        masks, labels = result.as_numpy("mask"), result.as_numpy("labels")
        errors = [e.decode() for e in result.as_numpy("error")[:, 0]]
        one = http.InferInput("image", [1, 1], "BYTES")
        alone = []
        for payload in (first, small, second):
            one.set_data_from_numpy(np.array([[payload]], dtype=object))
            alone.append(client.infer("fcn_segment", [one]).as_numpy("labels")[0])
    finally:
        client.close()
    assert masks.shape == (4, 1) and labels.shape[0] == 4 and len(errors) == 4
    assert errors[0] == errors[2] == errors[3] == ""
    assert errors[1].startswith("image 2 of 4 of the request: ") and "not a readable image" in errors[1]
    for row, expected in zip((0, 2, 3), alone):
        height, width = expected.shape
        assert np.array_equal(labels[row, :height, :width], expected)
        assert (labels[row, height:, :] == 255).all() and (labels[row, :, width:] == 255).all()
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(masks[row, 0]))), expected)
    assert masks[1, 0] == b"" and (labels[1] == 255).all()


@pytest.mark.slow
def test_client_against_no_server_stops_with_one_error(serve_stack, image_dir, tmp_path, capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = run(["client", url, str(image_dir), "--out", str(tmp_path / "masks")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("error: ") == 1 and f"no Triton server answers at {url}" in err
    assert not (tmp_path / "masks").exists()


@pytest.mark.slow
def test_client_stops_with_one_error_when_the_model_is_not_ready(server, image_dir, tmp_path, capsys) -> None:
    for url in (server.http_url, server.grpc_url):
        code = run(["client", url, str(image_dir), "--out", str(tmp_path / "masks"), "--model-name", "missing"])
        err = capsys.readouterr().err
        assert code == 1
        assert err.count("error: ") == 1 and "has no ready model 'missing'" in err and "--model-name" in err
        assert not (tmp_path / "masks").exists()


@pytest.mark.slow
def test_client_cli_reports_failed_images_with_exit_code_3(server, image_dir, tmp_path, capsys,
                                                          special_files) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    first = sorted(image_dir.glob("*.jpg"))[0]
    (folder / first.name).write_bytes(first.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    special_files.pipe(folder / "pipe.jpg")  # reading it would wait for a writer for ever
    code = run(["client", server.grpc_url, str(folder), "--out", str(tmp_path / "masks"), "--concurrency", "2"])
    assert code == 3
    err = capsys.readouterr().err
    assert "broken.png" in err and "not a readable image" in err
    assert "pipe.jpg: is a named pipe" in err and special_files.opened_pipes == []
    assert (tmp_path / "masks" / first.with_suffix(".png").name).is_file()
    assert not (tmp_path / "masks" / "broken.png").exists()


# Run in the server's process: each call of the served model first leaves the file 'entered' in the server's
# folder, then waits (up to 120 s) until the test leaves 'release' there; so requests are surely in flight.
_GATED_MODEL = """
import time
from pathlib import Path
import fcn_deploy.serving.server as served
_entered, _release, _answer = Path("entered").resolve(), Path("release").resolve(), served.SegmentCallable.__call__
def _gated(self, requests):
    _entered.touch()
    for _ in range(2400):  # polls for the test's release file, 120 s at the most
        if _release.exists():
            break
        time.sleep(0.05)
    return _answer(self, requests)
served.SegmentCallable.__call__ = _gated
"""


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish_and_leaves_nothing_running(serve_stack, random_onnx, image_dir,
                                                                          tmp_path) -> None:
    import tritonclient.grpc as grpc

    folder = tmp_path / "srv"
    with running_server(random_onnx, folder, prelude=_GATED_MODEL) as server:
        children = descendants(server.process.pid)
        assert children  # tritonserver and its Python stub
        client = grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        payloads = [p.read_bytes() for p in sorted(image_dir.glob("*.jpg"))[:4]]
        results: list[object] = []
        done = threading.Event()

        def callback(result, error) -> None:
            results.append(error if error is not None else result)
            if len(results) == len(payloads):
                done.set()

        for payload in payloads:
            tensor = grpc.InferInput("image", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[payload]], dtype=object))
            client.async_infer("fcn_segment", [tensor], callback)
        wait_ready(lambda: (folder / "entered").exists(), server.process, server.log_path, 120)
        server.process.send_signal(signal.SIGTERM)
        wait_ready(lambda: "stopping: finishing in-flight requests" in server.log(), server.process,
                   server.log_path, 60)
        assert not results  # the signal came while every request was still in flight
        (folder / "release").touch()
        assert done.wait(120), "in-flight requests were not answered"
        client.close()
        assert all(not isinstance(r, Exception) for r in results), results
        assert all(r.as_numpy("error")[0, 0] == b"" for r in results)
        assert server.process.wait(90) == 0
        assert "stopped" in server.log()
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in children if alive(pid)]
        assert stop_process(server.process) == 0


@pytest.mark.parametrize(("url", "expected"), [("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
                                               ("127.0.0.1", "http://127.0.0.1:8000"),
                                               ("grpc://localhost", "grpc://localhost:8001")])
def test_parse_url(url: str, expected: str) -> None:
    assert str(parse_url(url)) == expected


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:1", "http://", "http://127.0.0.1:8000/v2/models"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(InputError):
        parse_url(url)


@pytest.mark.parametrize("changes", [{"http_port": 0}, {"grpc_port": 8000}, {"instances": 0}, {"max_batch": 0},
                                     {"device": "tpu"}, {"start_timeout_s": 0}, {"max_queue_delay_us": -1}])
def test_bad_serve_options_are_refused(changes) -> None:
    with pytest.raises(InputError):
        ServeConfig(**changes)


@pytest.mark.parametrize("changes", [{"host": "127.0.0.1 "}, {"workspace": Path("/tmp/a folder")}])
def test_values_that_would_break_tritonserver_options_are_refused_before_start(changes) -> None:
    with pytest.raises(InputError, match="white space"):
        check_command_line_values(ServeConfig(**changes))


@pytest.mark.parametrize(("host", "address"), [(None, "127.0.0.1"), ("192.0.2.7", "192.0.2.7")])
def test_tritonserver_is_told_to_bind_each_endpoint_to_the_host(serve_stack, tmp_path, host, address) -> None:
    """The options PyTriton will give tritonserver: HTTP, gRPC and metrics on 127.0.0.1 unless a host is given."""
    config = ServeConfig(workspace=tmp_path / "workspace", **({} if host is None else {"host": host}))
    arguments = _triton(config)._triton_server_config.to_args_list()
    options = dict(zip(arguments[::2], arguments[1::2]))
    assert [options.get(f"--{endpoint}-address") for endpoint in ("http", "grpc", "metrics")] == [address] * 3
