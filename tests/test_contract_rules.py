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
    with pytest.raises(ArtifactError, match="no labels output 'argmax'") as info:
        labels_dtype_of(proto, ModelSpec(arch="fcn32s", labels_name="argmax"))
    assert info.value.hint == "re-export it with 'fcn-deploy export'"


def test_a_labels_type_without_a_name_is_shown_by_its_number() -> None:
    onnx = pytest.importorskip("onnx")
    from fcn_deploy.contract import labels_dtype_of
    from fcn_deploy.spec import ModelSpec

    helper = onnx.helper
    graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("labels", 5, [None, None, None])])
    assert labels_dtype_of(helper.make_model(graph), ModelSpec(arch="fcn32s", labels_name="labels")) == "type 5"


def test_non_finite_weights_name_three_tensors_then_count_the_rest() -> None:
    from fcn_deploy.contract import non_finite_message

    assert non_finite_message("m.onnx", ["a", "b", "c"]) == (
        "m.onnx holds non-finite weights (NaN or infinity) in 3 tensor(s): a, b, c; a model with them predicts "
        "nothing useful (every pixel NaN, shown as background)")
    for names in (["a", "b", "c", "d"], ["a", "b", "c", "d", "e"]):
        assert f"in {len(names)} tensor(s): a, b, c, ...; a model" in non_finite_message("m.onnx", names)


def test_an_unreadable_onnx_file_is_refused_with_the_export_fix(tmp_path: Path) -> None:
    from fcn_deploy.contract import EXPORT_HINT, check_finite_onnx_file

    path = tmp_path / "cut.onnx"
    path.write_bytes(b"\x08\x07\x12\x04not a model")
    with pytest.raises(ArtifactError, match=r"cut.onnx is not a readable ONNX model \(") as info:
        check_finite_onnx_file(path)
    assert info.value.hint == EXPORT_HINT


# --- writing an ONNX artifact ------------------------------------------------------------------------------


def _proto(tiny_fcn: Path):
    onnx = pytest.importorskip("onnx")
    return onnx.load(str(tiny_fcn))


def test_save_onnx_writes_the_spec_once_and_a_sidecar_that_hashes_the_file(tiny_fcn: Path, tmp_path: Path) -> None:
    import json

    from fcn_deploy.contract import ONNX_METADATA_KEY, load_onnx, save_onnx
    from fcn_deploy.fileio import sha256_file
    from fcn_deploy.spec import ModelSpec

    model, spec = _proto(tiny_fcn), ModelSpec(arch="fcn32s").replace(precision="fp32", num_classes=21)
    model.metadata_props.add(key="other", value="kept")
    (tmp_path / "out").mkdir()
    path = save_onnx(model, tmp_path / "out" / "m.onnx", spec, {"source_onnx": "a.onnx"})
    assert path == tmp_path / "out" / "m.onnx" and sorted(p.name for p in path.parent.iterdir()) == [
        "m.onnx", "m.onnx.json"]  # nothing half-written left beside them
    written, read_spec = load_onnx(path)
    assert read_spec == spec
    assert [(p.key, p.value) for p in written.metadata_props] == [("other", "kept"), (ONNX_METADATA_KEY, spec.to_json())]
    document = json.loads((tmp_path / "out" / "m.onnx.json").read_text())
    assert document == {"spec": spec.to_dict(), "onnx_sha256": sha256_file(path), "source_onnx": "a.onnx"}


def test_save_onnx_refuses_non_finite_weights_and_writes_nothing(tiny_fcn: Path, tmp_path: Path) -> None:
    import numpy as np

    onnx = pytest.importorskip("onnx")
    from fcn_deploy.contract import save_onnx
    from fcn_deploy.spec import ModelSpec

    model = _proto(tiny_fcn)
    bias = onnx.numpy_helper.to_array(model.graph.initializer[1]).copy()
    bias[0] = np.nan
    model.graph.initializer[1].CopyFrom(onnx.numpy_helper.from_array(bias, model.graph.initializer[1].name))
    with pytest.raises(ArtifactError, match=r"m\.onnx holds non-finite weights .* in 1 tensor\(s\): body\.bias;"):
        save_onnx(model, tmp_path / "m.onnx", ModelSpec(arch="fcn32s"))
    assert list(tmp_path.iterdir()) == []


