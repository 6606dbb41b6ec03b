"""The analytic FLOP counter against hand-computed counts of a tiny conv net (ONNX graph and torch module)."""

from __future__ import annotations

import numpy as np
import pytest

from fcn_deploy.errors import ArtifactError
from fcn_deploy.flops import onnx_flops, torch_flops

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

# 1×3×8×8 input -> Conv(3->4, 3×3, pad 1) -> Conv(4->4, 3×3, groups 2, pad 1) -> ConvTranspose(4->2, 4×4, stride 2, pad 1)
CONV_MACS = (4 * 8 * 8) * (3 * 3 * 3)  # output elements × (Cin × kh × kw) = 256 × 27 = 6912
GROUPED_MACS = (4 * 8 * 8) * (2 * 3 * 3)  # output elements × (Cin/groups × kh × kw) = 256 × 18 = 4608
TRANSPOSE_MACS = (4 * 8 * 8) * (2 * 4 * 4)  # input elements × (Cout × kh × kw) = 256 × 32 = 8192
HAND_TOTAL = 2 * (CONV_MACS + GROUPED_MACS + TRANSPOSE_MACS)  # 39424


def _tiny_torch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1),
    )


def _tiny_onnx(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def weight(name, shape):
        return numpy_helper.from_array(np.zeros(shape, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], group=2),
        helper.make_node("ConvTranspose", ["c", "w3"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight("w1", (4, 3, 3, 3)), weight("w2", (4, 2, 3, 3)), weight("w3", (4, 2, 4, 4))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_torch_count_matches_hand_computation():
    count = torch_flops(_tiny_torch(), (1, 3, 8, 8))
    assert count.conv == 2 * (CONV_MACS + GROUPED_MACS)
    assert count.conv_transpose == 2 * TRANSPOSE_MACS
    assert count.total == HAND_TOTAL


def test_onnx_count_matches_hand_computation_and_scales_with_shape(tmp_path):
    path = _tiny_onnx(tmp_path / "tiny.onnx")
    assert onnx_flops(path, (1, 3, 8, 8)).total == HAND_TOTAL
    # every term is linear in batch × pixels
    assert onnx_flops(path, (2, 3, 16, 8)).total == 4 * HAND_TOTAL


def test_torch_count_leaves_the_model_untouched():
    model = _tiny_torch()
    torch_flops(model, (1, 3, 8, 8))
    assert next(model.parameters()).device.type == "cpu"


def test_onnx_count_rejects_a_wrong_rank(tmp_path):
    path = _tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(ArtifactError, match="rank-4"):
        onnx_flops(path, (3, 8, 8))


def test_matmul_macs_count_broadcast_batch_dimensions():
    from fcn_deploy.flops import _matmul_macs

    # (2, 1, 3, 1, M=5, K=7) @ (4, 3, 6, K=7, N=8): batch broadcasts to (2, 4, 3, 6)
    assert _matmul_macs((2, 1, 3, 1, 5, 7), (4, 3, 6, 7, 8)) == 2 * 4 * 3 * 6 * 5 * 8 * 7
    assert _matmul_macs((5, 7), (7, 8)) == 5 * 8 * 7
