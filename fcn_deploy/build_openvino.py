"""``fcn-deploy build --target openvino``: an OpenVINO IR (``.xml`` + ``.bin``) for the CPU, after a parity gate.

The IR is made from the FP32 export: FP32 as is, BF16 with OpenVINO's inference precision hint stored in the IR
(runtime info ``runtime_options``, which OpenVINO applies by itself), INT8 by NNCF's ``nncf.quantize`` on crops
planned as ``calibrate`` plans them. The model contract stays where OpenVINO keeps an ONNX file's metadata
(runtime info ``framework`` / ``fcn_deploy.spec``), so the Python backend and the C library read an IR as they
read the ONNX; the sidecar records the SHA-256 of both files, the gate and how the weights were made.

INT8 has an accuracy budget, ``max_drop`` points of argmax agreement with the FP32 reference and of mIoU, measured
on held-out data (the parity split). NNCF quantises everything it can, the upsampling head included; when that
misses the budget, NNCF's accuracy-controlled quantisation puts the layers that cost most back in float (ranked
by their effect) and the build names them; when even that misses, the build fails with the figures and writes
nothing. Given an INT8 Q/DQ ONNX of the same model (``qdq``, from ``calibrate --target cpu``), INT8 has two
routes, NNCF's IR and OpenVINO's IR of the Q/DQ file: both are gated, each is timed in a short loop, and the faster
one within the budget is kept, with the figures in the notes and the sidecar. ``auto`` builds INT8 where it passes,
else BF16 where the CPU computes it natively, else FP32.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.contract import (
    ONNX_METADATA_KEY,
    OV_METADATA_SECTION,
    check_finite_onnx,
    ir_weights_path,
    labels_dtype_of,
    load_onnx,
    read_sidecar,
    sidecar_path,
    with_sidecar,
    write_sidecar,
)
from fcn_deploy.build import build_inputs
from fcn_deploy.data.voc import VocLayout
from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError, InputError, MissingComponentError
from fcn_deploy.fileio import check_outputs_apart, fsync_path, sha256_file
from fcn_deploy.parity.gate import BF16_MIN_AGREEMENT
from fcn_deploy.parity.report import ParityReport
from fcn_deploy.parity.run import ParityConfig, run_parity
from fcn_deploy.precision.crops import crop_input, plan_crops
from fcn_deploy.progress import log
from fcn_deploy.runtime.openvino_backend import (
    CPU_DEVICE,
    PRECISION_HINT,
    RUNTIME_OPTIONS_SECTION,
    bf16_unsupported_reason,
    cpu_flags,
    openvino_version,
)
from fcn_deploy.spec import ModelSpec, QuantizationInfo
from fcn_deploy.workspace import CALIBRATION_DIR, ENGINE_DIR

#: what ``build --target openvino --precision`` takes: the IR precisions, and 'auto' to choose among them
IR_PRECISIONS: tuple[str, ...] = ("f32", "bf16", "int8")
OPENVINO_BUILD_PRECISIONS: tuple[str, ...] = (*IR_PRECISIONS, "auto")
DEFAULT_MAX_DROP = 1.0  # points of argmax agreement and of mIoU (INT8 ≥ 99.0% agreement)
VALIDATION_CROPS = 16  # held-out crops NNCF's accuracy control ranks the layers on
SYNTHETIC_VAL = 8  # held-out synthetic images when no VOC folder is given
TIMING_WARMUP = 2  # untimed inferences before the INT8 routes' timed loop
TIMING_ITERS = 10  # timed inferences per INT8 route (batch 1 at the calibration crop size; the median is kept)
INT8_ROUTES = {"nncf": "NNCF's IR", "qdq": "OpenVINO's IR of the Q/DQ file"}
IR_FORMAT = "openvino-ir"


@dataclass(frozen=True)
class OpenVinoBuildConfig:
    """Options of ``fcn-deploy build --target openvino``."""

    precision: str = "int8"
    max_drop: float = DEFAULT_MAX_DROP  # INT8 budget: points of argmax agreement and of mIoU lost at most
    accuracy_control: bool = True  # False: a plain quantisation that misses the budget fails at once
    calib_data: Path | None = None  # VOC folder: calibration crops from calib_split (default: synthetic crops)
    calib_split: str = "train"
    calib_num: int = 64
    calib_crop: tuple[int, int] | None = None  # None: the spec's crop size
    calib_seed: int = 0
    parity_data: Path | None = None  # VOC folder for the gate (default: calib_data, else synthetic)
    parity_split: str = "val"
    reference: Path | None = None  # default: the FP32 export itself (run by ONNX Runtime)
    no_parity: str | None = None  # f32/bf16 only: why the gate is skipped
    out: Path | None = None  # default engines/<stem>.<precision>.xml
    engines_dir: Path = ENGINE_DIR
    calibration_dir: Path = CALIBRATION_DIR
    qdq: Path | None = None  # an INT8 Q/DQ ONNX of the same model: INT8 keeps the faster of it and NNCF's IR


@dataclass(frozen=True)
class OpenVinoBuildResult:
    """The written IR, its precision, the gate's record and what the build decided (for people)."""

    ir: Path
    precision: str
    parity: dict[str, Any]
    reverted_to_float: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    int8_route: dict[str, Any] | None = None  # with a Q/DQ file: the route kept, why, and both routes' figures


