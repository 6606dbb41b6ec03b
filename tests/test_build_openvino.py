"""``fcn-deploy build --target openvino``: the IR keeps the spec where the ONNX metadata is, every stage opens it,
the gate and the INT8 budget refuse what misses them and write nothing, accuracy control names the layers it kept
in float, ``auto`` says what it chose. Tiny random-weight models made without PyTorch; NNCF on four 64×64 crops."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.build_openvino import (
    OPENVINO_BUILD_PRECISIONS,
    OpenVinoBuildConfig,
    budget_problems,
    build_openvino,
    check_config,
)
from fcn_deploy.cli import run
from fcn_deploy.contract import ONNX_METADATA_KEY, OV_METADATA_SECTION, read_sidecar, sidecar_path
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.runtime import open_backend

pytestmark = pytest.mark.runtime  # NNCF with an OpenVINO model needs no PyTorch: runs in the runtime install too

TINY_CROP = (64, 64)


def _config(workspace: Path, voc: Path, **changes) -> OpenVinoBuildConfig:
    """A build on the tiny VOC folder: four 64×64 calibration crops, outputs under ``workspace``."""
    fields = dict(calib_data=voc, calib_num=4, calib_crop=TINY_CROP, engines_dir=workspace / "engines",
                  calibration_dir=workspace / "calibration")
    return OpenVinoBuildConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def workspace(nncf, make_tiny_fcn, tiny_voc, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(folder, the tiny FP32 export, a two-image VOC folder)."""
    folder = tmp_path_factory.mktemp("openvino_build")
    return folder, make_tiny_fcn(folder / "export" / "fcn.onnx"), tiny_voc(folder / "voc")


@pytest.fixture(scope="module")
def f32_ir(workspace) -> Path:
    folder, onnx, voc = workspace
    return build_openvino(onnx, _config(folder, voc, precision="f32")).ir


@pytest.fixture(scope="module")
def int8_build(workspace):
    """The INT8 IR within one point: the plain quantisation of the tiny model misses it (98.5%), accuracy control
    meets it by putting layers back in float."""
    folder, onnx, voc = workspace
    return build_openvino(onnx, _config(folder, voc, precision="int8", max_drop=1.0))


def _ov_model(ir: Path):
    import openvino

    return openvino.Core().read_model(str(ir))


def test_the_ir_keeps_the_spec_under_the_keys_openvino_gives_the_onnx_metadata(workspace, f32_ir: Path) -> None:
    import openvino

    _, onnx, _ = workspace
    from_onnx = openvino.Core().read_model(str(onnx)).get_rt_info()[OV_METADATA_SECTION][ONNX_METADATA_KEY]
    from_ir = _ov_model(f32_ir).get_rt_info()[OV_METADATA_SECTION][ONNX_METADATA_KEY]
    assert json.loads(from_ir.astype(str)) == json.loads(from_onnx.astype(str))
    assert f32_ir.name == "fcn.f32.xml" and f32_ir.with_suffix(".bin").is_file()
    spec, document = read_sidecar(f32_ir)
    assert document["format"] == "openvino-ir" and document["precision"] == "f32"
    assert document["parity"]["status"] == "passed" and document["parity"]["agreement"] == 1.0


def test_infer_parity_and_bench_open_the_ir(workspace, f32_ir: Path, tmp_path: Path, capsys) -> None:
    _, onnx, voc = workspace
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 96), dtype=np.float32)
    with open_backend(f32_ir, "cpu") as ir, open_backend(onnx, "cpu") as ort:
        assert ir.name == "openvino" and ir.spec == ort.spec
        np.testing.assert_allclose(ir.infer(x), ort.infer(x), rtol=1e-4, atol=1e-4)
        ir.release_working_memory()
    assert run(["infer", str(f32_ir), str(voc / "JPEGImages"), "--out", str(tmp_path / "masks")]) == 0
    assert sorted(p.name for p in (tmp_path / "masks").glob("*.png")) == ["a.png", "b.png"]
    assert run(["parity", str(f32_ir), "--reference", str(onnx), "--data", str(voc),
                "--report", str(tmp_path / "p.md")]) == 0
    assert run(["bench", str(f32_ir), "--sizes", "64x64", "--iters", "2", "--rounds", "1", "--warmup", "1",
                "--no-rss"]) == 0
    assert "openvino" in capsys.readouterr().out


