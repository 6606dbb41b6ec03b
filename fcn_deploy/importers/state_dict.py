"""Reading a foreign state dict safely, and matching its keys and shapes against known layouts."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcn_deploy.checkpoint import require_finite_weights
from fcn_deploy.deps import require
from fcn_deploy.errors import InputError

SAVE_HINT = "in the notebook save the weights alone: torch.save(net.state_dict(), 'weights.pt')"
FINITE_HINT = ("the training run that saved them diverged (its loss went NaN) or the file was damaged: save the "
               "weights of a run whose loss stayed finite")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors of a state-dict file, loaded with ``weights_only=True`` (never unpickling code).

    A file holding a whole pickled module, anything but a mapping of names to tensors, or a NaN or infinite
    weight is refused.
    """
    torch = require("torch")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}", "pass the path of a saved state dict")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for pickled objects, RuntimeError/EOFError for other files
        text = str(exc)
        if "Unsupported global:" in text:
            raise InputError(
                f"{path} holds pickled Python objects (a whole model saved with torch.save(net)?), which only "
                "unsafe unpickling could read; it was not loaded", SAVE_HINT) from exc
        raise InputError(f"{path} is not a PyTorch state dict file ({type(exc).__name__})", SAVE_HINT) from exc
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not loaded or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        kind = type(loaded).__name__ if not isinstance(loaded, Mapping) else "a mapping that is not names to tensors"
        raise InputError(f"{path} is not a state dict (it holds {kind})", SAVE_HINT)
    require_finite_weights(loaded, str(path), InputError, FINITE_HINT)
    return dict(loaded)


@dataclass(frozen=True)
class Layout:
    """A known key layout: its name, how its keys map onto a target model's, and which model that is."""

    name: str
    rename: Callable[[str], str | None]  # foreign key -> target key (None: not part of this layout)
    build: Callable[[int], Any]  # num_classes -> a target nn.Module


@dataclass(frozen=True)
class LayoutMatch:
    """How a state dict fits one layout: target keys missing, foreign keys unexpected, shapes that differ."""

    layout: Layout
    mapped: dict[str, Any]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (first: {self.missing[0]})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (first: {self.unexpected[0]})")
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} of another shape (first: {self.mismatched[0]})")
        return f"{self.layout.name}: " + ", ".join(parts)


def match_layout(state: Mapping[str, Any], layout: Layout, num_classes: int) -> tuple[LayoutMatch, Any]:
    """Map ``state`` through ``layout`` onto a fresh target model; returns the match and that model."""
    model = layout.build(num_classes)
    own = model.state_dict()
    mapped: dict[str, Any] = {}
    unexpected = []
    for key, value in state.items():
        target = layout.rename(key)
        if target is None or target not in own:
            unexpected.append(key)
        else:
            mapped[target] = value
    missing = tuple(k for k in own if k not in mapped and not k.endswith("num_batches_tracked"))
    mismatched = tuple(
        f"{k} {tuple(v.shape)} (needed {tuple(own[k].shape)})" for k, v in mapped.items() if v.shape != own[k].shape
    )
    return LayoutMatch(layout, mapped, missing, tuple(unexpected), mismatched), model


def load_matching(
    state: Mapping[str, Any], layouts: tuple[Layout, ...], num_classes: int, source: str
) -> tuple[Layout, Any]:
    """The first layout ``state`` fits exactly, with its target model loaded; InputError naming every mismatch."""
    results = []
    for layout in layouts:
        match, model = match_layout(state, layout, num_classes)
        if match.fits:
            model.load_state_dict(match.mapped, strict=False)
            return layout, model.eval()
        results.append(match)
    raise InputError(
        f"{source} fits none of the known layouts: " + "; ".join(m.describe() for m in results),
        f"layouts tried: {', '.join(layout.name for layout in layouts)}; pass a state dict of one of them "
        "(with --num-classes when the class count differs)",
    )


def classes_in(state: Mapping[str, Any], key: str) -> int | None:
    """Number of classes of a state dict, read from the output-channel count of ``key`` (None when absent)."""
    value = state.get(key)
    return int(value.shape[0]) if value is not None and value.ndim >= 1 else None
