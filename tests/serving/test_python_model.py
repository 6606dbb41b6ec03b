"""The repository's ``<name>_segment`` Python-backend model: end to end in the bundled tritonserver (network in
process), and its Triton-side network calls (business-logic scripting) against a stand-in of Triton's utils."""

from __future__ import annotations

import signal
import subprocess

import numpy as np
import pytest
from serving.conftest import encode, free_port, server_env, stop_process, wait_ready

from fcn_deploy.imageio import decode_image, read_image
from fcn_deploy.segmenter import SegmenterConfig, open_segmenter
from fcn_deploy.serving.repository import RepositoryConfig, export_repository


@pytest.mark.slow
def test_segment_model_loads_in_the_bundled_server_and_answers(serve_stack, random_onnx, image_dir, tmp_path) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    from fcn_deploy.serving.tritonserver import (
        bundled_server_command,
        bundled_server_env,
        prepare_bundled_server,
    )

    repository = tmp_path / "repo"
    export_repository(random_onnx, repository, RepositoryConfig(network_runtime="in_process", max_pixels=200_000))
    server = prepare_bundled_server(tmp_path / "server")
    ports = [free_port() for _ in range(3)]
    command = bundled_server_command(server, repository, ["fcn_segment"], "127.0.0.1", *ports)
    log = tmp_path / "tritonserver.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env=bundled_server_env(server_env(tmp_path)), start_new_session=True)
    client = http.InferenceServerClient(f"127.0.0.1:{ports[0]}")
    try:
        wait_ready(lambda: client.is_model_ready("fcn_segment"), process, log)
        assert not client.is_model_ready("fcn")  # the ONNX Runtime model needs the full server; not loaded here
        path = sorted(image_dir.glob("*.jpg"))[0]
        request = http.InferInput("image", [1, 1], "BYTES")
        request.set_data_from_numpy(np.array([[path.read_bytes()]], dtype=object))
        result = client.infer("fcn_segment", [request])
        with open_segmenter(random_onnx, "cpu", SegmenterConfig()) as segmenter:
            expected = segmenter.segment(read_image(path)).labels
        assert np.array_equal(result.as_numpy("labels")[0], expected)
        assert result.as_numpy("error")[0, 0] == b""
        request.set_data_from_numpy(np.array([[encode(np.zeros((500, 500, 3), np.uint8))]], dtype=object))
        with pytest.raises(InferenceServerException, match="exceeds the limit of 200000"):
            client.infer("fcn_segment", [request])
        assert client.is_model_ready("fcn_segment")
    finally:
        client.close()
        code = stop_process(process, signal.SIGINT)
    assert code == 0, log.read_text(errors="replace")[-3000:]  # stopped by SIGINT, not killed when it hung


class _FakeTensor:
    def __init__(self, name: str, value: np.ndarray) -> None:
        self.name, self.value = name, value

    def as_numpy(self) -> np.ndarray:
        return self.value


class _FakeUtils:
    """The parts of triton_python_backend_utils the network calls use, answering with an ONNX Runtime session."""

    Tensor = _FakeTensor

    def __init__(self, backend) -> None:
        self.backend = backend
        self.calls: list[tuple[str, tuple[int, ...]]] = []
        utils = self

        class InferenceRequest:
            def __init__(self, model_name, requested_output_names, inputs) -> None:
                self.model_name, self.inputs = model_name, inputs

            def exec(self):
                utils.calls.append((self.model_name, self.inputs[0].value.shape))
                logits = utils.backend.infer(self.inputs[0].value)
                return _FakeResponse({"logits": _FakeTensor("logits", logits)})

        self.InferenceRequest = InferenceRequest

    @staticmethod
    def get_output_tensor_by_name(response, name):
        return response.tensors[name]


class _FakeResponse:
    def __init__(self, tensors) -> None:
        self.tensors = tensors

    def has_error(self) -> bool:
        return False


def test_network_calls_through_triton_give_the_in_process_labels(random_onnx) -> None:
    pytest.importorskip("onnxruntime")
    from fcn_deploy.runtime import open_backend
    from fcn_deploy.segmenter import Segmenter
    from fcn_deploy.serving.python_model import TritonNetworkBackend

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (700, 90, 3), np.uint8)  # taller than the model's 512 maximum: tiled
    with open_backend(random_onnx, "cpu") as backend:
        utils = _FakeUtils(backend)
        remote = Segmenter(TritonNetworkBackend(backend.spec, "fcn", utils), SegmenterConfig(batch=2))
        local = Segmenter(backend, SegmenterConfig(batch=2))
        result = remote.segment(image)
        assert result.mode == "slide" and result.tiles > 1
        assert np.array_equal(result.labels, local.segment(image).labels)
    assert {name for name, _ in utils.calls} == {"fcn"} and all(shape[0] <= 2 for _, shape in utils.calls)