def test_a_changed_weights_file_or_a_missing_one_is_refused(f32_ir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "fcn.f32.xml"
    for source in (f32_ir, f32_ir.with_suffix(".bin"), sidecar_path(f32_ir)):
        shutil.copy(source, tmp_path / source.name)
    weights = copy.with_suffix(".bin")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="fcn.f32.bin is not the file its sidecar describes"):
        open_backend(copy, "cpu")
    weights.unlink()
    with pytest.raises(ArtifactError, match="no weights file fcn.f32.bin"):
        open_backend(copy, "cpu")


def test_bf16_ir_carries_its_precision_or_is_refused_with_the_reason(workspace) -> None:
    from fcn_deploy.build_openvino import bf16_reason

    folder, onnx, voc = workspace
    if (reason := bf16_reason()) is not None:
        with pytest.raises(Exception, match="cannot run natively") as info:
            build_openvino(onnx, _config(folder, voc, precision="bf16"))
        assert info.value.exit_code == 2 and reason in str(info.value)
        return
    ir = build_openvino(onnx, _config(folder, voc, precision="bf16")).ir
    options = _ov_model(ir).get_rt_info()["runtime_options"]["INFERENCE_PRECISION_HINT"].astype(str)
    assert options == "bf16"
    with open_backend(ir, "cpu") as backend:
        assert backend.precision == "bf16" and backend.spec.precision == "fp32"


def test_int8_accuracy_control_names_the_layers_it_kept_in_float(int8_build) -> None:
    ir = int8_build.ir
    assert ir.name == "fcn.int8.xml" and int8_build.precision == "int8"
    assert int8_build.reverted_to_float  # the plain quantisation missed the budget
    spec, document = read_sidecar(ir)
    assert spec.precision == "int8" and spec.quantization.target == "openvino" and spec.quantization.num_crops == 4
    assert document["parity"]["agreement"] >= 0.99 and document["parity"]["max_drop_points"] == 1.0
    assert document["reverted_to_float"] == list(int8_build.reverted_to_float)
    model = _ov_model(ir)
    stored = json.loads(model.get_rt_info()[OV_METADATA_SECTION][ONNX_METADATA_KEY].astype(str))
    assert stored == spec.to_dict()  # the C library reads the INT8 spec where it reads the ONNX metadata
    assert "FakeQuantize" in [op.get_type_name() for op in model.get_ops()]  # still an INT8 model
    with open_backend(ir, "cpu") as backend:
        assert backend.infer(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 21, 64, 64)


def test_plain_quantisation_that_misses_the_budget_fails_without_accuracy_control(workspace, tmp_path) -> None:
    _, onnx, voc = workspace
    with pytest.raises(ArtifactError, match="plain quantisation .accuracy control off.: pixel agreement") as info:
        build_openvino(onnx, _config(tmp_path, voc, precision="int8", accuracy_control=False))
    assert "raise --max-drop" in info.value.hint
    assert not (tmp_path / "engines").exists() or not any((tmp_path / "engines").iterdir())


def test_a_budget_even_accuracy_control_misses_exits_1_and_writes_nothing(workspace, tmp_path, capsys) -> None:
    _, onnx, voc = workspace
    code = run(["build", str(onnx), "--target", "openvino", "--precision", "int8", "--max-drop", "0.001",
                "--calib-data", str(voc), "--calib-num", "4", "--calib-crop", "64x64",
                "--out", str(tmp_path / "engines" / "fcn.int8.xml")])
    err = capsys.readouterr().err
    assert code == 1
    assert "every quantised layer back in float" in err and "nothing was written" in err and "fix:" in err
    assert "plain quantisation: pixel agreement 98.523% < 99.999%" in err  # the figures of both tries
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == []


