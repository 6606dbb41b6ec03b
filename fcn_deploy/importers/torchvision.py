"""torchvision's segmentation models from a local state dict -> an fcn-deploy checkpoint.

The nets return a dict; its ``out`` entry is the logits (the auxiliary head is dropped). Their natural
alignment is their output stride: 8 for the dilated ResNets, 16 for the MobileNetV3 ones, recorded in the
spec so that export, the backends, whole-image padding and tiling all follow it. Nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcn_deploy.deps import require
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import Place, check_outputs_apart
from fcn_deploy.importers.classes import class_file_places, resolve_classes
from fcn_deploy.importers.module import default_checkpoint_path, import_module
from fcn_deploy.importers.state_dict import (
    Layout,
    classes_in,
    load_matching,
    read_state_dict,
)
from fcn_deploy.spec import ModelSpec, ShapeRange


@dataclass(frozen=True)
class TorchvisionModel:
    """One supported net: its factory in torchvision.models.segmentation, output stride and class-score key."""

    name: str
    alignment: int
    classes_key: str
    takes_aux_loss: bool = True


MODELS: dict[str, TorchvisionModel] = {
    m.name: m
    for m in (
        TorchvisionModel("fcn_resnet50", 8, "classifier.4.weight"),
        TorchvisionModel("fcn_resnet101", 8, "classifier.4.weight"),
        TorchvisionModel("deeplabv3_resnet50", 8, "classifier.4.weight"),
        TorchvisionModel("deeplabv3_resnet101", 8, "classifier.4.weight"),
        TorchvisionModel("deeplabv3_mobilenet_v3_large", 16, "classifier.4.weight"),
        TorchvisionModel("lraspp_mobilenet_v3_large", 16, "classifier.low_classifier.weight", takes_aux_loss=False),
    )
}
AUX_PREFIX = "aux_classifier."


def known(name: str) -> TorchvisionModel:
    """The entry of ``name``; InputError listing the known names otherwise."""
    if name not in MODELS:
        raise InputError(f"unknown torchvision model {name!r}", f"choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def build(name: str, num_classes: int) -> Any:
    """A randomly initialised net of ``name`` without its auxiliary head (no weights are downloaded)."""
    entry = known(name)
    segmentation = require("torchvision.models.segmentation")
    options: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if entry.takes_aux_loss:
        options["aux_loss"] = False
    return getattr(segmentation, name)(**options)


def import_torchvision(
    name: str,
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    num_classes: int | None = None,
    classes: str | os.PathLike[str] | None = None,
    shape_range: ShapeRange | None = None,
) -> Path:
    """Write the checkpoint of a torchvision segmentation state dict (aux head dropped); returns its path."""
    entry = known(name)
    weights = Path(weights)
    out = Path(out) if out is not None else default_checkpoint_path(f"torchvision-{name}")
    check_outputs_apart([Place("--out", out)], [Place("the weights", weights), *class_file_places(classes)])
    state = {k: v for k, v in read_state_dict(weights).items() if not k.startswith(AUX_PREFIX)}
    found = classes_in(state, entry.classes_key)
    if found is None:
        found = num_classes or 21
    if num_classes is not None and num_classes != found:
        raise InputError(f"--num-classes {num_classes} contradicts the weights: {entry.classes_key} of {weights} "
                         f"has {found} output channels", f"pass --num-classes {found}")
    layout = Layout(f"torchvision {name}", lambda key: key, lambda n: build(name, n))
    _, model = load_matching(state, (layout,), found, str(weights))
    chosen = resolve_classes(classes, found, str(weights))
    spec = ModelSpec(arch=f"torchvision-{name}", num_classes=found, class_names=chosen.names,
                     palette=chosen.palette, alignment=entry.alignment, shape_range=shape_range or ShapeRange())
    return import_module(model, spec, out)
