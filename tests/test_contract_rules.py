"""One reader, one rule: every command that reads an ONNX artifact refuses a damaged or contradicting sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_deploy.cli import run
from fcn_deploy.contract import read_onnx_spec, write_sidecar
from fcn_deploy.errors import ArtifactError

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


@pytest.fixture
def list_sidecar(tmp_path: Path, tiny_onnx, tiny_voc) -> Path:
    model = tiny_onnx(tmp_path / "fcn.onnx")
    (tmp_path / "fcn.onnx.json").write_text("[1, 2, 3]")
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    tiny_voc(tmp_path / "VOC2012")
    return model


@pytest.mark.parametrize("command", ["infer", "parity", "bench"])
def test_a_sidecar_holding_a_list_is_refused(list_sidecar: Path, tmp_path: Path, capsys, command: str) -> None:
    args = {
        "infer": ["infer", str(list_sidecar), str(tmp_path / "imgs"), "--out", str(tmp_path / "masks"), "--device", "cpu"],
        "parity": ["parity", str(list_sidecar), "--reference", str(list_sidecar), "--data", str(tmp_path / "VOC2012"),
                   "--device", "cpu", "--out-dir", str(tmp_path / "parity")],
        "bench": ["bench", str(list_sidecar), "--sizes", "64x64", "--iters", "1", "--warmup", "0", "--rounds", "1",
                  "--no-rss", "--gemm-size", "64", "--device", "cpu"],
    }[command]
    assert run(args) == 1
    err = capsys.readouterr().err
    assert "holds a JSON list, not an object" in err and "  fix: delete the damaged sidecar" in err


@pytest.mark.parametrize("text", ["", "{", "{}", '{"spec": {"arch": "fcn32s", "shape_range": '
                                  '{"min": [1, -32, 32], "opt": [1, 64, 64], "max": [2, 128, 128]}}}'])
def test_damaged_sidecars_are_refused_with_a_fix(tmp_path: Path, capsys, text: str, tiny_onnx) -> None:
    model = tiny_onnx(tmp_path / "fcn.onnx")
    (tmp_path / "fcn.onnx.json").write_text(text)
    (tmp_path / "imgs").mkdir()
    assert run(["infer", str(model), str(tmp_path / "imgs"), "--out", str(tmp_path / "masks"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\n  fix: " in err


def test_contradicting_sidecar_is_refused_by_build_fp16_and_calibrate(tmp_path: Path, tiny_onnx, tiny_voc) -> None:
    from fcn_deploy.build import BuildConfig, build
    from fcn_deploy.precision.calibrate import CalibrationConfig, calibrate_int8

    model = tiny_onnx(tmp_path / "export" / "fcn.onnx")
    write_sidecar(model, read_onnx_spec(model).replace(arch="fcn8s"))
    with pytest.raises(ArtifactError, match="disagree on arch"):
        build(model, BuildConfig(precision="fp16", no_parity="not under test", engines_dir=tmp_path / "engines"))
    assert not (tmp_path / "export" / "fcn.fp16.onnx").exists()
    with pytest.raises(ArtifactError, match="disagree on arch"):
        calibrate_int8(model, CalibrationConfig(data_dir=tiny_voc(tmp_path / "VOC2012"), num=2, crop=(32, 32),
                                                calibration_dir=tmp_path / "calibration"))
    assert not (tmp_path / "calibration").exists()


@pytest.mark.parametrize(("elem_type", "expected"), [(2, "uint8"), (7, "int64")])
def test_the_labels_dtype_is_read_from_the_graph(elem_type: int, expected: str) -> None:
    onnx = pytest.importorskip("onnx")
    from fcn_deploy.contract import labels_dtype_of
    from fcn_deploy.errors import ArtifactError
    from fcn_deploy.spec import ModelSpec

    helper = onnx.helper
    graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("logits", 1, [None, 21, None, None]),
                                            helper.make_tensor_value_info("labels", elem_type, [None, None, None])])
    proto = helper.make_model(graph)
    assert labels_dtype_of(proto, ModelSpec(arch="fcn32s", labels_name="labels")) == expected
    assert labels_dtype_of(proto, ModelSpec(arch="fcn32s")) is None
    with pytest.raises(ArtifactError, match="no labels output 'argmax'"):
        labels_dtype_of(proto, ModelSpec(arch="fcn32s", labels_name="argmax"))


def test_non_finite_weights_name_three_tensors_then_count_the_rest() -> None:
    from fcn_deploy.contract import non_finite_message

    assert non_finite_message("m.onnx", ["a", "b", "c"]).startswith(
        "m.onnx holds non-finite weights (NaN or infinity) in 3 tensor(s): a, b, c; a model")
    for names in (["a", "b", "c", "d"], ["a", "b", "c", "d", "e"]):
        assert f"in {len(names)} tensor(s): a, b, c, ...; a model" in non_finite_message("m.onnx", names)


def test_an_unreadable_onnx_file_is_refused_with_the_export_fix(tmp_path: Path) -> None:
    from fcn_deploy.contract import EXPORT_HINT, check_finite_onnx_file

    path = tmp_path / "cut.onnx"
    path.write_bytes(b"\x08\x07\x12\x04not a model")
    with pytest.raises(ArtifactError, match=r"cut.onnx is not a readable ONNX model \(") as info:
        check_finite_onnx_file(path)
    assert info.value.hint == EXPORT_HINT