def test_auto_says_what_it_chose_and_why(workspace, tmp_path: Path) -> None:
    _, onnx, voc = workspace
    result = build_openvino(onnx, _config(tmp_path, voc, precision="auto", max_drop=0.001))
    assert result.precision in ("bf16", "f32") and result.ir.name == f"fcn.{result.precision}.xml"
    assert result.notes[0].startswith("not INT8: ") and f"chose {result.precision.upper()}" in result.notes[-1]
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == sorted(
        [result.ir.name, result.ir.with_suffix(".bin").name, sidecar_path(result.ir).name])


def test_budget_reads_agreement_and_miou_drop_and_fails_a_nan(parity_report) -> None:
    assert budget_problems(parity_report(argmax_agreement=0.9905, delta_miou=-0.009), 1.0) == ()
    below = budget_problems(parity_report(argmax_agreement=0.989, delta_miou=0.0), 1.0)
    assert "pixel agreement 98.900% < 99%" in below[0]
    dropped = budget_problems(parity_report(argmax_agreement=1.0, delta_miou=-0.011), 1.0)
    assert "mIoU drop 1.10 points > 1" in dropped[0]
    assert budget_problems(parity_report(argmax_agreement=1.0, delta_miou=0.05), 1.0) == ()  # a gain is no drop
    assert budget_problems(parity_report(argmax_agreement=float("nan"), delta_miou=0.0), 1.0)


@pytest.mark.parametrize(("changes", "message"), [
    ({"precision": "fp16"}, "unknown OpenVINO build precision"),
    ({"max_drop": 0.0}, "--max-drop must be"),
    ({"max_drop": float("nan")}, "--max-drop must be"),
    ({"no_parity": "checked by hand", "precision": "int8"}, "cannot skip the gate of --precision int8"),
    ({"no_parity": " ", "precision": "f32"}, "needs the reason"),
    ({"calib_num": 0}, "--calib-num must be at least 1"),
])
def test_options_that_cannot_work_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_config(OpenVinoBuildConfig(**changes))


def test_the_cli_keeps_the_targets_options_apart(tmp_path: Path, capsys) -> None:
    model = tmp_path / "fcn.onnx"
    assert run(["build", str(model), "--target", "openvino", "--fp16"]) == 1
    assert "belong to the TensorRT build" in capsys.readouterr().err
    assert run(["build", str(model), "--fp16", "--precision", "int8"]) == 1
    assert "belong to --target openvino" in capsys.readouterr().err
    assert run(["build", str(model), "--target", "onnx"]) == 1
    assert "unknown --target" in capsys.readouterr().err
    assert set(OPENVINO_BUILD_PRECISIONS) == {"f32", "bf16", "int8", "auto"}


def _route_candidates(parity_report, qdq_agreement: float = 0.999) -> dict:
    """Stand-in INT8 routes: NNCF's IR within the budget, the Q/DQ file's IR at ``qdq_agreement``."""
    from fcn_deploy.build_openvino import Candidate

    nncf_ir = Candidate("int8", Path("nncf/candidate.int8.xml"), report=parity_report(argmax_agreement=0.995))
    qdq_report = parity_report(argmax_agreement=qdq_agreement)
    qdq_ir = Candidate("int8", Path("qdq/candidate.int8.xml"), report=qdq_report,
                       problems=budget_problems(qdq_report, 1.0))
    return {"nncf": nncf_ir, "qdq": qdq_ir}


@pytest.mark.parametrize(("timings", "chosen"), [({"nncf": 4.0, "qdq": 3.0}, "qdq"),
                                                 ({"nncf": 3.0, "qdq": 4.0}, "nncf")])
def test_int8_keeps_the_faster_route_within_the_budget_and_says_why(parity_report, timings, chosen) -> None:
    from fcn_deploy.build_openvino import choose_int8

    candidates = _route_candidates(parity_report)
    kept = choose_int8(candidates, timings, 1.0, (64, 64))
    assert kept.ir == candidates[chosen].ir and kept.route["chosen"] == chosen
    assert "the faster of the two within the budget" in kept.route["reason"]
    assert "NNCF's IR 4.00 ms" in kept.route["reason"] or "NNCF's IR 3.00 ms" in kept.route["reason"]
    assert kept.route["candidates"]["qdq"]["ms"] == timings["qdq"]
    assert kept.route["candidates"]["nncf"]["agreement"] == 0.995


