"""What ``fcn-deploy bench`` measures and how it is shown: the config, the result records, the table rows."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.fileio import write_text_atomic
from fcn_deploy.runtime import BackendChoice

Size = tuple[int, int]
BASELINE_LABEL = "pytorch-fp32"
ONNX_BACKENDS = ("onnxruntime", "openvino")


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
    onnx_backend: str = "onnxruntime"  # the runtime of the ONNX files: onnxruntime or openvino
    precision: str = "f32"  # OpenVINO's inference precision hint for the ONNX files (f32 or bf16)

    def __post_init__(self) -> None:
        if self.onnx_backend not in ONNX_BACKENDS:
            raise InputError(f"--backend {self.onnx_backend!r} cannot run ONNX files",
                             f"use one of: {', '.join(ONNX_BACKENDS)} (checkpoints and engines keep their own runtime)")
        self.onnx_choice()  # refuses a precision the backend does not take
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

    def onnx_choice(self) -> BackendChoice:
        """The runtime and precision hint the ONNX files run with."""
        return BackendChoice(self.onnx_backend, self.precision)

    def iters_in_round(self, round_index: int) -> int:
        """Timed runs of one artifact in round ``round_index``: ``iters`` spread as evenly as possible."""
        return iters_in_round(self.iters, self.rounds, round_index)


def iters_in_round(iters: int, rounds: int, round_index: int) -> int:
    """``iters`` timed runs spread over ``rounds`` interleaved rounds as evenly as possible: those of one round."""
    return iters // rounds + (1 if round_index < iters % rounds else 0)


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
