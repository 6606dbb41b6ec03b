"""Fuzzing the spec, sidecar and ONNX readers: any input ends in our error or a spec that works."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mutations import budget, json_documents, mutated

from fcn_deploy.contract import (
    ONNX_METADATA_KEY,
    load_onnx,
    read_sidecar,
    spec_from_metadata,
)
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.spec import ModelSpec, QuantizationInfo, ShapeRange

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

VALID_SPEC = ModelSpec(arch="fcn32s", labels_name="labels", precision="int8",
                       quantization=QuantizationInfo("tensorrt", "minmax", 8, (64, 96), "abc"),
                       shape_range=ShapeRange((1, 32, 32), (1, 64, 96), (4, 256, 256))).to_dict()


def _check_usable(spec: ModelSpec) -> None:
    """A spec that was accepted round-trips and turns an image into a finite model input."""
    assert ModelSpec.from_json(spec.to_json()) == spec
    model_input = spec.to_model_input(np.full((1, 32, 32, 3), 128, np.uint8))
    assert np.isfinite(model_input).all()
    assert len(spec.palette) >= spec.num_classes >= 1


@settings(max_examples=budget(600))
@given(text=json_documents(VALID_SPEC))
@example(text='{"arch": "fcn32s", "std": [NaN, 1, 1]}')  # found: NaN passed the std > 0 check
@example(text='{"arch": "fcn32s", "shape_range": {"min": [1, 32.5, 32], "opt": [1, 64, 64], "max": [2, 96, 96]}}')
@example(text='{"arch": "fcn32s", "alignment": 0.5}')
@example(text='{"arch": "fcn32s", "mean": [0, 0, 7.656353027544008e+37]}')  # found: normalised to -inf in float32
@example(text='{"arch": "fcn32s", "num_classes": true, "class_names": ["a"]}')
def test_spec_reader(text: str) -> None:
    for reader in (lambda: ModelSpec.from_json(text, "fuzz"), lambda: spec_from_metadata({ONNX_METADATA_KEY: text}, "f")):
        try:
            spec = reader()
        except FcnDeployError:
            continue
        _check_usable(spec)


@settings(max_examples=budget(300))
@given(data=st.one_of(json_documents({"spec": VALID_SPEC, "onnx_sha256": "0" * 64}).map(str.encode),
                      st.binary(max_size=64)))
def test_sidecar_reader(fuzz_dir, data: bytes) -> None:
    artifact = fuzz_dir / "model.onnx"
    (fuzz_dir / "model.onnx.json").write_bytes(data)
    try:
        spec, document = read_sidecar(artifact)
    except FcnDeployError as exc:
        assert exc.hint
        return
    assert isinstance(document, dict)
    _check_usable(spec)


def _tiny_onnx_bytes() -> bytes:
    onnx = pytest.importorskip("onnx")
    helper, tensor = onnx.helper, onnx.TensorProto
    spec = ModelSpec(arch="fcn32s", shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128)))
    weight = helper.make_tensor("w", tensor.FLOAT, [21, 3, 1, 1], np.ones(63, np.float32))
    graph = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["logits"])], "tiny",
                              [helper.make_tensor_value_info("image", tensor.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("logits", tensor.FLOAT, ["n", 21, "h", "w"])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=spec.to_json())
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue()


@settings(max_examples=budget(300))
@given(data=st.data())
def test_onnx_reader(fuzz_dir, data) -> None:
    seed = _SEED.setdefault("onnx", _tiny_onnx_bytes())
    raw = data.draw(mutated([seed]))
    path = fuzz_dir / "fuzz.onnx"
    path.write_bytes(raw)
    (fuzz_dir / "fuzz.onnx.json").unlink(missing_ok=True)
    try:
        proto, spec = load_onnx(path)
    except FcnDeployError:
        return
    _check_usable(spec)


_SEED: dict[str, bytes] = {}
