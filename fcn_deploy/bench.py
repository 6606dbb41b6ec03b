"""Latency, throughput, memory and efficiency of model artifacts, measured against PyTorch eager FP32.

Shared machines are noisy, so every artifact (and a float32 GEMM reference) runs in interleaved rounds:
round r times each artifact in turn, and speed ratios are taken round by round. Absolute times drift with
the load of the machine; ratios and GEMM fractions measured this way drift much less.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.checkpoint import CHECKPOINT_SUFFIXES
from fcn_deploy.data.progress import log as _log
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.export import example_input
from fcn_deploy.fileio import sha256_file, write_text_atomic
from fcn_deploy.runtime import ENGINE_SUFFIXES
from fcn_deploy.spec import ModelSpec, read_sidecar

Size = tuple[int, int]
# environment variables that pick or tune OpenBLAS kernels; a wrong value slows numpy's GEMM
OPENBLAS_TUNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
BASELINE_LABEL = "pytorch-fp32"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure: input sizes (H, W), batch sizes, iterations, rounds and device."""

    sizes: tuple[Size, ...] = ((320, 480),)
    batches: tuple[int, ...] = (1,)
    warmup: int = 2
    iters: int = 20  # timed runs per artifact and input shape, spread over the rounds
    rounds: int = 5
    device: str = "auto"
    measure_rss: bool = True  # peak RSS of each artifact in its own subprocess
    gemm_size: int = 2048  # n of the n×n float32 matmul used as the machine's reference rate
    gemm_clean_env: bool = True  # run the GEMM reference without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
    checkpoint_search: tuple[str, ...] = ("checkpoints",)  # where to look for an ONNX's source checkpoint

    def __post_init__(self) -> None:
        if not self.sizes or any(len(s) != 2 or min(s) < 1 for s in self.sizes):
            raise InputError(f"sizes must be positive HxW pairs, got {self.sizes}")
        if not self.batches or min(self.batches) < 1:
            raise InputError(f"batch sizes must be positive, got {self.batches}")
        if self.warmup < 0:
            raise InputError(f"--warmup must be >= 0, got {self.warmup}")
        if self.iters < 1 or self.rounds < 1:
            raise InputError(f"--iters and --rounds must be >= 1, got {self.iters} and {self.rounds}")
        if self.iters < self.rounds:
            raise InputError(f"--iters {self.iters} is less than --rounds {self.rounds}",
                             "give at least one timed run per round (raise --iters or lower --rounds)")
        if self.gemm_size < 16:
            raise InputError(f"gemm size must be >= 16, got {self.gemm_size}")
        object.__setattr__(self, "sizes", tuple((int(h), int(w)) for h, w in self.sizes))
        object.__setattr__(self, "batches", tuple(int(b) for b in self.batches))

    def iters_in_round(self, round_index: int) -> int:
        """Timed runs of one artifact in round ``round_index``: ``iters`` spread as evenly as possible."""
        return self.iters // self.rounds + (1 if round_index < self.iters % self.rounds else 0)


@dataclass(frozen=True)
class ShapeResult:
    """Timing of one artifact at one (batch, height, width)."""

    batch: int
    height: int
    width: int
    samples: int = 0
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    images_per_s: float | None = None
    megapixels_per_s: float | None = None
    ms_per_megapixel: float | None = None
    gflop: float | None = None  # analytic FLOPs of one batch
    gflops_per_s: float | None = None
    gemm_fraction: float | None = None  # achieved GFLOP/s over the GEMM reference of this run
    speedup_vs_eager: float | None = None  # PyTorch eager FP32 time / this time, median over rounds
    skipped: str | None = None


@dataclass(frozen=True)
class ArtifactResult:
    """One model file: what it is, how long it took to load, its peak memory, and its timings."""

    path: str
    label: str  # e.g. 'pytorch-fp32', 'onnxruntime-int8-cpu'
    backend: str
    device: str
    precision: str
    input_format: str
    role: str  # 'model' (given by the user) or 'baseline' (found for the speed ratio)
    load_s: float  # open_backend time (in the fresh memory-probe process when peak RSS is measured)
    first_run_s: float | None
    peak_rss_mb: float | None
    rss_before_load_mb: float | None
    shapes: tuple[ShapeResult, ...]


