"""The deployment form of the family's upsamplers: each stride-s ConvTranspose as one batched MatMul.

Export-only: training keeps the ConvTranspose it learns with; ``fcn-deploy export`` writes this form by
default because it runs about twice as fast on CPUs and can be quantised there.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from fcn_deploy.deps import require
from fcn_deploy.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


def is_phase_upsampler(layer: Any) -> bool:
    """True for the family's upsampler shape: ConvTranspose2d with kernel 2s, stride s (even), padding s/2."""
    nn = require("torch.nn")
    if not isinstance(layer, nn.ConvTranspose2d):
        return False
    stride = layer.stride[0]
    return (
        layer.stride == (stride, stride) and stride % 2 == 0 and layer.kernel_size == (2 * stride, 2 * stride)
        and layer.padding == (stride // 2, stride // 2) and layer.groups == 1 and layer.dilation == (1, 1)
        and layer.output_padding == (0, 0) and layer.padding_mode == "zeros"
    )


def phase_matmul_weights(weight: torch.Tensor, stride: int) -> torch.Tensor:
    """ConvTranspose weights (Cin, Cout, 2s, 2s) as (Cout, 2, s/2, Cin·2·3, s) for ``PhaseMatmulUpsampler``.

    Output row 32·q + r (s = 32) reads input rows q-1 and q when r < s/2, rows q and q+1 otherwise: for each
    half of the rows, two row taps t; every output column reads input columns q-1, q, q+1 (three taps, one of
    them always zero), so one weight matrix per (Cout, output row phase) maps taps to the s column phases.
    """
    torch = require("torch")
    cin, cout, kernel, _ = weight.shape
    half = stride // 2
    rows = torch.arange(half)
    # kernel row of half h, row phase r and tap t: (h·s/2 + r) + s/2 - s·(h + t - 1)
    ky = torch.stack([torch.stack([h * half + rows + half - stride * (h + t - 1) for t in range(2)], -1)
                      for h in range(2)])  # (2, s/2, 2)
    # kernel column of column tap u and column phase c: c + s/2 - s·(u - 1); outside [0, 2s) reads zeros
    kx = torch.stack([torch.arange(stride) + half - stride * (u - 1) for u in range(3)])  # (3, s)
    kx = torch.where((kx >= 0) & (kx < kernel), kx, torch.full_like(kx, kernel))
    padded = torch.cat([weight, torch.zeros(cin, cout, kernel, 1, dtype=weight.dtype)], 3)
    taps = padded[:, :, ky[:, :, :, None, None], kx[None, None, None]]  # (Cin, Cout, 2, s/2, 2, 3, s)
    return taps.permute(1, 2, 3, 0, 4, 5, 6).reshape(cout, 2, half, cin * 6, stride).contiguous()


def phase_matmul_upsampler(layer: nn.ConvTranspose2d) -> nn.Module:
    """The same map as ``layer`` (see ``is_phase_upsampler``) computed as one batched MatMul and a transpose.

    A ConvTranspose with a 2s kernel runs slowly on CPUs (ONNX Runtime multiplies into a large column buffer
    and scatters it back) and cannot be quantised there; this form is a plain GEMM over 2×3 input taps per
    output phase, equal to the original up to float rounding, for deployment exports.
    """
    torch = require("torch")
    nn = require("torch.nn")
    functional = require("torch.nn.functional")
    if not is_phase_upsampler(layer):
        raise InputError(f"not an upsampler of kernel 2s, stride s, padding s/2: {layer}")
    stride = layer.stride[0]
    weight = layer.weight.detach()
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros(layer.out_channels, dtype=weight.dtype)

    class PhaseMatmulUpsampler(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stride = stride
            self.register_buffer("phase_weight", phase_matmul_weights(weight, stride))
            self.register_buffer("bias", bias.reshape(1, -1, 1, 1).clone())

        def forward(self, x):
            n, c, h, w = x.shape
            s, cout = self.stride, self.phase_weight.shape[0]
            padded = functional.pad(x, (1, 1, 1, 1))
            taps = torch.stack([padded[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3)], 2)
            taps = taps.reshape(n, c, 3, 3, h * w)
            halves = torch.stack([taps[:, :, 0:2], taps[:, :, 1:3]], 1)  # rows q-1,q and q,q+1
            a = halves.reshape(n, 2, c * 6, h * w).transpose(2, 3)  # (n, 2, h·w, taps)
            out = torch.matmul(a[:, None, :, None], self.phase_weight)  # (n, Cout, 2, s/2, h·w, s)
            out = out.reshape(n, cout, s, h, w * s).transpose(2, 3)
            return out.reshape(n, cout, h * s, w * s) + self.bias

    return PhaseMatmulUpsampler()


def with_matmul_upsamplers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose upsamplers are ``phase_matmul_upsampler``s; ``model`` itself is unchanged."""
    deployed = copy.deepcopy(model)
    for module in list(deployed.modules()):
        for child_name, child in list(module.named_children()):
            if is_phase_upsampler(child):
                setattr(module, child_name, phase_matmul_upsampler(child))
    return deployed
