"""ONNX export: one self-contained file, the spec in metadata and sidecar, parity with PyTorch, variants."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from fcn_deploy import export as export_module
from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
from fcn_deploy.contract import (
    ONNX_METADATA_KEY,
    read_onnx_spec,
    read_sidecar,
    write_sidecar,
)
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.export import ExportConfig, ExportResult, export_onnx
from fcn_deploy.fileio import sha256_file
from fcn_deploy.model import build_model
from fcn_deploy.runtime import open_backend
from fcn_deploy.spec import INPUT_UINT8_NHWC, ModelSpec, ShapeRange

RANGE = ShapeRange((1, 32, 32), (1, 64, 96), (4, 256, 256))


def _random_checkpoint(path: Path, seed: int = 0) -> Path:
    """An fcn32s checkpoint with random weights and a small shape range."""
    torch.manual_seed(seed)
    return save_checkpoint(path, build_model("fcn32s", 21), Checkpoint(spec=ModelSpec(arch="fcn32s", shape_range=RANGE)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def checkpoint(folder: Path) -> Path:
    return _random_checkpoint(folder / "random.pt")


@pytest.fixture(scope="module")
def plain(checkpoint: Path, folder: Path) -> tuple[Path, ExportResult]:
    return checkpoint, export_onnx(checkpoint, folder / "plain" / "fcn.onnx")


@pytest.fixture(scope="module")
def variant(folder: Path, plain: tuple[Path, ExportResult]) -> ExportResult:
    """The same checkpoint with in-graph preprocessing and an argmax output."""
    config = ExportConfig(with_preprocess=True, with_argmax=True)
    return export_onnx(plain[0], folder / "variant" / "fcn.onnx", config)


# --- the plain export ----------------------------------------------------------------------------


@pytest.mark.slow
def test_export_writes_one_checked_self_contained_file(plain: tuple[Path, ExportResult]) -> None:
    checkpoint, result = plain
    assert result.onnx_path.is_file() and result.sidecar_path == Path(f"{result.onnx_path}.json")
    assert sorted(p.name for p in result.onnx_path.parent.iterdir()) == ["fcn.onnx", "fcn.onnx.json"]
    model = onnx.load(str(result.onnx_path), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1] == 3
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1), "batch, height and width must be dynamic"
    assert len(result.checks) == 2 and {(c.height, c.width) for c in result.checks} == {(64, 96), (96, 192)}
    for check in result.checks:
        assert check.batch == 2 and check.argmax_agreement >= 0.9999
        assert check.max_abs_diff <= 1e-3 * check.max_abs_logit


@pytest.mark.slow
def test_spec_round_trips_through_metadata_and_sidecar(plain: tuple[Path, ExportResult]) -> None:
    checkpoint, result = plain
    model = onnx.load(str(result.onnx_path), load_external_data=False)
    stored = {p.key: p.value for p in model.metadata_props}[ONNX_METADATA_KEY]
    assert ModelSpec.from_json(stored) == result.spec
    sidecar_spec, document = read_sidecar(result.onnx_path)
    assert sidecar_spec == result.spec == read_onnx_spec(result.onnx_path)
    assert document["onnx_sha256"] == sha256_file(result.onnx_path)
    spec = result.spec
    assert spec.source_checkpoint_sha256 == sha256_file(checkpoint)
    assert (spec.input_name, spec.output_name, spec.labels_name) == ("image", "logits", None)
    assert spec.input_format == "float32_nchw" and spec.alignment == 32 and spec.shape_range == RANGE
    assert spec.arch == "fcn32s" and spec.num_classes == 21 and spec.precision == "fp32"


@pytest.mark.slow
def test_upsampler_is_a_matmul_by_default_and_a_convtranspose_on_request(
    plain: tuple[Path, ExportResult], tmp_path: Path
) -> None:
    checkpoint, result = plain
    ops = {node.op_type for node in onnx.load(str(result.onnx_path)).graph.node}
    assert "MatMul" in ops and "ConvTranspose" not in ops and result.spec.upsampler == "matmul"
    kept = export_onnx(checkpoint, tmp_path / "fcn.onnx", ExportConfig(upsampler="convtranspose", progress=False))
    assert "ConvTranspose" in {node.op_type for node in onnx.load(str(kept.onnx_path)).graph.node}
    assert kept.spec.upsampler == "convtranspose" and read_onnx_spec(kept.onnx_path) == kept.spec
    batch = np.random.default_rng(3).standard_normal((2, 3, 96, 128), dtype=np.float32)
    with open_backend(result.onnx_path, "cpu") as matmul, open_backend(kept.onnx_path, "cpu") as convtranspose:
        expected, actual = convtranspose.infer(batch), matmul.infer(batch)
    assert np.max(np.abs(actual - expected)) <= 1e-4 * np.max(np.abs(expected))


@pytest.mark.slow
def test_preprocess_and_argmax_variant_agrees_with_plain_export(
    plain: tuple[Path, ExportResult], variant: ExportResult
) -> None:
    spec = variant.spec
    assert spec.input_format == INPUT_UINT8_NHWC and spec.labels_name == "labels"
    assert read_onnx_spec(variant.onnx_path) == spec
    assert read_sidecar(variant.onnx_path)[1]["labels_dtype"] == "uint8"  # what a server declares
    assert all(c.labels_agreement == 1.0 for c in variant.checks)
    images = np.random.default_rng(5).integers(0, 256, size=(2, 64, 128, 3), dtype=np.uint8)
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    normalised = np.ascontiguousarray(((images / np.float32(255) - mean) / std).transpose(0, 3, 1, 2), np.float32)
    with open_backend(plain[1].onnx_path, "cpu") as base, open_backend(variant.onnx_path, "cpu") as fused:
        expected = base.infer(normalised)
        outputs = fused.infer_outputs(images)
        with pytest.raises(Exception, match="uint8"):
            fused.infer(normalised)
    logits, labels = outputs["logits"], outputs["labels"]
    assert labels.dtype == np.uint8 and labels.shape == (2, 64, 128)
    assert np.max(np.abs(logits - expected)) <= 1e-3 * np.max(np.abs(expected))
    assert np.mean(labels == expected.argmax(1)) >= 0.9999


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """The element type of every tensor of a graph (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for info in (*graph.input, *graph.value_info, *graph.output):
        types[info.name] = info.type.tensor_type.elem_type
    return types


@pytest.mark.slow
def test_preprocessing_casts_the_uint8_input_to_float_before_any_layout_change(variant: ExportResult) -> None:
    """TensorRT's shuffle layer (Transpose, Reshape) does not take uint8: the Cast must come first."""
    model = onnx.load(str(variant.onnx_path))
    types = _elem_types(model)
    nodes = list(model.graph.node)
    image = variant.spec.input_name
    assert types[image] == onnx.TensorProto.UINT8
    consumers = [n for n in nodes if image in n.input and n.op_type != "Shape"]  # Shape reads no data
    assert [n.op_type for n in consumers] == ["Cast"]
    cast = consumers[0]
    assert onnx.helper.get_attribute_value(next(a for a in cast.attribute if a.name == "to")) == onnx.TensorProto.FLOAT
    first_transpose = next(i for i, n in enumerate(nodes) if n.op_type == "Transpose")
    assert nodes.index(cast) < first_transpose and cast.output[0] in nodes[first_transpose].input
    on_uint8 = [f"{n.op_type} {n.name}" for n in nodes if n.op_type in ("Transpose", "Reshape", "Flatten", "Squeeze",
                                                                       "Unsqueeze")
                and types.get(n.input[0]) == onnx.TensorProto.UINT8]
    assert not on_uint8, f"layout changes on a uint8 tensor: {on_uint8}"
    assert all(c.max_abs_diff <= 1e-3 * c.max_abs_logit and c.labels_agreement == 1.0 for c in variant.checks)


@pytest.mark.slow
def test_divergence_beyond_tolerance_fails_and_writes_nothing(
    plain: tuple[Path, ExportResult], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph that disagrees with the checkpoint (here: the tolerance is impossible) is never committed."""
    checkpoint, result = plain
    traced = onnx.load(str(result.onnx_path))
    monkeypatch.setattr(export_module, "_trace", lambda *args: traced)  # skip re-tracing the same graph
    out = folder / "strict" / "fcn.onnx"
    config = ExportConfig(rtol=1e-12, verify_sizes=((32, 32),), progress=False)
    with pytest.raises(ArtifactError, match="diverges from the checkpoint"):
        export_onnx(checkpoint, out, config)
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
def test_argmax_disagreement_within_the_logit_tolerance_fails(
    plain: tuple[Path, ExportResult], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate has two halves: logits close enough but labels that disagree still fail the export."""
    checkpoint, result = plain
    traced = onnx.load(str(result.onnx_path))
    monkeypatch.setattr(export_module, "_trace", lambda *args: traced)
    monkeypatch.setattr(export_module, "compare_logits", lambda reference, model: (0.0, 1.0, 0.99))
    out = folder / "disagreeing" / "fcn.onnx"
    with pytest.raises(ArtifactError, match=r"argmax agreement 99\.0000%.*agreement >= 99\.9%"):
        export_onnx(checkpoint, out, ExportConfig(verify_sizes=((32, 32),), progress=False))
    assert list(out.parent.iterdir()) == []


# --- options refused before exporting -----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ExportConfig(opset=16), "opset 16 is too old"),
        (ExportConfig(shape_range=ShapeRange((1, 32, 32), (1, 100, 96), (2, 256, 256))), "not a multiple of 32"),
        (ExportConfig(verify_sizes=((512, 512),)), "comparison size 512×512"),
        (ExportConfig(with_argmax=True, labels_name="logits"), "distinct"),
        (ExportConfig(with_argmax=True, labels_dtype="int32"), "labels_dtype 'int32' is not supported"),  # type: ignore[arg-type]
        (ExportConfig(upsampler="bilinear"), "unknown upsampler 'bilinear'"),
    ],
)
def test_bad_options_are_refused(checkpoint: Path, tmp_path: Path, config: ExportConfig, message: str) -> None:
    with pytest.raises(InputError, match=message):
        export_onnx(checkpoint, tmp_path / "fcn.onnx", config)
    assert not (tmp_path / "fcn.onnx").exists()