def test_a_faster_route_outside_the_budget_is_not_kept(parity_report) -> None:
    from fcn_deploy.build_openvino import choose_int8

    candidates = _route_candidates(parity_report, qdq_agreement=0.95)
    kept = choose_int8(candidates, {"nncf": 5.0, "qdq": 1.0}, 1.0, (64, 64))
    assert kept.route["chosen"] == "nncf" and "the only one within the budget" in kept.route["reason"]
    assert "misses the budget: pixel agreement 95.000% < 99%" in kept.route["reason"]
    neither = dict(candidates, nncf=replace(candidates["nncf"], problems=("pixel agreement 98.000% < 99%",)))
    failed = choose_int8(neither, {"nncf": 5.0, "qdq": 1.0}, 1.0, (64, 64))
    assert failed.route is None and failed.problems[-1].startswith("the Q/DQ file's IR: pixel agreement 95.000%")


def test_a_build_given_a_qdq_file_gates_both_routes_and_records_the_choice(workspace, tmp_path, monkeypatch,
                                                                            capsys) -> None:
    import fcn_deploy.build_openvino as build_module
    from fcn_deploy.precision.calibrate import CalibrationConfig, calibrate_int8

    folder, onnx, voc = workspace
    qdq = calibrate_int8(onnx, CalibrationConfig(data_dir=voc, num=4, crop=TINY_CROP, target="cpu", small="pad",
                                                 out=tmp_path / "fcn.int8-cpu.onnx",
                                                 calibration_dir=tmp_path / "calibration")).path
    monkeypatch.setattr(build_module, "time_ir", lambda ir, spec, crop: 2.0 if ir.parent.name == "qdq" else 3.0)
    code = run(["build", str(onnx), "--target", "openvino", "--precision", "int8", "--max-drop", "20",
                "--calib-data", str(voc), "--calib-num", "4", "--calib-crop", "64x64", "--qdq", str(qdq),
                "--out", str(tmp_path / "engines" / "fcn.int8.xml")])
    assert code == 0
    assert "INT8 by OpenVINO's IR of the Q/DQ file: the faster of the two within the budget" in capsys.readouterr().out
    _, document = read_sidecar(tmp_path / "engines" / "fcn.int8.xml")
    assert document["int8_route"]["chosen"] == "qdq" and document["source_qdq"] == str(qdq)
    assert set(document["int8_route"]["candidates"]) == {"nncf", "qdq"}


def test_a_qdq_file_of_another_precision_or_with_a_float_build_is_refused(workspace, tmp_path) -> None:
    folder, onnx, voc = workspace
    with pytest.raises(InputError, match="has precision 'fp32', not int8"):
        build_openvino(onnx, _config(tmp_path, voc, precision="int8", qdq=onnx))
    with pytest.raises(InputError, match="--qdq is an INT8 route"):
        check_config(OpenVinoBuildConfig(precision="f32", qdq=onnx))


def test_the_int8_routes_timing_runs_the_ir(f32_ir: Path) -> None:
    from fcn_deploy.build_openvino import time_ir

    spec, _ = read_sidecar(f32_ir)
    assert 0 < time_ir(f32_ir, spec, TINY_CROP) < 10_000


def test_pytorchs_cuda_warning_is_held_back_only_while_nncf_runs(caplog):
    import logging

    from fcn_deploy.build_openvino import _torch_extension_warnings_quiet

    logger = logging.getLogger("torch.utils.cpp_extension")
    with caplog.at_level(logging.WARNING):
        with _torch_extension_warnings_quiet():
            logger.warning("No CUDA runtime is found")
        assert caplog.records == []
        logger.warning("after")
    assert [record.getMessage() for record in caplog.records] == ["after"]
