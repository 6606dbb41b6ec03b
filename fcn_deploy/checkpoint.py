"""Training checkpoints: weights plus the model spec, written atomically and read back into a model."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcn_deploy.contract import NON_FINITE_HINT, non_finite_message
from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError, FcnDeployError, InputError
from fcn_deploy.fileio import atomic_path
from fcn_deploy.model import build_model
from fcn_deploy.program import load_program
from fcn_deploy.spec import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

CHECKPOINT_FORMAT = "fcn-deploy-checkpoint-1"
CHECKPOINT_SUFFIXES = (".pt", ".pth")
CHECKPOINT_HINT = ("pass a checkpoint written by 'fcn-deploy train'; for weights of your own, write one with "
                   "fcn_deploy.checkpoint.save_checkpoint(path, model, Checkpoint(spec=ModelSpec(arch=...)))")


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
    payload = _safe_load(torch, path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"{path} is not an fcn-deploy checkpoint", CHECKPOINT_HINT)
    spec = ModelSpec.from_dict(payload.get("spec", {}), source=str(path))
    try:
        info = Checkpoint(
            spec=spec,
            epoch=int(payload.get("epoch", 0)),
            metrics={str(k): float(v) for k, v in (payload.get("metrics") or {}).items()},
            history=tuple(payload.get("history") or ()),
        )
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ArtifactError(f"{path} holds a damaged fcn-deploy checkpoint ({exc})",
                            "pass another checkpoint, or train again") from exc
    return info, payload


def _safe_load(torch: Any, path: Path) -> Any:
    """``torch.load`` with weights only (no pickled code ever runs), its failures in our words, its warnings muted.

    PyTorch's own message for a file holding Python objects suggests ``weights_only=False``, which would run
    whatever the file contains: that advice is never passed on.
    """
    try:
        with warnings.catch_warnings():  # e.g. the pickle-protocol warning printed before the error
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        text = str(exc)
        if "weights_only" in text or "WeightsUnpickler" in text:  # the safe loader refused what it found
            raise ArtifactError(
                f"{path} is not an fcn-deploy checkpoint: it is not a file of weights that loads safely (a checkpoint "
                "never runs code)", CHECKPOINT_HINT,
            ) from None
        state = "empty" if path.stat().st_size == 0 else "truncated, corrupt or not a checkpoint at all"
        raise ArtifactError(f"{path} cannot be read as a PyTorch checkpoint: the file is {state}",
                            "copy the checkpoint again, or pass another one (training writes <arch>-last.pt "
                            "every epoch)") from exc


def non_finite_weights(tensors: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors among ``tensors`` that hold a NaN or an infinity."""
    torch = require("torch")
    return [name for name, value in tensors.items()
            if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())
            and not bool(torch.isfinite(value).all())]


def require_finite_weights(tensors: Mapping[str, Any], source: str,
                           error: type[FcnDeployError] = ArtifactError, hint: str = NON_FINITE_HINT) -> None:
    """``error`` naming the first tensors when any weight is NaN or infinite (such a model predicts nothing)."""
    bad = non_finite_weights(tensors)
    if bad:
        raise error(non_finite_message(source, bad), hint)


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint describes, load its weights, and return it in eval mode.

    Weights that hold a NaN or an infinity are refused: the model would predict background everywhere.
    """
    info, payload = read_checkpoint(path)
    if "program" in payload:  # an imported model, stored as a traced graph (see fcn_deploy.program)
        entry = payload["program"]
        model = load_program(entry, str(path)).eval()  # checks the entry's format first
        require_finite_weights({**entry["state_dict"], **entry["constants"]}, str(path))
        return model, info
    model = build_model(info.spec.arch, info.spec.num_classes)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ArtifactError(f"{path}: weights do not match arch {info.spec.arch!r} ({exc})",
                            "pass the checkpoint training wrote for this architecture") from exc
    require_finite_weights(payload["state_dict"], str(path))
    return model.eval(), info