@dataclass(frozen=True)
class GateData:
    """Where the calibration crops and the held-out gate images come from, described for people."""

    calib_dir: Path
    calib_split: str
    gate_dir: Path
    gate_split: str
    reference: Path
    description: str


@dataclass(frozen=True)
class Candidate:
    """An IR written in the build's work folder with its sidecar, and its gate figures once measured."""

    precision: str
    ir: Path
    reverted_to_float: tuple[str, ...] = ()
    report: ParityReport | None = None
    problems: tuple[str, ...] = ()
    route: dict[str, Any] | None = None  # INT8 with a Q/DQ file at hand: which route, why, both routes' figures


def ir_path(onnx_path: str | os.PathLike[str], precision: str, engine_dir: Path = ENGINE_DIR) -> Path:
    """export/fcn.onnx -> engines/fcn.<precision>.xml (its weights beside it as .bin)."""
    return Path(engine_dir) / f"{Path(onnx_path).stem}.{precision}.xml"


def budget_problems(report: ParityReport, max_drop: float) -> tuple[str, ...]:
    """What a report misses of the budget: agreement below 100 - max_drop %, or mIoU lower by more than max_drop
    points (a NaN figure fails, as every test is written 'not within')."""
    problems = [problem] if (problem := report.non_finite_problem()) else []
    if not 100 * report.argmax_agreement >= 100 - max_drop:
        problems.append(f"pixel agreement {100 * report.argmax_agreement:.3f}% < {100 - max_drop:g}%")
    if not -100 * report.delta_miou <= max_drop:
        shown = "n/a (no labelled pixel)" if math.isnan(report.delta_miou) else f"{-100 * report.delta_miou:.2f} points"
        problems.append(f"mIoU drop {shown} > {max_drop:g}")
    return tuple(problems)


def float_gate_problems(report: ParityReport) -> tuple[str, ...]:
    """The FP32 and BF16 IR's gate: BF16's agreement threshold (an FP32 IR passes it by far)."""
    problems = [problem] if (problem := report.non_finite_problem()) else []
    if not report.argmax_agreement >= BF16_MIN_AGREEMENT:
        problems.append(f"pixel agreement {100 * report.argmax_agreement:.3f}% < {100 * BF16_MIN_AGREEMENT:.1f}%")
    return tuple(problems)