def test_the_spec_is_read_without_the_external_weights(tiny_fcn: Path, tmp_path: Path) -> None:
    """A spec check never reads the weights: it works with the external weight file gone, a full load does not."""
    onnx = pytest.importorskip("onnx")
    from fcn_deploy.contract import load_onnx, read_onnx_spec, spec_from_onnx

    model = _proto(tiny_fcn)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.weights", size_threshold=0)
    (tmp_path / "m.weights").unlink()
    assert read_onnx_spec(path) == spec_from_onnx(model, "tiny")
    with pytest.raises(ArtifactError, match="is not a readable ONNX model"):
        load_onnx(path)


def test_an_ir_travels_with_its_weights_and_sidecar(tmp_path: Path) -> None:
    from fcn_deploy.contract import ir_weights_path, with_sidecar

    assert ir_weights_path(tmp_path / "fcn.int8.xml") == tmp_path / "fcn.int8.bin"
    assert [place.path for place in with_sidecar("the IR", tmp_path / "fcn.int8.xml")] == [
        tmp_path / "fcn.int8.xml", tmp_path / "fcn.int8.xml.json", tmp_path / "fcn.int8.bin"]
    assert [place.path for place in with_sidecar("the model", tmp_path / "fcn.onnx")] == [
        tmp_path / "fcn.onnx", tmp_path / "fcn.onnx.json"]


# --- the cross-checks' refusals, word for word (mutation survivors) ------------------------------------------


def test_a_sidecar_written_for_another_file_is_refused_by_its_hash(tiny_fcn: Path, tmp_path: Path) -> None:
    import shutil

    from fcn_deploy.contract import check_sidecar, save_onnx, spec_from_onnx

    model = _proto(tiny_fcn)
    path = save_onnx(model, tmp_path / "m.onnx", spec_from_onnx(model, "tiny"))
    assert check_sidecar(path, spec_from_onnx(model, "tiny")) is True  # the file fcn-deploy wrote
    shutil.copy(tiny_fcn.with_name(tiny_fcn.name + ".json"), path.with_name("m.onnx.json"))  # no hash recorded
    assert check_sidecar(path, spec_from_onnx(model, "tiny")) is False
    save_onnx(model, path, spec_from_onnx(model, "tiny"))
    with path.open("ab") as file:
        file.write(b"\0")  # the model changed after its sidecar was written
    with pytest.raises(ArtifactError) as info:
        check_sidecar(path, spec_from_onnx(model, "tiny"))
    assert str(info.value).startswith("m.onnx.json was written for a different m.onnx (SHA-256 differs)")
    assert info.value.hint == "re-export, or delete the stale sidecar"


def test_a_disagreeing_sidecar_names_every_field_and_the_fix(tiny_fcn: Path, tmp_path: Path) -> None:
    from fcn_deploy.contract import check_sidecar, spec_from_onnx

    spec = spec_from_onnx(_proto(tiny_fcn), "tiny")
    write_sidecar(tmp_path / "m.onnx", spec.replace(arch="fcn8s", input_name="rgb"))
    with pytest.raises(ArtifactError) as info:
        check_sidecar(tmp_path / "m.onnx", spec)
    assert str(info.value).startswith(f"{tmp_path / 'm.onnx'} and its sidecar m.onnx.json disagree on arch, input_name")
    assert info.value.hint == "the sidecar belongs to another export: re-export, or delete the stale sidecar"


