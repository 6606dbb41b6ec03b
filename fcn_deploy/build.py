"""TensorRT engine build from a precision ONNX (FP32, FP16 or INT8 Q/DQ), strongly typed.

TensorRT 11 removed BuilderFlag.FP16/INT8 and the INT8 calibrators, so precision is decided in ONNX
space (``fcn_deploy.precision``) and the network is created STRONGLY_TYPED: TensorRT keeps the types
the ONNX declares. The same code builds on TensorRT 10.x and 11.x. Everything that needs neither
TensorRT nor a GPU (precision ONNX, CPU parity) happens first; then a missing TensorRT or CUDA device
stops the build with MissingComponentError (exit 2).

The parity gate never passes silently: it runs on the given VOC folder's validation split, else on synthetic
crops generated at the spec's crop size, or is skipped only with ``--no-parity REASON``. The engine's sidecar
records which (data, figures, or the reason). After the build the engine itself is compared with the reference on
the same images, in a hidden folder beside ``--out``: only an engine within its gate's thresholds is moved to
``--out`` (where ``infer`` picks engines by default); one outside them stops the build and leaves ``--out`` as it
was.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcn_deploy.contract import labels_dtype_of, load_onnx, read_sidecar, sidecar_path, with_sidecar, write_sidecar
from fcn_deploy.data.voc import dataset_places
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.fileio import Place, check_outputs_apart, sha256_file, write_bytes_atomic
from fcn_deploy.parity import ParityConfig
from fcn_deploy.parity.gate import PrecisionParity, check_precision, engine_gate_problems
from fcn_deploy.parity.report import ParityReport
from fcn_deploy.parity.run import run_parity
from fcn_deploy.progress import log
from fcn_deploy.runtime.tensorrt_support import ENGINE_FORMAT, require_tensorrt, tensorrt_logger
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
SYNTHETIC_CROPS = 8  # images of the synthetic parity set when no VOC folder is given


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
    timing_cache: Path | None = None  # None: calibration_dir/timing-<TensorRT version>-sm<capability>-<GPU>.cache
    out: Path | None = None  # default engines/fcn.<precision>.engine
    reference: Path | None = None  # checkpoint for the parity check (default: the export's source checkpoint)
    parity_data: Path | None = None  # VOC folder for parity (default: calib_data, else synthetic crops)
    parity_split: str = "val"
    no_parity: str | None = None  # why the parity gate is skipped on purpose (--no-parity REASON)
    tf32: bool = True  # False (--no-tf32): FP32 layers run in strict FP32 on Ampere and newer
    calibration_dir: Path = CALIBRATION_DIR
    engines_dir: Path = ENGINE_DIR


@dataclass(frozen=True)
class BuildResult:
    """The engine (None when TensorRT or a GPU is missing), the precision ONNX and its parity."""

    precision_onnx: Path
    engine: Path | None
    parity: PrecisionParity | None = None  # when run
    notes: tuple[str, ...] = field(default_factory=tuple)
    parity_record: dict[str, Any] = field(default_factory=dict)  # what the engine's sidecar records of the gate


@dataclass(frozen=True)
class ParityData:
    """What the gate runs on: the reference checkpoint and a VOC-layout folder's split, described for people."""

    reference: Path
    data_dir: Path
    split: str
    description: str


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
        log(f"wrote {target}: FP16 weights and compute, {len(result.fp32_nodes)} nodes kept in FP32 "
            f"(listed under 'fp32_nodes' in {sidecar_path(target)})")
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


def _reference(onnx_path: Path, config: BuildConfig) -> Path | None:
    """The parity reference: --reference, else the checkpoint the export recorded (None when neither exists)."""
    reference = config.reference
    if reference is None:
        recorded = read_sidecar(onnx_path)[1].get("source_checkpoint")
        reference = Path(recorded) if recorded else None
    return Path(reference) if reference is not None and Path(reference).is_file() else None


