"""The FCN model family, built by small typed factories behind ``build_model``.

Every model maps N×3×H×W images to N×C×H×W logits for any H, W that are multiples of 32.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fcn_deploy.deps import require
from fcn_deploy.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

UpsampleInit = Literal["bilinear", "xavier"]
MODEL_ALIGNMENT = 32
_RESNET_FEATURE_CHANNELS = {"stride8": 128, "stride16": 256, "stride32": 512}


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a ConvTranspose2d perform bilinear upsampling (d2l's function).

    Channel i of the input maps to channel i of the output; other pairs get zero weight.
    """
    torch = require("torch")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = (torch.arange(kernel_size).reshape(-1, 1), torch.arange(kernel_size).reshape(1, -1))
    filt = (1 - torch.abs(og[0] - center) / factor) * (1 - torch.abs(og[1] - center) / factor)
    weight = torch.zeros((in_channels, out_channels, kernel_size, kernel_size))
    channels = min(in_channels, out_channels)
    weight[range(channels), range(channels), :, :] = filt
    return weight


def _upsampler(channels: int, stride: int, init: UpsampleInit) -> nn.ConvTranspose2d:
    """ConvTranspose2d(kernel 2s, stride s, padding s/2): scales H and W by exactly ``stride``."""
    nn = require("torch.nn")
    layer = nn.ConvTranspose2d(channels, channels, kernel_size=2 * stride, stride=stride, padding=stride // 2)
    _init_upsampler(layer, init)
    return layer


def _init_upsampler(layer: nn.ConvTranspose2d, init: UpsampleInit) -> None:
    torch = require("torch")
    nn = require("torch.nn")
    with torch.no_grad():
        if init == "bilinear":
            layer.weight.copy_(bilinear_kernel(layer.in_channels, layer.out_channels, layer.kernel_size[0]))
        elif init == "xavier":
            nn.init.xavier_uniform_(layer.weight)
        else:
            raise InputError(f"unknown upsample init {init!r}", "use 'bilinear' or 'xavier'")
        if layer.bias is not None:
            layer.bias.zero_()


def _score_conv(in_channels: int, num_classes: int, zero: bool = False) -> nn.Conv2d:
    """1×1 convolution to class scores: Xavier-initialised, or zero for the skip layers (paper)."""
    nn = require("torch.nn")
    conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)
    if zero:
        nn.init.zeros_(conv.weight)
    else:
        nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _resnet18_backbone() -> nn.Sequential:
    """torchvision ResNet-18 minus its global pool and fc; parameter names match torchvision's."""
    nn = require("torch.nn")
    models = require("torchvision.models")
    resnet = models.resnet18(weights=None)
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    return nn.Sequential(OrderedDict((name, getattr(resnet, name)) for name in names))