@dataclass(frozen=True)
class GemmResult:
    """The machine's float32 GEMM rate measured during the run (numpy matmul, n×n)."""

    size: int
    gflops_median: float
    gflops_best: float
    samples: int
    blas: tuple[tuple[str, str], ...]  # threadpoolctl's description of the BLAS that ran
    env_cleared: tuple[str, ...]  # OpenBLAS variables removed from the GEMM subprocess's environment


@dataclass(frozen=True)
class BenchReport:
    """Everything ``fcn-deploy bench`` measured, JSON-serialisable with ``to_dict``."""

    created: str
    machine: tuple[tuple[str, str], ...]
    config: BenchConfig
    gemm: GemmResult
    baseline: str | None
    baseline_note: str
    artifacts: tuple[ArtifactResult, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        data = dataclasses.asdict(self)
        data["machine"] = dict(self.machine)
        data["gemm"]["blas"] = dict(self.gemm.blas)
        return json.loads(json.dumps(data))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchReport:
        """Rebuild a report from ``to_dict`` output (e.g. to re-render a saved JSON report)."""
        try:
            config = dict(data["config"])
            config["sizes"] = tuple(tuple(s) for s in config["sizes"])
            for key in ("batches", "checkpoint_search"):
                config[key] = tuple(config[key])
            gemm = dict(data["gemm"])
            gemm["blas"], gemm["env_cleared"] = tuple(gemm["blas"].items()), tuple(gemm["env_cleared"])
            artifacts = tuple(
                ArtifactResult(**{**a, "shapes": tuple(ShapeResult(**s) for s in a["shapes"])})
                for a in data["artifacts"]
            )
            return cls(created=data["created"], machine=tuple(data["machine"].items()), config=BenchConfig(**config),
                       gemm=GemmResult(**gemm), baseline=data["baseline"], baseline_note=data["baseline_note"],
                       artifacts=artifacts)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"not an fcn-deploy bench report ({exc})") from exc

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the report atomically as indented JSON."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)


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
    for dist in ("torch", "onnxruntime-gpu", "onnxruntime", "onnx", "numpy"):
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
        code = f"from fcn_deploy.bench import gemm_worker; gemm_worker({int(size)})"
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


def rss_probe(path: str | os.PathLike[str], device: str, shapes: Sequence[tuple[int, int, int]]) -> dict[str, float]:
    """Peak RSS (MiB) of a fresh process that loads one artifact and runs each shape once.

    Runs a child process so the figure belongs to this artifact alone; 'before_load' is the peak after
    importing the runtime libraries, so 'peak - before_load' is what the artifact itself costs.
    """
    code = "import sys, json; from fcn_deploy.bench import rss_worker; rss_worker(json.loads(sys.argv[1]))"
    request = json.dumps({"path": str(path), "device": device, "shapes": [list(s) for s in shapes]})
    done = subprocess.run([sys.executable, "-c", code, request], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise ArtifactError(f"the memory probe of {path} failed: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rss_worker(request: dict[str, Any]) -> None:
    """Child process: import the runtime, load the artifact, run each shape once, print peak RSS."""
    from fcn_deploy.runtime import open_backend

    _import_runtime_for(Path(request["path"]))
    before = peak_rss_mb()
    start = time.perf_counter()
    with open_backend(request["path"], request["device"]) as backend:
        load_s = time.perf_counter() - start
        for batch, height, width in request["shapes"]:
            if backend.spec.shape_range.contains(batch, height, width):
                backend.infer(example_input(backend.spec, batch, height, width))
    print(json.dumps({"before_load": before, "peak": peak_rss_mb(), "load_s": load_s}), flush=True)


def _import_runtime_for(path: Path) -> None:
    """Import the backend module and its runtime library for ``path`` so load times exclude imports."""
    import importlib

    suffix = path.suffix.lower()
    if suffix == ".onnx":
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


# --- inputs and baseline -----------------------------------------------------------------------------


def find_source_checkpoint(
    spec: ModelSpec, artifact: Path, search: Sequence[str | os.PathLike[str]]
) -> Path | None:
    """The checkpoint an artifact was made from: the sidecar's path or a likely folder, matched by SHA-256."""
    wanted = spec.source_checkpoint_sha256
    if not wanted:
        return None
    candidates: list[Path] = []
    try:
        hint = read_sidecar(artifact)[1].get("source_checkpoint")
    except ArtifactError:
        hint = None
    if isinstance(hint, str) and hint:
        candidates.extend([Path(hint), artifact.parent / Path(hint).name])
    for folder in [artifact.parent, *map(Path, search)]:
        if folder.is_dir():
            candidates.extend(sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES))
    for candidate in dict.fromkeys(candidates):
        if candidate.is_file() and sha256_file(candidate) == wanted:
            return candidate
    return None


def artifact_label(backend_name: str, spec: ModelSpec) -> str:
    """Short name of an artifact in reports: backend, precision and INT8 target."""
    label = f"{backend_name}-{spec.precision}"
    if spec.quantization is not None and spec.quantization.target:
        label += f"-{spec.quantization.target}"
    return label


# --- timing ------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    """An opened artifact and the per-round times collected for the current shape."""

    path: Path
    role: str
    backend: Any
    load_s: float
    first_run_s: float | None = None
    rounds: list[list[float]] = field(default_factory=list)


def _percentile_ms(times: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(times), q) * 1e3)


