"""The model spec: validation, JSON round trip, sidecars."""

from __future__ import annotations

import json

import pytest

from fcn_deploy.contract import read_sidecar, sidecar_path, write_sidecar
from fcn_deploy.errors import ArtifactError
from fcn_deploy.spec import ModelSpec, QuantizationInfo, ShapeRange

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def test_round_trip_through_json_keeps_every_field() -> None:
    spec = ModelSpec(
        arch="fcn8s", crop_size=(64, 96), precision="int8",
        shape_range=ShapeRange((1, 32, 32), (2, 64, 96), (4, 256, 256)),
        quantization=QuantizationInfo(target="cpu", method="entropy", num_crops=8, crop_size=(64, 96)),
    )
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_sidecar_sits_next_to_the_artifact_and_reads_back(tmp_path) -> None:
    artifact = tmp_path / "fcn.onnx"
    spec = ModelSpec(arch="fcn32s")
    path = write_sidecar(artifact, spec, {"onnx_sha256": "abc"})
    assert path == sidecar_path(artifact) == tmp_path / "fcn.onnx.json"
    read_spec, document = read_sidecar(artifact)
    assert read_spec == spec and document["onnx_sha256"] == "abc"
    assert [p.name for p in tmp_path.iterdir()] == ["fcn.onnx.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_classes": 3}, "class names"),
        ({"precision": "fp8"}, "precision"),
        ({"input_format": "nchw"}, "input_format"),
        ({"std": (1.0, 0.0, 1.0)}, "std"),
    ],
)
def test_inconsistent_specs_are_refused(changes, message) -> None:
    with pytest.raises(ArtifactError, match=message):
        ModelSpec(arch="fcn32s", **changes)


def test_shape_range_must_be_ordered() -> None:
    with pytest.raises(ArtifactError, match="ordered"):
        ShapeRange((1, 64, 64), (1, 32, 32), (1, 128, 128))
    shape_range = ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128))
    assert shape_range.contains(2, 128, 32) and not shape_range.contains(3, 64, 64)
    assert shape_range.contains_hw(32, 128) and not shape_range.contains_hw(160, 64)


def test_foreign_or_malformed_documents_are_artifact_errors(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="no fcn-deploy model spec"):
        ModelSpec.from_dict({"name": "resnet"}, source="x.json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ModelSpec.from_json("{", source="x.json")
    with pytest.raises(ArtifactError, match="malformed"):
        ModelSpec.from_dict({"arch": "fcn32s", "shape_range": {"min": [1, 32, 32]}}, source="x.json")
    artifact = tmp_path / "model.onnx"
    with pytest.raises(ArtifactError, match="no sidecar"):
        read_sidecar(artifact)
    sidecar_path(artifact).write_text(json.dumps({"spec": {"arch": "fcn32s", "num_classes": 0}}))
    with pytest.raises(ArtifactError, match="num_classes"):
        read_sidecar(artifact)


def test_onnx_metadata_round_trip_replaces_an_older_spec() -> None:
    import onnx

    from fcn_deploy.contract import ONNX_METADATA_KEY, spec_from_onnx, store_in_onnx

    proto = onnx.ModelProto()
    with pytest.raises(ArtifactError, match="not an fcn-deploy ONNX model"):
        spec_from_onnx(proto, "m.onnx")
    store_in_onnx(proto, ModelSpec(arch="fcn32s"))
    store_in_onnx(proto, ModelSpec(arch="fcn8s"))
    assert [p.key for p in proto.metadata_props] == [ONNX_METADATA_KEY]
    assert spec_from_onnx(proto, "m.onnx") == ModelSpec(arch="fcn8s")


def test_metadata_that_is_not_utf8_text_is_our_error():
    from fcn_deploy.errors import ArtifactError

    with pytest.raises(ArtifactError, match="not valid JSON"):
        ModelSpec.from_json(b'\xff{"arch": "fcn32s"}', "fuzz")  # found by fuzzing an ONNX file's metadata


@pytest.mark.parametrize("field,value", [("std", [float("nan"), 1, 1]), ("mean", [float("inf"), 0, 0]),
                                         ("mean", [0, 0, 7.7e37]), ("std", [1e-300, 1, 1]),
                                         ("alignment", 32.5), ("num_classes", True), ("palette", [[256, 0, 0]] * 21)])
def test_spec_fields_of_the_wrong_kind_are_refused(field, value):
    from fcn_deploy.errors import ArtifactError

    data = {**ModelSpec(arch="fcn32s").to_dict(), field: value}
    with pytest.raises(ArtifactError) as info:
        ModelSpec.from_dict(data, "fuzz")
    assert info.value.hint