def parity_data(onnx_path: Path, spec: ModelSpec, config: BuildConfig, workdir: Path) -> ParityData:
    """The gate's reference and images: the given VOC folder's split, else synthetic crops from the spec.

    InputError (with both ways out) when there is no reference checkpoint: a gate that cannot run is refused,
    never passed.
    """
    reference = _reference(onnx_path, config)
    if reference is None:
        given = f" ({config.reference} does not exist)" if config.reference is not None else ""
        raise InputError(f"the parity gate of the {config.precision} build needs the FP32 reference checkpoint"
                         f"{given}, and the export records none that exists",
                         "pass --reference CHECKPOINT, or skip the gate on purpose with --no-parity REASON")
    folder = config.parity_data or config.calib_data
    if folder is not None:
        return ParityData(reference, Path(folder), config.parity_split,
                          f"{folder} (split '{config.parity_split}')")
    from fcn_deploy.data.synth import SynthConfig, synthesize

    height, width = spec.crop_size
    log(f"no --parity-data or --calib-data: the parity gate runs on {SYNTHETIC_CROPS} synthetic {height}x{width} "
        f"crops (the spec's crop size; textured shapes of VOC classes), not on real images")
    synthesize(SynthConfig(out=workdir / "synthetic", num=2 * SYNTHETIC_CROPS, size=(height, width), seed=0,
                           val_fraction=0.5))
    return ParityData(reference, workdir / "synthetic", "val",
                      f"{SYNTHETIC_CROPS} synthetic {height}x{width} crops generated from the spec (seed 0)")


def _figures(report: ParityReport) -> dict[str, Any]:
    """The figures a sidecar keeps of a parity report."""
    return {"agreement": report.argmax_agreement, "delta_miou": report.delta_miou,
            "max_abs_diff": report.max_abs_diff, "images": report.num_images,
            "report": str(report.markdown_path) if report.markdown_path else None,
            "boundary_share": report.boundary_share,
            "html": str(report.html_path) if report.html_path else None}


def run_precision_parity(artifact: Path, data: ParityData, config: BuildConfig) -> PrecisionParity | None:
    """CPU parity of the precision ONNX with its PyTorch checkpoint; ArtifactError when it fails the gate.

    None for FP32: the FP32 export is the reference's own graph (only the engine is compared, after the build).
    """
    if config.precision == "fp32":
        return None
    report = config.calibration_dir / f"parity-{artifact.stem}.md"
    parity = check_precision(artifact, data.reference, data.data_dir,
                             ParityConfig(split=data.split, device="cpu", report=report,
                                          html=report.with_suffix(".html")))
    log(parity.summary())
    if not parity.passed:
        raise ArtifactError(f"{artifact} fails the {config.precision} parity gate: " + "; ".join(parity.problems),
                            "recalibrate (more crops, another --method), or keep more layers in FP32")
    return parity


def gate_record(config: BuildConfig, data: ParityData | None, parity: PrecisionParity | None) -> dict[str, Any]:
    """What the engine's sidecar says of the gate: skipped (with the reason), not needed (FP32), or passed (a gate
    that fails stops the build before TensorRT runs)."""
    if data is None:
        return {"status": "skipped", "reason": config.no_parity}
    where = {"data": data.description, "split": data.split, "reference": str(data.reference)}
    if parity is None:
        return {"status": "not_needed", "reason": "an FP32 engine of the FP32 export: no precision change to gate "
                "on the CPU", **where}
    return {"status": "passed", "gate": parity.emulated, **where, **_figures(parity.report)}


def check_engine_parity(engine: Path, data: ParityData, config: BuildConfig) -> dict[str, Any]:
    """Run the built engine against the reference on the gate's images; its figures and the thresholds it misses."""
    report_path = config.calibration_dir / f"parity-{engine.stem}-engine.md"
    report = run_parity(engine, data.reference, data.data_dir,
                        ParityConfig(split=data.split, device="cuda", report=report_path,
                                     html=report_path.with_suffix(".html")))
    problems = engine_gate_problems(config.precision, report)  # non-finite logits fail it too
    log(f"the engine itself against the reference: agreement {100 * report.argmax_agreement:.4f}%, "
        f"ΔmIoU {100 * report.delta_miou:+.2f} pt" + ("" if not problems else " (OUTSIDE the gate's thresholds)")
        + f"; {report.boundary_line()}; pictures in {report.html_path}")
    return {**_figures(report), "passed": not problems, "problems": list(problems)}


