"""Training of the FCN family on a VOC-layout dataset (d2l's recipe: random crops, SGD, per-pixel cross entropy).

Validation runs on whole val images, padded bottom/right to multiples of 32 with the mean colour and the void
label: every real pixel is scored once, padding counts in neither loss nor metrics, and no image is dropped.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from fcn_deploy.checkpoint import Checkpoint, read_checkpoint, save_checkpoint
from fcn_deploy.data.datasets import crop_dataset, pad_collate, whole_image_dataset
from fcn_deploy.data.transforms import Size, check_aligned
from fcn_deploy.data.voc import NUM_CLASSES, SplitScan, VocLayout, dataset_places, scan_split
from fcn_deploy.deps import require
from fcn_deploy.devices import torch_device
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import Place, atomic_path, check_outputs_apart
from fcn_deploy.metrics import confusion_matrix, scores_from_confusion
from fcn_deploy.model import MODEL_ALIGNMENT, MODEL_BUILDERS, UpsampleInit, build_model
from fcn_deploy.palette import VOC_CLASSES, VOC_COLORMAP, VOID_LABEL
from fcn_deploy.progress import log, progress_bar
from fcn_deploy.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, ShapeRange
from fcn_deploy.workspace import CHECKPOINT_DIR

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

DEFAULT_ARCH = "fcn32s"
UPSAMPLE_INITS: tuple[str, ...] = get_args(UpsampleInit)
LR_SCHEDULES = ("constant", "cosine")
MAX_SHAPE = ShapeRange().max


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; defaults follow d2l's FCN chapter."""

    data: Path
    arch: str | None = None  # None: fcn32s, or the arch of the --resume checkpoint
    epochs: int = 5
    batch_size: int = 32
    lr: float = 0.001
    weight_decay: float = 1e-3
    momentum: float = 0.0
    lr_schedule: str = "constant"  # 'cosine': anneal per step from lr to 0 over all epochs
    crop: Size = (320, 480)
    backbone_weights: Path | None = None
    upsample_init: str = "bilinear"
    out_dir: Path = CHECKPOINT_DIR
    resume: Path | None = None
    device: str = "cpu"
    seed: int = 0
    num_workers: int = 2
    train_split: str = "train"
    val_split: str = "val"


