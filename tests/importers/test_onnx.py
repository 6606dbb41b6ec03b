"""Foreign ONNX written by plain torch.onnx.export (dynamic and fixed size): checked, imported, segmented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.cli import run

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def _plain_onnx(path: Path, fixed: tuple[int, int] | None) -> Path:
    """lraspp_mobilenet_v3_large (random weights) through torch.onnx.export alone, not fcn-deploy's exporter."""
    torch = pytest.importorskip("torch")
    segmentation = pytest.importorskip("torchvision.models.segmentation")
    torch.manual_seed(0)
    model = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    height, width = fixed or (96, 128)
    dynamic = None if fixed else {"x": {0: torch.export.Dim("n", max=8), 2: torch.export.Dim("h", min=32, max=1024),
                                        3: torch.export.Dim("w", min=32, max=1024)}}

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x)["out"]

    torch.onnx.export(Plain().eval(), (torch.randn(1, 3, height, width),), str(path), dynamo=True,
                      dynamic_shapes=dynamic, input_names=["input"], output_names=["out"])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fixed", [None, (96, 128)], ids=["dynamic", "fixed"])
def test_foreign_onnx_imports_and_segments(fixed, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    from fcn_deploy.contract import read_onnx_spec
    from fcn_deploy.segmenter import open_segmenter

    source = _plain_onnx(tmp_path / "plain.onnx", fixed)
    monkeypatch.chdir(tmp_path)
    args = ["import", "onnx", "plain.onnx", "--out", "fcn.onnx", "--classes", "voc"]
    assert run(args + (["--alignment", "16"] if fixed is None else [])) == 0
    spec = read_onnx_spec(tmp_path / "fcn.onnx")
    assert json.loads((tmp_path / "fcn.onnx.json").read_text())["spec"] == spec.to_dict()
    assert spec.input_name == "input" and spec.output_name == "out" and spec.num_classes == 21
    if fixed:
        assert spec.shape_range.min[1:] == spec.shape_range.max[1:] == fixed and spec.alignment == 32
    else:
        assert spec.alignment == 16 and spec.shape_range.max[1:] == (1024, 1024)
    image = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    with open_segmenter(tmp_path / "fcn.onnx", device="cpu") as segmenter:
        result = segmenter.segment(image)
    assert result.labels.shape == (150, 200)
    assert result.mode == ("slide" if fixed else "whole")
    del source


def _two_input_onnx(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["out"])], "two",
        [helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1, 3, 32, 32]),
         helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    return path


def test_two_inputs_are_refused_with_what_was_found(tmp_path: Path, monkeypatch, capsys) -> None:
    _two_input_onnx(tmp_path / "two.onnx")
    monkeypatch.chdir(tmp_path)
    assert run(["import", "onnx", "two.onnx", "--out", "fcn.onnx"]) == 1
    err = capsys.readouterr().err
    assert "found inputs ['a' float32 1×3×32×32, 'b' float32 1×3×32×32]" in err and "needs one image input" in err
    assert "fix:" in err and not (tmp_path / "fcn.onnx").exists()


def test_class_count_differing_from_the_output_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["scores"])], "id",
        [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(tmp_path / "id.onnx"))
    monkeypatch.chdir(tmp_path)
    assert run(["import", "onnx", "id.onnx", "--out", "fcn.onnx"]) == 1
    assert "has 3 classes, the class list 21" in capsys.readouterr().err
    (tmp_path / "three.json").write_text(json.dumps({"classes": ["a", "b", "c"], "palette": [[0, 0, 0], [1, 1, 1], [2, 2, 2]]}))
    assert run(["import", "onnx", "id.onnx", "--out", "fcn.onnx", "--classes", "three.json"]) == 0
    from fcn_deploy.contract import read_onnx_spec

    assert read_onnx_spec(tmp_path / "fcn.onnx").class_names == ("a", "b", "c")


def _conv_onnx(path: Path, weights: np.ndarray) -> Path:
    """A foreign 1×1 convolution to 21 classes with the given 21×3×1×1 weights and dynamic N, H, W."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["scores"])], "conv",
        [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["n", 21, "h", "w"])],
        [onnx.numpy_helper.from_array(weights.astype(np.float32), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused(tmp_path: Path, monkeypatch, capsys, bad: float) -> None:
    weights = np.linspace(-1, 1, 63, dtype=np.float32).reshape(21, 3, 1, 1)
    weights[4, 1] = bad
    _conv_onnx(tmp_path / "conv.onnx", weights)
    monkeypatch.chdir(tmp_path)
    assert run(["import", "onnx", "conv.onnx", "--out", "fcn.onnx"]) == 1
    err = capsys.readouterr().err
    assert "conv.onnx holds non-finite weights (NaN or infinity) in 1 tensor(s): w" in err and "fix:" in err
    assert not (tmp_path / "fcn.onnx").exists()


@pytest.mark.parametrize("options, message", [
    (["--std", "0,0,0"], "--std 0,0,0: needs one value per channel"),
    (["--std", "0.2,0.2,2"], "--std 0.2,0.2,2: needs one value per channel"),
    (["--mean", "nan,0.4,0.4"], "--mean nan,0.4,0.4: needs one value per channel"),
    (["--alignment", "0"], "--alignment 0: .* must be a positive integer"),
    (["--alignment", "-8"], "--alignment -8: .* must be a positive integer"),
])
def test_bad_option_values_are_blamed_on_the_option(tmp_path: Path, monkeypatch, capsys, options, message) -> None:
    """Not on the file ('the file's model spec is missing or damaged'), and before the file is read."""
    weights = np.linspace(-1, 1, 63, dtype=np.float32).reshape(21, 3, 1, 1)
    _conv_onnx(tmp_path / "conv.onnx", weights)
    monkeypatch.chdir(tmp_path)
    assert run(["import", "onnx", "conv.onnx", "--out", "fcn.onnx", *options]) == 1
    err = capsys.readouterr().err
    assert re.search("error: " + message, err) and "damaged" not in err and "fix:" in err
    assert not (tmp_path / "fcn.onnx").exists()
