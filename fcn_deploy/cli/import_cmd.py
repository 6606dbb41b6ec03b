"""``fcn-deploy import d2l|torchvision|onnx``: a model made elsewhere -> an fcn-deploy artifact with its spec."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fcn_deploy.errors import InputError

import_app = typer.Typer(help="Import a model made elsewhere (d2l notebook, torchvision, any ONNX).", no_args_is_help=True)

_CLASSES_HELP = "'voc', or a JSON or text class list (names, optional palette); default: VOC for 21 classes."


def _triple(text: Optional[str], option: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
    """'0.485,0.456,0.406' -> three floats."""
    if text is None:
        return default
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"{option} {text!r} is not three comma-separated numbers", f"e.g. {option} 0.485,0.456,0.406")
    return values[0], values[1], values[2]


@import_app.command("d2l")
def import_d2l_cmd(
    weights: Path = typer.Argument(..., help="State dict saved with torch.save(net.state_dict(), PATH)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Checkpoint to write (default checkpoints/d2l-<arch>.pt)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Class count (checked against the weights)."),
    classes: Optional[str] = typer.Option(None, "--classes", help=_CLASSES_HELP),
) -> None:
    """A d2l-notebook FCN state dict (ResNet-18 fcn32s) -> an fcn-deploy checkpoint."""
    from fcn_deploy.importers.d2l import import_d2l

    path, layout = import_d2l(weights, out, num_classes=num_classes, classes=classes)
    typer.echo(f"wrote {path} (layout: {layout})")


@import_app.command("torchvision")
def import_torchvision_cmd(
    name: str = typer.Argument(..., help="fcn_resnet50, fcn_resnet101, deeplabv3_resnet50, deeplabv3_resnet101, "
                                         "deeplabv3_mobilenet_v3_large or lraspp_mobilenet_v3_large."),
    weights: Path = typer.Argument(..., help="Local state dict of that model (the aux head is dropped)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Checkpoint to write (default checkpoints/torchvision-<name>.pt)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Class count (checked against the weights)."),
    classes: Optional[str] = typer.Option(None, "--classes", help=_CLASSES_HELP),
    opt: str = typer.Option("320x480", "--opt", help="Preferred (tile) size HEIGHTxWIDTH, a multiple of the model's stride."),
    max_size: str = typer.Option("1024x1024", "--max", help="Largest whole-image size HEIGHTxWIDTH."),
) -> None:
    """A torchvision segmentation model's state dict -> an fcn-deploy checkpoint (traced, reloadable anywhere)."""
    from fcn_deploy.data.transforms import parse_size
    from fcn_deploy.importers.torchvision import import_torchvision, known
    from fcn_deploy.spec import ShapeRange

    align = known(name).alignment
    opt_hw, max_hw = parse_size(opt, "--opt"), parse_size(max_size, "--max")
    shape_range = ShapeRange((1, align, align), (1, *opt_hw), (8, *max_hw))
    path = import_torchvision(name, weights, out, num_classes=num_classes, classes=classes, shape_range=shape_range)
    typer.echo(f"wrote {path} (alignment {align})")


@import_app.command("onnx")
def import_onnx_cmd(
    model: Path = typer.Argument(..., help="ONNX model with one image input and one N×C×H×W logits output."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="fcn-deploy ONNX to write (default export/<name>.fcn.onnx)."),
    classes: str = typer.Option("voc", "--classes", help="'voc', or a JSON or text class list (names, optional palette)."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Normalisation mean R,G,B (default ImageNet's)."),
    std: Optional[str] = typer.Option(None, "--std", help="Normalisation std R,G,B (default ImageNet's)."),
    alignment: Optional[int] = typer.Option(None, "--alignment", help="Sizes the model takes are multiples of this "
                                            "(default 32; for a fixed-size graph, what divides its size)."),
    input_format: str = typer.Option("float32_nchw", "--input-format",
                                     help="float32_nchw (normalised) or uint8_nhwc (raw RGB, normalised in the graph)."),
) -> None:
    """A foreign ONNX -> an fcn-deploy ONNX (spec in metadata and a .json sidecar), after checking its graph."""
    from fcn_deploy.importers.onnx import OnnxImportConfig, import_onnx
    from fcn_deploy.spec import IMAGENET_MEAN, IMAGENET_STD

    config = OnnxImportConfig(classes=classes, mean=_triple(mean, "--mean", IMAGENET_MEAN),
                              std=_triple(std, "--std", IMAGENET_STD), alignment=alignment, input_format=input_format)
    path = import_onnx(model, out or Path("export") / f"{model.stem}.fcn.onnx", config)
    typer.echo(f"wrote {path} and {path.name}.json")


def register(app: typer.Typer) -> None:
    """Add the ``import`` command group."""
    app.add_typer(import_app, name="import")
