"""``fcn-deploy train``: train an FCN on a VOC-layout folder and write checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fcn_deploy.workspace import CHECKPOINT_DIR


def train_command(
    data: Path = typer.Option(..., "--data", help="VOC2012 folder (JPEGImages/, SegmentationClass/, ImageSets/)."),
    arch: Optional[str] = typer.Option(
        None, "--arch", help="fcn32s (default), fcn16s, fcn8s or vgg11; with --resume, the checkpoint's."
    ),
    epochs: int = typer.Option(5, "--epochs", help="Total epochs (a resumed run continues up to this)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Crops per step."),
    lr: float = typer.Option(0.001, "--lr", help="SGD learning rate."),
    weight_decay: float = typer.Option(1e-3, "--weight-decay", help="SGD weight decay."),
    momentum: float = typer.Option(0.0, "--momentum", help="SGD momentum (d2l uses none)."),
    lr_schedule: str = typer.Option(
        "constant", "--lr-schedule", help="constant (d2l) or cosine (anneal to 0 over all epochs)."
    ),
    crop: str = typer.Option("320x480", "--crop", help="Training crop HEIGHTxWIDTH, multiples of 32."),
    backbone_weights: Optional[Path] = typer.Option(
        None, "--backbone-weights", help="Local torchvision state dict for the backbone (e.g. ImageNet ResNet-18)."
    ),
    upsample_init: str = typer.Option("bilinear", "--upsample-init", help="bilinear or xavier."),
    out_dir: Path = typer.Option(CHECKPOINT_DIR, "--out-dir", help="Where <arch>-last.pt and <arch>-best.pt go."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from this checkpoint."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (cuda:N)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (shuffling, crops, initialisation)."),
    num_workers: int = typer.Option(2, "--num-workers", help="Data loader worker processes (0: none)."),
) -> None:
    """Train with SGD and per-pixel cross entropy; report loss, accuracy and val mIoU each epoch."""
    from fcn_deploy.data.transforms import parse_size
    from fcn_deploy.train import TrainConfig, train

    config = TrainConfig(
        data=data, arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        momentum=momentum, lr_schedule=lr_schedule, crop=parse_size(crop, "--crop"), backbone_weights=backbone_weights,
        upsample_init=upsample_init, out_dir=out_dir, resume=resume, device=device, seed=seed,
        num_workers=num_workers,
    )
    result = train(config)
    typer.echo(
        f"{result.best_checkpoint} (epoch {result.best_epoch}, val mIoU {result.best_val_miou:.3f}); "
        f"last: {result.last_checkpoint}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``train`` command."""
    app.command("train")(train_command)
