"""Fixtures of the importer tests: d2l's notebook net built exactly as the notebook does, saved state dicts."""

from __future__ import annotations

from pathlib import Path

import pytest


def d2l_notebook_net(num_classes: int = 21, seed: int = 0):
    """d2l.ai's FCN, built line by line as in the notebook (random weights, bilinear transposed conv)."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from torch import nn

    torch.manual_seed(seed)
    pretrained_net = torchvision.models.resnet18(weights=None)
    net = nn.Sequential(*list(pretrained_net.children())[:-2])
    net.add_module("final_conv", nn.Conv2d(512, num_classes, kernel_size=1))
    net.add_module("transpose_conv", nn.ConvTranspose2d(num_classes, num_classes, kernel_size=64, padding=16, stride=32))
    with torch.no_grad():
        net.transpose_conv.weight.copy_(_d2l_bilinear_kernel(num_classes, num_classes, 64))
        for module in net.modules():  # trained-looking BN statistics, so predictions vary over the image
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _d2l_bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int):
    """d2l's bilinear_kernel, written out here so that the test does not use the package's copy."""
    import torch

    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = (torch.arange(kernel_size).reshape(-1, 1), torch.arange(kernel_size).reshape(1, -1))
    filt = (1 - torch.abs(og[0] - center) / factor) * (1 - torch.abs(og[1] - center) / factor)
    weight = torch.zeros((in_channels, out_channels, kernel_size, kernel_size))
    weight[range(in_channels), range(out_channels), :, :] = filt
    return weight


@pytest.fixture
def d2l_net_factory():
    """``d2l_notebook_net`` itself, for tests that need another class count or seed."""
    return d2l_notebook_net


@pytest.fixture
def d2l_net():
    return d2l_notebook_net()


@pytest.fixture
def d2l_state_dict(tmp_path: Path, d2l_net) -> Path:
    """The notebook net's ``net.state_dict()`` saved with torch.save."""
    import torch

    path = tmp_path / "d2l-fcn.pt"
    torch.save(d2l_net.state_dict(), path)
    return path