def _shape_result(
    item: _Loaded, shape: tuple[int, int, int], gflop: float | None, gemm_gflops: float, baseline: _Loaded | None
) -> ShapeResult:
    """Statistics of one artifact's rounds at one shape, with its ratio to the baseline's same rounds."""
    batch, height, width = shape
    times = [t for r in item.rounds for t in r]
    median = float(np.median(times))
    megapixels = batch * height * width / 1e6
    speedup = None
    if baseline is not None and baseline.rounds and len(baseline.rounds) == len(item.rounds):
        per_round = [np.median(b) / np.median(a) for a, b in zip(item.rounds, baseline.rounds)]
        speedup = float(np.median(per_round))
    rate = gflop / median if gflop is not None else None
    return ShapeResult(
        batch=batch, height=height, width=width, samples=len(times),
        median_ms=median * 1e3, p90_ms=_percentile_ms(times, 90), p99_ms=_percentile_ms(times, 99),
        images_per_s=batch / median, megapixels_per_s=megapixels / median,
        ms_per_megapixel=median * 1e3 / megapixels, gflop=gflop, gflops_per_s=rate,
        gemm_fraction=(rate / gemm_gflops) if rate is not None and gemm_gflops > 0 else None,
        speedup_vs_eager=speedup,
    )


def _timed_run(backend: Any, batch: np.ndarray) -> float:
    start = time.perf_counter()
    backend.infer(batch)
    return time.perf_counter() - start


def _measure_shape(
    loaded: list[_Loaded], shape: tuple[int, int, int], config: BenchConfig, gemm: GemmProbe
) -> dict[int, str]:
    """Warm up, then run interleaved rounds (GEMM sample, then each artifact in rotated order)."""
    skipped: dict[int, str] = {}
    inputs: dict[int, np.ndarray] = {}
    for index, item in enumerate(loaded):
        item.rounds = []
        spec = item.backend.spec
        if not spec.shape_range.contains(*shape):
            skipped[index] = f"outside the artifact's shape range {spec.shape_range.min}..{spec.shape_range.max}"
            continue
        inputs[index] = example_input(spec, *shape)
        for warm in range(config.warmup):
            seconds = _timed_run(item.backend, inputs[index])
            if item.first_run_s is None and warm == 0:
                item.first_run_s = seconds
    active = sorted(inputs)
    for round_index in range(config.rounds):
        gemm.sample()
        shift = round_index % max(1, len(active))
        for index in active[shift:] + active[:shift]:
            item = loaded[index]
            item.rounds.append([_timed_run(item.backend, inputs[index]) for _ in range(config.iters_in_round(round_index))])
    return skipped


