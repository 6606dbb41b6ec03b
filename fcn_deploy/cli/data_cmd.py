"""``fcn-deploy data``: make a synthetic VOC-layout dataset, or check a dataset folder."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write (VOC2012 layout)."),
    num: int = typer.Option(64, "--num", help="Number of image/mask pairs (a quarter go to val)."),
    size: str = typer.Option("160x224", "--size", help="Image size HEIGHTxWIDTH."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes the same files."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out folder."),
) -> None:
    """Write a synthetic dataset: textured shapes of five VOC classes on noisy backgrounds."""
    from fcn_deploy.data.synth import SynthConfig, synthesize
    from fcn_deploy.data.transforms import parse_size


    config = SynthConfig(out=out, num=num, size=parse_size(size, "--size"), seed=seed, overwrite=overwrite)
    result = synthesize(config)
    typer.echo(f"wrote {result.root} ({len(result.train_ids)} train, {len(result.val_ids)} val)")


def check(
    data: Path = typer.Argument(..., help="The VOC2012 folder (holding JPEGImages/, SegmentationClass/, ...)."),
    split: list[str] = typer.Option(["train", "val"], "--split", help="Splits to check (repeatable)."),
    crop: str = typer.Option("320x480", "--crop", help="Training crop HEIGHTxWIDTH: reports how many images fit."),
) -> None:
    """Check every pair of the splits (files present, masks valid) and count the images the crop keeps."""
    from fcn_deploy.data.transforms import parse_size
    from fcn_deploy.data.voc import VocLayout, scan_split


    layout = VocLayout(data)
    crop_size = parse_size(crop, "--crop")
    for name in split:
        typer.echo(scan_split(layout, name, crop_size).describe())


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group."""
    data_app = typer.Typer(help="Make or check VOC-layout datasets.", no_args_is_help=True)
    data_app.command("synth")(synth)
    data_app.command("check")(check)
    app.add_typer(data_app, name="data")