@dataclass(frozen=True)
class EpochMetrics:
    """Figures of one epoch."""

    epoch: int
    train_loss: float
    train_pixel_accuracy: float
    val_pixel_accuracy: float
    val_miou: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        """Plain floats, as stored in a checkpoint's metrics and history."""
        return {k: float(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoints went and how training went."""

    last_checkpoint: Path
    best_checkpoint: Path
    best_epoch: int
    best_val_miou: float
    history: tuple[EpochMetrics, ...]
    train_examples: int
    val_examples: int
    seconds: float = 0.0


# --- checks before anything is written -----------------------------------------------------------


def _check_options(config: TrainConfig) -> None:
    """Reject out-of-range options with the reason (never adjust them silently)."""
    if config.arch is not None and config.arch not in MODEL_BUILDERS:
        raise InputError(f"unknown arch {config.arch!r}", f"choose one of: {', '.join(MODEL_BUILDERS)}")
    if config.upsample_init not in UPSAMPLE_INITS:
        raise InputError(f"unknown --upsample-init {config.upsample_init!r}", f"use one of: {', '.join(UPSAMPLE_INITS)}")
    for name, value, low in (("--epochs", config.epochs, 1), ("--batch-size", config.batch_size, 1),
                             ("--num-workers", config.num_workers, 0)):
        if value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise InputError(f"--lr must be a positive number, got {config.lr}")
    if not (config.weight_decay >= 0 and math.isfinite(config.weight_decay)):
        raise InputError(f"--weight-decay must be zero or positive, got {config.weight_decay}")
    if config.lr_schedule not in LR_SCHEDULES:
        raise InputError(f"unknown --lr-schedule {config.lr_schedule!r}", f"use one of: {', '.join(LR_SCHEDULES)}")
    if not 0 <= config.momentum < 1:
        raise InputError(f"--momentum must lie in [0, 1), got {config.momentum}")
    check_aligned(config.crop, MODEL_ALIGNMENT, "--crop")
    if config.crop[0] > MAX_SHAPE[1] or config.crop[1] > MAX_SHAPE[2]:
        raise InputError(f"--crop {config.crop[0]}x{config.crop[1]} exceeds the supported {MAX_SHAPE[1]}x{MAX_SHAPE[2]}")
    if config.resume is not None and config.backbone_weights is not None:
        raise InputError(
            "--backbone-weights has no effect with --resume (the checkpoint holds all weights)",
            "drop --backbone-weights, or start a new run without --resume",
        )
    if config.backbone_weights is not None and not Path(config.backbone_weights).is_file():
        raise InputError(
            f"backbone weights file not found: {config.backbone_weights}",
            "pass a local torchvision state dict saved with torch.save (see docs/getting-started.md, 'Training')",
        )
    out = Path(config.out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out-dir {out} exists and is not a folder", "pass a folder for the checkpoints")


def model_spec(arch: str, crop: Size) -> ModelSpec:
    """The spec a training run stores: VOC classes and palette, ImageNet normalisation, the training crop."""
    return ModelSpec(
        arch=arch,
        num_classes=NUM_CLASSES,
        class_names=VOC_CLASSES,
        palette=VOC_COLORMAP,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        alignment=MODEL_ALIGNMENT,
        crop_size=crop,
        shape_range=ShapeRange(opt=(1, crop[0], crop[1])),
    )


@dataclass(frozen=True)
class _Start:
    """Where a run starts: fresh, or from a checkpoint."""

    arch: str
    epoch: int = 0
    history: tuple[dict[str, float], ...] = ()
    payload: dict[str, Any] | None = None


def _start(config: TrainConfig) -> _Start:
    """Read the --resume checkpoint (if any) and check it agrees with the options."""
    if config.resume is None:
        return _Start(arch=config.arch or DEFAULT_ARCH)
    info, payload = read_checkpoint(config.resume)
    if config.arch is not None and config.arch != info.spec.arch:
        raise InputError(
            f"--arch {config.arch} does not match the {info.spec.arch} checkpoint {config.resume}",
            f"drop --arch (the checkpoint's arch is used) or pass --arch {info.spec.arch}",
        )
    if info.spec.num_classes != NUM_CLASSES:
        raise InputError(f"{config.resume} has {info.spec.num_classes} classes; training uses the {NUM_CLASSES} VOC classes")
    if info.epoch >= config.epochs:
        raise InputError(
            f"{config.resume} has already been trained for {info.epoch} epochs and --epochs is {config.epochs}",
            f"pass --epochs larger than {info.epoch} to train further",
        )
    return _Start(arch=info.spec.arch, epoch=info.epoch, history=tuple(info.history), payload=payload)


# --- the loop ------------------------------------------------------------------------------------


def _loader(dataset: Any, config: TrainConfig, shuffle: bool, generator: Any, collate: Any = None) -> Any:
    """A DataLoader with the run's batch size and workers; every example is used (no partial batch dropped)."""
    data = require("torch.utils.data")
    return data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        generator=generator,
        collate_fn=collate,
    )


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at a (0-based) step: constant, or cosine-annealed to 0 (stateless, so --resume needs no state)."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return config.lr


def _train_epoch(
    model: nn.Module, loader: Any, optimizer: Any, device: Any, epoch: int, config: TrainConfig
) -> tuple[float, float]:
    """One pass over the crops: mean loss per valid pixel and pixel accuracy."""
    torch = require("torch")
    functional = require("torch.nn.functional")
    model.train()
    loss_sum, correct, counted = 0.0, 0, 0
    step, total_steps = (epoch - 1) * len(loader), config.epochs * len(loader)
    with progress_bar(len(loader), f"epoch {epoch}/{config.epochs} train") as advance:
        for images, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step, total_steps)
            step += 1
            images, labels = images.to(device), labels.to(device)
            valid = labels != VOID_LABEL
            pixels = int(valid.sum())
            if pixels == 0:  # an all-void batch has no loss (cross entropy would be NaN)
                advance()
                continue
            logits = model(images)
            loss = functional.cross_entropy(logits, labels, ignore_index=VOID_LABEL)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise InputError(
                    f"training diverged in epoch {epoch} (loss {loss_value}); the checkpoints of earlier epochs are kept",
                    f"lower --lr (now {config.lr}) or --momentum, and start again or --resume from the last checkpoint",
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += loss_value * pixels
                correct += int((logits.argmax(1) == labels)[valid].sum())
                counted += pixels
            advance(status=f"loss {loss_value:.3f}")
    if counted == 0:
        return float("nan"), float("nan")
    return loss_sum / counted, correct / counted


def evaluate(model: nn.Module, loader: Any, device: Any, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Confusion matrix of the model over a loader of (images, labels); void pixels are skipped."""
    torch = require("torch")
    model.eval()
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    with torch.no_grad(), progress_bar(len(loader), "validation") as advance:
        for images, labels in loader:
            predictions = model(images.to(device)).argmax(1).cpu().numpy()
            matrix += confusion_matrix(labels.numpy(), predictions, num_classes)
            advance()
    return matrix


def _scans(config: TrainConfig) -> tuple[VocLayout, SplitScan, SplitScan]:
    """Check the dataset and pick the training pairs that fit the crop (d2l's filter)."""
    layout = VocLayout(Path(config.data))
    train_scan = scan_split(layout, config.train_split, config.crop)
    val_scan = scan_split(layout, config.val_split)
    log(train_scan.describe())
    log(val_scan.describe() + " (whole images, padded to multiples of 32)")
    return layout, train_scan, val_scan


def _build(arch: str, config: TrainConfig, start: _Start, device: Any) -> tuple[nn.Module, Any]:
    """The model (fresh or resumed) and its SGD optimizer on ``device``."""
    torch = require("torch")
    options: dict[str, Any] = {"upsample_init": config.upsample_init}
    if config.backbone_weights is not None:
        options["backbone_weights"] = str(config.backbone_weights)
    model = build_model(arch, NUM_CLASSES, **options)
    if start.payload is not None:
        try:
            model.load_state_dict(start.payload["state_dict"])
        except (RuntimeError, KeyError) as exc:
            raise InputError(f"{config.resume}: weights do not fit arch {arch!r} ({exc})") from exc
    model.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum
    )
    if start.payload is not None and start.payload.get("optimizer"):
        try:
            optimizer.load_state_dict(start.payload["optimizer"])
        except (ValueError, KeyError) as exc:
            raise InputError(f"{config.resume}: optimizer state does not fit ({exc})") from exc
        for group in optimizer.param_groups:  # the options of this run win over the stored ones
            group.update(lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum)
    return model, optimizer


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy a finished checkpoint file (cheaper than serialising the model twice)."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _best_so_far(history: tuple[dict[str, float], ...]) -> tuple[int, float]:
    """(epoch, val mIoU) of the best epoch in a resumed history, or (0, -inf)."""
    best = (0, -math.inf)
    for row in history:
        miou = row.get("val_miou", math.nan)
        if not math.isnan(miou) and miou > best[1]:
            best = (int(row.get("epoch", 0)), miou)
    return best


def checkpoint_paths(config: TrainConfig, arch: str) -> tuple[Path, Path]:
    """``<arch>-last.pt`` and ``<arch>-best.pt`` in --out-dir, refused where they would replace an input.

    A resumed run continues its own checkpoints: rewriting the --resume file is what resuming means.
    """
    out = Path(config.out_dir)
    last, best = out / f"{arch}-last.pt", out / f"{arch}-best.pt"
    resume = Path(config.resume) if config.resume is not None else None
    continued = [p for p in (last, best) if resume is not None and p.exists() and os.path.samefile(p, resume)]
    outputs = [Place("--out-dir", out)]
    outputs += [Place(f"the checkpoint {p.name}", p) for p in (last, best) if p not in continued]
    inputs = dataset_places(config.data)
    for option, path in (("--backbone-weights", config.backbone_weights), ("--resume", resume)):
        if path is not None:
            inputs.append(Place(option, Path(path)))
    check_outputs_apart(outputs, inputs)
    return last, best


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a model; write ``<arch>-last.pt`` every epoch and ``<arch>-best.pt`` on best val mIoU."""
    started = time.perf_counter()
    _check_options(config)
    torch = require("torch")
    device = torch_device(config.device, "--device")
    start = _start(config)
    last_path, best_path = checkpoint_paths(config, start.arch)
    layout, train_scan, val_scan = _scans(config)
    torch.manual_seed(config.seed + start.epoch)
    generator = torch.Generator().manual_seed(config.seed + start.epoch)
    model, optimizer = _build(start.arch, config, start, device)
    spec = model_spec(start.arch, config.crop)
    train_loader = _loader(crop_dataset(layout, train_scan, config.crop, spec.mean, spec.std), config, True, generator)
    val_loader = _loader(whole_image_dataset(layout, val_scan, spec.mean, spec.std), config, False, None, pad_collate)
    history = list(start.history)
    best_epoch, best_miou = _best_so_far(start.history)
    epochs_run: list[EpochMetrics] = []
    if start.epoch:
        log(f"resuming {start.arch} from {config.resume} after epoch {start.epoch}")
    elif replaced := [str(p) for p in (last_path, best_path) if p.exists()]:
        log(f"this new run replaces {' and '.join(replaced)}")
    for epoch in range(start.epoch + 1, config.epochs + 1):
        epoch_start = time.perf_counter()
        loss, train_acc = _train_epoch(model, train_loader, optimizer, device, epoch, config)
        scores = scores_from_confusion(evaluate(model, val_loader, device))
        metrics = EpochMetrics(epoch, loss, train_acc, scores.pixel_accuracy, scores.mean_iou,
                               time.perf_counter() - epoch_start)
        epochs_run.append(metrics)
        history.append(metrics.as_dict())
        info = Checkpoint(spec=spec, epoch=epoch, metrics=metrics.as_dict(), history=tuple(history))
        save_checkpoint(last_path, model, info, optimizer.state_dict())
        improved = not math.isnan(metrics.val_miou) and metrics.val_miou > best_miou
        if improved or not best_path.is_file():  # an unscorable first epoch still gets a best file
            best_epoch = epoch
            best_miou = metrics.val_miou if improved else best_miou  # never NaN: later epochs can still win
            _copy_atomic(last_path, best_path)
        log(
            f"epoch {epoch}/{config.epochs}: train loss {loss:.3f}, train acc {train_acc:.3f}, "
            f"val acc {scores.pixel_accuracy:.3f}, val mIoU {scores.mean_iou:.3f}"
            f"{' (best)' if best_epoch == epoch else ''}, {metrics.seconds:.1f} s"
        )
    return TrainResult(
        last_checkpoint=last_path,
        best_checkpoint=best_path,
        best_epoch=best_epoch,
        best_val_miou=best_miou,
        history=tuple(epochs_run),
        train_examples=len(train_scan.ids),
        val_examples=len(val_scan.ids),
        seconds=time.perf_counter() - started,
    )
