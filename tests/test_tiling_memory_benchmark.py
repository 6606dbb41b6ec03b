"""``benchmarks/tiling_memory.py`` charges a command with its own peak RSS, never with that of the benchmark process
that made its images and started it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "tiling_memory.py"
STARTER_PEAK_MIB = 384  # what this process touches before it starts the command
COMMAND_PEAK_MIB = 160  # what the measured command touches


@pytest.fixture(scope="module")
def tiling_memory() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tiling_memory_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _touch(mib: int) -> None:
    """Raise this process's peak RSS by ``mib`` (every page written), then free it."""
    held = np.ones(mib << 20, np.uint8)
    del held


def test_a_small_command_is_not_charged_with_the_starting_process_peak(tmp_path: Path,
                                                                       tiling_memory: ModuleType) -> None:
    _touch(STARTER_PEAK_MIB)
    returncode, _, _, peak_mib = tiling_memory.command_peak([sys.executable, "-c", "pass"], tmp_path / "log")
    assert returncode == 0
    assert peak_mib < STARTER_PEAK_MIB / 2  # an interpreter doing nothing: tens of MiB


def test_the_command_own_peak_exit_code_and_output_are_reported(tmp_path: Path, tiling_memory: ModuleType) -> None:
    code = (f"import sys, time, numpy as np; held = np.ones({COMMAND_PEAK_MIB} << 20, np.uint8); print('touched'); "
            "time.sleep(0.5)\nwhile time.process_time() < 0.4: pass\nsys.exit(3)")
    returncode, seconds, cpu_seconds, peak_mib = tiling_memory.command_peak([sys.executable, "-c", code],
                                                                            tmp_path / "log")
    assert returncode == 3
    assert 0.4 <= cpu_seconds < seconds - 0.4  # its CPU time, which leaves out the half second it slept
    assert COMMAND_PEAK_MIB <= peak_mib < STARTER_PEAK_MIB
    assert (tmp_path / "log").read_text() == "touched\n"
