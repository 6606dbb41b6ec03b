"""The artifacts the benchmark scripts measure: a random-weight checkpoint and its FP32, FP16 and INT8 ONNX.

Speed does not depend on the weights, so the scripts make their own model in a work folder (outside the
repository, reused between runs) unless they are given artifacts. Calibration of the INT8 model runs on a
small synthetic dataset: enough for realistic quantisation ranges of the graph, not for accuracy.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fcn_deploy.progress import log as say

DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "fcn-deploy-bench"


@dataclass(frozen=True)
class Artifacts:
    """Paths of the benchmarked model files (None where a kind was not made)."""

    checkpoint: Path
    fp32: Path
    fp16: Path | None
    int8_cpu: Path | None

    def models(self) -> list[Path]:
        """Every artifact, baseline checkpoint first."""
        return [p for p in (self.checkpoint, self.fp32, self.fp16, self.int8_cpu) if p is not None]


def make_artifacts(workdir: Path = DEFAULT_WORKDIR, arch: str = "fcn32s", calibration_crops: int = 16) -> Artifacts:
    """Create (or reuse) checkpoint, FP32 export, FP16 conversion and CPU INT8 calibration in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint, fp32 = workdir / f"{arch}-random.pt", workdir / f"{arch}.onnx"
    fp16, int8 = workdir / f"{arch}.fp16.onnx", workdir / f"{arch}.int8-cpu.onnx"
    steps = (
        (checkpoint, lambda: _random_checkpoint(checkpoint, arch)),
        (fp32, lambda: _export_fp32(checkpoint, fp32)),
        (fp16, lambda: _convert_fp16(fp32, fp16)),
        (int8, lambda: _calibrate_cpu(fp32, int8, workdir, calibration_crops)),
    )
    for path, make in steps:
        if not path.is_file():
            make()
    return Artifacts(checkpoint, fp32, fp16, int8)


def _random_checkpoint(path: Path, arch: str) -> None:
    """A checkpoint with the default VOC spec and seeded random weights."""
    import torch

    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    say(f"making a random-weight {arch} checkpoint in {path.parent}")
    torch.manual_seed(0)
    save_checkpoint(path, build_model(arch), Checkpoint(spec=ModelSpec(arch=arch)))


def _export_fp32(checkpoint: Path, out: Path) -> None:
    """The FP32 ONNX export of ``checkpoint`` (no parity check: the weights are random)."""
    from fcn_deploy.export import ExportConfig, export_onnx

    export_onnx(checkpoint, out, ExportConfig(verify=False))


def _convert_fp16(fp32: Path, out: Path) -> None:
    """The FP16 conversion of the FP32 export."""
    from fcn_deploy.precision.fp16 import convert_fp16

    say(f"converting {fp32.name} to FP16")
    convert_fp16(fp32, out)


def _calibrate_cpu(fp32: Path, out: Path, workdir: Path, crops: int) -> None:
    """INT8 Q/DQ for ONNX Runtime's CPU path, calibrated on synthetic VOC-layout images."""
    from fcn_deploy.data.synth import SynthConfig, synthesize
    from fcn_deploy.precision.calibrate import CalibrationConfig, calibrate_int8

    data = workdir / "synth" / "VOC2012"
    if not (data / "JPEGImages").is_dir():
        synthesize(SynthConfig(out=data, num=max(8, crops), size=(384, 512), seed=0))
    say(f"calibrating {fp32.name} for the CPU INT8 path on {crops} synthetic crops")
    calibrate_int8(fp32, CalibrationConfig(
        data_dir=data, num=crops, crop=(320, 480), method="minmax", target="cpu", out=out,
        calibration_dir=workdir / "calibration",
    ))


def artifacts_from(paths: list[str]) -> Artifacts:
    """Artifacts given on the command line: the first checkpoint, the FP32/FP16/INT8 ONNX by their specs."""
    from fcn_deploy.checkpoint import CHECKPOINT_SUFFIXES
    from fcn_deploy.contract import load_onnx

    checkpoint = next((Path(p) for p in paths if Path(p).suffix in CHECKPOINT_SUFFIXES), None)
    by_precision: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.suffix == ".onnx":
            by_precision.setdefault(load_onnx(path)[1].precision, path)
    if checkpoint is None or "fp32" not in by_precision:
        raise SystemExit("error: give at least a checkpoint (.pt) and its FP32 ONNX export")
    return Artifacts(checkpoint, by_precision["fp32"], by_precision.get("fp16"), by_precision.get("int8"))


if __name__ == "__main__":  # make (or refresh) the default artifacts
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_WORKDIR
    print("\n".join(map(str, make_artifacts(work).models())))
