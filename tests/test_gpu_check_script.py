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


def _fake_python(tmp_path: Path, tensorrt: bool) -> tuple[Path, Path]:
    """A stand-in interpreter that logs each call: the PyTorch check writes its result and passes; ``import
    tensorrt`` works only when ``tensorrt``; every other command (pytest, the CLI) passes."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        'if [[ "$1" == *gpu_check.py ]]; then echo "{}" > "$3"; exit 0; fi\n'
        'if [ "$1" = "-c" ] && [[ "$2" == *"import tensorrt"* ]]; then\n'
        + ('  echo 10.16.1.11; exit 0\n' if tensorrt else "  exit 1\n")
        + "fi\nexit 0\n")
    fake.chmod(0o755)
    return fake, log


def test_without_tensorrt_it_says_plainly_that_it_skipped_the_tensorrt_checks(tmp_path: Path) -> None:
    fake, log = _fake_python(tmp_path, tensorrt=False)
    completed = _run(tmp_path, str(tmp_path / "gpu-check.json"), PYTHON=str(fake))
    assert completed.returncode == 0, completed.stderr
    assert "skipped: the gpu-marked TensorRT tests and the build/infer/parity round trip" in completed.stderr
    assert "TensorRT is not importable" in completed.stderr
    assert "-m pytest" not in log.read_text()


def test_with_tensorrt_it_runs_the_gpu_tests_and_a_round_trip(tmp_path: Path) -> None:
    fake, log = _fake_python(tmp_path, tensorrt=True)
    completed = _run(tmp_path, str(tmp_path / "gpu-check.json"), PYTHON=str(fake))
    assert completed.returncode == 0, completed.stderr
    calls = log.read_text().splitlines()
    assert any(call.startswith("-m pytest -m gpu") and "test_trt_backend.py" in call for call in calls)
    commands = [call.split()[2] for call in calls if call.startswith("-m fcn_deploy.cli")]
    assert commands == ["data", "export", "build", "infer", "parity"]
    assert "round trip: build, infer and parity passed" in completed.stderr
    assert list((tmp_path / "tmp").iterdir()) == []
