"""Parity of an ONNX export with its checkpoint on the real VOC samples: reports and sane figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.errors import InputError
from fcn_deploy.export import ExportConfig, export_onnx
from fcn_deploy.parity import ParityConfig, ParityReport, report_paths, run_parity
from fcn_deploy.runtime import open_backend


@pytest.fixture(scope="module")
def trained(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The suite's briefly trained checkpoint and its ONNX export."""
    config = ExportConfig(verify_sizes=((64, 96), (96, 64)), progress=False)
    result = export_onnx(trained_checkpoint, tmp_path_factory.mktemp("parity") / "fcn.onnx", config)
    return trained_checkpoint, result.onnx_path


@pytest.mark.slow
def test_parity_on_the_voc_samples_writes_sane_reports(
    trained: tuple[Path, Path], voc_sample_dir: Path, tmp_path: Path
) -> None:
    checkpoint, onnx_path = trained
    config = ParityConfig(split="val", device="cpu", report=tmp_path / "reports" / "parity.md", progress=False)
    report = run_parity(onnx_path, checkpoint, voc_sample_dir, config)
    assert isinstance(report, ParityReport)
    assert (report.model_backend, report.reference_backend, report.model_device) == ("onnxruntime", "pytorch", "cpu")
    assert report.num_images == len(report.images) == 2
    assert report.num_pixels == sum(r.height * r.width for r in report.images)
    assert report.argmax_agreement >= 0.9999
    assert 0 < report.max_abs_diff <= 1e-3 * report.max_abs_logit
    assert abs(report.delta_miou) <= 0.01
    for value in (report.model_miou, report.reference_miou, report.model_pixel_accuracy):
        assert 0.0 <= value <= 1.0
    for image in report.images:
        assert image.argmax_agreement >= 0.9999 and image.max_abs_diff <= 1e-3 * image.max_abs_logit
        assert image.height % 32 and image.width % 32, "VOC images are not 32-aligned: the padding path is used"
    document = json.loads(report.json_path.read_text())
    assert document == json.loads(json.dumps(report.to_dict()))
    assert [i["image_id"] for i in document["images"]] == ["2007_000121", "2011_000006"]
    markdown = report.markdown_path.read_text()
    assert "# Parity report" in markdown and "2011_000006" in markdown and "argmax agreement" in markdown
    assert sorted(p.name for p in report.markdown_path.parent.iterdir()) == ["parity.json", "parity.md"]


@pytest.mark.slow
@pytest.mark.parametrize(("batch", "height", "width"), [(2, 64, 96), (3, 96, 64)])
def test_trained_model_onnxruntime_matches_pytorch_on_batches(trained: tuple[Path, Path], batch, height, width) -> None:
    checkpoint, onnx_path = trained
    x = np.random.default_rng(height).standard_normal((batch, 3, height, width), dtype=np.float32)
    with open_backend(checkpoint, "cpu") as reference, open_backend(onnx_path, "cpu") as candidate:
        expected, logits = reference.infer(x), candidate.infer(x)
    assert np.max(np.abs(logits - expected)) <= 1e-3 * np.max(np.abs(expected))
    assert np.mean(logits.argmax(1) == expected.argmax(1)) >= 0.9999


@pytest.mark.slow
def test_parity_of_a_checkpoint_with_itself_is_exact(trained: tuple[Path, Path], voc_sample_dir: Path, tmp_path: Path) -> None:
    checkpoint, _ = trained
    config = ParityConfig(split="val", device="cpu", report=tmp_path / "self", limit=1, progress=False)
    report = run_parity(checkpoint, checkpoint, voc_sample_dir, config)
    assert report.num_images == 1 and report.max_abs_diff == 0.0 and report.argmax_agreement == 1.0
    assert report.delta_miou == 0.0
    assert report.json_path == tmp_path / "self.json" and report.json_path.is_file()


def test_report_paths_take_md_json_or_no_suffix(tmp_path: Path) -> None:
    assert report_paths(tmp_path / "r.md") == (tmp_path / "r.md", tmp_path / "r.json")
    assert report_paths(tmp_path / "r") == (tmp_path / "r.md", tmp_path / "r.json")
    with pytest.raises(InputError, match="must end in .md or .json"):
        report_paths(tmp_path / "r.txt")


@pytest.mark.parametrize(("backend", "precision", "noted"),
                         [("tensorrt", "fp32", True), ("tensorrt", "fp16", True), ("tensorrt", "int8", True),
                          ("onnxruntime", "fp32", False)])
def test_report_of_an_engine_says_tf32_is_allowed_for_its_fp32_layers(backend: str, precision: str,
                                                                      noted: bool) -> None:
    from fcn_deploy.parity.report import render_markdown

    report = ParityReport(
        model="engines/fcn.engine", reference="fcn32s.pt", model_backend=backend, model_device="cuda",
        model_precision=precision, reference_backend="pytorch", reference_device="cpu", data_dir="VOC", split="val",
        num_images=0, num_pixels=0, max_abs_diff=0.0, max_abs_logit=1.0, argmax_agreement=1.0, model_miou=1.0,
        model_pixel_accuracy=1.0, reference_miou=1.0, reference_pixel_accuracy=1.0, delta_miou=0.0,
        model_seconds=0.0, reference_seconds=0.0, images=(),
    )
    assert ("TF32" in render_markdown(report)) is noted