def check_config(config: OpenVinoBuildConfig) -> None:
    """Refuse options that cannot work, before any work."""
    if config.precision not in OPENVINO_BUILD_PRECISIONS:
        raise InputError(f"unknown OpenVINO build precision {config.precision!r}",
                         f"use one of: {', '.join(OPENVINO_BUILD_PRECISIONS)}")
    if not (isinstance(config.max_drop, (int, float)) and 0 < config.max_drop < 100):
        raise InputError(f"--max-drop must be a number of points above 0 and below 100, got {config.max_drop}")
    if config.calib_num < 1:
        raise InputError(f"--calib-num must be at least 1, got {config.calib_num}")
    if config.no_parity is not None:
        if not config.no_parity.strip():
            raise InputError("--no-parity needs the reason the gate is skipped (it is recorded in the IR's sidecar)")
        if config.precision in ("int8", "auto"):
            raise InputError(f"--no-parity cannot skip the gate of --precision {config.precision}: the accuracy "
                             "budget is measured by it", "drop --no-parity, or build --precision f32/bf16")
    if config.qdq is not None and config.precision not in ("int8", "auto"):
        raise InputError(f"--qdq is an INT8 route; --precision {config.precision} does not use it",
                         "drop --qdq, or build --precision int8 or auto")


def bf16_reason() -> str | None:
    """Why BF16 cannot run natively on this CPU (None: it can)."""
    ov = require("openvino")
    return bf16_unsupported_reason(ov.Core().get_property(CPU_DEVICE, "OPTIMIZATION_CAPABILITIES"), cpu_flags())


def build_openvino(onnx_path: str | os.PathLike[str], config: OpenVinoBuildConfig) -> OpenVinoBuildResult:
    """Make the IR of the chosen precision from the FP32 export, gate it, then write it with its sidecar.

    ArtifactError (exit 1) with the figures and nothing written when no candidate passes its gate.
    """
    onnx_path = Path(onnx_path)
    check_config(config)
    proto, spec = load_onnx(onnx_path)
    if spec.precision != "fp32":
        raise InputError(f"{onnx_path} has precision '{spec.precision}'; the OpenVINO build takes the FP32 export",
                         "pass the FP32 ONNX (e.g. export/fcn.onnx)")
    check_finite_onnx(proto, str(onnx_path))
    if config.qdq is not None:
        check_qdq(Path(config.qdq), spec)
    wanted = ("int8", "bf16", "f32") if config.precision == "auto" else (config.precision,)
    bf16_missing = bf16_reason() if "bf16" in wanted else None
    if config.precision == "bf16" and bf16_missing:
        raise MissingComponentError(f"an OpenVINO BF16 IR cannot run natively here: {bf16_missing}",
                                    "build --precision f32 or int8, or build on a CPU with AVX-512 BF16 or AMX")
    out = Path(config.out) if config.out else None
    if out is not None and config.precision == "auto":
        raise InputError("--out cannot name the IR of --precision auto: its name says the precision chosen",
                         "drop --out (the IR goes to engines/<name>.<precision>.xml), or choose the precision")
    if out is not None and out.suffix.lower() != ".xml":
        raise InputError(f"--out {out} must end in .xml (its weights go beside it as .bin)")
    targets = {p: out or ir_path(onnx_path, p, config.engines_dir) for p in wanted}
    _check_paths(onnx_path, list(targets.values()), config)
    facts = {"labels_dtype": labels_dtype_of(proto, spec), "source_onnx": str(onnx_path),
             "source_onnx_sha256": sha256_file(onnx_path)}
    notes: list[str] = []
    engines = targets[wanted[0]].parent
    engines.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fcn-openvino-build-", dir=engines) as workdir:
        work = Path(workdir)
        data = None if config.no_parity else gate_data(onnx_path, spec, config, work, "int8" in wanted)
        for precision in wanted:
            if precision == "bf16" and bf16_missing:
                notes.append(f"not BF16: {bf16_missing}")
                continue
            candidate = make_candidate(onnx_path, spec, precision, config, data, work, facts)
            if not candidate.problems:
                if config.precision == "auto":
                    notes.append(f"chose {precision.upper()}: the fastest kind that passes its gate on this CPU "
                                 "(INT8, else BF16 where the CPU has it, else FP32)")
                if candidate.route is not None:
                    notes.append(candidate.route["reason"])
                record = _gate_record(candidate, config, data)
                publish(candidate.ir, targets[precision], record, candidate.route)
                return OpenVinoBuildResult(targets[precision], precision, record, candidate.reverted_to_float,
                                           tuple(notes), candidate.route)
            notes.append(f"not {precision.upper()}: " + "; ".join(candidate.problems))
            if config.precision != "auto":
                raise _gate_failure(candidate, config)
    raise ArtifactError("no OpenVINO IR passes its gate: " + " | ".join(notes),
                        "check the FP32 export's own parity (fcn-deploy parity); nothing was written")


