"""Latency, throughput, memory and efficiency of model artifacts, measured against PyTorch eager FP32.

Shared machines are noisy, so every artifact (and a float32 GEMM reference) runs in interleaved rounds:
round r times each artifact in turn, and speed ratios are taken round by round. Absolute times drift with
the load of the machine; ratios and GEMM fractions measured this way drift much less.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.bench.probes import (
    GemmProbe,
    import_runtime_for,
    machine_info,
    rss_probe,
)
from fcn_deploy.bench.report import (
    ArtifactResult,
    BenchConfig,
    BenchReport,
    ShapeResult,
)
from fcn_deploy.checkpoint import CHECKPOINT_SUFFIXES
from fcn_deploy.contract import ONNX_SUFFIX, read_sidecar
from fcn_deploy.deps import installed
from fcn_deploy.devices import check_device
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.fileio import sha256_file
from fcn_deploy.progress import log as _log
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.spec import ModelSpec, example_input

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


def onnx_choice_for(path: Path, config: BenchConfig) -> BackendChoice:
    """The runtime of one artifact: the configured one for ONNX files, the suffix's for the others."""
    return config.onnx_choice() if path.suffix.lower() == ONNX_SUFFIX else BackendChoice()


def artifact_label(backend_name: str, spec: ModelSpec, inference_precision: str = "f32") -> str:
    """Short name of an artifact in reports: backend, precision (bf16 where computed so) and INT8 target."""
    label = f"{backend_name}-{spec.precision if inference_precision == 'f32' else inference_precision}"
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


def _open(path: Path, role: str, config: BenchConfig) -> _Loaded:
    """Open one artifact, timing only the load (runtime imports happen first)."""
    from fcn_deploy.runtime import open_backend

    choice = onnx_choice_for(path, config)
    import_runtime_for(path, choice.backend)
    start = time.perf_counter()
    backend = open_backend(path, check_device(config.device), choice)
    return _Loaded(path=path, role=role, backend=backend, load_s=time.perf_counter() - start)


def _baseline_for(opened: list[_Loaded], config: BenchConfig) -> tuple[Path | None, str]:
    """The PyTorch FP32 checkpoint to compare against, and a note saying where it came from."""
    for item in opened:
        if item.path.suffix.lower() in CHECKPOINT_SUFFIXES:
            return item.path, f"PyTorch eager FP32 of {item.path.name} (given)"
    if not installed("torch"):  # the runtime install: a source checkpoint found on disk cannot run here
        return None, ("speed ratio unavailable: no checkpoint given, and PyTorch is not installed to run an "
                      "artifact's source checkpoint (pip install 'fcn-deploy[torch]')")
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
    if not installed("torch"):
        _log(f"  FLOPs of {item.path.name} unavailable: the architecture is counted with PyTorch, which is not "
             "installed (pip install 'fcn-deploy[torch]')")
        return None
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
            raise InputError(f"model file not found: {path}",
                             "pass the paths of checkpoints (.pt), ONNX files (.onnx) or engines (.engine)")
    if len(set(paths)) != len(paths):
        raise InputError("a model is listed twice", "list each model file once")
    shapes = [(b, h, w) for h, w in config.sizes for b in config.batches]
    loaded: list[_Loaded] = []
    gemm = GemmProbe(config.gemm_size, config.gemm_clean_env)
    try:
        for path in paths:
            _log(f"loading {path}")
            loaded.append(_open(path, "model", config))
        baseline_path, note = _baseline_for(loaded, config)
        if baseline_path is not None and baseline_path not in paths:
            _log(f"loading baseline {baseline_path}")
            loaded.insert(0, _open(baseline_path, "baseline", config))
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
        probe = rss_probe(item.path, config.device, shapes, onnx_choice_for(item.path, config))
        peak, before, load_s = probe["peak"], probe["before_load"], probe["load_s"]
    return ArtifactResult(
        path=str(item.path), label=artifact_label(backend.name, backend.spec, onnx_choice_for(item.path, config).precision),
        backend=backend.name,
        device=backend.device, precision=backend.spec.precision, input_format=backend.spec.input_format,
        role=item.role, load_s=load_s, first_run_s=item.first_run_s, peak_rss_mb=peak,
        rss_before_load_mb=before, shapes=tuple(results[index] for results in per_shape),
    )


