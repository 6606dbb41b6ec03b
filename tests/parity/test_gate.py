"""The precision gates refuse artifacts whose parity misses the thresholds (stub reports, no model run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fcn_deploy.parity import gate
from fcn_deploy.parity.report import ParityReport
from fcn_deploy.spec import ModelSpec

PASSING = ParityReport(
    model="m.onnx", reference="r.pt", model_backend="onnxruntime", model_device="cpu", model_precision="int8",
    reference_backend="pytorch", reference_device="cpu", data_dir="d", split="val", num_images=1, num_pixels=100,
    max_abs_diff=0.1, max_abs_logit=10.0, argmax_agreement=0.999, model_miou=0.5, model_pixel_accuracy=0.9,
    reference_miou=0.5, reference_pixel_accuracy=0.9, delta_miou=0.0, model_seconds=1.0, reference_seconds=1.0,
    images=(),
)


@pytest.fixture
def int8_report(monkeypatch: pytest.MonkeyPatch):
    """Make check_precision see an INT8 artifact whose parity run returns the report the test sets."""
    holder = {"report": PASSING}
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
def test_int8_missing_a_threshold_fails_and_says_which(int8_report, tmp_path: Path, changes, problem) -> None:
    int8_report["report"] = replace(PASSING, **changes)
    result = _check(tmp_path)
    assert not result.passed
    assert result.problems == (problem,)
    assert "FAIL: " + problem in result.summary()


def test_bf16_below_its_agreement_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gate, "run_parity",
                        lambda *args, **kwargs: replace(PASSING, argmax_agreement=gate.BF16_MIN_AGREEMENT - 0.001))
    result = gate.check_bf16(tmp_path / "fcn.onnx", tmp_path / "ref.pt", tmp_path)
    assert not result.passed and result.problems == ("pixel agreement 99.400% < 99.5%",)
