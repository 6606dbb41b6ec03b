"""``fcn-deploy parity``: reports written, a CUDA request on a machine without CUDA exits 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.cli import run


@pytest.fixture
def tiny_voc(tmp_path: Path) -> Path:
    """A one-image VOC2012-layout folder (split 'val')."""
    from PIL import Image

    root = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / "JPEGImages" / "a.jpg")
    mask = Image.fromarray(rng.integers(0, 3, (40, 50), dtype=np.uint8), mode="L")
    mask.save(root / "SegmentationClass" / "a.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    return root


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A random-weight fcn32s checkpoint."""
    pytest.importorskip("torch")
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    return save_checkpoint(tmp_path / "random.pt", build_model("fcn32s"), Checkpoint(ModelSpec(arch="fcn32s")))


def test_parity_writes_both_reports(checkpoint: Path, tiny_voc: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "reports"
    code = run(["parity", str(checkpoint), "--reference", str(checkpoint), "--data", str(tiny_voc),
                "--device", "cpu", "--out-dir", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "1 images, 2000 pixels: max |Δlogit| 0" in printed and "argmax agreement 100.0000%" in printed
    assert sorted(p.name for p in out.iterdir()) == ["parity.json", "parity.md"]


def test_cuda_request_exits_2_with_the_reason(checkpoint: Path, tiny_voc: Path, tmp_path: Path, capsys) -> None:
    """This machine has no CUDA device: an explicit --device cuda must fail with exit code 2, not fall back."""
    torch = pytest.importorskip("torch")
    code = run(["parity", str(checkpoint), "--reference", str(checkpoint), "--data", str(tiny_voc),
                "--device", "cuda", "--out-dir", str(tmp_path / "reports")])
    if torch.cuda.is_available():
        assert code == 0
        return
    assert code == 2
    err = capsys.readouterr().err
    assert "error: device 'cuda' requested but" in err and "--device cpu" in err
    assert not (tmp_path / "reports").exists()


def test_out_dir_and_report_together_exit_1(tmp_path: Path, capsys) -> None:
    code = run(["parity", "m.onnx", "--reference", "c.pt", "--data", str(tmp_path), "--out-dir", "a", "--report", "b.md"])
    assert code == 1
    assert "--out-dir and --report both given" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(("threshold", "code", "verdict"), [(0.0, 0, "PASS"), (1.01, 1, "fails the parity gate")])
def test_bf16_parity_is_a_gate(checkpoint: Path, tiny_voc: Path, tmp_path: Path, capsys, monkeypatch,
                               threshold: float, code: int, verdict: str) -> None:
    openvino = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'fcn-deploy[openvino]')")
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.parity import gate as verify
    from fcn_deploy.runtime.openvino_backend import bf16_unsupported_reason, cpu_flags

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(verify, "BF16_MIN_AGREEMENT", threshold)
    onnx_path = export_onnx(checkpoint, tmp_path / "fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path
    args = ["parity", str(onnx_path), "--reference", str(checkpoint), "--data", str(tiny_voc), "--device", "cpu",
            "--backend", "openvino", "--precision", "bf16", "--out-dir", str(tmp_path / "reports")]
    refusal = bf16_unsupported_reason(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"), cpu_flags())
    if refusal is not None:
        assert run(args) == 2 and "precision 'bf16' refused" in capsys.readouterr().err
        return
    assert run(args) == code
    captured = capsys.readouterr()
    assert "bf16 parity (none (OpenVINO bf16" in captured.out
    assert verdict in captured.out + captured.err
    assert (tmp_path / "reports" / "parity.json").is_file()


def test_out_dir_naming_a_file_exits_1_before_any_work(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    code = run(["parity", "m.onnx", "--reference", "c.pt", "--data", str(tmp_path), "--out-dir", str(tmp_path / "file")])
    assert code == 1
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "  fix: " in err


def test_parity_html_is_written_and_the_last_line_names_every_report(make_tiny_fcn, tiny_voc: Path, tmp_path: Path,
                                                                     capsys) -> None:
    model, reference = make_tiny_fcn(tmp_path / "m.onnx", seed=1), make_tiny_fcn(tmp_path / "r.onnx", seed=0)
    out, html = tmp_path / "reports", tmp_path / "pictures" / "parity.html"
    code = run(["parity", str(model), "--reference", str(reference), "--data", str(tiny_voc), "--device", "cpu",
                "--out-dir", str(out), "--html", str(html)])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert "of them lie within 2 px of a reference class boundary" in printed[-2]
    assert printed[-1] == f"wrote {out / 'parity.md'}, {out / 'parity.json'}, {html}"
    assert html.is_file() and "[parity.html](../pictures/parity.html)" in (out / "parity.md").read_text()


def test_parity_html_of_another_suffix_exits_1(tmp_path: Path, tiny_voc: Path, capsys) -> None:
    code = run(["parity", "m.onnx", "--reference", "c.pt", "--data", str(tiny_voc), "--html", str(tmp_path / "p.md")])
    assert code == 1
    assert "must end in .html" in capsys.readouterr().err
