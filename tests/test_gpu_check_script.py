"""``scripts/gpu-check.sh`` on a machine without a visible CUDA device: it refuses with the reason and exit code 2,
writes no result and leaves no temporary folder (it never measures on the CPU instead)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check.sh"


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    inherited = {key: value for key, value in os.environ.items() if key != "OUT"}
    environment = {**inherited, "PYTHON": sys.executable, "TMPDIR": str(tmp_path / "tmp"),
                   "CUDA_VISIBLE_DEVICES": "", "GPU_CHECK_TIMEOUT_S": "120", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=180, env=environment)


def test_no_cuda_device_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = tmp_path / "gpu-check.json"
    completed = _run(tmp_path, str(result))
    assert completed.returncode == 2, completed.stderr
    assert "error: no CUDA device" in completed.stderr and "never falls back to the CPU" in completed.stderr
    assert not result.exists()
    assert list((tmp_path / "tmp").iterdir()) == []  # its temporary folder was removed


def test_out_folder_is_used_and_a_missing_path_is_refused(tmp_path: Path) -> None:
    completed = _run(tmp_path, OUT=str(tmp_path / "out"))
    assert completed.returncode == 2 and "error: no CUDA device" in completed.stderr
    assert not (tmp_path / "out" / "gpu-check.json").exists()
    completed = _run(tmp_path)
    assert completed.returncode == 1 and "error: no result path given" in completed.stderr
