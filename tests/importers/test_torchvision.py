"""torchvision segmentation models: import at small sizes, export, ONNX Runtime parity, tiling, FP16 and INT8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.cli import run

SMALL = ((1, 32, 32), (1, 64, 64), (2, 128, 128))  # keeps the ResNet-101 nets cheap on a CPU


def _saved_state(name: str, path: Path, num_classes: int = 21) -> Path:
    """A random-weight state dict of ``name``, with its auxiliary head where the model has one."""
    torch = pytest.importorskip("torch")
    segmentation = pytest.importorskip("torchvision.models.segmentation")
    from fcn_deploy.importers.torchvision import MODELS

    torch.manual_seed(0)
    options = {"aux_loss": True} if MODELS[name].takes_aux_loss else {}
    model = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=num_classes, **options)
    torch.save(model.state_dict(), path)
    return path


def _import_small(name: str, tmp_path: Path) -> Path:
    from fcn_deploy.importers.torchvision import import_torchvision
    from fcn_deploy.spec import ShapeRange

    weights = _saved_state(name, tmp_path / f"{name}.pth")
    return import_torchvision(name, weights, tmp_path / f"{name}.pt", shape_range=ShapeRange(*SMALL))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                                  "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_import_export_matches_pytorch_and_tiles(name: str, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from fcn_deploy.checkpoint import load_model
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.importers.torchvision import MODELS, build
    from fcn_deploy.metrics import compare_logits
    from fcn_deploy.runtime.ort_backend import OrtBackend
    from fcn_deploy.segmenter import SegmenterConfig, open_segmenter

    checkpoint = _import_small(name, tmp_path)
    model, info = load_model(checkpoint)
    align = MODELS[name].alignment
    assert info.spec.alignment == align and info.spec.arch == f"torchvision-{name}"
    reference = build(name, 21).eval()
    state = torch.load(tmp_path / f"{name}.pth", weights_only=True)
    reference.load_state_dict({k: v for k, v in state.items() if not k.startswith("aux_classifier.")})
    onnx_path = export_onnx(checkpoint, tmp_path / "m.onnx", ExportConfig(progress=False)).onnx_path
    sizes = [(64, 64), (32 + align, 64 + 3 * align), (128, 96)]
    with OrtBackend(onnx_path, device="cpu") as backend:
        for index, (height, width) in enumerate(sizes):
            batch = np.random.default_rng(index).standard_normal((2, 3, height, width), dtype=np.float32)
            with torch.no_grad():
                expected = reference(torch.from_numpy(batch))["out"].numpy()
            _, _, agreement = compare_logits(expected, backend.infer(batch))
            assert agreement >= 0.9999, f"{height}×{width}: {agreement:.6f}"
        with pytest.raises(Exception, match=f"multiple of {align}"):
            backend.infer(np.zeros((1, 3, 64 + align // 2, 64), np.float32))
    with open_segmenter(onnx_path, device="cpu", config=SegmenterConfig(tile=(64, 64))) as segmenter:
        result = segmenter.segment(np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8))
    assert result.labels.shape == (100, 150) and result.tiles > 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn_resnet50", "lraspp_mobilenet_v3_large"])
def test_fp16_build_and_int8_calibration_keep_resize_float(name: str, tmp_path: Path, monkeypatch, tiny_train_voc) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.precision.calibrate import CalibrationConfig, calibrate_int8

    checkpoint = _import_small(name, tmp_path)
    onnx_path = export_onnx(checkpoint, tmp_path / "fcn.onnx", ExportConfig(progress=False)).onnx_path
    monkeypatch.chdir(tmp_path)
    code = run(["build", str(onnx_path), "--fp16", "--reference", str(checkpoint), "--parity-data", str(tiny_train_voc)])
    assert code in (0, 2)  # 2: the CPU part passed and TensorRT or a GPU is missing
    fp16 = onnx.load(str(tmp_path / "fcn.fp16.onnx"))
    resize_inputs = [n.input[0] for n in fp16.graph.node if n.op_type == "Resize"]
    assert resize_inputs and not any(i.endswith("__to_fp16") for i in resize_inputs)
    result = calibrate_int8(onnx_path, CalibrationConfig(data_dir=tiny_train_voc, num=4, crop=(64, 64), target="cpu", method="minmax",
                                                         calibration_dir=tmp_path / "calibration"))
    int8 = onnx.load(str(result.path))
    # the head's Resize (the upsampling to the input size; LRASPP has another inside its body) stays float
    head_resizes = [n for n in int8.graph.node if n.op_type == "Resize" and n.name in result.excluded_nodes]
    consumers = {name: node.op_type for node in int8.graph.node for name in node.input}
    assert head_resizes and all(consumers.get(n.output[0]) != "QuantizeLinear" for n in head_resizes)


def test_unknown_name_lists_the_known_ones(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pth").write_bytes(b"")
    assert run(["import", "torchvision", "fcn_resnet18", "w.pth"]) == 1
    err = capsys.readouterr().err
    assert "unknown torchvision model 'fcn_resnet18'" in err and "fcn_resnet50" in err and "lraspp_mobilenet_v3_large" in err
    assert not (tmp_path / "checkpoints").exists()


def test_class_count_contradicting_the_weights(tmp_path: Path, monkeypatch, capsys) -> None:
    weights = _saved_state("lraspp_mobilenet_v3_large", tmp_path / "w.pth", num_classes=4)
    monkeypatch.chdir(tmp_path)
    assert run(["import", "torchvision", "lraspp_mobilenet_v3_large", str(weights), "--num-classes", "21"]) == 1
    assert "contradicts the weights" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_weights_of_another_model_are_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    weights = _saved_state("lraspp_mobilenet_v3_large", tmp_path / "w.pth")
    monkeypatch.chdir(tmp_path)
    assert run(["import", "torchvision", "deeplabv3_mobilenet_v3_large", str(weights)]) == 1
    err = capsys.readouterr().err
    assert "fits none of the known layouts" in err and "missing (first:" in err and "unexpected (first:" in err
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("options, message", [
    (["--max", "16x16"], "--opt 320x480 is larger than --max 16x16"),
    (["--opt", "100x100"], "--opt 100x100 is not a multiple of 8"),
    (["--max", "1020x1024"], "--max 1020x1024 is not a multiple of 8"),
])
def test_bad_sizes_are_blamed_on_the_option(tmp_path: Path, monkeypatch, capsys, options, message) -> None:
    """Checked before the weights are read (there are none here), never reported as a damaged spec."""
    monkeypatch.chdir(tmp_path)
    assert run(["import", "torchvision", "fcn_resnet50", "absent.pt", *options]) == 1
    err = capsys.readouterr().err
    assert f"error: {message}" in err and "damaged" not in err and "fix:" in err
