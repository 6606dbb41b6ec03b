"""Fixtures of the C API tests: the library built once per session, the compiled C programs, a tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from capi_support import EXAMPLE_SOURCE, SANITIZER_FLAGS, TEST_SOURCE, CapiBuild, compile_c


@pytest.fixture(scope="session")
def capi_build(tmp_path_factory: pytest.TempPathFactory, capi_toolchain) -> CapiBuild:
    """Build libfcn_deploy.so once per session and compile the example and the test program against it."""
    from fcn_deploy.capi.build import build_library

    root = tmp_path_factory.mktemp("capi")
    prefix = root / "install"
    build_library(prefix)
    example = compile_c(EXAMPLE_SOURCE, root / "segment", prefix)
    test_program = compile_c(TEST_SOURCE, root / "capi_test", prefix)
    return CapiBuild(prefix, example, test_program)


@pytest.fixture(scope="session")
def capi_model(tmp_path_factory: pytest.TempPathFactory, make_tiny_fcn) -> Path:
    """A tiny random-weight 21-class FCN in ONNX, made without PyTorch (fixed seed, so labels vary across classes)."""
    return make_tiny_fcn(tmp_path_factory.mktemp("capi-model") / "fcn32s.onnx")


@pytest.fixture(scope="session")
def python_segmenter(capi_model: Path):
    """The Python segmenter on the same model, for reference labels."""
    from fcn_deploy.segmenter import open_segmenter

    with open_segmenter(capi_model, device="cpu") as segmenter:
        yield segmenter


def _native_or_skip(build):
    """Run a native build; skip with the reason where a build tool it needs is missing here."""
    from fcn_deploy.errors import MissingComponentError

    if shutil.which("gcc") is None or shutil.which("cmake") is None:
        pytest.skip("gcc and cmake are needed to build the native library")
    try:
        return build()
    except MissingComponentError as exc:
        pytest.skip(f"the native library cannot be built here: {exc}")


@pytest.fixture(scope="session")
def native_build(tmp_path_factory: pytest.TempPathFactory) -> CapiBuild:
    """The native library built once per session with `fcn-deploy capi build` (native is its default runtime),
    and the example and the test program compiled against the folder."""
    from fcn_deploy.capi.native_build import openvino_dir
    from fcn_deploy.cli import run

    root = tmp_path_factory.mktemp("native")
    prefix = root / "install"
    _native_or_skip(openvino_dir)
    if not Path("/usr/include/nlohmann/json.hpp").is_file():
        pytest.skip("nlohmann/json is not installed (apt-get install -y nlohmann-json3-dev)")
    assert run(["capi", "build", "--out", str(prefix)]) == 0
    example = compile_c(EXAMPLE_SOURCE, root / "segment", prefix)
    test_program = compile_c(TEST_SOURCE, root / "capi_test", prefix)
    return CapiBuild(prefix, example, test_program)


@pytest.fixture(scope="session")
def sanitized_build(tmp_path_factory: pytest.TempPathFactory) -> CapiBuild:
    """The native library built with AddressSanitizer + UndefinedBehaviorSanitizer, and the test program with them."""
    from fcn_deploy.capi.native_build import NativeBuildConfig, build_native_library

    root = tmp_path_factory.mktemp("native-asan")
    prefix = root / "install"
    _native_or_skip(lambda: build_native_library(prefix, NativeBuildConfig(optimize=False, sanitize=True)))
    test_program = compile_c(TEST_SOURCE, root / "capi_test", prefix, *SANITIZER_FLAGS)
    return CapiBuild(prefix, test_program, test_program)


@pytest.fixture(scope="session")
def python_openvino(capi_model: Path):
    """The Python segmenter on the same model with OpenVINO FP32 (what `fcn-deploy infer --backend openvino`
    runs), without a compiled-model cache, for the native library's reference labels."""
    pytest.importorskip("openvino")
    from fcn_deploy.runtime.openvino_backend import OpenVinoBackend, OpenVinoOptions
    from fcn_deploy.segmenter import Segmenter

    with OpenVinoBackend(capi_model, "cpu", OpenVinoOptions(precision="f32", cache_dir=None)) as backend:
        yield Segmenter(backend)
