"""The TensorRT backend: sidecar/machine compatibility (pure Python), missing components, and GPU runs."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.errors import ArtifactError, InputError, MissingComponentError
from fcn_deploy.runtime.trt_backend import check_engine_compatible, engine_mismatches

BUILT = {"tensorrt_version": "10.16.1.11", "gpu": "NVIDIA L4", "compute_capability": "8.9"}


def test_matching_machine_has_no_mismatch() -> None:
    assert engine_mismatches(BUILT, "10.16.1.11", "NVIDIA L4", "8.9") == []


@pytest.mark.parametrize(
    ("version", "gpu", "capability", "words"),
    [
        ("11.4.0.106", "NVIDIA L4", "8.9", ["TensorRT 10.16.1.11", "11.4.0.106"]),
        ("10.16.1.11", "NVIDIA A100-SXM4-40GB", "8.0", ["compute capability 8.9", "8.0", "NVIDIA A100"]),
        ("10.16.1.11", "NVIDIA GeForce RTX 4090", "8.9", ["NVIDIA L4", "RTX 4090"]),
    ],
)
def test_mismatch_names_what_differs(version: str, gpu: str, capability: str, words: list[str]) -> None:
    problems = engine_mismatches(BUILT, version, gpu, capability)
    assert problems
    text = "; ".join(problems)
    assert all(word in text for word in words)
    with pytest.raises(ArtifactError, match="rebuild") as caught:
        check_engine_compatible(Path("fcn.fp16.engine"), BUILT, version, {"name": gpu, "compute_capability": capability})
    assert "fcn.fp16.engine" in caught.value.message


def test_sidecar_without_build_facts_is_a_mismatch() -> None:
    assert len(engine_mismatches({}, "10.16.1.11", "NVIDIA L4", "8.9")) == 3


def _engine_with_sidecar(tmp_path: Path, random_onnx: Path) -> Path:
    engine = tmp_path / "fcn.fp32.engine"
    engine.write_bytes(b"not a plan")
    shutil.copy(random_onnx.with_name(random_onnx.name + ".json"), tmp_path / "fcn.fp32.engine.json")
    return engine


def test_without_tensorrt_opening_an_engine_exits_2(random_onnx: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: the missing-component path cannot be exercised")
    from fcn_deploy.runtime import open_backend

    with pytest.raises(MissingComponentError, match="TensorRT") as caught:
        open_backend(_engine_with_sidecar(tmp_path, random_onnx), "auto")
    assert caught.value.exit_code == 2 and "fcn-deploy[tensorrt]" in caught.value.hint


def test_cpu_device_is_refused(random_onnx: Path, tmp_path: Path) -> None:
    from fcn_deploy.runtime.trt_backend import TensorRTBackend

    with pytest.raises(InputError, match="CUDA GPU only"):
        TensorRTBackend(_engine_with_sidecar(tmp_path, random_onnx), "cpu")


# --- the backend against recording TensorRT and cuda-python stand-ins (tests/gpu_standins.py) ---------


def _standin_engine(tmp_path: Path, plan: bytes | None = None, facts: dict | None = None) -> Path:
    """A plan the stand-in runtime deserialises, with the sidecar a build on the stand-in GPU writes."""
    from gpu_standins import PLAN, TRT_VERSION

    from fcn_deploy.contract import write_sidecar
    from fcn_deploy.fileio import sha256_file
    from fcn_deploy.spec import ModelSpec, ShapeRange

    engine = tmp_path / "fcn.fp32.engine"
    engine.write_bytes(PLAN)
    shape_range = ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128))
    spec = ModelSpec(arch="fcn32s", labels_name="labels", shape_range=shape_range)
    write_sidecar(engine, spec, {"format": "fcn-deploy-engine-1", "tensorrt_version": TRT_VERSION,
                                 "gpu": "Stand-in GPU", "compute_capability": "8.9",
                                 "engine_sha256": sha256_file(engine), **(facts or {})})
    if plan is not None:
        engine.write_bytes(plan)
    return engine


def _backend(tmp_path: Path):
    from fcn_deploy.runtime.trt_backend import TensorRTBackend

    return TensorRTBackend(_standin_engine(tmp_path), "cuda")


BATCH = np.zeros((2, 3, 64, 96), dtype=np.float32)


def test_labels_mode_pins_host_memory_only_for_the_input_and_the_labels(gpu_standins, tmp_path: Path) -> None:
    with _backend(tmp_path) as backend:
        labels = backend.infer_labels(BATCH)
        assert labels.dtype == np.uint8 and labels.shape == (2, 64, 96) and np.all(labels == gpu_standins.label_value)
        pinned = [args[0] for args in gpu_standins.args_of("cudaMallocHost")]
        assert sorted(pinned) == sorted([BATCH.nbytes, 2 * 64 * 96])  # no N×21×H×W float logits buffer
        device = [args[0] for args in gpu_standins.args_of("cudaMalloc")]
        assert sorted(device) == sorted([BATCH.nbytes, 2 * 21 * 64 * 96 * 4, 2 * 64 * 96])
        copies_back = [a for a in gpu_standins.args_of("cudaMemcpyAsync")
                       if a[3] == gpu_standins.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost]
        assert [a[2] for a in copies_back] == [2 * 64 * 96]
        logits = backend.infer(BATCH)
        assert logits.shape == (2, 21, 64, 96) and len(gpu_standins.args_of("cudaMallocHost")) == 3
    assert gpu_standins.leaks() == {"device": 0, "host": 0, "streams": 0}


def test_execute_gets_the_native_stream_handle(gpu_standins, tmp_path: Path) -> None:
    with _backend(tmp_path) as backend:
        backend.infer(BATCH)
        (handle,) = gpu_standins.args_of("IExecutionContext.execute_async_v3")[0]
        (stream,) = gpu_standins.args_of("cudaStreamSynchronize")[0]
        assert type(handle) is int and handle == stream._handle
    assert "int(cudaStream_t)" not in gpu_standins.names()  # deprecated in cuda-bindings 12.9.1 and 13


def test_run_calls_cuda_and_tensorrt_in_order(gpu_standins, tmp_path: Path) -> None:
    with _backend(tmp_path) as backend:
        gpu_standins.calls.clear()
        backend.infer(BATCH)
    names = [n for n in gpu_standins.names() if n not in ("IExecutionContext.get_tensor_shape",)]
    run = names[:names.index("cudaStreamSynchronize") + 1]
    assert run[0] == "IExecutionContext.set_input_shape"
    assert run.index("IExecutionContext.set_tensor_address") < run.index("cudaMemcpyAsync")
    assert run[-4:] == ["cudaMemcpyAsync", "IExecutionContext.execute_async_v3", "cudaMemcpyAsync",
                        "cudaStreamSynchronize"]
    assert [a[0] for a in gpu_standins.args_of("IExecutionContext.set_tensor_address")] == ["image", "logits", "labels"]


def test_a_refused_tensor_address_is_an_error(gpu_standins, tmp_path: Path) -> None:
    from gpu_standins import PASS

    gpu_standins.fail["IExecutionContext.set_tensor_address"] = lambda args: False if args[0] == "logits" else PASS
    with _backend(tmp_path) as backend:
        with pytest.raises(ArtifactError, match="'logits'"):
            backend.infer(BATCH)
    assert "IExecutionContext.execute_async_v3" not in gpu_standins.names()


@pytest.mark.parametrize("failing", ["ICudaEngine.get_tensor_profile_shape", "cudaStreamCreate"])
def test_a_constructor_failing_half_way_leaks_nothing(gpu_standins, tmp_path: Path, failing: str) -> None:
    from fcn_deploy.runtime.tensorrt_support import CudaError

    gpu_standins.fail[failing] = RuntimeError("fails half-way") if failing.startswith("I") else 2
    with pytest.raises((RuntimeError, CudaError)):
        _backend(tmp_path)
    assert gpu_standins.leaks() == {"device": 0, "host": 0, "streams": 0}
    if failing != "cudaStreamCreate":
        assert "cudaStreamDestroy" in gpu_standins.names()


def test_release_frees_everything_even_when_one_free_fails(gpu_standins, tmp_path: Path) -> None:
    from gpu_standins import PASS

    from fcn_deploy.runtime.tensorrt_support import CudaError

    backend = _backend(tmp_path)
    backend.infer(BATCH)
    failures = iter([1])  # the first cudaFree fails with cudaErrorInvalidValue
    gpu_standins.fail["cudaFree"] = lambda args: next(failures, PASS)
    with pytest.raises(CudaError, match="cudaFree"):
        backend.close()
    assert len(gpu_standins.args_of("cudaFree")) == 3 and len(gpu_standins.args_of("cudaFreeHost")) == 2
    assert gpu_standins.leaks() == {"device": 1, "host": 0, "streams": 0}  # only the one whose free failed
    backend.close()  # closing again frees nothing twice
    assert len(gpu_standins.args_of("cudaFree")) == 3


def test_a_sidecar_of_another_plan_is_refused(gpu_standins, tmp_path: Path) -> None:
    from fcn_deploy.runtime.trt_backend import TensorRTBackend

    with pytest.raises(ArtifactError, match="describes another plan"):
        TensorRTBackend(_standin_engine(tmp_path, plan=b"a plan from a later build"), "cuda")
    assert "Runtime.deserialize_cuda_engine" not in gpu_standins.names()


@pytest.mark.parametrize(("facts", "words"), [({"engine_sha256": None}, "no engine_sha256"),
                                             ({"format": "fcn-deploy-engine-9"}, "engine format")])
def test_a_sidecar_without_identity_is_refused_with_the_fix(gpu_standins, tmp_path: Path, facts: dict,
                                                            words: str) -> None:
    from fcn_deploy.runtime.trt_backend import TensorRTBackend

    with pytest.raises(ArtifactError, match=words) as caught:
        TensorRTBackend(_standin_engine(tmp_path, facts=facts), "cuda")
    assert "fcn-deploy build" in caught.value.hint
    assert "Runtime.deserialize_cuda_engine" not in gpu_standins.names()


def test_the_plan_is_read_once_and_the_hashed_bytes_are_deserialised(gpu_standins, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from gpu_standins import PLAN

    engine = _standin_engine(tmp_path)
    reads = []
    real_read = Path.read_bytes

    def read_then_swap(path: Path) -> bytes:
        data = real_read(path)
        if path == engine:
            reads.append(path)
            engine.write_bytes(b"a plan written by a build running meanwhile")
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_swap)
    from fcn_deploy.runtime.trt_backend import TensorRTBackend

    with TensorRTBackend(engine, "cuda"):
        pass
    assert reads == [engine]
    assert gpu_standins.args_of("Runtime.deserialize_cuda_engine") == [(PLAN,)]


def test_one_tensorrt_logger_serves_every_backend_and_build(gpu_standins, tmp_path: Path) -> None:
    from fcn_deploy.runtime.trt_backend import TensorRTBackend

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    with TensorRTBackend(_standin_engine(first), "cuda"), TensorRTBackend(_standin_engine(second), "cuda"):
        pass
    assert gpu_standins.names().count("Logger") == 1


@pytest.mark.parametrize("failing", ["IExecutionContext.execute_async_v3", "cudaMemcpyAsync"])
def test_a_failed_enqueue_or_copy_waits_for_the_stream_before_returning(gpu_standins, tmp_path: Path,
                                                                        failing: str) -> None:
    from gpu_standins import PASS

    from fcn_deploy.errors import FcnDeployError

    copies = iter([PASS])  # cudaMemcpyAsync: the H2D copy is queued, the D2H copy fails
    gpu_standins.fail[failing] = False if failing.startswith("I") else (lambda args: next(copies, 1))
    with _backend(tmp_path) as backend:
        gpu_standins.calls.clear()
        with pytest.raises(FcnDeployError):
            backend.infer(BATCH)
        names = gpu_standins.names()
        failed_at = max(i for i, name in enumerate(names) if name == failing)
        assert "cudaStreamSynchronize" in names[failed_at:]


def test_threads_sharing_a_backend_run_one_batch_at_a_time(gpu_standins, tmp_path: Path) -> None:
    """A second thread that calls in while a batch runs waits until the first result is copied out."""
    import threading

    from gpu_standins import PASS

    owner: list[tuple[str, int]] = []  # (call, thread) of every call that touches the context or the stream
    watched = ("IExecutionContext.set_input_shape", "IExecutionContext.execute_async_v3", "cudaMemcpyAsync",
               "cudaStreamSynchronize")

    def note(name: str):
        def failure(args):
            owner.append((name, threading.get_ident()))
            return PASS
        return failure

    for name in watched:
        gpu_standins.fail[name] = note(name)
    with _backend(tmp_path) as backend:
        other_done = threading.Event()
        results: dict[str, np.ndarray] = {}

        def other() -> None:
            results["other"] = backend.infer_labels(np.zeros((1, 3, 32, 32), dtype=np.float32))
            other_done.set()

        started = []

        def run_other_during_the_first_batch(args):
            owner.append(("IExecutionContext.execute_async_v3", threading.get_ident()))
            if not started:
                started.append(threading.Thread(target=other))
                started[0].start()
                other_done.wait(0.5)  # an unguarded backend lets the other batch run to its end here
            return PASS

        gpu_standins.fail["IExecutionContext.execute_async_v3"] = run_other_during_the_first_batch
        results["first"] = backend.infer_labels(BATCH)
        started[0].join(10)
    assert results["first"].shape == (2, 64, 96) and results["other"].shape == (1, 32, 32)
    threads = [thread for _, thread in owner]
    first_thread = threads[0]
    first_end = max(i for i, thread in enumerate(threads) if thread == first_thread)
    assert all(thread == first_thread for thread in threads[:first_end + 1])  # no call of the other in between


# --- GPU: need TensorRT and a CUDA device -----------------------------------------------------------


@pytest.fixture(scope="session")
def gpu_stack():
    """(tensorrt, gpu info), or a skip naming what is missing."""
    from fcn_deploy.runtime.tensorrt_support import require_tensorrt

    try:
        return require_tensorrt()
    except MissingComponentError as exc:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {exc.message}")


@pytest.fixture(scope="module")
def engines(gpu_stack, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """FP32, FP16 and INT8 engines of the trained export (profile batch 1..2, 64..128 px), and its checkpoint."""
    from fcn_deploy.build import BuildConfig, build

    # resolved only now, so that a machine without TensorRT skips before any training
    precision_onnx = request.getfixturevalue("precision_onnx")
    precision_voc_dir = request.getfixturevalue("precision_voc_dir")
    folder = tmp_path_factory.mktemp("engines")
    onnx_path = folder / precision_onnx.name
    for source in (precision_onnx, precision_onnx.with_name(precision_onnx.name + ".json")):
        shutil.copy(source, folder / source.name)
    profile = ((1, 3, 64, 64), (1, 3, 64, 96), (2, 3, 128, 128))
    built = {}
    for precision in ("fp32", "fp16", "int8"):
        config = BuildConfig(precision=precision, calib_data=precision_voc_dir, calib_num=8, calib_crop=(64, 96),  # type: ignore[arg-type]
                             calib_method="minmax", profile=profile, workspace_gib=1.0, no_parity="not under test",
                             calibration_dir=folder, engines_dir=folder)
        built[precision] = build(onnx_path, config).engine
    built["checkpoint"] = request.getfixturevalue("precision_checkpoint")
    built["onnx"], built["folder"], built["profile"] = onnx_path, folder, profile
    return built


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "min_agreement"), [("fp32", 0.999), ("fp16", 0.995), ("int8", 0.98)])
def test_engine_matches_pytorch_across_the_profile(engines, precision: str, min_agreement: float) -> None:
    from fcn_deploy.runtime import open_backend

    engine = engines[precision]
    assert engine.read_bytes()[:4] != b"{\"sp"  # a plain plan, no header of ours
    with open_backend(engine, "cuda") as trt_backend, open_backend(engines["checkpoint"], "cpu") as reference:
        for batch, height, width in ((1, 64, 64), (2, 64, 96), (1, 128, 128), (2, 96, 128)):
            x = np.random.default_rng(height + width).standard_normal((batch, 3, height, width), dtype=np.float32)
            logits, expected = trt_backend.infer(x), reference.infer(x)
            assert logits.shape == expected.shape == (batch, 21, height, width)
            assert np.mean(logits.argmax(1) == expected.argmax(1)) >= min_agreement


@pytest.mark.gpu
def test_engine_sidecar_records_the_build(engines, gpu_stack) -> None:
    from fcn_deploy.contract import read_sidecar

    trt, gpu = gpu_stack
    spec, document = read_sidecar(engines["fp16"])
    assert document["tensorrt_version"] == trt.__version__ and document["gpu"] == gpu["name"]
    assert document["compute_capability"] == gpu["compute_capability"] and document["precision"] == "fp16"
    assert document["profile"]["max"] == [2, 3, 128, 128] and spec.shape_range.max == (2, 128, 128)


@pytest.mark.gpu
def test_engine_from_another_machine_is_refused(engines, tmp_path: Path) -> None:
    import json

    from fcn_deploy.runtime import open_backend

    engine = tmp_path / "other.engine"
    shutil.copy(engines["fp32"], engine)
    document = json.loads(Path(str(engines["fp32"]) + ".json").read_text())
    document["compute_capability"] = "1.0"
    Path(str(engine) + ".json").write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="rebuild"):
        open_backend(engine, "cuda")


@pytest.mark.gpu
def test_build_survives_a_timing_cache_it_cannot_use(engines, gpu_stack, tmp_path: Path) -> None:
    """A second build whose keyed timing cache is unusable (as one from another GPU or TensorRT version)."""
    from fcn_deploy.build import BuildConfig, build
    from fcn_deploy.contract import read_sidecar
    from fcn_deploy.fileio import sha256_file
    from fcn_deploy.runtime import open_backend
    from fcn_deploy.workspace import timing_cache_path

    trt, gpu = gpu_stack
    cache = timing_cache_path(trt.__version__, gpu["compute_capability"], gpu["name"], engines["folder"])
    assert cache.is_file()  # saved by the fixture's builds
    real = cache.read_bytes()
    garbled = real[:16] + bytes(255 - b for b in real[16:])
    cache.write_bytes(garbled)
    config = BuildConfig(precision="fp32", profile=engines["profile"], workspace_gib=1.0, no_parity="not under test",
                         calibration_dir=engines["folder"], engines_dir=tmp_path, out=tmp_path / "again.engine")
    engine = build(engines["onnx"], config).engine
    _, document = read_sidecar(engine)
    assert document["engine_sha256"] == sha256_file(engine) and document["gpu"] == gpu["name"]
    assert cache.is_file() and cache.read_bytes() != garbled
    with open_backend(engine, "cuda") as backend:
        assert backend.infer(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 21, 64, 64)


@pytest.fixture(scope="module")
def preprocess_engine(gpu_stack, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(ONNX, engine) of a --with-preprocess --with-argmax export: uint8 NHWC in, logits and uint8 labels out."""
    from fcn_deploy.build import BuildConfig, build
    from fcn_deploy.export import ExportConfig, export_onnx

    folder = tmp_path_factory.mktemp("preprocess_engine")
    export = ExportConfig(with_preprocess=True, with_argmax=True, progress=False)
    onnx_path = export_onnx(request.getfixturevalue("precision_checkpoint"), folder / "fcn.onnx", export).onnx_path
    profile = ((1, 64, 64, 3), (1, 64, 96, 3), (2, 128, 128, 3))
    config = BuildConfig(precision="fp32", profile=profile, workspace_gib=1.0, no_parity="not under test",
                         calibration_dir=folder, engines_dir=folder)
    return onnx_path, build(onnx_path, config).engine


