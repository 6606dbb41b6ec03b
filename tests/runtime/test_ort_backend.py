"""The ONNX Runtime backend against the PyTorch reference, its device handling and artifact checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
from fcn_deploy.contract import ONNX_METADATA_KEY
from fcn_deploy.errors import (
    ArtifactError,
    InputError,
    MissingComponentError,
    ShapeError,
)
from fcn_deploy.export import ExportConfig, export_onnx
from fcn_deploy.model import build_model
from fcn_deploy.runtime import open_backend
from fcn_deploy.runtime.ort_backend import OrtBackend
from fcn_deploy.spec import ModelSpec, ShapeRange

RANGE = ShapeRange((1, 32, 32), (1, 64, 64), (4, 256, 256))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random-weight checkpoint and its ONNX export (comparison done by the tests here)."""
    folder = tmp_path_factory.mktemp("ort_backend")
    torch.manual_seed(1)
    checkpoint = save_checkpoint(
        folder / "fcn32s.pt", build_model("fcn32s", 21), Checkpoint(spec=ModelSpec(arch="fcn32s", shape_range=RANGE))
    )
    result = export_onnx(checkpoint, folder / "fcn.onnx", ExportConfig(verify=False, progress=False))
    return checkpoint, result.onnx_path


@pytest.fixture(scope="module")
def backends(exported: tuple[Path, Path]):
    checkpoint, onnx_path = exported
    with open_backend(checkpoint, "cpu") as reference, open_backend(onnx_path, "cpu") as candidate:
        yield reference, candidate


@pytest.mark.slow
@pytest.mark.parametrize(("batch", "height", "width"), [(1, 32, 32), (2, 64, 96), (3, 96, 64), (1, 160, 224), (4, 32, 256)])
def test_onnxruntime_matches_pytorch(backends, batch: int, height: int, width: int) -> None:
    reference, candidate = backends
    x = np.random.default_rng(batch * height + width).standard_normal((batch, 3, height, width), dtype=np.float32)
    expected, logits = reference.infer(x), candidate.infer(x)
    assert logits.shape == expected.shape == (batch, 21, height, width)
    assert logits.dtype == np.float32
    assert np.max(np.abs(logits - expected)) <= 1e-3 * np.max(np.abs(expected))
    assert np.mean(logits.argmax(1) == expected.argmax(1)) >= 0.9999


@pytest.mark.slow
def test_labels_output_is_the_argmax_of_the_logits_and_checked_like_them(exported, tmp_path: Path) -> None:
    checkpoint, _ = exported
    fused = export_onnx(checkpoint, tmp_path / "fcn.onnx", ExportConfig(with_argmax=True, verify=False, progress=False))
    with open_backend(fused.onnx_path, "cpu") as candidate:
        assert candidate.has_labels and candidate.spec.labels_name == "labels"
        x = np.random.default_rng(7).standard_normal((2, 3, 64, 96), dtype=np.float32)
        labels, logits = candidate.infer_labels(x), candidate.infer(x)
        with pytest.raises(ShapeError, match="not a multiple of 32"):
            candidate.infer_labels(np.zeros((1, 3, 100, 100), np.float32))
    assert labels.dtype == np.uint8 and labels.shape == (2, 64, 96)
    assert np.array_equal(labels, logits.argmax(1))