def test_a_sidecar_is_sorted_indented_json_ending_in_a_newline(tmp_path: Path) -> None:
    """Readable and diff-friendly: two-space indents, keys in order, one trailing newline."""
    import json

    from fcn_deploy.spec import ModelSpec

    text = write_sidecar(tmp_path / "m.onnx", ModelSpec(arch="fcn32s"), {"zeta": 1, "alpha": 2}).read_text()
    document = json.loads(text)
    assert list(document) == ["alpha", "spec", "zeta"] and list(document["spec"]) == sorted(document["spec"])
    assert text.splitlines()[1].startswith('  "alpha"') and text.endswith("}\n") and not text.endswith("\n\n")


def test_nan_in_a_constant_node_is_found_and_an_unnamed_one_shown_as_a_constant() -> None:
    import numpy as np

    onnx = pytest.importorskip("onnx")
    from fcn_deploy.contract import check_finite_onnx, non_finite_initializers

    helper = onnx.helper
    value = onnx.numpy_helper.from_array(np.array([1.0, np.nan], np.float32))  # no name
    nodes = [helper.make_node("Constant", [], ["c"], value=value),
             helper.make_node("Constant", [], ["d"], value_float=1.0),  # a scalar attribute, no tensor
             helper.make_node("Identity", ["c"], ["out"])]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("out", 1, [2])])
    assert non_finite_initializers(helper.make_model(graph)) == ["(constant)"]
    with pytest.raises(ArtifactError) as info:
        check_finite_onnx(helper.make_model(graph), "c.onnx")
    assert info.value.hint == "make the model again from a checkpoint with finite weights (every stage refuses others)"


def test_a_file_with_non_finite_weights_is_refused_by_its_path(tiny_fcn: Path, tmp_path: Path) -> None:
    import numpy as np

    onnx = pytest.importorskip("onnx")
    from fcn_deploy.contract import check_finite_onnx_file

    model = _proto(tiny_fcn)
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(
        np.full((8, 3, 3, 3), np.inf, np.float32), model.graph.initializer[0].name))
    onnx.save(model, str(tmp_path / "inf.onnx"))
    with pytest.raises(ArtifactError, match=rf"^{tmp_path / 'inf.onnx'} holds non-finite weights .* body\.weight;"):
        check_finite_onnx_file(tmp_path / "inf.onnx")
    check_finite_onnx_file(tiny_fcn)


def test_load_onnx_names_the_file_in_every_refusal(tiny_fcn: Path, tmp_path: Path) -> None:
    from fcn_deploy.contract import EXPORT_HINT, load_onnx, spec_from_onnx

    (tmp_path / "cut.onnx").write_bytes(b"\x08\x07\x12\x04not a model")
    with pytest.raises(ArtifactError, match=r"cut\.onnx is not a readable ONNX model") as info:
        load_onnx(tmp_path / "cut.onnx")
    assert info.value.hint == EXPORT_HINT
    foreign = _proto(tiny_fcn)
    del foreign.metadata_props[:]
    pytest.importorskip("onnx").save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ArtifactError, match=rf"^{tmp_path / 'foreign.onnx'} is not an fcn-deploy ONNX model"):
        load_onnx(tmp_path / "foreign.onnx")
    model = _proto(tiny_fcn)
    model.metadata_props[0].value = spec_from_onnx(model, "tiny").replace(num_classes=5, class_names=tuple("abcde"),
                                                                          palette=((0, 0, 0),) * 5).to_json()
    pytest.importorskip("onnx").save(model, str(tmp_path / "five.onnx"))
    with pytest.raises(ArtifactError, match=rf"^{tmp_path / 'five.onnx'}: the model spec contradicts the graph"):
        load_onnx(tmp_path / "five.onnx")