# --- read_onnx_spec on small hand-made graphs ----------------------------------------------------


def _tiny_model(spec: ModelSpec, classes: int = 21) -> onnx.ModelProto:
    """A 1×1 convolution to ``classes`` channels with dynamic N, H, W and ``spec`` in its metadata."""
    helper, tensor = onnx.helper, onnx.TensorProto
    weight = helper.make_tensor("w", tensor.FLOAT, [classes, 3, 1, 1], np.ones(classes * 3, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("image", tensor.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", tensor.FLOAT, ["n", classes, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=spec.to_json())
    return model


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def test_read_onnx_spec_accepts_a_consistent_graph(tmp_path: Path) -> None:
    spec = ModelSpec(arch="fcn32s", shape_range=RANGE)
    path = _save(_tiny_model(spec), tmp_path / "tiny.onnx")
    assert read_onnx_spec(path) == spec
    write_sidecar(path, spec)
    assert read_onnx_spec(path) == spec


def test_read_onnx_spec_refuses_foreign_and_inconsistent_files(tmp_path: Path) -> None:
    spec = ModelSpec(arch="fcn32s")
    foreign = _tiny_model(spec)
    del foreign.metadata_props[:]
    with pytest.raises(ArtifactError, match="not an fcn-deploy ONNX model"):
        read_onnx_spec(_save(foreign, tmp_path / "foreign.onnx"))
    with pytest.raises(ArtifactError, match="has 5 classes, the spec 21"):
        read_onnx_spec(_save(_tiny_model(spec, classes=5), tmp_path / "classes.onnx"))
    with pytest.raises(ArtifactError, match="inputs are \\['image'\\], the spec names one input 'rgb'"):
        read_onnx_spec(_save(_tiny_model(spec.replace(input_name="rgb")), tmp_path / "name.onnx"))
    with pytest.raises(ArtifactError, match="is not N×H×W×3 uint8"):
        read_onnx_spec(_save(_tiny_model(spec.replace(input_format=INPUT_UINT8_NHWC)), tmp_path / "fmt.onnx"))
    with pytest.raises(ArtifactError, match="spec names \\['logits', 'labels'\\]"):
        read_onnx_spec(_save(_tiny_model(spec.replace(labels_name="labels")), tmp_path / "labels.onnx"))
    broken = _tiny_model(spec)
    broken.metadata_props[0].value = json.dumps({"arch": "fcn32s", "num_classes": 0})
    with pytest.raises(ArtifactError, match="num_classes must be positive"):
        read_onnx_spec(_save(broken, tmp_path / "broken.onnx"))


def test_read_onnx_spec_refuses_a_disagreeing_sidecar(tmp_path: Path) -> None:
    spec = ModelSpec(arch="fcn32s")
    path = _save(_tiny_model(spec), tmp_path / "tiny.onnx")
    write_sidecar(path, spec.replace(arch="fcn8s"))
    with pytest.raises(ArtifactError, match="disagree on arch"):
        read_onnx_spec(path)


@pytest.mark.parametrize("figures", [None, (float("nan"), 5.0, 1.0), (0.0, 5.0, float("nan"))],
                         ids=["nan-logits", "nan-difference-alone", "nan-agreement-alone"])
def test_nan_logits_fail_the_export_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures) -> None:
    """NaN logits on both sides argmax to class 0 everywhere; they must fail the check, not pass it as agreement.
    A NaN max |Δlogit| fails on its own too (``x > limit`` is False for NaN)."""
    spec = ModelSpec(arch="fcn32s", shape_range=ShapeRange((1, 32, 32), (1, 32, 32), (2, 64, 64)))

    def nan_logits(_model, batch, _spec):
        return np.full((batch.shape[0], 21, *batch.shape[2:]), np.nan, np.float32)

    class NanSession:
        def run(self, _names, feed):
            return [nan_logits(None, feed[spec.input_name], spec)]

    monkeypatch.setattr(export_module, "_torch_logits", nan_logits)
    monkeypatch.setattr(export_module, "_ort_session", lambda _path: NanSession())
    if figures is not None:
        monkeypatch.setattr(export_module, "compare_logits", lambda *_args: figures)
    with pytest.raises(ArtifactError, match=r"max \|Δlogit\| (nan|0) .*argmax agreement (0\.0000|100\.0000|nan)%"):
        export_module._compare(None, tmp_path / "fcn.onnx", spec, ExportConfig(progress=False))


# --- the export's checks, fed figures that must fail (no model exported) -----------------------------------

SMALL = ShapeRange((1, 32, 32), (1, 32, 32), (2, 64, 64))


class StandInSession:
    """ONNX Runtime's place in the comparison: returns the reference logits changed by ``change``, and labels
    (the argmax of what it returns, changed by ``change_labels``) when the spec names a labels output."""

    def __init__(self, spec: ModelSpec, change=lambda logits: logits, change_labels=lambda labels: labels) -> None:
        self.spec, self.change, self.change_labels, self.batches = spec, change, change_labels, []

    def run(self, _names, feed):
        batch = feed[self.spec.input_name]
        self.batches.append(batch)
        logits = self.change(reference_logits(None, batch, self.spec))
        if not self.spec.labels_name:
            return [logits]
        return [logits, self.change_labels(logits.argmax(axis=1).astype(np.uint8))]


def reference_logits(_model, batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Deterministic 'PyTorch' logits for a batch: class 1 leads class 0 by 0.5 everywhere, peak 10."""
    logits = np.zeros((batch.shape[0], spec.num_classes, *batch.shape[2:]), np.float32)
    logits[:, 0], logits[:, 1], logits[:, 2] = 1.0, 1.5, -10.0
    return logits


def compare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, session: StandInSession, config: ExportConfig):
    """``_compare`` of a stand-in model and session; checks that it ran the model it was given on the file it wrote."""
    model, opened = object(), []

    def torch_logits(given, batch, spec):
        assert given is model
        return reference_logits(given, batch, spec)

    monkeypatch.setattr(export_module, "_torch_logits", torch_logits)
    monkeypatch.setattr(export_module, "_ort_session", lambda path: opened.append(path) or session)
    checks = export_module._compare(model, tmp_path / "fcn.onnx", session.spec, config)
    assert opened == [tmp_path / "fcn.onnx"]
    return checks


def flip_pixels(count: int):
    """Swap the two leading classes on ``count`` pixels of the first image: an argmax change, |Δlogit| 0.5."""
    def change(logits):
        logits = logits.copy()
        flat = logits[0, :2].reshape(2, -1)
        flat[:, :count] = flat[::-1, :count].copy()
        logits[0, :2] = flat.reshape(logits[0, :2].shape)
        return logits
    return change


def test_the_comparison_checks_each_size_at_the_clamped_batch(monkeypatch, tmp_path: Path) -> None:
    spec = ModelSpec(arch="fcn32s", shape_range=ShapeRange((3, 32, 32), (3, 32, 32), (4, 64, 64)))
    session = StandInSession(spec)
    checks = compare(monkeypatch, tmp_path, session, ExportConfig(verify_sizes=((32, 64), (64, 32)), progress=False))
    assert [b.shape for b in session.batches] == [(3, 3, 32, 64), (3, 3, 64, 32)]  # verify_batch 2 raised to 3
    assert [(c.batch, c.height, c.width, c.max_abs_diff, c.max_abs_logit, c.argmax_agreement, c.labels_agreement)
            for c in checks] == [(3, 32, 64, 0.0, 10.0, 1.0, None), (3, 64, 32, 0.0, 10.0, 1.0, None)]
    compare(monkeypatch, tmp_path, session, ExportConfig(verify_sizes=((32, 64), (64, 32)), progress=False))
    first, again = session.batches[:2], session.batches[2:]
    assert len(again) == 2 and all(np.array_equal(a, b) for a, b in zip(first, again))  # the same batches again
    capped = StandInSession(spec.replace(shape_range=ShapeRange((1, 32, 32), (1, 32, 32), (1, 64, 64))))
    compare(monkeypatch, tmp_path, capped, ExportConfig(verify_sizes=((32, 32),), progress=False))
    assert [b.shape for b in capped.batches] == [(1, 3, 32, 32)]  # and lowered to its maximum 1


@pytest.mark.parametrize(("shift", "passes"), [(0.0099, True), (0.0101, False)])
def test_the_logit_tolerance_is_relative_to_the_largest_logit(monkeypatch, tmp_path: Path, shift, passes) -> None:
    """rtol 1e-3 of max |logit| 10: a shift of 0.0099 passes, 0.0101 does not."""
    session = StandInSession(ModelSpec(arch="fcn32s", shape_range=SMALL), lambda logits: logits + np.float32(shift))
    config = ExportConfig(verify_sizes=((32, 32),), progress=False)
    if passes:
        assert compare(monkeypatch, tmp_path, session, config)[0].max_abs_diff == pytest.approx(shift, abs=1e-6)
        return
    with pytest.raises(ArtifactError) as info:
        compare(monkeypatch, tmp_path, session, config)
    assert str(info.value).startswith("the ONNX export diverges from the checkpoint at 2×32×32: max |Δlogit| 0.0101")
    assert "(allowed: max |Δlogit| <= 0.001 × max |logit|, agreement >= 99.9%); nothing was written" in str(info.value)
    assert info.value.hint == "report this with the checkpoint; try another --opset"


def test_all_zero_logits_on_both_sides_agree(monkeypatch, tmp_path: Path) -> None:
    """No logit at all (max |logit| 0): a difference of 0 passes the relative tolerance through its small floor."""
    session = StandInSession(ModelSpec(arch="fcn32s", shape_range=SMALL), np.zeros_like)
    monkeypatch.setattr(export_module, "_torch_logits", lambda _model, batch, spec: np.zeros_like(
        reference_logits(None, batch, spec)))
    monkeypatch.setattr(export_module, "_ort_session", lambda _path: session)
    (check,) = export_module._compare(None, tmp_path / "fcn.onnx", session.spec,
                                      ExportConfig(verify_sizes=((32, 32),), progress=False))
    assert (check.max_abs_diff, check.max_abs_logit, check.argmax_agreement) == (0.0, 0.0, 1.0)


def test_each_comparison_is_one_indented_progress_line(monkeypatch, tmp_path: Path, capsys) -> None:
    session = StandInSession(ModelSpec(arch="fcn32s", shape_range=SMALL))
    (check,) = compare(monkeypatch, tmp_path, session, ExportConfig(verify_sizes=((32, 32),)))
    assert capsys.readouterr().err.splitlines() == ["  " + check.describe()]


@pytest.mark.parametrize(("flipped", "passes"), [(1, True), (2, False)])
def test_argmax_agreement_is_checked_on_its_own(monkeypatch, tmp_path: Path, flipped, passes) -> None:
    """With a loose logit tolerance, the argmax agreement alone decides: 1 of 1024 pixels may change, not 2."""
    session = StandInSession(ModelSpec(arch="fcn32s", shape_range=SMALL), flip_pixels(flipped))
    config = ExportConfig(verify_sizes=((32, 32),), verify_batch=1, rtol=0.5, min_agreement=1 - 1 / 1024,
                          progress=False)
    if passes:
        assert compare(monkeypatch, tmp_path, session, config)[0].argmax_agreement == 1 - 1 / 1024
        return
    with pytest.raises(ArtifactError, match=r"argmax agreement 99\.8047%"):
        compare(monkeypatch, tmp_path, session, config)


@pytest.mark.parametrize(("flipped", "passes"), [(0, True), (1, True), (2, False)])
def test_the_labels_output_is_held_to_the_same_agreement(monkeypatch, tmp_path: Path, flipped, passes) -> None:
    spec = ModelSpec(arch="fcn32s", shape_range=SMALL, labels_name="labels")

    def change_labels(labels):
        labels = labels.copy()
        labels.reshape(-1)[:flipped] = 7
        return labels

    session = StandInSession(spec, change_labels=change_labels)
    config = ExportConfig(verify_sizes=((32, 32),), verify_batch=1, min_agreement=1 - 1 / 1024, progress=False)
    if passes:
        (check,) = compare(monkeypatch, tmp_path, session, config)
        assert check.labels_agreement == 1 - flipped / 1024 and check.argmax_agreement == 1.0
        return
    with pytest.raises(ArtifactError, match=r"labels output 99\.8047%"):
        compare(monkeypatch, tmp_path, session, config)


def test_each_check_is_said_in_one_line() -> None:
    check = export_module.ExportCheck(2, 64, 96, 0.00012345, 12.5, 0.9991234)
    assert check.describe() == ("2×64×96: max |Δlogit| 0.000123 (max |logit| 12.5), argmax agreement 99.9123%")
    assert replace(check, labels_agreement=0.5).describe().endswith(
        "argmax agreement 99.9123%, labels output 50.0000%")


@pytest.mark.parametrize(("shape_range", "expected"), [
    (ShapeRange((1, 32, 32), (1, 64, 96), (4, 256, 256)), ((64, 96), (96, 192))),  # one grid step, three across
    (ShapeRange((1, 32, 32), (1, 256, 224), (4, 256, 256)), ((256, 224), (224, 128))),  # at the top: step down
    (ShapeRange((1, 32, 32), (1, 224, 160), (4, 256, 256)), ((224, 160), (256, 256))),  # a step up to the max
    (ShapeRange((1, 64, 32), (1, 64, 32), (4, 64, 64)), ((64, 32),)),  # nowhere else to go but the same size
])
def test_the_comparison_sizes_are_the_opt_size_and_one_differing_on_both_axes(shape_range, expected) -> None:
    spec = ModelSpec(arch="fcn32s", shape_range=shape_range)
    assert export_module._verify_sizes(spec, ExportConfig()) == expected
    assert export_module._verify_sizes(spec, ExportConfig(verify_sizes=((32, 32),))) == ((32, 32),)


@pytest.mark.parametrize(("config", "changes", "message", "fix"), [
    (ExportConfig(opset=16), {}, "opset 16 is too old for this exporter", "use opset 17 or newer (default 18)"),
    (ExportConfig(output_name="image"), {}, "input/output names must be distinct and non-empty, got ['image', "
     "'image']", None),
    (ExportConfig(input_name=""), {}, "input/output names must be distinct and non-empty, got ['', 'logits']", None),
    (ExportConfig(with_argmax=True, labels_name="logits"), {}, "input/output names must be distinct", None),
    (ExportConfig(labels_dtype="int32"), {}, "labels_dtype 'int32' is not supported", "use one of: uint8, int64"),
    (ExportConfig(with_argmax=True), {"num_classes": 257}, "257 classes do not fit uint8 labels",
     "use labels_dtype 'int64'"),
    (ExportConfig(rtol=0.0), {}, "tolerances out of range: rtol 0.0, min_agreement 0.999", None),
    (ExportConfig(rtol=1.0), {}, "tolerances out of range: rtol 1.0", None),
    (ExportConfig(min_agreement=0.0), {}, "tolerances out of range: rtol 0.001, min_agreement 0.0", None),
    (ExportConfig(min_agreement=1.01), {}, "tolerances out of range", None),
    (ExportConfig(), {"shape_range": ShapeRange((1, 48, 32), (1, 64, 96), (4, 256, 256))},
     "shape range min height×width 48×32 is not a multiple of 32",
     "give every height and width of the shape range as a multiple of 32"),
    (ExportConfig(), {"shape_range": ShapeRange((1, 32, 32), (1, 64, 80), (4, 256, 256))},
     "shape range opt height×width 64×80 is not a multiple of 32", None),
    (ExportConfig(), {"shape_range": ShapeRange((1, 32, 32), (1, 64, 96), (4, 256, 250))},
     "shape range max height×width 256×250 is not a multiple of 32", None),
    (ExportConfig(verify_sizes=((64, 80),)), {}, "comparison size 64×80 is not a 32-multiple inside the shape range",
     None),
    (ExportConfig(verify_sizes=((80, 64),)), {}, "comparison size 80×64", None),
    (ExportConfig(verify_sizes=((288, 64),)), {}, "comparison size 288×64", None),
])
def test_each_option_the_export_cannot_honour_is_named_with_its_fix(config, changes, message, fix,
                                                                    class_count) -> None:
    spec = ModelSpec(arch="fcn32s", shape_range=RANGE).replace(
        **{**changes, **(class_count(changes["num_classes"]) if "num_classes" in changes else {})})
    with pytest.raises(InputError) as info:
        export_module._check_config(spec, config)
    assert str(info.value).startswith(message)
    if fix is not None:
        assert info.value.hint == fix


@pytest.mark.parametrize("config", [
    ExportConfig(opset=17), ExportConfig(labels_name="logits"),  # the labels name counts only with the argmax
    ExportConfig(with_argmax=True, labels_dtype="int64"), ExportConfig(min_agreement=1.0),
    ExportConfig(rtol=0.999), ExportConfig(verify_sizes=((256, 256), (32, 32))),
])
def test_the_limits_of_the_options_are_accepted(config, class_count) -> None:
    spec = ModelSpec(arch="fcn32s", shape_range=RANGE)
    export_module._check_config(spec, config)
    export_module._check_config(spec.replace(**class_count(256)), ExportConfig(with_argmax=True))  # 256 fit uint8
    export_module._check_config(spec.replace(**class_count(257)),
                                ExportConfig(with_argmax=False))  # no labels output, no uint8 limit


def test_the_graph_check_refuses_external_weights_non_finite_weights_and_an_invalid_graph(tmp_path: Path) -> None:
    spec = ModelSpec(arch="fcn32s", shape_range=RANGE)
    export_module.check_graph(_tiny_model(spec), spec, "good.onnx")
    external = _tiny_model(spec)
    external.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.ones((21, 3, 1, 1), np.float32), "w"))
    onnx.save_model(external, str(tmp_path / "x.onnx"), save_as_external_data=True, location="x.data",
                    size_threshold=0)
    with pytest.raises(ArtifactError, match=r"^x\.onnx keeps weights in external data files") as info:
        export_module.check_graph(onnx.load(str(tmp_path / "x.onnx"), load_external_data=False), spec, "x.onnx")
    assert info.value.hint == "re-export it as one self-contained file"
    nan = _tiny_model(spec)
    nan.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.full((21, 3, 1, 1), np.nan, np.float32), "w"))
    with pytest.raises(ArtifactError, match=r"^nan\.onnx holds non-finite weights"):
        export_module.check_graph(nan, spec, "nan.onnx")
    invalid = _tiny_model(spec)
    invalid.graph.node[0].input[1] = "missing"
    with pytest.raises(ArtifactError, match=r"^bad\.onnx fails the ONNX checker \("):
        export_module.check_graph(invalid, spec, "bad.onnx")
    with pytest.raises(ArtifactError, match=r"^other\.onnx: the model spec contradicts the graph"):
        export_module.check_graph(_tiny_model(spec, classes=5), spec, "other.onnx")