@pytest.mark.slow
def test_a_model_without_labels_output_says_how_to_get_one(backends) -> None:
    for model in backends:  # the checkpoint and its default export
        assert not model.has_labels
        with pytest.raises(ArtifactError, match="has no labels output"):
            model.infer_labels(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.slow
def test_backend_reports_spec_and_device(backends) -> None:
    _, candidate = backends
    assert isinstance(candidate, OrtBackend)
    assert candidate.name == "onnxruntime"
    assert candidate.device == "cpu"
    assert candidate.providers == ("CPUExecutionProvider",)
    assert candidate.spec.shape_range == RANGE
    assert candidate.spec.precision == "fp32"


@pytest.mark.slow
def test_non_aligned_and_out_of_range_inputs_are_refused(backends) -> None:
    _, candidate = backends
    with pytest.raises(ShapeError, match="100×100 is not a multiple of 32"):
        candidate.infer(np.zeros((1, 3, 100, 100), np.float32))
    with pytest.raises(ShapeError, match="outside the model's supported range"):
        candidate.infer(np.zeros((5, 3, 32, 32), np.float32))


@pytest.mark.slow
def test_cuda_request_without_cuda_is_refused_with_the_reason(exported: tuple[Path, Path]) -> None:
    """onnxruntime-gpu lists CUDA here but cannot run it: 'cuda' must fail, 'auto' must say cpu."""
    ort = pytest.importorskip("onnxruntime")
    _, onnx_path = exported
    session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if "CUDAExecutionProvider" in session.get_providers():
        assert OrtBackend(onnx_path, "cuda").device == "cuda"
        return
    with pytest.raises(MissingComponentError, match="device 'cuda' requested but") as info:
        OrtBackend(onnx_path, "cuda")
    assert info.value.exit_code == 2
    with OrtBackend(onnx_path, "auto") as backend:
        assert backend.device == "cpu"
        assert backend.providers == ("CPUExecutionProvider",)


@pytest.mark.parametrize("loadable", [False, True], ids=["newer-ir-than-onnxruntime", "loadable"])
def test_foreign_onnx_is_refused_before_inference(tmp_path: Path, loadable: bool) -> None:
    """Refused by the spec reader where ONNX Runtime cannot load the file, from the session where it can."""
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "foreign",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    versions = dict(ir_version=8, opset_imports=[helper.make_opsetid("", 17)]) if loadable else {}
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, **versions), str(path))
    with pytest.raises(ArtifactError, match="not an fcn-deploy ONNX model"):
        open_backend(path, "cpu")


@pytest.mark.slow
def test_the_spec_comes_from_the_session_without_parsing_the_file_again(exported, monkeypatch) -> None:
    import fcn_deploy.runtime.ort_backend as ort_backend

    def parse(path):
        raise AssertionError(f"{path} parsed in Python although ONNX Runtime loaded it")

    monkeypatch.setattr(ort_backend, "read_onnx_spec", parse)
    with open_backend(exported[1], "cpu") as backend:
        assert backend.spec.arch == "fcn32s" and backend.spec.shape_range == RANGE


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(ArtifactError):
        open_backend(path, "cpu")


@pytest.mark.slow
def test_spec_contradicting_the_graph_is_refused(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, onnx_path = exported
    model = onnx.load(str(onnx_path))
    spec = ModelSpec.from_json(next(p.value for p in model.metadata_props if p.key == ONNX_METADATA_KEY))
    wrong = spec.replace(num_classes=19, class_names=spec.class_names[:19], palette=spec.palette[:19])
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            prop.value = wrong.to_json()
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match="has 21 classes, the spec 19"):
        open_backend(path, "cpu")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda doc: doc["spec"]["shape_range"].update(opt=[2, 64, 64]), "disagree on shape_range"),
        (lambda doc: doc.update(onnx_sha256="0" * 64), "written for a different copy.onnx"),
    ],
)
def test_stale_sidecar_is_refused(exported: tuple[Path, Path], tmp_path: Path, edit, message: str) -> None:
    _, onnx_path = exported
    copy = tmp_path / "copy.onnx"
    shutil.copy(onnx_path, copy)
    document = json.loads(Path(f"{onnx_path}.json").read_text())
    edit(document)
    Path(f"{copy}.json").write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match=message):
        open_backend(copy, "cpu")


def test_session_options_leave_the_memory_pattern_off():
    """The memory pattern reserves a second plan-sized block per input shape: off, for bounded memory."""
    ort = pytest.importorskip("onnxruntime")
    from fcn_deploy.runtime.ort_backend import session_options

    assert session_options(ort).enable_mem_pattern is False


def test_sessions_share_one_arena_that_grows_by_what_is_asked():
    """Each session's own arena doubles as it grows (57 MiB more peak for a 1024×1024 fcn32s pass): one shared
    arena growing by the request is registered once and every session uses it."""
    ort = pytest.importorskip("onnxruntime")
    from fcn_deploy.runtime.ort_backend import session_options, shared_cpu_arena

    assert shared_cpu_arena(ort) is True
    assert shared_cpu_arena(ort) is True  # registered once: a second registration would be refused
    assert session_options(ort).get_session_config_entry("session.use_env_allocators") == "1"


