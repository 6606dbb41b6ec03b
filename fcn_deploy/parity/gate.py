"""The precision gate: parity of FP16 and INT8 artifacts with the PyTorch FP32 reference, before any GPU.

FP16: ONNX Runtime's CPU provider upcasts an FP16 graph, so the FP16 ONNX on CPU proves the weight
rounding and the graph rewrite only; an emulation graph (``fp16.emulate_fp16``: FP16-rounded weights and
every FP16-region tensor rounded to float16 between layers) is checked as well and is the gate.
INT8: the Q/DQ ONNX runs in ONNX Runtime with real int8 arithmetic (the QDQ kernels), so it is checked as is.
BF16: the FP32 ONNX runs in OpenVINO with the bf16 inference precision on a CPU with native BF16 (the real
arithmetic, no emulation), held to FP16's threshold.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from fcn_deploy.contract import load_onnx, read_sidecar, save_onnx
from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError
from fcn_deploy.parity.report import ParityReport
from fcn_deploy.parity.run import ParityConfig, run_parity
from fcn_deploy.precision.fp16 import emulate_fp16
from fcn_deploy.runtime import BackendChoice

FP16_MIN_AGREEMENT = 0.995
BF16_MIN_AGREEMENT = 0.995  # bfloat16 keeps 8 mantissa bits (FP16: 11) but FP32's range: held to FP16's gate
INT8_MIN_AGREEMENT = 0.98
INT8_MAX_DELTA_MIOU = 0.01  # one mIoU point


@dataclass(frozen=True)
class PrecisionParity:
    """The parity figures of one precision artifact, and whether they pass the precision's thresholds."""

    artifact: Path
    precision: str
    report: ParityReport  # the gate: the emulation for FP16, the artifact itself for INT8
    artifact_report: ParityReport | None  # FP16 only: the FP16 ONNX as ONNX Runtime runs it on the CPU
    emulated: str  # what the gate run emulated
    passed: bool
    problems: tuple[str, ...]

    def summary(self) -> str:
        """A few lines: agreement, ΔmIoU, verdict."""
        lines = [f"{self.precision} parity ({self.emulated}): {self.report.summary()}", self.report.boundary_line()]
        if self.artifact_report is not None:
            lines.append(f"fp16 ONNX on CPU (weight rounding only): agreement "
                         f"{100 * self.artifact_report.argmax_agreement:.4f}%")
        written = [self.report.markdown_path, self.report.html_path]
        lines.append("gate report: " + ", ".join(str(path) for path in written if path is not None))
        lines.append("PASS" if self.passed else "FAIL: " + "; ".join(self.problems))
        return "\n".join(lines)


def check_precision(
    artifact: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    config: ParityConfig = ParityConfig(device="cpu"),
) -> PrecisionParity:
    """Run the parity of a precision ONNX against the FP32 checkpoint and apply the thresholds."""
    artifact = Path(artifact)
    _, spec = load_onnx(artifact)
    if spec.precision == "fp16":
        base = Path(config.report)
        direct_report = base.with_name(base.with_suffix("").name + "-cpu-onnx.md")
        direct_html = direct_report.with_suffix(".html") if config.html is not None else None
        direct = run_parity(artifact, reference, data_dir, replace(config, report=direct_report, html=direct_html))
        with tempfile.TemporaryDirectory(prefix="fcn-fp16-emulation-") as workdir:
            emulation = _write_emulation(artifact, Path(workdir))
            gate = run_parity(emulation, reference, data_dir, config)
        emulated = "FP16 storage emulated: FP16 weights, every FP16-region tensor rounded to float16"
        problems = _thresholds(gate, FP16_MIN_AGREEMENT, None)
        return PrecisionParity(artifact, "fp16", gate, direct, emulated, not problems, problems)
    if spec.precision == "int8":
        report = run_parity(artifact, reference, data_dir, config)
        problems = _thresholds(report, INT8_MIN_AGREEMENT, INT8_MAX_DELTA_MIOU)
        return PrecisionParity(artifact, "int8", report, None, "none (ONNX Runtime int8 Q/DQ kernels)",
                               not problems, problems)
    raise ArtifactError(f"{artifact} has precision '{spec.precision}', expected fp16 or int8")


def check_bf16(
    onnx_path: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    config: ParityConfig = ParityConfig(device="cpu"),
) -> PrecisionParity:
    """Parity of an FP32 ONNX run by OpenVINO in bfloat16 against the FP32 checkpoint, with FP16's threshold."""
    report = run_parity(onnx_path, reference, data_dir, replace(config, backend=BackendChoice("openvino", "bf16")))
    problems = _thresholds(report, BF16_MIN_AGREEMENT, None)
    return PrecisionParity(Path(onnx_path), "bf16", report, None, "none (OpenVINO bf16 inference precision, native)",
                           not problems, problems)


def _write_emulation(fp16_artifact: Path, workdir: Path) -> Path:
    """The emulation graph of an FP16 artifact, built from its FP32 source ONNX (named in its sidecar)."""

    _, document = read_sidecar(fp16_artifact)
    source = Path(document.get("source_onnx", ""))
    if not source.is_file():
        raise ArtifactError(
            f"the FP32 source of {fp16_artifact} ({source}) is gone; the FP16 emulation is built from it",
            "re-run 'fcn-deploy build --fp16' next to the FP32 export",
        )
    model, spec = load_onnx(source)
    path = workdir / "fcn.fp16-emulated.onnx"
    save_onnx(emulate_fp16(model), path, spec.replace(precision="fp16"))
    require("onnx").checker.check_model(str(path))
    return path


def engine_gate_problems(precision: str, report: ParityReport) -> tuple[str, ...]:
    """The thresholds a built engine's own report misses: its precision's gate (FP16's for an FP32 engine)."""
    if precision == "int8":
        return _thresholds(report, INT8_MIN_AGREEMENT, INT8_MAX_DELTA_MIOU)
    return _thresholds(report, FP16_MIN_AGREEMENT, None)


def _thresholds(report: ParityReport, min_agreement: float, max_delta_miou: float | None) -> tuple[str, ...]:
    """The thresholds a report misses, as readable sentences.

    Each test is written as 'not within the limit': a NaN figure fails every comparison, so it fails the gate.
    """
    problems = [problem] if (problem := report.non_finite_problem()) else []
    if not report.argmax_agreement >= min_agreement:
        problems.append(f"pixel agreement {100 * report.argmax_agreement:.3f}% < {100 * min_agreement:.1f}%")
    if max_delta_miou is not None and not abs(report.delta_miou) <= max_delta_miou:
        shown = ("n/a (no labelled pixel to score)" if math.isnan(report.delta_miou)
                 else f"{100 * abs(report.delta_miou):.2f} points")
        problems.append(f"|ΔmIoU| {shown} > {100 * max_delta_miou:.0f}")
    return tuple(problems)