def check_qdq(qdq: Path, spec: ModelSpec) -> None:
    """Refuse a --qdq file that is not an INT8 ONNX of the export's model (same network, classes and input)."""
    if not qdq.is_file():
        raise InputError(f"--qdq {qdq} does not exist", "make it with fcn-deploy calibrate --target cpu")
    _, qdq_spec = load_onnx(qdq)
    if qdq_spec.precision != "int8":
        raise InputError(f"--qdq {qdq} has precision '{qdq_spec.precision}', not int8",
                         "pass the Q/DQ file calibrate wrote (e.g. export/fcn.int8-cpu.onnx)")
    same = ("arch", "num_classes", "input_name", "output_name", "input_format")
    differ = [name for name in same if getattr(qdq_spec, name) != getattr(spec, name)]
    if differ:
        raise InputError(f"--qdq {qdq} is not a quantisation of the same model: its {', '.join(differ)} differ",
                         "calibrate the export you build from (fcn-deploy calibrate <export> --target cpu)")


def _check_paths(onnx_path: Path, outputs: list[Path], config: OpenVinoBuildConfig) -> None:
    """Refuse, before any work, an IR written over what the build reads."""
    check_outputs_apart([place for out in outputs for place in with_sidecar("--out", out)],
                        build_inputs(onnx_path, config.reference, config.calib_data, config.parity_data)
                        + ([] if config.qdq is None else build_inputs(Path(config.qdq), None, None, None)))


def _gate_failure(candidate: Candidate, config: OpenVinoBuildConfig) -> ArtifactError:
    """The error of a candidate that misses its gate: the figures, what was tried, the fix; nothing is written."""
    tried = "NNCF's plain and accuracy-controlled quantisation" if candidate.precision == "int8" else "the IR"
    if candidate.precision == "int8" and not config.accuracy_control:
        tried = "NNCF's plain quantisation (accuracy control off)"
    fix = ("raise --max-drop, calibrate on more or more typical crops (--calib-data, --calib-num), or build "
           "--precision bf16/f32" if candidate.precision == "int8" else "check the FP32 export's parity first")
    return ArtifactError(f"the {candidate.precision.upper()} IR misses its gate after {tried}: "
                         + "; ".join(candidate.problems) + "; nothing was written", fix)


# --- data --------------------------------------------------------------------------------------------------


