"""The FCN family and the transposed-convolution figures of d2l's chapters, reproduced exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fcn_deploy.errors import InputError
from fcn_deploy.model import (
    MODEL_BUILDERS,
    _upsampler,
    bilinear_kernel,
    build_model,
    fcn32s,
    segmentation_from_classifier,
    vgg11_classifier,
)


def trans_conv(X: torch.Tensor, K: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """d2l's reference transposed convolution: every input element scatters X[i, j] * K, ``stride`` apart; then
    ``padding`` rows and columns are cut from each side."""
    h, w = K.shape
    Y = torch.zeros(((X.shape[0] - 1) * stride + h, (X.shape[1] - 1) * stride + w))
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Y[i * stride : i * stride + h, j * stride : j * stride + w] += X[i, j] * K
    return Y[padding : Y.shape[0] - padding, padding : Y.shape[1] - padding]


def test_reference_trans_conv_worked_examples():
    """d2l's worked examples pin the reference itself (stride 1, padding 1, stride 2)."""
    X = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert torch.equal(trans_conv(X, K), torch.tensor([[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]]))
    assert torch.equal(trans_conv(X, K, padding=1), torch.tensor([[4.0]]))
    expected = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 2.0, 3.0], [0.0, 2.0, 0.0, 3.0], [4.0, 6.0, 6.0, 9.0]])
    assert torch.equal(trans_conv(X, K, stride=2), expected)


@pytest.mark.parametrize("stride", [2, 4, 8, 32])
def test_the_bilinear_upsampler_is_the_reference_scatter_of_the_bilinear_kernel(stride):
    """The FCN head's upsampler: kernel 2s, stride s, padding s/2, bilinear weights, no bias, channels apart."""
    layer = _upsampler(2, stride, "bilinear")
    x = torch.rand(1, 2, 3, 5, generator=torch.Generator().manual_seed(stride))
    with torch.no_grad():
        y = layer(x)
    assert y.shape == (1, 2, 3 * stride, 5 * stride)
    kernel = bilinear_kernel(1, 1, 2 * stride)[0, 0]
    for channel in range(2):
        expected = trans_conv(x[0, channel], kernel, stride=stride, padding=stride // 2)
        torch.testing.assert_close(y[0, channel], expected, rtol=0, atol=1e-5)


def test_xavier_upsampler_keeps_the_shape_and_starts_without_bias():
    layer = _upsampler(3, 8, "xavier")
    assert layer.weight.shape == (3, 3, 16, 16) and torch.count_nonzero(layer.bias) == 0
    assert torch.count_nonzero(layer.weight[0, 1]) > 0  # channels mix, unlike the bilinear start
    with pytest.raises(InputError, match="unknown upsample init 'nearest'"):
        _upsampler(3, 8, "nearest")  # type: ignore[arg-type]


def test_bilinear_kernel_upsamples_like_interpolate():
    """d2l's 561×728 example: the bilinear-initialised transposed conv doubles the size and interpolates."""
    image = torch.rand(1, 3, 561, 728, generator=torch.Generator().manual_seed(0))
    layer = _upsampler(3, 2, "bilinear")
    with torch.no_grad():
        upsampled = layer(image)
    assert upsampled.shape == (1, 3, 1122, 1456)
    reference = F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsampled[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], rtol=0, atol=1e-5)


def test_fcn32s_figures():
    model = fcn32s().eval()
    x = torch.zeros(1, 3, 320, 480)
    with torch.no_grad():
        assert model.features(x).shape == (1, 512, 10, 15)
        assert model(x).shape == (1, 21, 320, 480)


@pytest.mark.parametrize("arch", sorted(MODEL_BUILDERS))
def test_logits_match_input_size(arch):
    model = build_model(arch, num_classes=6).eval()
    with torch.no_grad():
        for height, width in ((32, 32), (64, 96), (96, 64)):
            assert model(torch.zeros(2, 3, height, width)).shape == (2, 6, height, width)


def test_upsample_init_options():
    bilinear = fcn32s(5)
    assert torch.equal(bilinear.transpose_conv.weight, bilinear_kernel(5, 5, 64))
    torch.manual_seed(0)
    xavier = fcn32s(5, upsample_init="xavier")
    weight = xavier.transpose_conv.weight
    assert not torch.equal(weight, bilinear_kernel(5, 5, 64))
    bound = (6 / (2 * 5 * 64 * 64)) ** 0.5  # xavier-uniform bound: fan_in = fan_out = 5 × 64 × 64
    assert 0.5 * bound < weight.abs().max() <= bound
    assert (weight[0, 1] != 0).any()  # xavier fills cross-channel weights that bilinear leaves at zero
    with pytest.raises(InputError, match="upsample init"):
        fcn32s(5, upsample_init="nearest")


def test_segmentation_from_classifier_keeps_class_scores():
    """Linear(512, C) becomes the 1×1 conv: the global average of the pre-upsample scores is the classifier output."""
    torch.manual_seed(0)
    classifier = vgg11_classifier(7).eval()
    segmenter = segmentation_from_classifier(classifier).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        scores = segmenter.final_conv(segmenter.features(x))
        torch.testing.assert_close(scores.mean(dim=(2, 3)), classifier(x), rtol=1e-4, atol=1e-5)
        assert segmenter(x).shape == (2, 7, 64, 96)


def test_backbone_weights_from_local_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = build_model("fcn32s", backbone_weights=str(path))
    loaded = model.backbone.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)


def test_missing_backbone_weights_file(tmp_path):
    with pytest.raises(InputError, match="backbone weights file not found") as info:
        build_model("fcn8s", backbone_weights=str(tmp_path / "absent.pth"))
    assert "--backbone-weights" in info.value.hint


def test_unknown_arch():
    with pytest.raises(InputError, match="unknown arch 'fcn4s'"):
        build_model("fcn4s")