def _initialized_segment_model(repository, monkeypatch):
    """The repository's segment model, initialized as Triton's Python backend would (a stand-in utils module)."""
    import sys
    import types

    from google.protobuf import json_format

    from fcn_deploy.serving.model_config import parse_config
    from fcn_deploy.serving.python_model import TritonPythonModel

    segment = repository / "fcn_segment"
    parsed = parse_config((segment / "config.pbtxt").read_text(), "segment")
    model_config = json_format.MessageToJson(parsed, preserving_proto_field_name=True)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    model = TritonPythonModel()
    model.initialize({"model_config": model_config, "model_repository": str(segment)})
    return model


def test_in_process_network_opens_with_the_backend_of_the_export(config_schema, openvino_runtime, random_onnx,
                                                                   image_dir, tmp_path, monkeypatch) -> None:
    from fcn_deploy.runtime import BackendChoice

    monkeypatch.chdir(tmp_path)  # whatever the model writes beside the working folder stays in tmp_path
    repository = tmp_path / "repo"
    export_repository(random_onnx, repository, RepositoryConfig(network_runtime="in_process",
                                                                backend=BackendChoice("openvino")))
    model = _initialized_segment_model(repository, monkeypatch)
    try:
        assert model._segmenter.backend.name == "openvino"
        image = read_image(sorted(image_dir.glob("*.jpg"))[0])
        with open_segmenter(random_onnx, "cpu", SegmenterConfig(), BackendChoice("openvino")) as segmenter:
            expected = segmenter.segment(image).labels
        assert np.array_equal(model._segmenter.segment(image).labels, expected)
    finally:
        model.finalize()


def test_in_process_network_of_an_ir_repository_opens_the_copied_ir(config_schema, tiny_ir, image_dir, tmp_path,
                                                                    monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    repository = tmp_path / "repo"
    export_repository(tiny_ir, repository, RepositoryConfig(network_runtime="in_process"))
    model = _initialized_segment_model(repository, monkeypatch)
    try:
        assert model._segmenter.backend.name == "openvino"
        assert model._segmenter.backend.path == repository / "fcn" / "1" / "model.xml"
        image = read_image(sorted(image_dir.glob("*.jpg"))[0])
        with open_segmenter(tiny_ir, "cpu", SegmenterConfig()) as segmenter:
            expected = segmenter.segment(image).labels
        assert np.array_equal(model._segmenter.segment(image).labels, expected)
    finally:
        model.finalize()


class _ExecuteUtils:
    """The parts of triton_python_backend_utils that ``execute`` uses: requests are dicts of arrays."""

    Tensor = _FakeTensor

    class TritonError:
        def __init__(self, message: str) -> None:
            self.text = message

    class InferenceResponse:
        def __init__(self, output_tensors, error=None) -> None:
            self.tensors, self.error = {t.name: t.value for t in output_tensors}, error

    def get_input_tensor_by_name(self, request, name):
        return self.Tensor(name, request[name]) if name in request else None


def test_a_repository_request_of_several_images_answers_every_row_or_names_the_failed_ones(random_onnx) -> None:
    pytest.importorskip("onnxruntime")
    from fcn_deploy.runtime import open_backend
    from fcn_deploy.segmenter import Segmenter
    from fcn_deploy.serving.python_model import TritonPythonModel

    rng = np.random.default_rng(3)
    images = [encode(rng.integers(0, 255, shape, np.uint8)) for shape in ((40, 70, 3), (64, 32, 3))]
    with open_backend(random_onnx, "cpu") as backend:
        model = TritonPythonModel()
        model._utils, model._segmenter, model._max_pixels = _ExecuteUtils(), Segmenter(backend), None
        good = {"image": np.array([[images[0]], [images[1]]], dtype=object)}
        mixed = {"image": np.array([[images[0]], [b"junk"], [b""]], dtype=object)}
        single = {"image": np.array([[b"junk"]], dtype=object)}
        ok, failed, alone = model.execute([good, mixed, single])
        expected = [model._segmenter.segment(decode_image(data)).labels for data in images]
    assert ok.error is None and ok.tensors["labels"].shape == (2, 64, 70) and ok.tensors["mask"].shape == (2, 1)
    for row, labels in enumerate(expected):
        assert np.array_equal(ok.tensors["labels"][row, : labels.shape[0], : labels.shape[1]], labels)
    assert failed.tensors == {} and failed.error.text.startswith("image 2 of 3 of the request: not a readable image")
    assert "; image 3 of 3 of the request: empty" in failed.error.text and "image 1 of 3" not in failed.error.text
    assert alone.error.text.startswith("image: not a readable image")