def gate_data(onnx_path: Path, spec: ModelSpec, config: OpenVinoBuildConfig, work: Path,
              calibrates: bool = True) -> GateData:
    """The calibration split and the held-out gate split: the given VOC folders, else synthetic crops (made only
    where needed: an FP32 or BF16 build with a gate folder calibrates nothing)."""
    reference = Path(config.reference) if config.reference is not None else onnx_path
    if not reference.is_file():
        raise InputError(f"--reference {reference} does not exist", "pass a checkpoint or the FP32 ONNX")
    folder = config.parity_data or config.calib_data
    if folder is not None and (config.calib_data is not None or not calibrates):
        calibration = f"calibration {config.calib_data} ('{config.calib_split}'), " if calibrates else ""
        return GateData(Path(config.calib_data or folder), config.calib_split, Path(folder), config.parity_split,
                        reference, f"{calibration}gate {folder} ('{config.parity_split}')")
    from fcn_deploy.data.synth import SynthConfig, synthesize

    height, width = config.calib_crop or spec.crop_size
    total = config.calib_num + SYNTHETIC_VAL
    log(f"no --calib-data: calibrating on {config.calib_num} and gating on {SYNTHETIC_VAL} synthetic {height}x{width} "
        "crops (textured shapes of VOC classes), not on real images")
    synthesize(SynthConfig(out=work / "synthetic", num=total, size=(height, width), seed=config.calib_seed,
                           val_fraction=SYNTHETIC_VAL / total))
    synthetic = work / "synthetic"
    gate_dir = Path(folder) if folder is not None else synthetic
    split = config.parity_split if folder is not None else "val"
    return GateData(synthetic, "train", gate_dir, split, reference,
                    f"calibration: {config.calib_num} synthetic {height}x{width} crops (seed {config.calib_seed}); "
                    f"gate: {gate_dir} ('{split}')")


def crops(data_dir: Path, split: str, num: int, crop: tuple[int, int], seed: int, spec: ModelSpec) -> tuple[
        list[np.ndarray], str]:
    """Model inputs of ``num`` crops planned as ``calibrate`` plans them (small images padded), and the plan's
    fingerprint."""
    plan = plan_crops(data_dir, split, num, crop, seed, small="pad")
    log(f"crops: {plan.describe()}")
    layout = VocLayout(Path(data_dir))
    return [crop_input(layout, box, crop, spec) for box in plan.crops], plan.fingerprint


# --- candidates ----------------------------------------------------------------------------------------------


def make_candidate(onnx_path: Path, spec: ModelSpec, precision: str, config: OpenVinoBuildConfig,
                   data: GateData | None, work: Path, facts: dict[str, Any]) -> Candidate:
    """Write the IR of ``precision`` into ``work`` and measure its gate (INT8: plain NNCF, then accuracy control)."""
    ov = require("openvino")
    model = ov.Core().read_model(str(onnx_path))
    if precision == "f32":
        candidate = write_candidate(model, spec, precision, work, facts)
        return gated(candidate, config, data)
    if precision == "bf16":
        model.set_rt_info("bf16", [RUNTIME_OPTIONS_SECTION, PRECISION_HINT])
        return gated(write_candidate(model, spec, precision, work, facts), config, data)
    if data is None:
        raise InputError("the INT8 IR needs its gate (the accuracy budget is measured by it)", "drop --no-parity")
    nncf_ir = nncf_candidate(model, spec, config, data, work, facts)
    if config.qdq is None:
        return nncf_ir
    qdq_ir = qdq_candidate(Path(config.qdq), config, data, work, facts)
    crop = tuple(config.calib_crop or spec.crop_size)
    timings = {"nncf": time_ir(nncf_ir.ir, spec, crop), "qdq": time_ir(qdq_ir.ir, spec, crop)}
    return choose_int8({"nncf": nncf_ir, "qdq": qdq_ir}, timings, config.max_drop, crop)


def qdq_candidate(qdq: Path, config: OpenVinoBuildConfig, data: GateData, work: Path,
                  facts: dict[str, Any]) -> Candidate:
    """OpenVINO's IR of the Q/DQ file (its spec kept), gated against the same budget as NNCF's."""
    ov = require("openvino")
    _, qdq_spec = load_onnx(qdq)
    log(f"the Q/DQ file {qdq}: converted by OpenVINO, gated on the same crops as NNCF's IR")
    written = write_candidate(ov.Core().read_model(str(qdq)), qdq_spec, "int8", work / "qdq",
                              {**facts, "source_qdq": str(qdq), "source_qdq_sha256": sha256_file(qdq)})
    return gated(written, config, data)