def test_every_contradiction_between_spec_and_graph_is_listed_with_the_fix() -> None:
    from fcn_deploy.contract import TensorSignature, check_spec_against_signatures
    from fcn_deploy.spec import ModelSpec

    spec = ModelSpec(arch="fcn32s", labels_name="labels")
    inputs = [TensorSignature("image", 2, (None, 3, None, None))]  # uint8 where the spec takes float NCHW
    outputs = [TensorSignature("logits", 1, (None, 5, None, None)), TensorSignature("labels", 1, (None, None, None))]
    with pytest.raises(ArtifactError) as info:
        check_spec_against_signatures(inputs, outputs, spec, "m.onnx")
    assert str(info.value).startswith(
        f"m.onnx: the model spec contradicts the graph: input 'image' uint8 ?×3×?×? is not {spec.layout_name} "
        f"(input_format {spec.input_format}); output 'logits' float32 ?×5×?×? has 5 classes, the spec 21; "
        "labels output 'labels' float32 ?×?×? is not N×H×W uint8/int64")
    assert info.value.hint == "the file was modified after export; re-export it with 'fcn-deploy export'"
    labels_only = [outputs[0], TensorSignature("labels", 2, (None, None, None))]
    with pytest.raises(ArtifactError, match=r"outputs are \['logits'\], the spec names \['logits', 'labels'\]"):
        check_spec_against_signatures([TensorSignature("image", 1, (None, 3, None, None))], labels_only[:1], spec, "m")


def test_a_tensor_is_described_by_name_type_and_dims() -> None:
    from fcn_deploy.contract import TensorSignature

    assert TensorSignature("x", 10, (1, None, 7)).describe() == "'x' float16 1×?×7"
    assert TensorSignature("y", 6, ()).describe() == "'y' type 6 "


def test_each_place_of_an_artifact_is_named_for_the_user(tmp_path: Path) -> None:
    from fcn_deploy.contract import with_sidecar

    assert [place.what for place in with_sidecar("the IR", tmp_path / "fcn.xml")] == [
        "the IR", "the sidecar of the IR", "the weights of the IR"]


def _signatures(image=(1, (None, 3, None, None)), logits=(1, (None, 21, None, None)), labels=None):
    from fcn_deploy.contract import TensorSignature

    outputs = [TensorSignature("logits", *logits)] + ([TensorSignature("labels", *labels)] if labels else [])
    return [TensorSignature("image", *image)], outputs


@pytest.mark.parametrize(("spec_changes", "signatures", "problem"), [
    ({}, _signatures(), None),
    ({"precision": "fp16"}, _signatures(image=(10, (None, 3, None, None)), logits=(10, (None, 21, None, None))), None),
    ({}, _signatures(image=(10, (None, 3, None, None))), "input 'image' float16 ?×3×?×? is not"),  # fp16 in fp32
    ({"input_format": "uint8_nhwc"}, _signatures(image=(2, (None, None, None, 3))), None),
    ({"input_format": "uint8_nhwc"}, _signatures(image=(1, (None, None, None, 3))), "input 'image' float32"),
    ({"input_format": "uint8_nhwc"}, _signatures(image=(2, (None, 3, None, 4))), "input 'image' uint8 ?×3×?×4"),
    ({}, _signatures(image=(1, (None, 3, None))), "input 'image' float32 ?×3×? is not"),  # rank 3
    ({}, _signatures(image=(1, (None, 4, None, None))), "input 'image' float32 ?×4×?×? is not"),
    ({}, _signatures(image=(1, (None, None, None, None))), None),  # a symbolic channel count is accepted
    ({}, _signatures(logits=(2, (None, 21, None, None))), "output 'logits' uint8 ?×21×?×? is not N×C×H×W float"),
    ({}, _signatures(logits=(1, (None, 21, None))), "output 'logits' float32 ?×21×? is not N×C×H×W float"),
    ({}, _signatures(logits=(1, (None, None, 7, None))), None),  # classes symbolic, a fixed height is fine
    ({}, _signatures(logits=(1, (None, 20, None, None))), "output 'logits' float32 ?×20×?×? has 20 classes, the "
     "spec 21"),
    ({"labels_name": "labels"}, _signatures(labels=(7, (None, None, None))), None),
    ({"labels_name": "labels"}, _signatures(labels=(2, (None, None, None, None))), "labels output 'labels' uint8"),
    ({"labels_name": "labels"}, _signatures(labels=(1, (None, None, None))), "labels output 'labels' float32"),
])
def test_the_spec_and_graph_rules(spec_changes, signatures, problem) -> None:
    """Input: the layout's dtype (float16 too for an fp16 model), rank 4, 3 channels or symbolic; logits: float,
    rank 4, the spec's class count or symbolic; labels: uint8 or int64, rank 3."""
    from fcn_deploy.contract import check_spec_against_signatures
    from fcn_deploy.spec import ModelSpec

    spec = ModelSpec(arch="fcn32s").replace(**spec_changes)
    if problem is None:
        check_spec_against_signatures(*signatures, spec, "m.onnx")
        return
    with pytest.raises(ArtifactError) as info:
        check_spec_against_signatures(*signatures, spec, "m.onnx")
    assert str(info.value).startswith(f"m.onnx: the model spec contradicts the graph: {problem}")


