"""TensorRT engine build from a precision ONNX (FP32, FP16 or INT8 Q/DQ), strongly typed.

TensorRT 11 removed BuilderFlag.FP16/INT8 and the INT8 calibrators, so precision is decided in ONNX
space (``fcn_deploy.precision``) and the network is created STRONGLY_TYPED: TensorRT keeps the types
the ONNX declares. The same code builds on TensorRT 10.x and 11.x. Everything that needs neither
TensorRT nor a GPU (precision ONNX, CPU parity) happens first; then a missing TensorRT or CUDA device
stops the build with MissingComponentError (exit 2).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcn_deploy.contract import load_onnx, read_sidecar, sidecar_path, with_sidecar, write_sidecar
from fcn_deploy.data.voc import dataset_places
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.fileio import Place, check_outputs_apart, sha256_file, write_bytes_atomic
from fcn_deploy.parity import ParityConfig
from fcn_deploy.parity.gate import PrecisionParity, check_precision
from fcn_deploy.progress import log
from fcn_deploy.runtime.tensorrt_support import require_tensorrt
from fcn_deploy.spec import ModelSpec, ShapeRange
from fcn_deploy.workspace import (
    CALIBRATION_DIR,
    ENGINE_DIR,
    Precision,
    engine_path,
    precision_onnx_path,
    timing_cache_path,
)

Dims4 = tuple[int, int, int, int]
ENGINE_FORMAT = "fcn-deploy-engine-1"


@dataclass(frozen=True)
class BuildConfig:
    """Options of ``fcn-deploy build``."""

    precision: Precision
    calib_data: Path | None = None  # VOC folder for INT8 calibration (when the INT8 ONNX must be made)
    calib_split: str = "train"
    calib_num: int = 256
    calib_crop: tuple[int, int] = (320, 480)
    calib_method: str = "percentile"
    calib_seed: int = 0
    profile: tuple[Dims4, Dims4, Dims4] | None = None  # None: the spec's shape range
    workspace_gib: float = 4.0
    timing_cache: Path | None = None  # None: calibration_dir/timing-<TensorRT version>-sm<compute capability>.cache
    out: Path | None = None  # default engines/fcn.<precision>.engine
    reference: Path | None = None  # checkpoint for the parity check (default: the export's source checkpoint)
    parity_data: Path | None = None  # VOC folder for parity (default: calib_data)
    parity_split: str = "val"
    skip_parity: bool = False
    calibration_dir: Path = CALIBRATION_DIR
    engines_dir: Path = ENGINE_DIR


@dataclass(frozen=True)
class BuildResult:
    """The engine (None when TensorRT or a GPU is missing), the precision ONNX and its parity."""

    precision_onnx: Path
    engine: Path | None
    parity: PrecisionParity | None = None  # when run
    notes: tuple[str, ...] = field(default_factory=tuple)


# --- precision ONNX ------------------------------------------------------------------------------


def _fresh(artifact: Path, source: Path) -> bool:
    """True when ``artifact`` exists and was made from the current ``source`` (recorded hash)."""
    if not artifact.is_file():
        return False
    try:
        spec, document = read_sidecar(artifact)
    except ArtifactError:
        return False
    if spec.quantization is not None and spec.quantization.target == "cpu":  # int8 for ONNX Runtime, not TensorRT
        return False
    recorded = document.get("source_onnx_sha256")
    return bool(recorded) and recorded == sha256_file(source) and document.get("onnx_sha256") == sha256_file(artifact)


def make_precision_onnx(onnx_path: Path, config: BuildConfig) -> Path:
    """Produce (or reuse, when made from this very ONNX) the ONNX of the requested precision."""
    _, spec = load_onnx(onnx_path)
    if spec.precision != "fp32":
        raise InputError(f"{onnx_path} has precision '{spec.precision}'; build takes the FP32 export",
                         "pass the FP32 ONNX (e.g. export/fcn.onnx) and choose --fp16/--int8")
    target = precision_onnx_path(onnx_path, config.precision)
    if config.precision == "fp32" or _fresh(target, onnx_path):
        if config.precision != "fp32":
            log(f"reusing {target} (made from this {onnx_path.name})")
        return target
    if config.precision == "fp16":
        from fcn_deploy.precision.fp16 import convert_fp16

        result = convert_fp16(onnx_path, target)
        log(f"wrote {target}: FP16 weights and compute, FP32 kept for {', '.join(result.fp32_nodes)}")
    else:
        if config.calib_data is None:
            raise InputError(f"{target} must be made first and INT8 calibration needs data",
                             "pass --calib-data VOCDIR (a VOC2012 folder), or run 'fcn-deploy calibrate' first")
        from fcn_deploy.precision.calibrate import CalibrationConfig, calibrate_int8

        calibration = CalibrationConfig(
            data_dir=config.calib_data, split=config.calib_split, num=config.calib_num, crop=config.calib_crop,
            method=config.calib_method, target="tensorrt", seed=config.calib_seed, out=target,
            calibration_dir=config.calibration_dir,
        )
        calibrate_int8(onnx_path, calibration)
        log(f"wrote {target} (INT8 Q/DQ for TensorRT, linted)")
    return target


def run_precision_parity(onnx_path: Path, artifact: Path, config: BuildConfig) -> PrecisionParity | None:
    """CPU parity of the precision ONNX with its PyTorch checkpoint (None when reference or data is missing)."""
    if config.precision == "fp32" or config.skip_parity:
        return None
    reference = config.reference
    if reference is None:
        _, document = read_sidecar(onnx_path)
        recorded = document.get("source_checkpoint")
        reference = Path(recorded) if recorded else None
    data = config.parity_data or config.calib_data
    if reference is None or not Path(reference).is_file() or data is None:
        log("parity skipped: " + ("no reference checkpoint (pass --reference)" if reference is None
                                  or not Path(reference).is_file() else "no data (pass --parity-data or --calib-data)"))
        return None
    report = config.calibration_dir / f"parity-{artifact.stem}.md"
    parity = check_precision(artifact, reference, data,
                             ParityConfig(split=config.parity_split, device="cpu", report=report))
    log(parity.summary())
    if not parity.passed:
        raise ArtifactError(f"{artifact} fails the {config.precision} parity gate: " + "; ".join(parity.problems),
                            "recalibrate (more crops, another --method), or keep more layers in FP32")
    return parity


# --- profile ---------------------------------------------------------------------------------------


def parse_dims(text: str, option: str) -> Dims4:
    """'NxCxHxW' -> four positive integers."""
    try:
        dims = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or any(v < 1 for v in dims):
        raise InputError(f"{option} must look like NxCxHxW (e.g. 1x3x320x480), got {text!r}")
    return dims[0], dims[1], dims[2], dims[3]


def resolve_profile(spec: ModelSpec, given: tuple[Dims4, Dims4, Dims4] | None) -> tuple[Dims4, Dims4, Dims4]:
    """The optimisation profile: the spec's shape range (batch included) unless given; given ones are checked."""
    if given is None:
        r = spec.shape_range
        return spec.input_shape(*r.min), spec.input_shape(*r.opt), spec.input_shape(*r.max)
    for name, dims in zip(("--min", "--opt", "--max"), given):
        b, h, w = spec.batch_hw(dims)
        if dims[spec.channel_axis] != 3:
            raise InputError(f"{name} {dims} does not have 3 channels where the model's input "
                             f"({spec.input_format}) has them")
        if h % spec.alignment or w % spec.alignment:
            raise InputError(f"{name} height×width {h}×{w} is not a multiple of {spec.alignment}")
        if not spec.shape_range.contains(b, h, w):
            raise InputError(f"{name} {b}×{h}×{w} is outside the model's range {spec.shape_range.min} .. "
                             f"{spec.shape_range.max}", "re-export with a wider --shape range, or narrow the profile")
    lo, opt, hi = (spec.batch_hw(d) for d in given)
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise InputError(f"profile is not ordered min <= opt <= max: {given[0]} {given[1]} {given[2]}")
    return given