@pytest.mark.gpu
def test_engine_of_a_preprocess_argmax_export_matches_onnxruntime(preprocess_engine) -> None:
    from fcn_deploy.runtime import open_backend

    onnx_path, engine = preprocess_engine
    images = np.random.default_rng(11).integers(0, 256, size=(2, 64, 96, 3), dtype=np.uint8)
    with open_backend(engine, "cuda") as trt_backend, open_backend(onnx_path, "cpu") as reference:
        labels, expected = trt_backend.infer_labels(images), reference.infer_labels(images)
        logits = trt_backend.infer(images)
    assert labels.dtype == np.uint8 and labels.shape == expected.shape == (2, 64, 96)
    assert np.mean(labels == expected) >= 0.999  # FP32 engine: TF32 allowed on compute capability 8.0+
    assert np.mean(logits.argmax(1) == labels) >= 0.9999


@pytest.mark.gpu
def test_labels_mode_on_a_gpu_pins_only_the_input_and_the_labels(preprocess_engine) -> None:
    from fcn_deploy.runtime import open_backend

    _, engine = preprocess_engine
    images = np.zeros((2, 64, 96, 3), dtype=np.uint8)
    with open_backend(engine, "cuda") as backend:
        backend.infer_labels(images)
        pinned = {name: buffer.size for name, buffer in backend._host_buffers.items()}
        spec = backend.spec
    assert pinned == {spec.input_name: images.nbytes, spec.labels_name: 2 * 64 * 96}
