"""Models from ``fcn-deploy import`` go through ``build --target openvino`` as ours do: the d2l notebook net and a
torchvision net, random weights, exported at a small size; the FP32 and the INT8 IR open and segment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SMALL = ((1, 64, 64), (1, 64, 64), (1, 128, 128))  # the crops the build gates on: cheap on a CPU


def _export(checkpoint: Path, out: Path) -> Path:
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.spec import ShapeRange

    return export_onnx(checkpoint, out, ExportConfig(shape_range=ShapeRange(*SMALL), verify_sizes=((64, 64),),
                                                     verify_batch=1, progress=False)).onnx_path


def _d2l_export(tmp_path: Path, d2l_state_dict: Path) -> Path:
    from fcn_deploy.importers.d2l import import_d2l

    checkpoint, _ = import_d2l(d2l_state_dict, tmp_path / "d2l.pt")
    return _export(checkpoint, tmp_path / "export" / "fcn.onnx")


def _torchvision_export(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")
    segmentation = pytest.importorskip("torchvision.models.segmentation")
    from fcn_deploy.importers.torchvision import import_torchvision
    from fcn_deploy.spec import ShapeRange

    torch.manual_seed(0)
    model = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    torch.save(model.state_dict(), tmp_path / "lraspp.pth")
    checkpoint = import_torchvision("lraspp_mobilenet_v3_large", tmp_path / "lraspp.pth", tmp_path / "lraspp.pt",
                                    shape_range=ShapeRange(*SMALL))
    return _export(checkpoint, tmp_path / "export" / "fcn.onnx")


@pytest.mark.parametrize("source", ["d2l", pytest.param("torchvision", marks=pytest.mark.slow)])
def test_an_imported_model_builds_f32_and_int8_irs_that_segment(source: str, tmp_path: Path, request, nncf,
                                                                tiny_voc) -> None:
    pytest.importorskip("onnxruntime")
    from fcn_deploy.build_openvino import OpenVinoBuildConfig, build_openvino
    from fcn_deploy.contract import read_sidecar
    from fcn_deploy.segmenter import open_segmenter

    onnx = (_d2l_export(tmp_path, request.getfixturevalue("d2l_state_dict")) if source == "d2l"
            else _torchvision_export(tmp_path))
    voc = tiny_voc(tmp_path / "voc")
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    for precision, max_drop in (("f32", 1.0), ("int8", 60.0)):  # random weights: a generous INT8 budget
        result = build_openvino(onnx, OpenVinoBuildConfig(
            precision=precision, max_drop=max_drop, calib_data=voc, calib_num=2, calib_crop=(64, 64),
            engines_dir=tmp_path / "engines", calibration_dir=tmp_path / "calibration"))
        assert result.ir.name == f"fcn.{precision}.xml" and result.ir.with_suffix(".bin").is_file()
        spec, document = read_sidecar(result.ir)
        assert document["parity"]["status"] == "passed"
        assert spec.precision == ("int8" if precision == "int8" else "fp32") and spec.arch.endswith(
            "fcn32s" if source == "d2l" else "lraspp_mobilenet_v3_large")
        if precision == "int8":
            import openvino

            ops = {op.get_type_name() for op in openvino.Core().read_model(str(result.ir)).get_ops()}
            assert "FakeQuantize" in ops  # quantised, not a float model under an INT8 name
        with open_segmenter(result.ir, device="cpu") as segmenter:
            labels = segmenter.segment(image).labels
        assert labels.shape == (64, 96) and labels.max() < spec.num_classes
