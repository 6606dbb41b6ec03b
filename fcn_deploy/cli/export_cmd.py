"""``fcn-deploy export``: a checkpoint to one self-contained ONNX file with its spec, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, cast

import typer

from fcn_deploy.errors import InputError
from fcn_deploy.workspace import DEFAULT_ONNX

LABELS_DTYPES = ("uint8", "int64")


def export(
    checkpoint: Optional[Path] = typer.Argument(None, help="Checkpoint (.pt). Default: the newest in checkpoints/."),
    out: Path = typer.Option(DEFAULT_ONNX, "--out", "-o", help="ONNX file to write (+ .json sidecar)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (17 or newer)."),
    with_preprocess: bool = typer.Option(
        False, "--with-preprocess", help="Take uint8 N×H×W×3 RGB and normalise inside the graph."
    ),
    with_argmax: bool = typer.Option(
        False, "--with-argmax", help="Add a per-pixel class output 'labels' beside the logits."
    ),
    labels_dtype: str = typer.Option("uint8", "--labels-dtype", help="Type of the labels output: uint8 or int64."),
    upsampler: str = typer.Option(
        "matmul", "--upsampler",
        help="matmul (the upsamplers as batched MatMuls, about 2x faster on CPUs) or convtranspose (as trained).",
    ),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare ONNX Runtime with PyTorch after export."),
) -> None:
    """Export a checkpoint to ONNX (dynamic batch, height and width in multiples of the model's alignment, 32 for the FCNs)."""
    from fcn_deploy.export import ExportConfig, LabelsDtype, export_onnx
    from fcn_deploy.workspace import newest_checkpoint

    if labels_dtype not in LABELS_DTYPES:
        raise InputError(f"--labels-dtype {labels_dtype!r} is not supported", f"use one of: {', '.join(LABELS_DTYPES)}")
    config = ExportConfig(
        opset=opset, with_preprocess=with_preprocess, with_argmax=with_argmax, labels_dtype=cast(LabelsDtype, labels_dtype),
        upsampler=upsampler, verify=verify,
    )
    result = export_onnx(checkpoint or newest_checkpoint(), out, config)
    for check in result.checks:
        typer.echo(f"onnxruntime vs pytorch {check.describe()}")
    typer.echo(f"wrote {result.onnx_path} and {result.sidecar_path} (export {result.export_seconds:.1f} s)")


def register(app: typer.Typer) -> None:
    """Add the ``export`` command."""
    app.command("export")(export)