def _vgg11_bn_features() -> nn.Sequential:
    """VGG11-BN conv stacks with four max-pools (stride 16): torchvision's features minus the last pool."""
    vgg = require("torchvision.models.vgg")
    # make_layers builds only the conv stacks (vgg11_bn() would also allocate its 100M-parameter classifier)
    features = vgg.make_layers(vgg.cfgs["A"], batch_norm=True)
    return features[:-1]


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike[str], prefix: str = "") -> None:
    """Load a local torchvision state dict into ``backbone``; classifier keys of the file are ignored."""
    torch = require("torch")
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"backbone weights file not found: {path}",
            "download the torchvision ImageNet weights on a connected machine "
            "(e.g. torchvision.models.resnet18(weights='DEFAULT').state_dict(), saved with torch.save) "
            "and pass the local file with --backbone-weights",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(f"cannot read backbone weights {path} ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = backbone.state_dict()
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix):] in own}
    missing = sorted(set(own) - set(picked))
    if missing:
        raise InputError(
            f"{path} does not fit this backbone: {len(missing)} tensors missing (first: {missing[0]})",
            "pass a torchvision ResNet-18 state dict for fcn32s/fcn16s/fcn8s, or a VGG11-BN one for vgg11",
        )
    for key, value in picked.items():
        if own[key].shape != value.shape:
            raise InputError(f"{path}: tensor {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
    backbone.load_state_dict(picked)


_CLASSES: dict[str, type] = {}


def _model_classes() -> dict[str, type]:
    """Define the nn.Module classes once torch is imported (keeps ``import fcn_deploy.model`` light)."""
    if _CLASSES:
        return _CLASSES
    nn = require("torch.nn")
    functional = require("torch.nn.functional")

    class FCN32s(nn.Module):
        """d2l's FCN: ResNet-18 features, 1×1 conv to classes, one ×32 transposed conv."""

        def __init__(self, num_classes: int, upsample_init: UpsampleInit = "bilinear") -> None:
            super().__init__()
            self.backbone = _resnet18_backbone()
            self.final_conv = _score_conv(512, num_classes)
            self.transpose_conv = _upsampler(num_classes, 32, upsample_init)

        def features(self, x):
            return self.backbone(x)

        def forward(self, x):
            return self.transpose_conv(self.final_conv(self.backbone(x)))

    class _SkipFCN(nn.Module):
        """FCN-16s / FCN-8s: score stride-16 (and stride-8) features and fuse through 2× upsamplers."""

        skip_strides: tuple[int, ...] = ()

        def __init__(self, num_classes: int, upsample_init: UpsampleInit = "bilinear") -> None:
            super().__init__()
            self.backbone = _resnet18_backbone()
            self.final_conv = _score_conv(512, num_classes)
            skips = {16: "stride16", 8: "stride8"}
            self.skip_scores = nn.ModuleDict(
                {skips[s]: _score_conv(_RESNET_FEATURE_CHANNELS[skips[s]], num_classes, zero=True)
                 for s in self.skip_strides}
            )
            self.fuse_upsamplers = nn.ModuleList(
                [_upsampler(num_classes, 2, upsample_init) for _ in self.skip_strides]
            )
            self.transpose_conv = _upsampler(num_classes, min(self.skip_strides), upsample_init)

        def _pyramid(self, x):
            b = self.backbone
            x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
            s8 = b.layer2(b.layer1(x))
            s16 = b.layer3(s8)
            s32 = b.layer4(s16)
            return {"stride8": s8, "stride16": s16, "stride32": s32}

        def features(self, x):
            return self.backbone(x)

        def forward(self, x):
            levels = self._pyramid(x)
            score = self.final_conv(levels["stride32"])
            for name, up in zip(self.skip_scores, self.fuse_upsamplers):
                score = up(score) + self.skip_scores[name](levels[name])
            return self.transpose_conv(score)

    class FCN16s(_SkipFCN):
        skip_strides = (16,)

    class FCN8s(_SkipFCN):
        skip_strides = (16, 8)

    class VGG11FCN(nn.Module):
        """VGG11-BN conv stacks (stride 16), 1×1 conv to classes, ×16 bilinear-initialised upsampling."""

        def __init__(self, num_classes: int, upsample_init: UpsampleInit = "bilinear") -> None:
            super().__init__()
            self.features_net = _vgg11_bn_features()
            self.final_conv = _score_conv(512, num_classes)
            self.transpose_conv = _upsampler(num_classes, 16, upsample_init)

        def features(self, x):
            return self.features_net(x)

        def forward(self, x):
            return self.transpose_conv(self.final_conv(self.features_net(x)))

    class VGG11Classifier(nn.Module):
        """The same VGG11-BN backbone as an image classifier: global average pool and Linear(512, C)."""

        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.features_net = _vgg11_bn_features()
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            pooled = functional.adaptive_avg_pool2d(self.features_net(x), 1).flatten(1)
            return self.fc(pooled)

    _CLASSES.update(FCN32s=FCN32s, FCN16s=FCN16s, FCN8s=FCN8s, VGG11FCN=VGG11FCN, VGG11Classifier=VGG11Classifier)
    return _CLASSES


# --- typed factories -----------------------------------------------------------------------------


def _resnet_fcn(class_name: str, num_classes: int, upsample_init: UpsampleInit, backbone_weights: str | None) -> nn.Module:
    """Build one of the ResNet-18 FCNs and load optional local backbone weights."""
    model = _model_classes()[class_name](num_classes, upsample_init)
    if backbone_weights:
        load_backbone_weights(model.backbone, backbone_weights)
    return model


def fcn32s(
    num_classes: int = 21, *, upsample_init: UpsampleInit = "bilinear", backbone_weights: str | None = None
) -> nn.Module:
    """d2l's FCN-32s on ResNet-18."""
    return _resnet_fcn("FCN32s", num_classes, upsample_init, backbone_weights)


def fcn16s(
    num_classes: int = 21, *, upsample_init: UpsampleInit = "bilinear", backbone_weights: str | None = None
) -> nn.Module:
    """FCN-16s: FCN-32s plus a stride-16 skip."""
    return _resnet_fcn("FCN16s", num_classes, upsample_init, backbone_weights)


def fcn8s(
    num_classes: int = 21, *, upsample_init: UpsampleInit = "bilinear", backbone_weights: str | None = None
) -> nn.Module:
    """FCN-8s: FCN-32s plus stride-16 and stride-8 skips."""
    return _resnet_fcn("FCN8s", num_classes, upsample_init, backbone_weights)


def vgg11(
    num_classes: int = 21, *, upsample_init: UpsampleInit = "bilinear", backbone_weights: str | None = None
) -> nn.Module:
    """VGG11-BN segmentation network (stride 16)."""
    model = _model_classes()["VGG11FCN"](num_classes, upsample_init)
    if backbone_weights:
        load_backbone_weights(model.features_net, backbone_weights, prefix="features.")
    return model


def vgg11_classifier(num_classes: int = 21) -> nn.Module:
    """The VGG11-BN classifier whose weights ``segmentation_from_classifier`` turns into a segmenter."""
    return _model_classes()["VGG11Classifier"](num_classes)


def segmentation_from_classifier(classifier: nn.Module, upsample_init: UpsampleInit = "bilinear") -> nn.Module:
    """Turn a trained VGG11 classifier into the segmentation net: Linear (C, 512) becomes a 1×1 conv."""
    torch = require("torch")
    num_classes = classifier.fc.out_features
    model = vgg11(num_classes, upsample_init=upsample_init)
    model.features_net.load_state_dict(classifier.features_net.state_dict())
    with torch.no_grad():
        model.final_conv.weight.copy_(classifier.fc.weight.reshape(num_classes, 512, 1, 1))
        model.final_conv.bias.copy_(classifier.fc.bias)
    return model


MODEL_BUILDERS: dict[str, Callable[..., Any]] = {"fcn32s": fcn32s, "fcn16s": fcn16s, "fcn8s": fcn8s, "vgg11": vgg11}


def build_model(name: str, num_classes: int = 21, **options: Any) -> nn.Module:
    """Build a model of the family by name; options go to its factory (upsample_init, backbone_weights)."""
    builder = MODEL_BUILDERS.get(name)
    if builder is None:
        raise InputError(f"unknown arch {name!r}", f"choose one of: {', '.join(MODEL_BUILDERS)}")
    if num_classes < 1:
        raise InputError(f"num_classes must be positive, got {num_classes}")
    try:
        return builder(num_classes, **options)
    except TypeError as exc:
        raise InputError(f"bad option for arch {name!r}: {exc}") from exc