# --- the build --------------------------------------------------------------------------------------


def build(onnx_path: str | os.PathLike[str], config: BuildConfig) -> BuildResult:
    """Precision ONNX, CPU parity, then the TensorRT engine + sidecar (MissingComponentError without a GPU)."""
    onnx_path = Path(onnx_path)
    if config.precision not in ("fp32", "fp16", "int8"):
        raise InputError(f"unknown precision {config.precision!r}", "choose one of --fp32, --fp16, --int8")
    if config.workspace_gib <= 0:
        raise InputError(f"--workspace must be positive, got {config.workspace_gib}")
    out = Path(config.out) if config.out else engine_path(onnx_path, config.precision, config.engines_dir)
    check_build_paths(onnx_path, out, config)
    artifact = make_precision_onnx(onnx_path, config)
    _, spec = load_onnx(artifact)
    profile = resolve_profile(spec, config.profile)
    parity = run_precision_parity(onnx_path, artifact, config)
    trt, gpu = require_tensorrt()
    engine = build_engine(trt, artifact, spec, profile, gpu, config, out)
    return BuildResult(artifact, engine, parity)


def check_build_paths(onnx_path: Path, out: Path, config: BuildConfig) -> None:
    """Refuse, before any work, an engine, precision ONNX or timing cache written over what the build reads.

    The timing cache is read and updated in place, so it is an output only.
    """
    outputs = with_sidecar("--out", out)
    if config.precision != "fp32":
        outputs += with_sidecar(f"the {config.precision} ONNX", precision_onnx_path(onnx_path, config.precision))
    if config.timing_cache is not None:
        outputs.append(Place("--timing-cache", config.timing_cache))
    inputs = with_sidecar("the model", onnx_path)
    if config.reference is not None:
        inputs += with_sidecar("--reference", config.reference)
    for option, data in (("--calib-data", config.calib_data), ("--parity-data", config.parity_data)):
        if data is not None:
            inputs += dataset_places(data, option)
    check_outputs_apart(outputs, inputs)


