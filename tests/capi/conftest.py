"""Fixtures of the C API tests: the library built once per session, the compiled C programs, a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from capi_support import EXAMPLE_SOURCE, TEST_SOURCE, CapiBuild, compile_c


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
