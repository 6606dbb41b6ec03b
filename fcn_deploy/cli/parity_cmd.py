"""``fcn-deploy parity``: a deployed model against its reference checkpoint on a VOC split (Markdown + JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fcn_deploy.errors import InputError


def parity(
    model: Path = typer.Argument(..., help="Model to check: ONNX file, engine or checkpoint."),
    reference: Path = typer.Option(..., "--reference", help="Reference model, normally the checkpoint (.pt)."),
    data: Path = typer.Option(..., "--data", help="VOC2012-layout folder (JPEGImages/, SegmentationClass/, ImageSets/)."),
    split: str = typer.Option("val", "--split", help="Split list in ImageSets/Segmentation/."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (both models)."),
    backend: str = typer.Option("auto", "--backend", help="Runtime of MODEL: auto (by the model's suffix), pytorch, onnxruntime, openvino or tensorrt."),
    precision: str = typer.Option("f32", "--precision", help="OpenVINO inference precision: f32, or bf16 on CPUs with native BF16."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Write parity.md and parity.json here [default: parity/]."),
    report: Optional[Path] = typer.Option(None, "--report", help="Markdown report path; the JSON goes beside it."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images of the split."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML report here: per image the input, both masks and a disagreement map (boundary vs interior), per-class IoU, confusion matrix; worst first."),
    html_images: int = typer.Option(50, "--html-images", help="Pictures of the N worst images in the HTML report (the table lists all)."),
) -> None:
    """Max |Δlogit|, argmax agreement and ΔmIoU of MODEL against --reference, per image and overall."""
    from fcn_deploy.parity import ParityConfig, run_parity
    from fcn_deploy.runtime.tensorrt_support import engine_build_notes
    from fcn_deploy.runtime import BackendChoice

    if out_dir is not None and report is not None:
        raise InputError("--out-dir and --report both given", "pass one: --out-dir DIR or --report FILE.md")
    target = report if report is not None else (out_dir or Path("parity")) / "parity.md"
    choice = BackendChoice(backend, precision)
    config = ParityConfig(split=split, device=device, report=target, limit=limit, backend=choice, html=html,
                          html_images=html_images)
    if choice.precision == "bf16":  # a precision change: held to its gate, like FP16 and INT8 builds
        _bf16_gate(model, reference, data, config)
        return
    result = run_parity(model, reference, data, config)
    typer.echo(result.summary())
    typer.echo(result.boundary_line())
    for note in engine_build_notes(model):
        typer.echo(note)
    typer.echo(f"wrote {written(result)}")
    problem = result.non_finite_problem()
    if problem:
        from fcn_deploy.errors import ArtifactError

        raise ArtifactError(f"{model} fails parity: {problem}",
                            "a model or reference with NaN weights, or one that overflows in its precision, "
                            "predicts nothing: rebuild it from a checkpoint with finite weights")


def _bf16_gate(model: Path, reference: Path, data: Path, config) -> None:
    """Run the BF16 parity, print its verdict, and fail (exit 1) below the gate."""
    from fcn_deploy.errors import ArtifactError
    from fcn_deploy.parity.gate import check_bf16

    gate = check_bf16(model, reference, data, config)
    typer.echo(gate.summary())
    typer.echo(gate.report.boundary_line())
    typer.echo(f"wrote {written(gate.report)}")
    if not gate.passed:
        raise ArtifactError(f"{model} in bf16 fails the parity gate: " + "; ".join(gate.problems),
                            "run it in f32 (--precision f32), or check the model's calibration of ranges")


def written(report) -> str:
    """The report files of a parity run, for the command's last line."""
    paths = [report.markdown_path, report.json_path, *([report.html_path] if report.html_path else [])]
    return ", ".join(str(path) for path in paths)


def register(app: typer.Typer) -> None:
    """Add the ``parity`` command."""
    app.command("parity")(parity)