# --- the benchmark -----------------------------------------------------------------------------------


def _open(path: Path, role: str, device: str) -> _Loaded:
    """Open one artifact, timing only the load (runtime imports happen first)."""
    from fcn_deploy.runtime import open_backend

    _import_runtime_for(path)
    start = time.perf_counter()
    backend = open_backend(path, device)  # type: ignore[arg-type]
    return _Loaded(path=path, role=role, backend=backend, load_s=time.perf_counter() - start)


def _baseline_for(opened: list[_Loaded], config: BenchConfig) -> tuple[Path | None, str]:
    """The PyTorch FP32 checkpoint to compare against, and a note saying where it came from."""
    for item in opened:
        if item.path.suffix.lower() in CHECKPOINT_SUFFIXES:
            return item.path, f"PyTorch eager FP32 of {item.path.name} (given)"
    for item in opened:
        found = find_source_checkpoint(item.backend.spec, item.path, config.checkpoint_search)
        if found is not None:
            return found, f"PyTorch eager FP32 of {found.name} (source checkpoint of {item.path.name}, matched by SHA-256)"
    return None, "speed ratio unavailable: no checkpoint given and no artifact's source checkpoint was found"


def _flops_for(item: _Loaded, shape: tuple[int, int, int]) -> float | None:
    """Analytic GFLOP of one batch of ``shape``: the architecture's, the same for every form of its graph.

    Counting the model rather than each graph keeps the GEMM fraction comparable: the MatMul upsampler of an
    export multiplies a third of its taps by structural zeros, work the model does not need.
    """
    spec = item.backend.spec
    try:
        return _arch_gflop(spec.arch, spec.num_classes, shape)
    except InputError as exc:
        _log(f"  FLOPs of {item.path.name} unavailable: {exc.message}")
        return None


@functools.lru_cache(maxsize=64)
def _arch_gflop(arch: str, num_classes: int, shape: tuple[int, int, int]) -> float:
    """GFLOP of the model family member ``arch`` at (batch, height, width), counted on the meta device."""
    from fcn_deploy.deps import require
    from fcn_deploy.flops import torch_flops
    from fcn_deploy.model import build_model

    batch, height, width = shape
    with require("torch").device("meta"):  # shapes only: no weight initialisation cost
        model = build_model(arch, num_classes)
    return torch_flops(model, (batch, 3, height, width)).gflop


def run_bench(models: Sequence[str | os.PathLike[str]], config: BenchConfig) -> BenchReport:
    """Benchmark each model file (and the PyTorch FP32 baseline) at every size × batch of ``config``."""
    paths = [Path(m) for m in models]
    if not paths:
        raise InputError("no model to benchmark", "pass checkpoints (.pt), ONNX files or engines")
    for path in paths:
        if not path.is_file():
            raise InputError(f"model file not found: {path}")
    if len(set(paths)) != len(paths):
        raise InputError("a model is listed twice", "list each model file once")
    shapes = [(b, h, w) for h, w in config.sizes for b in config.batches]
    loaded: list[_Loaded] = []
    gemm = GemmProbe(config.gemm_size, config.gemm_clean_env)
    try:
        for path in paths:
            _log(f"loading {path}")
            loaded.append(_open(path, "model", config.device))
        baseline_path, note = _baseline_for(loaded, config)
        if baseline_path is not None and baseline_path not in paths:
            _log(f"loading baseline {baseline_path}")
            loaded.insert(0, _open(baseline_path, "baseline", config.device))
        baseline = next((item for item in loaded if item.path == baseline_path), None)
        per_shape: list[dict[int, ShapeResult]] = []
        for shape in shapes:
            _log(f"timing batch {shape[0]} at {shape[1]}x{shape[2]}: {config.iters} runs per artifact "
                 f"in {config.rounds} interleaved rounds")
            skipped = _measure_shape(loaded, shape, config, gemm)
            gemm_rate = gemm.result().gflops_median
            results = {}
            for index, item in enumerate(loaded):
                if index in skipped:
                    results[index] = ShapeResult(*shape, skipped=skipped[index])
                else:
                    reference = baseline if baseline is not None and baseline.rounds else None
                    results[index] = _shape_result(item, shape, _flops_for(item, shape), gemm_rate, reference)
            per_shape.append(results)
        artifacts = tuple(_artifact_result(index, item, per_shape, shapes, config) for index, item in enumerate(loaded))
        gemm_result = gemm.result()
    finally:
        gemm.close()
        for item in loaded:
            item.backend.close()
    return BenchReport(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        machine=machine_info(), config=config, gemm=gemm_result,
        baseline=str(baseline_path) if baseline_path else None, baseline_note=note, artifacts=artifacts,
    )


