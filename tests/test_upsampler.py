"""The MatMul form of the upsamplers used by export: the same function as the transposed convolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcn_deploy.errors import InputError
from fcn_deploy.model import build_model
from fcn_deploy.upsampler import (
    is_phase_upsampler,
    phase_matmul_upsampler,
    with_matmul_upsamplers,
)


@pytest.mark.parametrize("stride,height,width", [(2, 3, 5), (8, 4, 1), (32, 3, 4)])
def test_phase_matmul_upsampler_equals_the_transposed_conv(stride, height, width):
    torch.manual_seed(stride)
    layer = nn.ConvTranspose2d(3, 5, kernel_size=2 * stride, stride=stride, padding=stride // 2)
    x = torch.randn(2, 3, height, width)
    with torch.no_grad():
        expected, actual = layer(x), phase_matmul_upsampler(layer)(x)
    assert actual.shape == expected.shape == (2, 5, height * stride, width * stride)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["fcn32s", "fcn8s"])
def test_with_matmul_upsamplers_keeps_the_function_and_the_original(arch):
    torch.manual_seed(0)
    model = build_model(arch).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # trained-looking weights: upsamplers no longer bilinear
            parameter.add_(0.01 * torch.randn_like(parameter))
    deployed = with_matmul_upsamplers(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), rtol=0, atol=1e-4)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in deployed.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules()) == {"fcn32s": 1, "fcn8s": 3}[arch]


@pytest.mark.parametrize("layer", [nn.ConvTranspose2d(2, 2, 4, stride=2, padding=0),
                                   nn.ConvTranspose2d(2, 2, 3, stride=1, padding=1),
                                   nn.ConvTranspose2d(2, 2, 6, stride=3, padding=1)])
def test_phase_matmul_upsampler_refuses_other_transposed_convs(layer):
    assert not is_phase_upsampler(layer)
    with pytest.raises(InputError, match="kernel 2s, stride s, padding s/2"):
        phase_matmul_upsampler(layer)
