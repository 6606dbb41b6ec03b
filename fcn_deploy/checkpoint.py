"""Training checkpoints: weights plus the model spec, written atomically and read back into a model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.fileio import atomic_path
from fcn_deploy.model import build_model
from fcn_deploy.program import load_program
from fcn_deploy.spec import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

CHECKPOINT_FORMAT = "fcn-deploy-checkpoint-1"
CHECKPOINT_SUFFIXES = (".pt", ".pth")


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds besides the weights."""

    spec: ModelSpec
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    history: tuple[dict[str, float], ...] = ()


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    info: Checkpoint,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write weights, spec, epoch, metrics (and optimizer state for --resume) atomically."""
    torch = require("torch")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": info.spec.to_dict(),
        "epoch": info.epoch,
        "metrics": dict(info.metrics),
        "history": [dict(h) for h in info.history],
        "state_dict": model.state_dict(),
        "optimizer": optimizer_state,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def save_program_checkpoint(path: str | os.PathLike[str], program: dict[str, Any], info: Checkpoint) -> Path:
    """Write an imported model (a ``fcn_deploy.program`` entry instead of a state dict) with its spec, atomically."""
    torch = require("torch")
    payload = {"format": CHECKPOINT_FORMAT, "spec": info.spec.to_dict(), "epoch": info.epoch,
               "metrics": dict(info.metrics), "history": [], "program": program}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[Checkpoint, dict[str, Any]]:
    """Read a checkpoint file: its info and the raw payload (state_dict, optimizer)."""
    torch = require("torch")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}", "train one with 'fcn-deploy train' or pass its path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ArtifactError(f"{path} is not a readable PyTorch checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(
            f"{path} is not an fcn-deploy checkpoint", "pass a checkpoint written by 'fcn-deploy train'"
        )
    spec = ModelSpec.from_dict(payload.get("spec", {}), source=str(path))
    info = Checkpoint(
        spec=spec,
        epoch=int(payload.get("epoch", 0)),
        metrics={k: float(v) for k, v in (payload.get("metrics") or {}).items()},
        history=tuple(payload.get("history") or ()),
    )
    return info, payload


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint describes, load its weights, and return it in eval mode."""
    info, payload = read_checkpoint(path)
    if "program" in payload:  # an imported model, stored as a traced graph (see fcn_deploy.program)
        return load_program(payload["program"], str(path)).eval(), info
    model = build_model(info.spec.arch, info.spec.num_classes)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ArtifactError(f"{path}: weights do not match arch {info.spec.arch!r} ({exc})") from exc
    return model.eval(), info