def test_a_graphs_fixed_and_symbolic_dims_are_read_as_numbers_and_none() -> None:
    onnx = pytest.importorskip("onnx")
    from fcn_deploy.contract import TensorSignature, _signature

    value = onnx.helper.make_tensor_value_info("image", 1, ["n", 3, 64, "w"])
    assert _signature(value) == TensorSignature("image", 1, (None, 3, 64, None))


def test_every_refusal_of_a_missing_or_unreadable_sidecar_names_the_fix(tmp_path: Path) -> None:
    from fcn_deploy.contract import read_sidecar

    with pytest.raises(ArtifactError, match=r"m\.onnx has no sidecar m\.onnx\.json") as info:
        read_sidecar(tmp_path / "m.onnx")
    assert info.value.hint == ("keep the .json file that fcn-deploy wrote next to the artifact, or re-run the stage "
                               "that made it")
    (tmp_path / "m.onnx.json").write_text("{")
    with pytest.raises(ArtifactError, match=r"cannot read sidecar") as info:
        read_sidecar(tmp_path / "m.onnx")
    assert info.value.hint == "delete the damaged sidecar and re-run the stage that made the artifact"
    (tmp_path / "m.onnx.json").write_text('{"other": 1}')
    with pytest.raises(ArtifactError, match=rf"{tmp_path / 'm.onnx.json'}"):  # no spec: named by its file
        read_sidecar(tmp_path / "m.onnx")


def test_a_missing_artifact_is_an_input_error_naming_what_and_the_fix(tmp_path: Path) -> None:
    from fcn_deploy.contract import EXPORT_HINT, require_artifact
    from fcn_deploy.errors import InputError

    with pytest.raises(InputError) as info:
        require_artifact(tmp_path / "gone.onnx")
    assert str(info.value).startswith(f"ONNX model not found: {tmp_path / 'gone.onnx'}") and info.value.hint == EXPORT_HINT
    with pytest.raises(InputError) as info:
        require_artifact(tmp_path, "engine", "build one")
    assert str(info.value).startswith(f"engine not found: {tmp_path}") and info.value.hint == "build one"
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert require_artifact(str(tmp_path / "m.onnx")) == tmp_path / "m.onnx"


def test_the_spec_in_metadata_is_named_as_such_and_a_foreign_model_told_how_to_get_one() -> None:
    from fcn_deploy.contract import ONNX_METADATA_KEY, spec_from_metadata

    with pytest.raises(ArtifactError, match=r"^m\.onnx metadata holds a malformed fcn-deploy model spec"):
        spec_from_metadata({ONNX_METADATA_KEY: '{"arch": 1}'}, "m.onnx")
    with pytest.raises(ArtifactError, match=r"^m\.onnx is not an fcn-deploy ONNX model \(no 'fcn_deploy\.spec' "
                                            r"metadata\)") as info:
        spec_from_metadata({"other": "x"}, "m.onnx")
    assert info.value.hint == ("export it with 'fcn-deploy export CHECKPOINT'; other ONNX models lack the spec "
                               "(classes, normalisation, alignment) it needs")