def build_engine(trt: Any, artifact: Path, spec: ModelSpec, profile: tuple[Dims4, Dims4, Dims4],
                 gpu: dict[str, Any], config: BuildConfig, out: Path) -> Path:
    """Parse the ONNX into a strongly typed network and serialise a plan with one optimisation profile."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(artifact.read_bytes(), str(artifact)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ArtifactError(f"TensorRT's ONNX parser rejected {artifact} ({len(errors)} error(s)):\n  "
                            + "\n  ".join(errors), "check the ONNX with 'fcn-deploy build' on CPU (lint, parity)")
    config_trt = builder.create_builder_config()
    config_trt.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_gib * (1 << 30)))
    optimization = builder.create_optimization_profile()
    optimization.set_shape(spec.input_name, trt.Dims(profile[0]), trt.Dims(profile[1]), trt.Dims(profile[2]))
    if config_trt.add_optimization_profile(optimization) < 0:
        raise ArtifactError(f"TensorRT refused the optimisation profile {profile[0]} .. {profile[2]} for "
                            f"'{spec.input_name}' of {artifact}", "check --min/--opt/--max against the model's input")
    cache_path = config.timing_cache or timing_cache_path(trt.__version__, gpu["compute_capability"],
                                                          config.calibration_dir)
    _use_timing_cache(config_trt, cache_path)
    log(f"building the {config.precision} TensorRT {trt.__version__} engine on {gpu['name']} "
        f"(profile {profile[0]} .. {profile[2]}); this takes minutes...")
    started = time.perf_counter()
    plan = builder.build_serialized_network(network, config_trt)
    if plan is None:
        raise ArtifactError(f"TensorRT could not build an engine from {artifact} (see its messages above)")
    engine_spec = spec.replace(shape_range=ShapeRange(*(spec.batch_hw(d) for d in profile)))
    _write_plan_and_sidecar(out, bytes(plan), engine_spec, {
        "format": ENGINE_FORMAT, "tensorrt_version": trt.__version__, "gpu": gpu["name"],
        "compute_capability": gpu["compute_capability"], "precision": config.precision,
        "profile": {"min": list(profile[0]), "opt": list(profile[1]), "max": list(profile[2])},
        "onnx": str(artifact), "onnx_sha256": sha256_file(artifact),
        "build_seconds": round(time.perf_counter() - started, 1), **_fp32_math(config.precision, gpu),
    })
    _save_timing_cache(config_trt, cache_path)
    log(f"wrote {out} and {out.name}.json in {time.perf_counter() - started:.0f} s")
    return out


def _fp32_math(precision: str, gpu: dict[str, Any]) -> dict[str, str]:
    """For FP32 engines: the math FP32 layers use (TensorRT allows TF32 by default on compute capability 8.0+)."""
    if precision != "fp32":
        return {}
    major = int(str(gpu["compute_capability"]).split(".")[0])
    if major >= 8:
        return {"fp32_math": "TF32 allowed (TensorRT's default on compute capability 8.0 and newer): convolutions "
                             "and matrix products round their inputs to a 10-bit mantissa"}
    return {"fp32_math": "FP32 (no TF32 below compute capability 8.0)"}


def _write_plan_and_sidecar(out: Path, plan: bytes, spec: ModelSpec, facts: dict[str, Any]) -> None:
    """Write the plan, then its sidecar (with the plan's hash); the old sidecar goes first.

    An interruption can leave a plan without a sidecar (refused on load), never a plan beside a sidecar that
    describes another build.
    """
    sidecar_path(out).unlink(missing_ok=True)
    write_bytes_atomic(out, plan)
    write_sidecar(out, spec, {**facts, "engine_sha256": sha256_file(out)})


def _use_timing_cache(config_trt: Any, path: Path) -> None:
    """Give the builder the timing cache at ``path``, or an empty one when there is none or TensorRT refuses it."""
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = _create_timing_cache(config_trt, data, path) if data else None
    if cache is not None and config_trt.set_timing_cache(cache, False):
        return
    if cache is not None:
        log(f"warning: TensorRT refused the timing cache {path} (made on another GPU?); starting an empty one")
    empty = _create_timing_cache(config_trt, b"", path)
    if empty is None or not config_trt.set_timing_cache(empty, False):
        log("warning: TensorRT refused an empty timing cache; building without one")


def _create_timing_cache(config_trt: Any, data: bytes, path: Path) -> Any:
    """A timing cache from ``data``, or None (with a warning) when TensorRT cannot read it."""
    try:
        cache = config_trt.create_timing_cache(data)
    except Exception as exc:  # TensorRT raises RuntimeError/TypeError on a blob it cannot read
        cache, reason = None, f"{type(exc).__name__}: {exc}"
    else:
        reason = "no cache returned"
    if cache is None:
        what = f"the timing cache {path}" if data else "an empty timing cache"
        log(f"warning: TensorRT could not create {what} ({reason}; from another TensorRT version?)")
    return cache


def _save_timing_cache(config_trt: Any, path: Path) -> None:
    """Save the builder's timing cache to ``path`` when there is one; the engine is already complete."""
    try:
        timing = config_trt.get_timing_cache()  # None when the builder has no cache
        if timing is None:
            log(f"warning: no timing cache to save to {path}")
            return
        blob = timing.serialize()
        if blob is None:
            log(f"warning: TensorRT could not serialise the timing cache; {path} not saved")
            return
        write_bytes_atomic(path, bytes(blob))
    except Exception as exc:  # the engine and its sidecar are written; a cache is only a speed-up
        log(f"warning: could not save the timing cache {path} ({type(exc).__name__}: {exc})")


def _parser_error(error: Any) -> str:
    """One readable line per ONNX parser error: node, operator, description."""
    return f"node {error.node()} '{error.node_name()}' ({error.node_operator()}): {error.desc()} [code {error.code()}]"