def time_ir(ir: Path, spec: ModelSpec, crop: tuple[int, int]) -> float:
    """Median milliseconds of one batch-1 inference of ``ir`` at ``crop`` on the CPU, after a short warm-up."""
    ov = require("openvino")
    compiled = ov.Core().compile_model(str(ir), CPU_DEVICE)
    batch = np.zeros((1, *crop, 3), np.uint8) if spec.takes_uint8 else np.zeros((1, 3, *crop), np.float32)
    request = compiled.create_infer_request()
    for _ in range(TIMING_WARMUP):
        request.infer([batch])
    times = []
    for _ in range(TIMING_ITERS):
        started = time.perf_counter()
        request.infer([batch])
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def choose_int8(candidates: dict[str, Candidate], timings: dict[str, float], max_drop: float,
                crop: tuple[int, int]) -> Candidate:
    """The faster INT8 route within the budget, its ``route`` saying which and why with both routes' figures;
    when neither passes, NNCF's candidate with the Q/DQ route's figures added to its problems."""
    figures = {name: {"route": INT8_ROUTES[name], "ms": round(timings[name], 3),
                      "agreement": None if c.report is None else c.report.argmax_agreement,
                      "delta_miou": None if c.report is None else c.report.delta_miou,
                      "problems": list(c.problems)} for name, c in candidates.items()}
    passing = sorted((timings[name], name) for name, c in candidates.items() if not c.problems)
    if not passing:
        qdq = candidates["qdq"]
        return replace(candidates["nncf"], problems=(*candidates["nncf"].problems,
                                                     "the Q/DQ file's IR: " + "; ".join(qdq.problems)))
    name = passing[0][1]
    shown = ", ".join(f"{INT8_ROUTES[n]} {timings[n]:.2f} ms" + ("" if not candidates[n].problems else
                                                                 " (misses the budget: "
                                                                 + "; ".join(candidates[n].problems) + ")")
                      for n in candidates)
    why = ("the faster of the two within the budget" if len(passing) > 1
           else "the only one within the budget")
    reason = (f"INT8 by {INT8_ROUTES[name]}: {why} of {max_drop:g} points ({shown}; batch 1 at "
              f"{crop[0]}x{crop[1]}, median of {TIMING_ITERS})")
    return replace(candidates[name], route={"chosen": name, "reason": reason, "candidates": figures})


def nncf_candidate(model: Any, spec: ModelSpec, config: OpenVinoBuildConfig, data: GateData, work: Path,
                   facts: dict[str, Any]) -> Candidate:
    """NNCF's INT8 IR: the plain quantisation, then, where it misses the budget, the accuracy-controlled one."""
    crop = config.calib_crop or spec.crop_size
    calibration, fingerprint = crops(data.calib_dir, data.calib_split, config.calib_num, crop, config.calib_seed, spec)
    info = QuantizationInfo(target="openvino", method="nncf", num_crops=len(calibration), crop_size=tuple(crop),
                            data_fingerprint=fingerprint, notes="NNCF post-training quantisation, head included")
    int8_spec = spec.replace(precision="int8", quantization=info)
    nncf = require("nncf")
    log(f"NNCF {nncf.__version__}: quantising on {len(calibration)} crops (everything, the upsampling head included)")
    with _torch_extension_warnings_quiet():
        plain = nncf.quantize(model.clone(), nncf.Dataset(calibration), subset_size=len(calibration))
    candidate = gated(write_candidate(plain, int8_spec, "int8", work / "plain", facts), config, data)
    if not candidate.problems or not config.accuracy_control:
        return candidate
    log("the plain INT8 misses the budget (" + "; ".join(candidate.problems) + "): NNCF's accuracy-controlled "
        "quantisation puts the costliest layers back in float")
    with nncf_reverted_names() as named, _torch_extension_warnings_quiet():
        controlled = accuracy_controlled(nncf, model, spec, calibration, data, crop, config)
    reverted = tuple(named) or reverted_layers(plain, controlled)
    controlled_spec = int8_spec.replace(quantization=replace(
        info, notes=f"NNCF accuracy-controlled quantisation: {len(reverted)} quantised inputs back to float"))
    written = write_candidate(controlled, controlled_spec, "int8", work / "controlled",
                              {**facts, "reverted_to_float": list(reverted)})
    result = replace(gated(written, config, data), reverted_to_float=reverted)
    problems = result.problems
    if not _quantised_inputs(controlled):  # within the budget only as the FP32 model: not an INT8 IR
        problems = (*problems, f"accuracy control put every quantised layer back in float ({len(reverted)}): no "
                               f"INT8 IR is within {config.max_drop:g} points")
    if not problems:
        return result
    return replace(result, problems=("plain quantisation: " + "; ".join(candidate.problems),
                                     "accuracy-controlled: " + "; ".join(problems)))