def refuse_failed_engine(out: Path, figures: dict[str, Any], config: BuildConfig) -> None:
    """ArtifactError for an engine that misses its gate's thresholds on the GPU (it is not moved to ``out``).

    The CPU gate checks the precision ONNX; TensorRT's kernels (TF32 in the FP32 head, its own FP16 and INT8
    kernels) can still differ, and an engine in ``engines/`` is what ``infer`` runs by default.
    """
    kept = f"{out} is unchanged" if out.exists() else f"nothing was written to {out}"
    raise ArtifactError(f"the {config.precision} engine fails its parity gate on the GPU: "
                        + "; ".join(figures["problems"]) + f" (report {figures.get('report')}); {kept}",
                        "rebuild with --no-tf32 (the FP32 layers ran in TF32), keep more layers in FP32 or "
                        "recalibrate; to keep such an engine on purpose, build it with --no-parity REASON")


def install_engine(built: Path, out: Path) -> None:
    """Move a checked plan and its sidecar to ``out``: the old sidecar first, then the plan, then its sidecar.

    An interruption can leave a plan without a sidecar (refused on load), never a plan beside a sidecar that
    describes another build.
    """
    sidecar_path(out).unlink(missing_ok=True)
    os.replace(built, out)
    os.replace(sidecar_path(built), sidecar_path(out))


def _record_engine_parity(engine: Path, figures: dict[str, Any]) -> None:
    """Add the engine's own parity figures to the gate record of its sidecar."""
    spec, document = read_sidecar(engine)
    document = {key: value for key, value in document.items() if key != "spec"}
    document["parity"] = {**document.get("parity", {}), "engine": figures}
    write_sidecar(engine, spec, document)


# --- profile ---------------------------------------------------------------------------------------


def layout_dims(spec: ModelSpec | None) -> tuple[str, str]:
    """(pattern, example) of a profile shape in the artifact's input layout (both layouts when unknown)."""
    if spec is None:
        return "NxCxHxW (float32 NCHW exports) or NxHxWxC (uint8 NHWC exports)", "1x3x320x480 or 1x320x480x3"
    return ("NxHxWxC", "1x320x480x3") if spec.takes_uint8 else ("NxCxHxW", "1x3x320x480")


def parse_dims(text: str, option: str, spec: ModelSpec | None = None) -> Dims4:
    """'NxCxHxW' (or 'NxHxWxC' for uint8 NHWC inputs) -> four positive integers."""
    try:
        dims = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or any(v < 1 for v in dims):
        pattern, example = layout_dims(spec)
        raise InputError(f"{option} must look like {pattern} (e.g. {example}), got {text!r}")
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
                             f"({spec.input_format}) has them", f"give it as {layout_dims(spec)[0]}, e.g. "
                             f"{layout_dims(spec)[1]}")
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
    if config.no_parity is not None and not config.no_parity.strip():
        raise InputError("--no-parity needs the reason the gate is skipped (it is recorded in the engine's sidecar)",
                         "e.g. --no-parity 'checked on the deployment data by hand'")
    out = Path(config.out) if config.out else engine_path(onnx_path, config.precision, config.engines_dir)
    check_build_paths(onnx_path, out, config)
    artifact = make_precision_onnx(onnx_path, config)
    proto, spec = load_onnx(artifact)
    profile = resolve_profile(spec, config.profile)
    with tempfile.TemporaryDirectory(prefix="fcn-build-parity-") as workdir:
        data = None if config.no_parity else parity_data(onnx_path, spec, config, Path(workdir))
        if data is None:
            log(f"parity gate skipped on purpose (--no-parity): {config.no_parity}")
        parity = run_precision_parity(artifact, data, config) if data is not None else None
        record = gate_record(config, data, parity)
        trt, gpu = require_tensorrt()
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fcn-build-", dir=out.parent) as unchecked:
            built = build_engine(trt, artifact, spec, profile, gpu, config, Path(unchecked) / out.name,
                                 {"parity": record, "labels_dtype": labels_dtype_of(proto, spec)})
            if data is not None:
                record = {**record, "engine": check_engine_parity(built, data, config)}
                _record_engine_parity(built, record["engine"])
                if not record["engine"]["passed"]:
                    refuse_failed_engine(out, record["engine"], config)
            install_engine(built, out)
    log(f"wrote {out} and {out.name}.json")
    return BuildResult(artifact, out, parity, parity_record=record)