# --- NaN is a failure, never agreement -------------------------------------------------------------


def test_non_finite_pixels_agree_with_nothing() -> None:
    from fcn_deploy.metrics import compare_logits

    reference = np.zeros((1, 3, 2, 2), np.float32)
    reference[:, 1] = 1.0
    candidate = reference.copy()
    candidate[0, :, 0, 0] = np.nan  # one pixel of four
    diff, _, agreement = compare_logits(reference, candidate)
    assert np.isnan(diff) and agreement == 0.75
    both_nan = np.full_like(reference, np.nan)
    assert compare_logits(both_nan, both_nan)[2] == 0.0  # numpy's argmax says class 0 for both: not agreement


@pytest.mark.parametrize("changes", [dict(max_abs_diff=float("nan")), dict(max_abs_logit=float("nan")),
                                     dict(delta_miou=float("nan")), dict(argmax_agreement=float("nan"))])
def test_the_precision_gate_fails_every_nan_figure(changes, parity_report) -> None:
    from fcn_deploy.parity.gate import INT8_MAX_DELTA_MIOU, INT8_MIN_AGREEMENT, _thresholds

    assert _thresholds(parity_report(), INT8_MIN_AGREEMENT, INT8_MAX_DELTA_MIOU) == ()
    assert _thresholds(parity_report(**changes), INT8_MIN_AGREEMENT, INT8_MAX_DELTA_MIOU)


def test_a_nan_report_says_fail_in_every_form(parity_report) -> None:
    from fcn_deploy.parity.report import render_markdown

    report = parity_report(max_abs_diff=float("nan"))
    assert not report.logits_finite and "non-finite logits" in report.non_finite_problem()
    assert "FAIL: non-finite logits" in report.summary() and "FAIL: non-finite logits" in render_markdown(report)
    assert report.to_dict()["logits_finite"] is False and report.to_dict()["max_abs_diff"] is None
    assert parity_report().non_finite_problem() is None and "FAIL" not in parity_report().summary()


def test_parity_of_a_model_with_nan_logits_fails(tmp_path: Path, tiny_voc, monkeypatch, capsys) -> None:
    """The models open (as a damaged engine or an overflowing precision would); their NaN logits fail parity."""
    from fcn_deploy.cli import run
    from fcn_deploy.parity import run as parity_run
    from fcn_deploy.runtime.base import Backend
    from fcn_deploy.spec import ModelSpec

    class Constant(Backend):
        """Class 0 everywhere; with ``nan_from`` NaN from that call on (the second image: a NaN after a finite
        figure, which Python's max would drop)."""

        def __init__(self, nan_from: int | None) -> None:
            super().__init__(ModelSpec(arch="fcn32s"))
            self.nan_from, self.calls = nan_from, 0

        def _infer(self, batch: np.ndarray) -> np.ndarray:
            self.calls += 1
            logits = np.zeros((batch.shape[0], 21, *batch.shape[2:]), np.float32)
            logits[:, 0] = np.nan if self.nan_from is not None and self.calls >= self.nan_from else 1.0
            return logits

    monkeypatch.setattr(parity_run, "open_backend",
                        lambda path, *args, **kwargs: Constant(2 if str(path) == "m.onnx" else None))
    data = tiny_voc(tmp_path / "VOC2012")
    report = run_parity("m.onnx", "r.pt", data, ParityConfig(report=tmp_path / "p.md", progress=False))
    assert np.isnan(report.max_abs_diff) and not report.logits_finite and report.argmax_agreement == 0.5
    assert [image.argmax_agreement for image in report.images] == [1.0, 0.0]
    assert json.loads(report.json_path.read_text())["logits_finite"] is False
    assert run(["parity", "m.onnx", "--reference", "r.pt", "--data", str(data), "--report", str(tmp_path / "q.md")]) == 1
    assert "error: m.onnx fails parity: non-finite logits" in capsys.readouterr().err


def test_report_of_an_engine_shows_its_build_gate_and_math(tmp_path: Path) -> None:
    from fcn_deploy.contract import write_sidecar
    from fcn_deploy.parity.report import render_markdown
    from fcn_deploy.spec import ModelSpec

    engine = tmp_path / "fcn.fp16.engine"
    engine.write_bytes(b"plan")
    write_sidecar(engine, ModelSpec(arch="fcn32s", precision="fp16"), {
        "fp32_math": "strict FP32 for the FP32 layers of this FP16 engine (its head): TF32 turned off with --no-tf32",
        "parity": {"status": "skipped", "reason": "checked by hand on the plant's images"}})
    report = ParityReport(
        model=str(engine), reference="fcn32s.pt", model_backend="tensorrt", model_device="cuda",
        model_precision="fp16", reference_backend="pytorch", reference_device="cpu", data_dir="VOC", split="val",
        num_images=0, num_pixels=0, max_abs_diff=0.0, max_abs_logit=1.0, argmax_agreement=1.0, model_miou=1.0,
        model_pixel_accuracy=1.0, reference_miou=1.0, reference_pixel_accuracy=1.0, delta_miou=0.0,
        model_seconds=0.0, reference_seconds=0.0, images=(),
    )
    text = render_markdown(report)
    assert "skipped on purpose with --no-parity (checked by hand on the plant's images)" in text
    assert "TF32 turned off with --no-tf32" in text
