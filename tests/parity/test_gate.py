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
    holder = {"report": parity_report(), "calls": []}
    monkeypatch.setattr(gate, "load_onnx", lambda path: (None, ModelSpec(arch="fcn32s", precision="int8")))
    monkeypatch.setattr(gate, "run_parity", lambda *args: holder["calls"].append(args) or holder["report"])
    return holder


def _check(tmp_path: Path) -> gate.PrecisionParity:
    return gate.check_precision(tmp_path / "fcn.int8.onnx", tmp_path / "ref.pt", tmp_path)


def test_int8_within_both_thresholds_passes(int8_report, tmp_path: Path) -> None:
    config = gate.ParityConfig(device="cpu", limit=2)
    result = gate.check_precision(tmp_path / "fcn.int8.onnx", tmp_path / "ref.pt", tmp_path / "voc", config)
    assert int8_report["calls"] == [(tmp_path / "fcn.int8.onnx", tmp_path / "ref.pt", tmp_path / "voc", config)]
    assert (result.artifact, result.precision, result.report) == (tmp_path / "fcn.int8.onnx", "int8",
                                                                  int8_report["report"])
    assert result.artifact_report is None
    assert result.passed and result.problems == () and result.summary().endswith("PASS")
    assert result.summary().startswith("int8 parity (none (ONNX Runtime int8 Q/DQ kernels)): ")  # what ran


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
    assert result.summary().startswith("bf16 parity (none (OpenVINO bf16 inference precision, native)): ")
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
    assert info.value.hint == "re-run 'fcn-deploy build --fp16' next to the FP32 export"


@pytest.fixture
def fp16_artifact(tiny_fcn: Path, tmp_path: Path) -> Path:
    """A real FP16 artifact of the tiny FCN (made without PyTorch), its FP32 source recorded in its sidecar."""
    from fcn_deploy.precision.fp16 import convert_fp16

    return convert_fp16(tiny_fcn, tmp_path / "fcn.fp16.onnx").path


@pytest.mark.parametrize("html", [None, "parity.html"], ids=["markdown", "with-html"])
def test_fp16_scores_the_artifact_on_cpu_and_gates_on_the_emulation(monkeypatch: pytest.MonkeyPatch, parity_report,
                                                                    fp16_artifact: Path, tmp_path: Path,
                                                                    html) -> None:
    """Two parity runs: the FP16 ONNX itself (its own report, named after the gate's) and the emulation graph."""
    from fcn_deploy.contract import load_onnx

    direct, emulated, calls = parity_report(argmax_agreement=0.9), parity_report(), []

    def run_parity(model, reference, data_dir, config):
        if not calls:
            calls.append((model, reference, data_dir, config, None))
            return direct
        calls.append((model, reference, data_dir, config, load_onnx(model)[1].precision))
        return emulated

    monkeypatch.setattr(gate, "run_parity", run_parity)
    config = gate.ParityConfig(device="cpu", report=tmp_path / "out" / "fp16.md",
                               html=None if html is None else tmp_path / "out" / html)
    result = gate.check_precision(fp16_artifact, tmp_path / "ref.pt", tmp_path / "voc", config)
    (first, reference, data, first_config, _), (second, *rest) = calls
    assert (first, reference, data) == (fp16_artifact, tmp_path / "ref.pt", tmp_path / "voc")
    assert first_config.report == tmp_path / "out" / "fp16-cpu-onnx.md"
    assert first_config.html == (None if html is None else tmp_path / "out" / "fp16-cpu-onnx.html")
    assert replace(first_config, report=config.report, html=config.html) == config
    assert rest == [tmp_path / "ref.pt", tmp_path / "voc", config, "fp16"]
    assert second.name == "fcn.fp16-emulated.onnx" and not second.exists()  # its folder is gone with the run
    assert (result.precision, result.report, result.artifact_report) == ("fp16", emulated, direct)
    assert result.artifact == fp16_artifact and result.emulated.startswith("FP16 storage emulated")
    assert result.passed and result.problems == ()