@contextlib.contextmanager
def _torch_extension_warnings_quiet() -> Iterator[None]:
    """Quantising, NNCF probes PyTorch, whose extension loader logs a warning on a machine without CUDA; PyTorch
    plays no part in quantising an OpenVINO model, so the warning is held back while NNCF runs."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def accuracy_controlled(nncf: Any, model: Any, spec: ModelSpec, calibration: list[np.ndarray], data: GateData,
                        crop: tuple[int, int], config: OpenVinoBuildConfig) -> Any:
    """NNCF's quantize_with_accuracy_control, its metric the argmax agreement with the FP32 model on held-out crops."""
    held_out, _ = crops(data.gate_dir, data.gate_split, VALIDATION_CROPS, crop, config.calib_seed, spec)
    ov = require("openvino")
    reference = ov.Core().compile_model(model.clone(), CPU_DEVICE, {"INFERENCE_PRECISION_HINT": "f32"})
    pairs = [(batch, _logits(reference, batch, spec).argmax(axis=1)) for batch in held_out]

    def agreement(compiled: Any, items: Any) -> float:
        agree = total = 0
        for batch, labels in items:
            agree += int(np.count_nonzero(_logits(compiled, batch, spec).argmax(axis=1) == labels))
            total += labels.size
        return agree / total

    return nncf.quantize_with_accuracy_control(
        model.clone(), calibration_dataset=nncf.Dataset(calibration),
        validation_dataset=nncf.Dataset(pairs, lambda item: item[0]), validation_fn=agreement,
        max_drop=config.max_drop / 100, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calibration))


