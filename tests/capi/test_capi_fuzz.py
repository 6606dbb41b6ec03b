"""The C API's argument checks under random arguments from a C harness: our status and message, never a crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from capi_support import FUZZ_SOURCE, compile_c, run_program

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


@pytest.fixture(scope="module", params=["embedded", "native"])
def fuzz_program(request, tmp_path_factory) -> Path:
    """The harness compiled against the embedded library and against the native one."""
    build = request.getfixturevalue("capi_build" if request.param == "embedded" else "native_build")
    return compile_c(FUZZ_SOURCE, tmp_path_factory.mktemp("capi-fuzz") / "capi_fuzz", build.prefix)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_arguments_end_in_a_status_never_a_crash(fuzz_program, tiny_onnx, tmp_path, seed):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    long_run = os.environ.get("FCN_FUZZ_PROFILE") == "long"
    iterations = int(os.environ.get("FCN_FUZZ_EXAMPLES", "20000")) if long_run else 4000
    if long_run:
        seed += int.from_bytes(os.urandom(4), "little")
    done = run_program(fuzz_program, model, iterations, seed, timeout=3600)
    assert done.returncode == 0, f"seed {seed}: exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    calls, valid = (int(v) for v in done.stdout.split()[1:3])
    assert calls == iterations and valid > iterations // 30  # both kinds of call were made