@pytest.mark.parametrize(("agreement", "problems"), [
    (gate.FP16_MIN_AGREEMENT - 0.001, ("pixel agreement 99.400% < 99.5%",)),
    (gate.FP16_MIN_AGREEMENT, ()),
])
def test_fp16_is_held_to_its_agreement_on_the_emulation(monkeypatch: pytest.MonkeyPatch, parity_report,
                                                        fp16_artifact: Path, tmp_path: Path, agreement,
                                                        problems) -> None:
    reports = iter([parity_report(), parity_report(argmax_agreement=agreement, delta_miou=0.5)])
    monkeypatch.setattr(gate, "run_parity", lambda *args: next(reports))
    result = gate.check_precision(fp16_artifact, tmp_path / "ref.pt", tmp_path / "voc",
                                  gate.ParityConfig(device="cpu", report=tmp_path / "fp16.md"))
    assert result.passed is (not problems) and result.problems == problems  # no ΔmIoU limit for FP16


def test_an_fp32_artifact_is_not_a_precision_artifact(tiny_fcn: Path, tmp_path: Path) -> None:
    from fcn_deploy.errors import ArtifactError

    with pytest.raises(ArtifactError, match=r"tiny\.onnx has precision 'fp32', expected fp16 or int8"):
        gate.check_precision(tiny_fcn, tmp_path / "ref.pt", tmp_path / "voc")


def test_the_summary_names_both_fp16_runs_the_reports_and_every_problem(parity_report, tmp_path: Path) -> None:
    report = parity_report(argmax_agreement=0.5, markdown_path=tmp_path / "g.md", html_path=tmp_path / "g.html")
    direct = parity_report(argmax_agreement=0.99876)
    result = gate.PrecisionParity(tmp_path / "a.onnx", "fp16", report, direct, "emulated thing", False,
                                  ("first", "second"))
    assert result.summary().splitlines() == [
        *f"fp16 parity (emulated thing): {report.summary()}".splitlines(),
        report.boundary_line(),
        "fp16 ONNX on CPU (weight rounding only): agreement 99.8760%",
        f"gate report: {tmp_path / 'g.md'}, {tmp_path / 'g.html'}",
        "FAIL: first; second",
    ]
    alone = replace(result, artifact_report=None, report=replace(report, html_path=None), passed=True, problems=())
    assert alone.summary().splitlines()[-3:] == [report.boundary_line(), f"gate report: {tmp_path / 'g.md'}", "PASS"]


@pytest.mark.parametrize(("changes", "problems"), [
    (dict(argmax_agreement=gate.INT8_MIN_AGREEMENT, delta_miou=-gate.INT8_MAX_DELTA_MIOU), ()),  # limits included
    (dict(delta_miou=float("nan")), ("|ΔmIoU| n/a (no labelled pixel to score) > 1",)),
    (dict(argmax_agreement=float("nan")), ("pixel agreement nan% < 98.0%",)),
    (dict(argmax_agreement=0.5, delta_miou=0.25), ("pixel agreement 50.000% < 98.0%", "|ΔmIoU| 25.00 points > 1")),
])
def test_the_thresholds_fail_nan_and_list_every_miss_in_order(parity_report, changes, problems) -> None:
    assert gate._thresholds(parity_report(**changes), gate.INT8_MIN_AGREEMENT, gate.INT8_MAX_DELTA_MIOU) == problems


def test_the_thresholds_name_the_limit_they_were_given(parity_report) -> None:
    assert gate._thresholds(parity_report(delta_miou=0.95), 0.5, 0.9) == ("|ΔmIoU| 95.00 points > 90",)


def test_non_finite_logits_are_the_first_problem_even_within_the_limits(parity_report) -> None:
    report = parity_report(max_abs_diff=float("inf"), argmax_agreement=0.5)
    problems = gate._thresholds(report, gate.FP16_MIN_AGREEMENT, None)
    assert problems == (report.non_finite_problem(), "pixel agreement 50.000% < 99.5%")
    assert problems[0].startswith("non-finite logits (max |Δlogit| inf")
