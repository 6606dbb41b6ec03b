"""Machine probes of the benchmark: CPU and library description, the GEMM reference rate, peak RSS per artifact.

The GEMM reference and the memory probe run in child processes, so neither disturbs the timed process.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.bench.report import GemmResult
from fcn_deploy.contract import ENGINE_SUFFIXES
from fcn_deploy.errors import ArtifactError
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.spec import example_input

# environment variables that pick or tune OpenBLAS kernels; a wrong value slows numpy's GEMM
OPENBLAS_TUNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# --- machine description ---------------------------------------------------------------------------


def machine_info() -> tuple[tuple[str, str], ...]:
    """CPU model, core count, OS, Python and library versions, for the report header."""
    info = {
        "cpu": _cpu_model(),
        "logical_cpus": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):  # other work on a shared machine moves absolute times
        info["load_average_1_5_15"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    for dist in ("torch", "onnxruntime-gpu", "onnxruntime", "openvino", "onnx", "numpy"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return tuple(info.items())


def _cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), else whatever ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: VmHWM of /proc/self/status, which starts afresh at exec (ru_maxrss does not: a child started
    by a large parent inherits the parent's peak). Elsewhere: ru_maxrss (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# --- GEMM reference ----------------------------------------------------------------------------------


class GemmProbe:
    """A numpy float32 matmul in a child process, timed on request between the model rounds.

    A child process lets the reference run with OpenBLAS's kernel choice left to its own detection
    (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed) without touching this process's environment.
    """

    def __init__(self, size: int, clean_env: bool) -> None:
        env = dict(os.environ)
        self.env_cleared = tuple(v for v in OPENBLAS_TUNING_VARS if clean_env and v in env)
        for name in self.env_cleared:
            env.pop(name)
        code = f"from fcn_deploy.bench.probes import gemm_worker; gemm_worker({int(size)})"
        self.size = size
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.blas = tuple((str(k), str(v)) for k, v in self._read().items())
        self.seconds: list[float] = []

    def _read(self) -> dict[str, Any]:
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line:
            raise ArtifactError("the GEMM reference process stopped unexpectedly")
        return json.loads(line)

    def sample(self, repeats: int = 2) -> None:
        """Time ``repeats`` matmuls now and keep the times."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{int(repeats)}\n")
        self._proc.stdin.flush()
        self.seconds.extend(self._read()["seconds"])

    def result(self) -> GemmResult:
        """Median and best GFLOP/s over every sample so far."""
        flop = 2.0 * self.size**3
        rates = [flop / s / 1e9 for s in self.seconds] or [float("nan")]
        return GemmResult(self.size, float(np.median(rates)), float(max(rates)), len(self.seconds),
                          self.blas, self.env_cleared)

    def close(self) -> None:
        """Stop the child process."""
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()


def gemm_worker(size: int) -> None:
    """Child process loop: describe the BLAS, then answer each stdin line 'k' with k matmul times."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults
    print(json.dumps(_blas_description()), flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(max(1, int(line))):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
        print(json.dumps({"seconds": times}), flush=True)


def _blas_description() -> dict[str, str]:
    """Which BLAS library, kernel (architecture) and thread count numpy's matmul uses."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"note": "install threadpoolctl (pip install 'fcn-deploy[bench]') to see the BLAS kernel"}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
            return {k: str(pool.get(k)) for k in keys if pool.get(k) is not None}
    return {"note": "no BLAS thread pool found"}


# --- peak memory per artifact ----------------------------------------------------------------------


def rss_probe(
    path: str | os.PathLike[str], device: str, shapes: Sequence[tuple[int, int, int]], choice: BackendChoice = BackendChoice()
) -> dict[str, float]:
    """Peak RSS (MiB) of a fresh process that loads one artifact and runs each shape once.

    Runs a child process so the figure belongs to this artifact alone; 'before_load' is the peak after
    importing the runtime libraries, so 'peak - before_load' is what the artifact itself costs.
    """
    code = "import sys, json; from fcn_deploy.bench.probes import rss_worker; rss_worker(json.loads(sys.argv[1]))"
    request = json.dumps({"path": str(path), "device": device, "shapes": [list(s) for s in shapes],
                          "backend": choice.backend, "precision": choice.precision})
    done = subprocess.run([sys.executable, "-c", code, request], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise ArtifactError(f"the memory probe of {path} failed: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rss_worker(request: dict[str, Any]) -> None:
    """Child process: import the runtime, load the artifact, run each shape once, print peak RSS."""
    from fcn_deploy.runtime import open_backend

    choice = BackendChoice(request.get("backend", "auto"), request.get("precision", "f32"))
    import_runtime_for(Path(request["path"]), choice.backend)
    before = peak_rss_mb()
    start = time.perf_counter()
    with open_backend(request["path"], request["device"], choice) as backend:
        load_s = time.perf_counter() - start
        for batch, height, width in request["shapes"]:
            if backend.spec.shape_range.contains(batch, height, width):
                backend.infer(example_input(backend.spec, batch, height, width))
    print(json.dumps({"before_load": before, "peak": peak_rss_mb(), "load_s": load_s}), flush=True)


def import_runtime_for(path: Path, backend: str = "auto") -> None:
    """Import the backend module and its runtime library for ``path`` so load times exclude imports."""
    import importlib

    suffix = path.suffix.lower()
    if backend == "openvino" or suffix == ".xml":
        modules = ("openvino", "fcn_deploy.runtime.openvino_backend")
    elif suffix == ".onnx":
        modules = ("onnxruntime", "fcn_deploy.runtime.ort_backend")
    elif suffix in ENGINE_SUFFIXES:
        modules = ("tensorrt", "fcn_deploy.runtime.trt_backend")
    else:
        modules = ("torch", "fcn_deploy.runtime.torch_backend")
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return  # open_backend raises the error that names what to install