def test_freed_heap_is_returned_after_every_session_load(exported, tmp_path, monkeypatch):
    """ONNX Runtime frees its parsed model after loading; the pages go back to the system, also when loading fails."""
    from fcn_deploy.runtime import ort_backend

    calls = []
    monkeypatch.setattr(ort_backend, "return_freed_heap", lambda: calls.append(1))
    ort_backend.OrtBackend(exported[1], "cpu")
    assert calls == [1]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ArtifactError):
        ort_backend.OrtBackend(broken, "cpu")
    assert calls == [1, 1]


def test_released_working_memory_is_allocated_again_by_the_next_run(exported):
    """The arena shrinks at the end of a small run with ONNX Runtime's shrink option; later runs are unchanged."""
    batch = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    with OrtBackend(exported[1], "cpu") as backend:
        before = backend.infer(batch)
        backend.release_working_memory()
        assert np.array_equal(backend.infer(batch), before)
    with pytest.raises(InputError, match="was closed"):
        backend.release_working_memory()


def test_an_onnx_with_nan_weights_and_no_sidecar_vouching_for_it_is_refused(tmp_path: Path, tiny_onnx) -> None:
    path = tiny_onnx(tmp_path / "nan.onnx")
    model = onnx.load(str(path))
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    weight[3] = np.nan
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weight, "w"))
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match=r"nan.onnx holds non-finite weights .* in 1 tensor\(s\): w"):
        OrtBackend(path, "cpu")
    with OrtBackend(tiny_onnx(tmp_path / "fine.onnx"), "cpu") as backend:  # finite weights open as before
        assert backend.spec.num_classes == 21


_CUDA_LIBRARIES = ("libcublas", "libcudnn", "libcufft", "libcurand", "libnvrtc")
_INFER_THEN_LIST_LIBRARIES = """
import json, sys
from fcn_deploy.cli import run
code = run(["infer", sys.argv[1], sys.argv[2], "--out", sys.argv[3]])
maps = open("/proc/self/maps").read()
print(json.dumps({"exit": code, "torch": "torch" in sys.modules,
                  "loaded": sorted({lib for lib in sys.argv[4].split(",") if lib in maps})}))
"""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's mappings from /proc (Linux)")
def test_auto_without_a_cuda_device_loads_no_cuda_library(tmp_path: Path, tiny_onnx) -> None:
    """`fcn-deploy infer MODEL DIR` (device auto) in a fresh process on a machine whose driver reports no CUDA
    device: no CUDA library is mapped and PyTorch is not imported on the ONNX path."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from fcn_deploy.devices import driver_reports_cuda_device

    if driver_reports_cuda_device():
        pytest.skip("a CUDA device is present: 'auto' is meant to load the CUDA libraries here")
    model = tiny_onnx(tmp_path / "fcn.onnx")
    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(tmp_path / "images" / "a.jpg")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", _INFER_THEN_LIST_LIBRARIES, str(model), str(tmp_path / "images"),
                           str(tmp_path / "out"), ",".join(_CUDA_LIBRARIES)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures == {"exit": 0, "torch": False, "loaded": []}
    assert (tmp_path / "out" / "a.png").is_file()


@pytest.mark.parametrize("devices, providers", [(None, ["CPUExecutionProvider"]), (0, ["CPUExecutionProvider"]),
                                                (1, ["CUDAExecutionProvider", "CPUExecutionProvider"])],
                         ids=["no-driver", "no-device", "one-device"])
def test_auto_tries_cuda_only_where_the_driver_reports_a_device(tiny_onnx, tmp_path: Path, monkeypatch,
                                                                devices, providers) -> None:
    from fcn_deploy.runtime import ort_backend

    monkeypatch.setattr("fcn_deploy.devices.cuda_device_count", lambda: devices)
    monkeypatch.setattr(ort_backend.require("onnxruntime"), "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    asked = []
    real_new_session = ort_backend._new_session

    def recording(ort, path, wanted, options):
        asked.append(list(wanted))
        return real_new_session(ort, path, ["CPUExecutionProvider"], options)

    monkeypatch.setattr(ort_backend, "_new_session", recording)
    monkeypatch.setattr(ort_backend, "_preload_cuda_libraries", lambda ort: asked.append("preload"))
    with OrtBackend(tiny_onnx(tmp_path / "fcn.onnx"), "auto") as backend:
        assert backend.device == "cpu"
    assert asked == ([providers] if devices is None or devices == 0 else ["preload", providers])