def _artifact_result(
    index: int, item: _Loaded, per_shape: list[dict[int, ShapeResult]], shapes: list[tuple[int, int, int]],
    config: BenchConfig,
) -> ArtifactResult:
    """Collect one artifact's shape results and, if asked, its peak RSS from a fresh process."""
    backend = item.backend
    peak = before = None
    load_s = item.load_s
    if config.measure_rss:
        _log(f"peak memory and load time of {item.path.name} (fresh process)")
        probe = rss_probe(item.path, config.device, shapes)
        peak, before, load_s = probe["peak"], probe["before_load"], probe["load_s"]
    return ArtifactResult(
        path=str(item.path), label=artifact_label(backend.name, backend.spec), backend=backend.name,
        device=backend.device, precision=backend.spec.precision, input_format=backend.spec.input_format,
        role=item.role, load_s=load_s, first_run_s=item.first_run_s, peak_rss_mb=peak,
        rss_before_load_mb=before, shapes=tuple(results[index] for results in per_shape),
    )


# --- presentation ------------------------------------------------------------------------------------


TABLE_COLUMNS = ("artifact", "batch×H×W", "median ms", "p90 ms", "p99 ms", "img/s", "MP/s", "GFLOP/s",
                 "% GEMM", "× eager", "load s", "peak RSS MiB")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_rows(report: BenchReport) -> Iterator[tuple[str, ...]]:
    """One row of strings per artifact and shape, in TABLE_COLUMNS order."""
    for art in report.artifacts:
        name = f"{art.label} ({Path(art.path).name})"
        for s in art.shapes:
            shape = f"{s.batch}×{s.height}×{s.width}"
            if s.skipped:
                yield (name, shape, f"skipped: {s.skipped}", *("",) * (len(TABLE_COLUMNS) - 3))
                continue
            yield (
                name, shape, _fmt(s.median_ms, ".1f"), _fmt(s.p90_ms, ".1f"), _fmt(s.p99_ms, ".1f"),
                _fmt(s.images_per_s, ".2f"), _fmt(s.megapixels_per_s, ".2f"), _fmt(s.gflops_per_s, ".0f"),
                _fmt(None if s.gemm_fraction is None else 100 * s.gemm_fraction, ".0f"),
                _fmt(s.speedup_vs_eager, ".2f"), _fmt(art.load_s, ".2f"), _fmt(art.peak_rss_mb, ".0f"),
            )


def summary_lines(report: BenchReport) -> list[str]:
    """The lines printed under the table: GEMM reference, baseline, machine."""
    g = report.gemm
    blas = ", ".join(f"{k}={v}" for k, v in g.blas)
    cleared = f"; removed {', '.join(g.env_cleared)} from its environment" if g.env_cleared else ""
    machine = dict(report.machine)
    return [
        f"GEMM reference: numpy float32 {g.size}×{g.size} matmul, median {g.gflops_median:.0f} GFLOP/s "
        f"(best {g.gflops_best:.0f}, {g.samples} samples; {blas}{cleared})",
        f"baseline: {report.baseline_note}",
        f"machine: {machine.get('cpu')}, {machine.get('logical_cpus')} logical CPUs, {machine.get('os')}, "
        f"load average {machine.get('load_average_1_5_15', 'unknown')} at the end of the run",
    ]
