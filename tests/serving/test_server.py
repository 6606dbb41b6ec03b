"""``fcn-deploy serve`` and ``fcn-deploy client`` against a real server on 127.0.0.1 (free ports, bounded loops)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serving.conftest import alive, descendants, encode, running_server, stop_process

from fcn_deploy.cli import run
from fcn_deploy.errors import InputError
from fcn_deploy.infer import InferConfig, infer_folder
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.serving.client import ClientConfig, parse_url, segment_remote
from fcn_deploy.serving.server import ServeConfig


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
def test_served_masks_with_openvino_equal_infer_with_openvino(serve_stack, openvino_runtime, random_onnx, image_dir,
                                                               tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # OpenVINO's cache (cache/openvino under the working folder) stays in tmp_path
    openvino = BackendChoice("openvino")
    infer_folder(random_onnx, image_dir, tmp_path / "infer", InferConfig(device="cpu", backend=openvino, progress=False))
    expected = _masks(tmp_path / "infer")
    assert len(expected) >= 6
    with running_server(random_onnx, tmp_path / "srv", "--backend", "openvino", "--precision", "f32") as server:
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

    good = sorted(image_dir.glob("*.jpg"))[0].read_bytes()
    bad = [b"not an image", good[: len(good) // 3], b"", encode(np.zeros((500, 500, 3), np.uint8))]
    payloads = [good, bad[0], good, bad[1], good, bad[2], good, bad[3]]
    headers = {"triton-access-token": server.token}
    client = http.InferenceServerClient(f"127.0.0.1:{server.http_port}", concurrency=len(payloads))
    try:
        before = client.get_inference_statistics("fcn_segment", headers=headers)["model_stats"][0]
        pending = []
        for payload in payloads:
            tensor = http.InferInput("image", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[payload]], dtype=object))
            pending.append(client.async_infer("fcn_segment", [tensor]))
        wrong = http.InferInput("image", [1, 3], "UINT8")  # Triton itself refuses a wrong dtype/shape, alone
        wrong.set_data_from_numpy(np.zeros((1, 3), np.uint8))
        with pytest.raises(Exception, match="(?i)unexpected datatype|expected|shape|type"):
            client.infer("fcn_segment", [wrong])
        results = [p.get_result(timeout=120) for p in pending]
        errors = [r.as_numpy("error")[0, 0].decode() for r in results]
        assert [not e for e in errors] == [True, False, True, False, True, False, True, False]
        assert "not a readable image" in errors[1] and "cannot decode" in errors[3]
        assert "empty" in errors[5] and "exceeds the limit of 200000" in errors[7]
        shapes = {r.as_numpy("labels")[0].shape for r, e in zip(results, errors) if not e}
        assert shapes == {Image.open(sorted(image_dir.glob("*.jpg"))[0]).size[::-1]}
        after = client.get_inference_statistics("fcn_segment", headers=headers)["model_stats"][0]
        executed = int(after["execution_count"]) - int(before["execution_count"])
        assert executed < len(payloads)  # requests were batched together (and still answered one by one)
        assert client.is_model_ready("fcn_segment")
    finally:
        client.close()


@pytest.mark.slow
def test_admin_endpoints_need_the_token(server) -> None:
    import tritonclient.http as http

    client = http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        with pytest.raises(Exception):
            client.unload_model("fcn_segment")
        with pytest.raises(Exception):
            client.get_inference_statistics("fcn_segment")
        assert client.is_model_ready("fcn_segment")
        stats = client.get_inference_statistics("fcn_segment", headers={"triton-access-token": server.token})
        assert stats["model_stats"][0]["name"] == "fcn_segment"
    finally:
        client.close()


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


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish_and_leaves_nothing_running(serve_stack, random_onnx, image_dir,
                                                                          tmp_path) -> None:
    import tritonclient.grpc as grpc

    with running_server(random_onnx, tmp_path / "srv") as server:
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
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
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
                                     {"device": "tpu"}, {"token": "short"}, {"max_queue_delay_us": -1}])
def test_bad_serve_options_are_refused(changes) -> None:
    with pytest.raises(InputError):
        ServeConfig(**changes)