def _logits(compiled: Any, batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The logits output of one inference of a compiled OpenVINO model."""
    port = next(p for p in compiled.outputs if spec.output_name in p.get_names())
    return np.asarray(compiled(batch)[port])


def _quantised_inputs(model: Any) -> set[str]:
    """The layers whose inputs a model quantises: the names of the FakeQuantize nodes' consumers."""
    found = set()
    for op in model.get_ops():
        if op.get_type_name() == "FakeQuantize":
            for target in op.output(0).get_target_inputs():
                consumer = target.get_node()
                if consumer.get_type_name() != "FakeQuantize":
                    found.add(consumer.get_friendly_name())
    return found


@contextlib.contextmanager
def nncf_reverted_names() -> Iterator[list[str]]:
    """The operations NNCF's accuracy control says it put back in float (its closing log message lists them),
    collected while the block runs; empty when the message did not come."""
    names: list[str] = []

    class Reverted(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines = record.getMessage().splitlines()
            if lines and "reverted back to the floating-point precision" in lines[0]:
                names[:] = [line.strip() for line in lines[1:] if line.strip()]

    handler = Reverted()
    logger = logging.getLogger("nncf")
    logger.addHandler(handler)
    try:
        yield names
    finally:
        logger.removeHandler(handler)


def reverted_layers(plain: Any, controlled: Any) -> tuple[str, ...]:
    """The layers the plain quantisation quantised and the accuracy-controlled one left in float, from the graphs
    (consumers of FakeQuantize nodes): a fallback where NNCF's own list did not come."""
    return tuple(sorted(_quantised_inputs(plain) - _quantised_inputs(controlled)))


def write_candidate(model: Any, spec: ModelSpec, precision: str, folder: Path, facts: dict[str, Any]) -> Candidate:
    """Save ``model`` as ``folder``/candidate.xml + .bin with ``spec`` in its runtime info, and its sidecar."""
    ov = require("openvino")
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / f"candidate.{precision}.xml"
    model.set_rt_info(spec.to_json(), [OV_METADATA_SECTION, ONNX_METADATA_KEY])
    ov.save_model(model, str(xml), compress_to_fp16=False)
    write_sidecar(xml, spec, {
        **facts, "format": IR_FORMAT, "precision": precision,
        "inference_precision": "bf16" if precision == "bf16" else "f32", "openvino_version": openvino_version(),
        "xml_sha256": sha256_file(xml), "bin_sha256": sha256_file(ir_weights_path(xml)),
        **({"nncf_version": require("nncf").__version__} if precision == "int8" else {}),
    })
    return Candidate(precision, xml)


def gated(candidate: Candidate, config: OpenVinoBuildConfig, data: GateData | None) -> Candidate:
    """The candidate with its gate figures: INT8 against the budget, FP32 and BF16 against BF16's threshold."""
    if data is None:
        return candidate
    report = run_parity(candidate.ir, data.reference, data.gate_dir,
                        ParityConfig(split=data.gate_split, device="cpu", progress=False,
                                     report=config.calibration_dir / f"parity-{candidate.ir.stem}.md"))
    problems = (budget_problems(report, config.max_drop) if candidate.precision == "int8"
                else float_gate_problems(report))
    log(f"{candidate.precision} IR against {data.reference.name}: agreement {100 * report.argmax_agreement:.3f}%, "
        f"ΔmIoU {100 * report.delta_miou:+.2f} pt" + (" (PASS)" if not problems else " (FAIL: " + "; ".join(problems)
                                                      + ")"))
    return replace(candidate, report=report, problems=problems)


def _gate_record(candidate: Candidate, config: OpenVinoBuildConfig, data: GateData | None) -> dict[str, Any]:
    """What the sidecar says of the gate: skipped (with the reason) or passed, with the figures and the budget."""
    if data is None or candidate.report is None:
        return {"status": "skipped", "reason": config.no_parity}
    report = candidate.report
    budget = {"max_drop_points": config.max_drop} if candidate.precision == "int8" else {
        "min_agreement": BF16_MIN_AGREEMENT}
    return {"status": "passed", "data": data.description, "reference": str(data.reference), **budget,
            "agreement": report.argmax_agreement, "delta_miou": report.delta_miou,
            "max_abs_diff": report.max_abs_diff, "images": report.num_images,
            "reverted_to_float": list(candidate.reverted_to_float)}


def publish(candidate: Path, out: Path, parity: dict[str, Any], int8_route: dict[str, Any] | None = None) -> None:
    """Move the gated IR onto ``out``: the old sidecar goes first, then the weights, the graph, and the sidecar
    (with the gate's record) last, so an interruption never leaves a sidecar that vouches for other files."""
    spec, document = read_sidecar(candidate)
    document = {key: value for key, value in document.items() if key != "spec"}
    route = {} if int8_route is None else {"int8_route": int8_route}
    write_sidecar(candidate, spec, {**document, "parity": parity, **route})
    sidecar_path(out).unlink(missing_ok=True)
    for source, target in ((ir_weights_path(candidate), ir_weights_path(out)), (candidate, out),
                           (sidecar_path(candidate), sidecar_path(out))):
        fsync_path(source)
        os.replace(source, target)
    fsync_path(out.parent)


__all__ = ["DEFAULT_MAX_DROP", "IR_PRECISIONS", "OPENVINO_BUILD_PRECISIONS", "OpenVinoBuildConfig",
           "OpenVinoBuildResult", "budget_problems", "build_openvino", "ir_path"]
