"""The precision gates refuse artifacts whose parity misses the thresholds (stub reports, no model run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fcn_deploy.parity import gate
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.spec import ModelSpec


@pytest.fixture
def int8_report(monkeypatch: pytest.MonkeyPatch, parity_report):
    """Make check_precision see an INT8 artifact whose parity run returns the report the test sets."""
    holder = {"report": parity_report()}
    monkeypatch.setattr(gate, "load_onnx", lambda path: (None, ModelSpec(arch="fcn32s", precision="int8")))
    monkeypatch.setattr(gate, "run_parity", lambda *args, **kwargs: holder["report"])
    return holder


def _check(tmp_path: Path) -> gate.PrecisionParity:
    return gate.check_precision(tmp_path / "fcn.int8.onnx", tmp_path / "ref.pt", tmp_path)


def test_int8_within_both_thresholds_passes(int8_report, tmp_path: Path) -> None:
    result = _check(tmp_path)
    assert result.passed and result.problems == () and result.summary().endswith("PASS")


@pytest.mark.parametrize(("changes", "problem"), [
    (dict(argmax_agreement=gate.INT8_MIN_AGREEMENT - 0.001), "pixel agreement 97.900% < 98.0%"),
    (dict(delta_miou=-(gate.INT8_MAX_DELTA_MIOU + 0.005)), "|ΔmIoU| 1.50 points > 1"),
    (dict(delta_miou=gate.INT8_MAX_DELTA_MIOU + 0.005), "|ΔmIoU| 1.50 points > 1"),
])
def test_int8_missing_a_threshold_fails_and_says_which(int8_report, parity_report, tmp_path: Path, changes,
                                                      problem) -> None:
    int8_report["report"] = parity_report(**changes)
    result = _check(tmp_path)
    assert not result.passed
    assert result.problems == (problem,)
    assert "FAIL: " + problem in result.summary()


@pytest.mark.parametrize(("agreement", "problems"), [
    (gate.BF16_MIN_AGREEMENT - 0.001, ("pixel agreement 99.400% < 99.5%",)),
    (gate.BF16_MIN_AGREEMENT, ()),
])
def test_bf16_is_run_by_openvino_in_bf16_and_held_to_its_agreement(monkeypatch: pytest.MonkeyPatch, parity_report,
                                                                   tmp_path: Path, agreement, problems) -> None:
    report, calls = parity_report(argmax_agreement=agreement), []
    monkeypatch.setattr(gate, "run_parity", lambda *args: calls.append(args) or report)
    config = gate.ParityConfig(device="cpu", limit=3)
    result = gate.check_bf16(tmp_path / "fcn.onnx", tmp_path / "ref.pt", tmp_path / "voc", config)
    (onnx, reference, data, used), = calls
    assert (onnx, reference, data) == (tmp_path / "fcn.onnx", tmp_path / "ref.pt", tmp_path / "voc")
    assert used == replace(config, backend=BackendChoice("openvino", "bf16"))
    assert (result.artifact, result.precision, result.report) == (tmp_path / "fcn.onnx", "bf16", report)
    assert result.passed is (not problems) and result.problems == problems


@pytest.mark.parametrize(("precision", "changes", "passes"), [
    ("fp32", dict(argmax_agreement=gate.FP16_MIN_AGREEMENT), True),
    ("fp32", dict(argmax_agreement=gate.FP16_MIN_AGREEMENT - 0.001), False),  # an FP32 engine is held to FP16's gate
    ("int8", dict(argmax_agreement=gate.INT8_MIN_AGREEMENT), True),
    ("int8", dict(delta_miou=gate.INT8_MAX_DELTA_MIOU + 0.005), False),
    ("fp16", dict(max_abs_diff=float("nan")), False),  # non-finite logits fail an engine too
])
def test_an_engines_own_figures_are_held_to_its_precisions_gate(parity_report, precision, changes, passes) -> None:
    assert (gate.engine_gate_problems(precision, parity_report(**changes)) == ()) is passes


@pytest.mark.parametrize("sidecar_source", [{"source_onnx": "gone/fcn.onnx"}, {}], ids=["deleted", "unrecorded"])
def test_an_fp16_artifact_whose_fp32_source_is_gone_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                                              parity_report, tmp_path: Path,
                                                                              sidecar_source) -> None:
    """The FP16 gate scores an emulation built from the FP32 export: without it, a clear refusal, not a crash."""
    from fcn_deploy.contract import write_sidecar
    from fcn_deploy.errors import ArtifactError

    artifact = tmp_path / "fcn.fp16.onnx"
    spec = ModelSpec(arch="fcn32s", precision="fp16")
    write_sidecar(artifact, spec, {key: str(tmp_path / value) for key, value in sidecar_source.items()})
    monkeypatch.setattr(gate, "load_onnx", lambda path: (None, spec))
    monkeypatch.setattr(gate, "run_parity", lambda *args, **kwargs: parity_report())
    with pytest.raises(ArtifactError, match=r"the FP32 source of .*fcn\.fp16\.onnx .* is gone") as info:
        gate.check_precision(artifact, tmp_path / "ref.pt", tmp_path / "voc",
                             gate.ParityConfig(device="cpu", report=tmp_path / "parity.md"))
    assert "re-run 'fcn-deploy build --fp16'" in (info.value.hint or "")