def check_build_paths(onnx_path: Path, out: Path, config: BuildConfig) -> None:
    """Refuse, before any work, an engine, precision ONNX or timing cache written over what the build reads.

    The timing cache is read and updated in place, so it is an output only.
    """
    outputs = with_sidecar("--out", out)
    if config.precision != "fp32":
        outputs += with_sidecar(f"the {config.precision} ONNX", precision_onnx_path(onnx_path, config.precision))
    if config.timing_cache is not None:
        outputs.append(Place("--timing-cache", config.timing_cache))
    check_outputs_apart(outputs, build_inputs(onnx_path, config.reference, config.calib_data, config.parity_data))


def build_inputs(onnx_path: Path, reference: Path | None, calib_data: Path | None,
                 parity_data: Path | None) -> list[Place]:
    """What a build reads (the export, the reference, the data folders), for ``check_outputs_apart``."""
    inputs = with_sidecar("the model", onnx_path)
    if reference is not None:
        inputs += with_sidecar("--reference", reference)
    for option, data in (("--calib-data", calib_data), ("--parity-data", parity_data)):
        if data is not None:
            inputs += dataset_places(data, option)
    return inputs


def build_engine(trt: Any, artifact: Path, spec: ModelSpec, profile: tuple[Dims4, Dims4, Dims4],
                 gpu: dict[str, Any], config: BuildConfig, out: Path, facts: dict[str, Any] | None = None) -> Path:
    """Parse the ONNX into a strongly typed network and serialise a plan with one optimisation profile.

    ``facts`` (the parity gate's record, the labels dtype) go into the sidecar with the build's own.
    """
    logger = tensorrt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(artifact.read_bytes(), str(artifact)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ArtifactError(f"TensorRT's ONNX parser rejected {artifact} ({len(errors)} error(s)):",
                            "check the ONNX with 'fcn-deploy build' on CPU (lint, parity)", details=errors)
    config_trt = builder.create_builder_config()
    config_trt.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_gib * (1 << 30)))
    if not config.tf32:
        config_trt.clear_flag(trt.BuilderFlag.TF32)
    optimization = builder.create_optimization_profile()
    try:
        optimization.set_shape(spec.input_name, trt.Dims(profile[0]), trt.Dims(profile[1]), trt.Dims(profile[2]))
    except (RuntimeError, TypeError, ValueError) as exc:  # TensorRT's own refusal of the shapes
        pattern = layout_dims(spec)[0]
        raise InputError(f"TensorRT refused the optimisation profile of '{spec.input_name}' ({pattern}): min "
                         f"{profile[0]}, opt {profile[1]}, max {profile[2]} ({exc})",
                         f"give --min/--opt/--max as {pattern}, ordered min <= opt <= max, within the model's "
                         "shape range") from exc
    if config_trt.add_optimization_profile(optimization) < 0:
        raise ArtifactError(f"TensorRT refused the optimisation profile {profile[0]} .. {profile[2]} for "
                            f"'{spec.input_name}' of {artifact}", "check --min/--opt/--max against the model's input")
    cache_path = config.timing_cache or timing_cache_path(trt.__version__, gpu["compute_capability"], gpu["name"],
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
        "build_seconds": round(time.perf_counter() - started, 1), **_fp32_math(config.precision, gpu, config.tf32),
        **(facts or {}),
    })
    _save_timing_cache(config_trt, cache_path)
    log(f"built the engine in {time.perf_counter() - started:.0f} s")
    return out


def _fp32_math(precision: str, gpu: dict[str, Any], tf32: bool) -> dict[str, str]:
    """The math FP32 layers use: TensorRT allows TF32 by default on compute capability 8.0+.

    FP16 and INT8 engines keep FP32 layers too (the upsampling head, the logits), so they say it as well.
    """
    which = "FP32 layers" if precision == "fp32" else f"the FP32 layers of this {precision.upper()} engine (its head)"
    if not tf32:
        return {"fp32_math": f"strict FP32 for {which}: TF32 turned off with --no-tf32"}
    major = int(str(gpu["compute_capability"]).split(".")[0])
    if major >= 8:
        return {"fp32_math": f"TF32 allowed for {which} (TensorRT's default on compute capability 8.0 and newer): "
                             "their convolutions and matrix products round inputs to a 10-bit mantissa; "
                             "--no-tf32 turns it off"}
    return {"fp32_math": f"FP32 for {which} (no TF32 below compute capability 8.0)"}


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

