"""State dicts saved from d2l.ai's FCN notebook (and fcn-deploy's own layouts) -> an fcn-deploy checkpoint.

d2l builds ``nn.Sequential(*list(resnet18.children())[:-2])`` and adds ``final_conv`` and ``transpose_conv``,
so its keys are ``0.weight`` (conv1), ``1.*`` (bn1), ``4.*``..``7.*`` (layer1..layer4), ``final_conv.*`` and
``transpose_conv.*``: exactly fcn32s's tensors under other names. The same notebook pattern on VGG11-BN's
conv stacks (``nn.Sequential(*list(vgg11_bn.features.children())[:-1])``) maps onto vgg11.
"""

from __future__ import annotations

import os
from pathlib import Path

from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import Place, check_outputs_apart
from fcn_deploy.importers.classes import class_file_places, resolve_classes
from fcn_deploy.importers.state_dict import (
    Layout,
    classes_in,
    load_matching,
    read_state_dict,
)
from fcn_deploy.model import MODEL_ALIGNMENT, build_model
from fcn_deploy.spec import ModelSpec

# d2l's Sequential index of each ResNet-18 child that holds weights (2 is relu, 3 is maxpool)
_D2L_RESNET_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_HEAD_PREFIXES = ("final_conv.", "transpose_conv.")


def _d2l_resnet_key(key: str) -> str | None:
    """d2l key -> fcn32s key: '4.0.conv1.weight' -> 'backbone.layer1.0.conv1.weight'."""
    if key.startswith(_HEAD_PREFIXES):
        return key
    index, _, rest = key.partition(".")
    child = _D2L_RESNET_CHILDREN.get(index)
    return f"backbone.{child}.{rest}" if child and rest else None


def _notebook_vgg_key(key: str) -> str | None:
    """Notebook VGG11 key -> vgg11 key: '0.weight' -> 'features_net.0.weight'."""
    if key.startswith(_HEAD_PREFIXES):
        return key
    index, _, rest = key.partition(".")
    return f"features_net.{index}.{rest}" if index.isdigit() and rest else None


def _builder(arch: str):
    return lambda num_classes: build_model(arch, num_classes)


LAYOUTS: tuple[Layout, ...] = (
    Layout("d2l ResNet-18 FCN (fcn32s)", _d2l_resnet_key, _builder("fcn32s")),
    Layout("notebook VGG11-BN FCN (vgg11)", _notebook_vgg_key, _builder("vgg11")),
    *(Layout(f"fcn-deploy {arch}", lambda key: key, _builder(arch)) for arch in ("fcn32s", "fcn16s", "fcn8s", "vgg11")),
)
_LAYOUT_ARCH = {layout.name: layout.name.rsplit(" ", 1)[-1].strip("()") for layout in LAYOUTS}


def import_d2l(
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    num_classes: int | None = None,
    classes: str | os.PathLike[str] | None = None,
) -> tuple[Path, str]:
    """Write the checkpoint of a d2l-notebook state dict; returns its path and the layout that matched."""
    weights = Path(weights)
    inputs = [Place("the weights", weights), *class_file_places(classes)]
    if out is not None:
        check_outputs_apart([Place("--out", Path(out))], inputs)
    state = read_state_dict(weights)
    found = classes_in(state, "final_conv.weight")
    if found is None:
        found = num_classes or 21
    if num_classes is not None and num_classes != found:
        raise InputError(f"--num-classes {num_classes} contradicts the weights: final_conv of {weights} has "
                         f"{found} output channels", f"pass --num-classes {found}, or the weights of the model you mean")
    layout, model = load_matching(state, LAYOUTS, found, str(weights))
    arch = _LAYOUT_ARCH[layout.name]
    chosen = resolve_classes(classes, found, str(weights))
    spec = ModelSpec(arch=arch, num_classes=found, class_names=chosen.names, palette=chosen.palette,
                     alignment=MODEL_ALIGNMENT)
    if out is None:
        out = Path("checkpoints") / f"d2l-{arch}.pt"
        check_outputs_apart([Place("the checkpoint", out)], inputs)
    return save_checkpoint(out, model, Checkpoint(spec=spec)), layout.name
