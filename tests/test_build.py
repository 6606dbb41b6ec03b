"""``fcn-deploy build``: precision ONNX first, then a clear exit 2 without TensorRT/GPU; options and profiles."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

import pytest

from fcn_deploy.build import (
    BuildConfig,
    make_precision_onnx,
    parse_dims,
    resolve_profile,
)
from fcn_deploy.cli import run
from fcn_deploy.contract import read_sidecar, sidecar_path
from fcn_deploy.errors import ArtifactError, InputError, MissingComponentError
from fcn_deploy.runtime.tensorrt_support import require_tensorrt
from fcn_deploy.spec import INPUT_UINT8_NHWC, ModelSpec, ShapeRange

pytest.importorskip("onnxruntime")


def _skip_if_gpu_stack_present() -> None:
    """These tests are about the machine without TensorRT or a CUDA device."""
    if importlib.util.find_spec("tensorrt") is not None:
        try:
            require_tensorrt()
        except MissingComponentError:
            return
        pytest.skip("TensorRT and a CUDA GPU are present: the missing-component path cannot be exercised")


def _copy_export(onnx_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of an FP32 export (and sidecar) under export/ of a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "export").mkdir()
    for source in (onnx_path, onnx_path.with_name(onnx_path.name + ".json")):
        shutil.copy(source, tmp_path / "export" / source.name)
    return tmp_path / "export" / onnx_path.name


@pytest.fixture
def workspace(random_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The random-weight export in a fresh working directory."""
    return _copy_export(random_onnx, tmp_path, monkeypatch)


def test_fp16_build_writes_onnx_then_exits_2(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    _skip_if_gpu_stack_present()
    code = run(["build", str(workspace), "--fp16", "--no-parity", "not under test"])
    err = capsys.readouterr().err
    assert code == 2
    assert "TensorRT" in err and "pip install 'fcn-deploy[tensorrt]'" in err
    fp16 = workspace.with_name("fcn.fp16.onnx")
    assert fp16.is_file() and read_sidecar(fp16)[0].precision == "fp16"
    kept = read_sidecar(fp16)[1]["fp32_nodes"]  # the nodes kept in FP32: counted on screen, listed in the sidecar
    assert f"{len(kept)} nodes kept in FP32" in err and str(sidecar_path(fp16)) in err
    assert len(kept) > 1 and not any(node in err for node in kept)
    assert not Path("engines").exists() or not any(Path("engines").iterdir())
    before = fp16.stat().st_mtime_ns
    assert run(["build", str(workspace), "--fp16", "--no-parity", "not under test"]) == 2
    assert fp16.stat().st_mtime_ns == before  # reused: made from this very export
    assert "reusing" in capsys.readouterr().err


def test_int8_build_calibrates_then_exits_2(workspace: Path, precision_voc_dir: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    _skip_if_gpu_stack_present()
    code = run(["build", str(workspace), "--int8", "--calib-data", str(precision_voc_dir), "--calib-num", "4",
                "--calib-crop", "64x96", "--calib-method", "minmax", "--no-parity", "not under test"])
    assert code == 2, capsys.readouterr().err
    int8 = workspace.with_name("fcn.int8.onnx")
    spec, document = read_sidecar(int8)
    assert spec.precision == "int8" and spec.quantization.target == "tensorrt"
    assert document["source_onnx_sha256"]
    assert Path("calibration/fcn.int8.crops.json").is_file()


def test_int8_without_calibration_data_is_refused(workspace: Path) -> None:
    with pytest.raises(InputError, match="--calib-data"):
        make_precision_onnx(workspace, BuildConfig(precision="int8"))


@pytest.mark.parametrize("flags", [[], ["--fp16", "--int8"], ["--fp32", "--fp16", "--int8"]])
def test_exactly_one_precision(workspace: Path, flags: list[str], capsys: pytest.CaptureFixture) -> None:
    assert run(["build", str(workspace), *flags]) == 1
    assert "exactly one precision" in capsys.readouterr().err


@pytest.mark.slow
def test_fp16_build_runs_parity_before_stopping(precision_onnx: Path, precision_checkpoint: Path,
                                                precision_voc_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _skip_if_gpu_stack_present()
    workspace = _copy_export(precision_onnx, tmp_path, monkeypatch)
    code = run(["build", str(workspace), "--fp16", "--reference", str(precision_checkpoint),
                "--parity-data", str(precision_voc_dir)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "fp16 parity" in err and "PASS" in err
    assert Path("calibration/parity-fcn.fp16.md").is_file()
    assert Path("calibration/parity-fcn.fp16.html").is_file() and "calibration/parity-fcn.fp16.html" in err
    assert "of them lie within 2 px of a reference class boundary" in err or "no pixel disagrees" in err


def test_profile_defaults_to_the_spec_range_and_checks_given_ones() -> None:
    spec = ModelSpec(arch="fcn32s", shape_range=ShapeRange((1, 64, 64), (2, 320, 480), (4, 512, 512)))
    assert resolve_profile(spec, None) == ((1, 3, 64, 64), (2, 3, 320, 480), (4, 3, 512, 512))
    nhwc = spec.replace(input_format=INPUT_UINT8_NHWC)
    assert resolve_profile(nhwc, None)[2] == (4, 512, 512, 3)
    given = ((1, 3, 64, 64), (1, 3, 128, 128), (2, 3, 256, 256))
    assert resolve_profile(spec, given) == given
    with pytest.raises(InputError, match="multiple of 32"):
        resolve_profile(spec, ((1, 3, 64, 64), (1, 3, 100, 128), (2, 3, 256, 256)))
    with pytest.raises(InputError, match="outside"):
        resolve_profile(spec, ((1, 3, 64, 64), (1, 3, 128, 128), (8, 3, 256, 256)))
    with pytest.raises(InputError, match="ordered"):
        resolve_profile(spec, ((2, 3, 64, 64), (1, 3, 128, 128), (2, 3, 256, 256)))
    assert parse_dims("1x3x320x480", "--opt") == (1, 3, 320, 480)
    with pytest.raises(InputError, match="NxCxHxW"):
        parse_dims("320x480", "--opt")


# --- the engine build against recording TensorRT stand-ins (tests/gpu_standins.py) ---------------------


GPU = {"name": "Stand-in GPU", "compute_capability": "8.9", "device": 0}
PROFILE = ((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 128, 128))


def _build(gpu_standins, tmp_path: Path, precision: str = "fp32", **options) -> Path:
    """build_engine with the stand-ins, in ``tmp_path`` (engines/ and calibration/ below it)."""
    from fcn_deploy.build import build_engine

    artifact = tmp_path / "fcn.onnx"
    artifact.write_bytes(b"an onnx model")
    config = BuildConfig(precision=precision, calibration_dir=tmp_path / "calibration",  # type: ignore[arg-type]
                         engines_dir=tmp_path / "engines", **options)
    out = tmp_path / "engines" / f"fcn.{precision}.engine"
    return build_engine(gpu_standins.tensorrt, artifact, ModelSpec(arch="fcn32s"), PROFILE, GPU, config, out)


def _keyed_cache(tmp_path: Path) -> Path:
    return tmp_path / "calibration" / "timing-10.16.1.11-sm89-Stand-in-GPU.cache"


def _assert_plan_and_sidecar_agree(engine: Path) -> dict:
    from gpu_standins import PLAN

    from fcn_deploy.fileio import sha256_file

    assert engine.read_bytes() == PLAN
    _, document = read_sidecar(engine)
    assert document["engine_sha256"] == sha256_file(engine) and document["gpu"] == GPU["name"]
    return document


def test_timing_cache_is_keyed_by_tensorrt_version_and_gpu_and_reused(gpu_standins, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from gpu_standins import CACHE_PREFIX

    monkeypatch.chdir(tmp_path)
    _assert_plan_and_sidecar_agree(_build(gpu_standins, tmp_path))
    cache = _keyed_cache(tmp_path)
    assert cache.is_file() and cache.read_bytes().startswith(CACHE_PREFIX)
    assert not Path("calibration/timing.cache").exists()
    saved = cache.read_bytes()
    gpu_standins.calls.clear()
    _build(gpu_standins, tmp_path)
    assert gpu_standins.args_of("IBuilderConfig.create_timing_cache") == [(saved,)]
    assert gpu_standins.args_of("IBuilderConfig.set_timing_cache")[0][1] is False


def test_refused_timing_cache_falls_back_to_an_empty_one(gpu_standins, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """A cache made on another GPU: set_timing_cache returns False; the build goes on with an empty cache."""
    from gpu_standins import CACHE_PREFIX, PASS

    cache = _keyed_cache(tmp_path)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(CACHE_PREFIX + b"other GPU")
    refusals = iter([False])
    gpu_standins.fail["IBuilderConfig.set_timing_cache"] = lambda args: next(refusals, PASS)
    engine = _build(gpu_standins, tmp_path)
    assert "refused the timing cache" in capsys.readouterr().err
    assert gpu_standins.args_of("IBuilderConfig.create_timing_cache") == [(CACHE_PREFIX + b"other GPU",), (b"",)]
    names = gpu_standins.names()
    assert names.count("IBuilderConfig.set_timing_cache") == 2
    assert names.index("Builder.build_serialized_network") > max(i for i, n in enumerate(names)
                                                                  if n == "IBuilderConfig.set_timing_cache")
    _assert_plan_and_sidecar_agree(engine)
    assert cache.read_bytes() == CACHE_PREFIX + b"+"  # the fresh cache replaces the refused one


@pytest.mark.parametrize("failure", ["raises", "None"])
def test_timing_cache_from_another_tensorrt_version_is_replaced(gpu_standins, tmp_path: Path, failure: str,
                                                                capsys: pytest.CaptureFixture) -> None:
    """create_timing_cache fails on a blob it cannot read (raising, or giving None); an empty cache is used."""
    from gpu_standins import CACHE_PREFIX, PASS

    foreign = tmp_path / "given.cache"
    foreign.write_bytes(b"a blob from TensorRT 8.6")
    if failure == "None":
        foreign.write_bytes(CACHE_PREFIX + b"unreadable")
        gpu_standins.fail["IBuilderConfig.create_timing_cache"] = lambda args: None if args[0] else PASS
    engine = _build(gpu_standins, tmp_path, timing_cache=foreign)
    assert "could not create the timing cache" in capsys.readouterr().err
    assert gpu_standins.args_of("IBuilderConfig.create_timing_cache")[-1] == (b"",)
    assert all(args[0] is not None for args in gpu_standins.args_of("IBuilderConfig.set_timing_cache"))
    _assert_plan_and_sidecar_agree(engine)
    assert foreign.read_bytes() == CACHE_PREFIX + b"+"


def test_no_timing_cache_to_save_still_gives_plan_and_sidecar(gpu_standins, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    gpu_standins.fail["IBuilderConfig.get_timing_cache"] = None
    engine = _build(gpu_standins, tmp_path)
    _assert_plan_and_sidecar_agree(engine)
    assert not _keyed_cache(tmp_path).exists()
    assert "no timing cache to save" in capsys.readouterr().err


def test_sidecar_is_written_before_the_timing_cache(gpu_standins, tmp_path: Path) -> None:
    gpu_standins.fail["ITimingCache.serialize"] = RuntimeError("serialisation failed")
    _assert_plan_and_sidecar_agree(_build(gpu_standins, tmp_path))
    assert not _keyed_cache(tmp_path).exists()


def test_a_failed_sidecar_write_never_leaves_the_previous_sidecar(gpu_standins, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The old sidecar goes before the new plan is written: a plan is never paired with another build's facts."""
    from fcn_deploy import build as build_module
    from fcn_deploy.contract import write_sidecar

    engines = tmp_path / "engines"
    engines.mkdir()
    (engines / "fcn.fp32.engine").write_bytes(b"the previous plan")
    write_sidecar(engines / "fcn.fp32.engine", ModelSpec(arch="fcn32s"), {"gpu": "Another GPU"})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build_module, "write_sidecar", disk_full)
    with pytest.raises(OSError):
        _build(gpu_standins, tmp_path)
    assert not (engines / "fcn.fp32.engine.json").exists()


def test_a_refused_optimisation_profile_stops_the_build(gpu_standins, tmp_path: Path) -> None:
    from fcn_deploy.errors import ArtifactError

    gpu_standins.fail["IBuilderConfig.add_optimization_profile"] = -1
    with pytest.raises(ArtifactError, match="optimisation profile"):
        _build(gpu_standins, tmp_path)
    assert "Builder.build_serialized_network" not in gpu_standins.names()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_sidecar_says_tf32_is_allowed_for_its_fp32_layers(gpu_standins, tmp_path: Path, precision: str) -> None:
    document = _assert_plan_and_sidecar_agree(_build(gpu_standins, tmp_path, precision=precision))
    assert "TF32 allowed" in document["fp32_math"] and "--no-tf32" in document["fp32_math"]
    assert "IBuilderConfig.clear_flag" not in gpu_standins.names()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_no_tf32_clears_the_flag_and_says_so(gpu_standins, tmp_path: Path, precision: str) -> None:
    document = _assert_plan_and_sidecar_agree(_build(gpu_standins, tmp_path, precision=precision, tf32=False))
    assert gpu_standins.args_of("IBuilderConfig.clear_flag") == [(gpu_standins.tensorrt.BuilderFlag.TF32,)]
    names = gpu_standins.names()
    assert names.index("IBuilderConfig.clear_flag") < names.index("Builder.build_serialized_network")
    assert document["fp32_math"].startswith("strict FP32")


def test_a_profile_tensorrt_refuses_is_our_error_with_the_shapes(gpu_standins, tmp_path: Path) -> None:
    gpu_standins.fail["IOptimizationProfile.set_shape"] = RuntimeError("Error Code 3: API Usage Error")
    with pytest.raises(InputError, match=r"min \(1, 3, 32, 32\), opt \(1, 3, 64, 64\), max \(2, 3, 128, 128\)") \
            as caught:
        _build(gpu_standins, tmp_path)
    assert "NxCxHxW" in caught.value.message and "--min/--opt/--max" in caught.value.hint
    assert "Builder.build_serialized_network" not in gpu_standins.names()


def test_profile_shapes_are_described_in_the_exports_layout() -> None:
    nhwc = ModelSpec(arch="fcn32s", input_format=INPUT_UINT8_NHWC)
    with pytest.raises(InputError, match="NxHxWxC") as caught:
        parse_dims("1x320", "--min", nhwc)
    assert "NxCxHxW" not in caught.value.message
    with pytest.raises(InputError, match=r"NxCxHxW \(e.g. 1x3x320x480\)"):
        parse_dims("1x320", "--min", ModelSpec(arch="fcn32s"))
    with pytest.raises(InputError, match="3 channels") as caught:
        resolve_profile(nhwc, ((1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 64, 64)))
    assert "NxHxWxC" in caught.value.hint


def test_profile_help_names_both_layouts(capsys: pytest.CaptureFixture) -> None:
    assert run(["build", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.count("NxHxWxC") == 3 and text.count("NxCxHxW") == 3  # --min, --opt and --max


def test_timing_cache_key_names_the_gpu() -> None:
    from fcn_deploy.workspace import timing_cache_path

    l4 = timing_cache_path("10.16.1.11", "8.9", "NVIDIA L4", Path("calibration"))
    rtx = timing_cache_path("10.16.1.11", "8.9", "NVIDIA GeForce RTX 4090", Path("calibration"))
    assert l4 != rtx and l4.name == "timing-10.16.1.11-sm89-NVIDIA-L4.cache"
    assert "/" not in timing_cache_path("10.16.1.11", "8.9", "a/b GPU", Path("c")).name


def test_builds_and_backends_share_one_tensorrt_logger(gpu_standins, tmp_path: Path) -> None:
    _build(gpu_standins, tmp_path)
    _build(gpu_standins, tmp_path, precision="fp16")
    assert gpu_standins.names().count("Logger") == 1


def test_build_calls_tensorrt_in_order(gpu_standins, tmp_path: Path) -> None:
    _build(gpu_standins, tmp_path, workspace_gib=0.5)
    names = [n for n in gpu_standins.names() if n != "Logger"]
    assert names == ["Builder", "Builder.create_network", "OnnxParser.parse", "Builder.create_builder_config",
                     "IBuilderConfig.set_memory_pool_limit", "Builder.create_optimization_profile",
                     "IOptimizationProfile.set_shape", "IBuilderConfig.add_optimization_profile",
                     "IBuilderConfig.create_timing_cache", "IBuilderConfig.set_timing_cache",
                     "Builder.build_serialized_network", "IBuilderConfig.get_timing_cache", "ITimingCache.serialize"]
    assert gpu_standins.args_of("IBuilderConfig.set_memory_pool_limit")[0][1] == 1 << 29
    assert gpu_standins.args_of("IOptimizationProfile.set_shape") == [("image", *PROFILE)]
    assert gpu_standins.args_of("IBuilderConfig.create_timing_cache") == [(b"",)]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_an_artifact_failing_its_parity_gate_stops_the_build(workspace: Path, precision_voc_dir: Path,
                                                             precision: str, parity_report,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    """A failing gate ends the build with exit 1 before any engine is attempted (stub parity: no model runs)."""
    from fcn_deploy import build as build_module
    from fcn_deploy.parity.gate import PrecisionParity

    def failing(artifact, reference, data_dir, config):
        return PrecisionParity(Path(artifact), precision, parity_report(argmax_agreement=0.5), None, "stub", False,
                               ("pixel agreement 50% < 99%",))

    monkeypatch.setattr(build_module, "check_precision", failing)
    monkeypatch.setattr(build_module, "build_engine",
                        lambda *args, **kwargs: pytest.fail("an engine was built after a failed parity gate"))
    reference = workspace.parent / "reference.pt"
    reference.write_bytes(b"stand-in: the stub gate never reads it")
    calib = ["--calib-data", str(precision_voc_dir), "--calib-num", "4", "--calib-crop", "64x96",
             "--calib-method", "minmax"] if precision == "int8" else []
    code = run(["build", str(workspace), f"--{precision}", "--reference", str(reference),
                "--parity-data", str(precision_voc_dir), *calib])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"fails the {precision} parity gate: pixel agreement 50% < 99%" in err


# --- the parity gate of a whole build (stand-in TensorRT; the parity runs themselves recorded) ----------------


def _report(model: Path, data_dir: Path, split: str, device: str):
    from fcn_deploy.parity.report import ParityReport

    return ParityReport(
        model=str(model), reference="fcn32s.pt", model_backend="tensorrt" if device == "cuda" else "onnxruntime",
        model_device=device, model_precision="fp16", reference_backend="pytorch", reference_device=device,
        data_dir=str(data_dir), split=split, num_images=8, num_pixels=8 * 64 * 96, max_abs_diff=0.05,
        max_abs_logit=9.0, argmax_agreement=0.9991, model_miou=0.5, model_pixel_accuracy=0.9, reference_miou=0.501,
        reference_pixel_accuracy=0.9, delta_miou=-0.001, model_seconds=0.1, reference_seconds=0.1, images=(),
        markdown_path=Path("calibration/parity.md"),
    )


@pytest.fixture
def recorded_parity(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The build's CPU gate and engine check, recorded (with how many images their folder held) instead of run."""
    from fcn_deploy import build as build_module
    from fcn_deploy.parity.gate import PrecisionParity

    calls: list[tuple] = []

    def images(data_dir) -> int:
        return len(list((Path(data_dir) / "JPEGImages").glob("*.jpg")))

    def check_precision(artifact, reference, data_dir, config):
        calls.append(("gate", Path(data_dir).name, config.split, config.device, images(data_dir)))
        return PrecisionParity(Path(artifact), "fp16", _report(artifact, data_dir, config.split, "cpu"), None,
                               "FP16 storage emulated", True, ())

    def run_parity(model, reference, data_dir, config):
        calls.append(("engine", Path(data_dir).name, config.split, config.device, images(data_dir)))
        return _report(model, data_dir, config.split, config.device)

    monkeypatch.setattr(build_module, "check_precision", check_precision)
    monkeypatch.setattr(build_module, "run_parity", run_parity)
    return calls


def _whole_build(workspace: Path, **options):
    from fcn_deploy.build import build

    config = BuildConfig(precision=options.pop("precision", "fp16"), out=Path("engines/fcn.engine"),
                         calibration_dir=Path("calibration"), engines_dir=Path("engines"), **options)
    return build(workspace, config)


def test_without_parity_data_the_gate_runs_on_synthetic_crops_and_the_sidecar_says_so(
        gpu_standins, workspace: Path, recorded_parity: list, capsys: pytest.CaptureFixture) -> None:
    from fcn_deploy.build import SYNTHETIC_CROPS
    from fcn_deploy.runtime.tensorrt_support import engine_parity_note

    result = _whole_build(workspace)
    assert "synthetic" in capsys.readouterr().err
    assert recorded_parity == [("gate", "synthetic", "val", "cpu", 2 * SYNTHETIC_CROPS),
                               ("engine", "synthetic", "val", "cuda", 2 * SYNTHETIC_CROPS)]
    record = read_sidecar(result.engine)[1]["parity"]
    assert record["status"] == "passed" and "synthetic" in record["data"] and record["agreement"] == 0.9991
    assert record["engine"]["agreement"] == 0.9991 and record["engine"]["passed"] is True
    assert "passed on" in engine_parity_note(read_sidecar(result.engine)[1])
    assert read_sidecar(result.engine)[1]["engine_sha256"]  # still the plan's hash after the engine figures


def test_the_gate_and_the_engine_check_write_html_beside_their_markdown(
        gpu_standins, workspace: Path, recorded_parity: list, monkeypatch: pytest.MonkeyPatch) -> None:
    from fcn_deploy import build as build_module

    asked: list[tuple[Path, Path | None]] = []
    for name in ("check_precision", "run_parity"):
        recorded = getattr(build_module, name)

        def spy(*args, _recorded=recorded):
            asked.append((args[3].report, args[3].html))
            return _recorded(*args)

        monkeypatch.setattr(build_module, name, spy)
    _whole_build(workspace)
    assert asked == [(Path("calibration/parity-fcn.fp16.md"), Path("calibration/parity-fcn.fp16.html")),
                     (Path("calibration/parity-fcn-engine.md"), Path("calibration/parity-fcn-engine.html"))]


def test_an_engine_outside_its_gate_stops_the_build_and_leaves_out_as_it_was(
        gpu_standins, workspace: Path, recorded_parity: list, monkeypatch: pytest.MonkeyPatch) -> None:
    from fcn_deploy import build as build_module

    first = _whole_build(workspace)
    before = (first.engine.read_bytes(), read_sidecar(first.engine)[1])
    failing = _report(Path("engine"), workspace, "val", "cuda")
    monkeypatch.setattr(build_module, "run_parity",
                        lambda *args: dataclasses.replace(failing, argmax_agreement=0.9, max_abs_diff=float("nan")))
    with pytest.raises(ArtifactError, match="the fp16 engine fails its parity gate on the GPU: .*non-finite.*pixel "
                                            r"agreement 90.000% < 99.5%.*engines/fcn.engine is unchanged") as caught:
        _whole_build(workspace)
    assert "--no-tf32" in caught.value.hint and "--no-parity REASON" in caught.value.hint
    assert (first.engine.read_bytes(), read_sidecar(first.engine)[1]) == before
    assert sorted(p.name for p in first.engine.parent.iterdir()) == ["fcn.engine", "fcn.engine.json"]


def test_a_first_engine_outside_its_gate_writes_nothing(gpu_standins, workspace: Path, recorded_parity: list,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from fcn_deploy import build as build_module

    failing = _report(Path("engine"), workspace, "val", "cuda")
    monkeypatch.setattr(build_module, "run_parity", lambda *args: dataclasses.replace(failing, argmax_agreement=0.5))
    with pytest.raises(ArtifactError, match="nothing was written to engines/fcn.engine"):
        _whole_build(workspace)
    assert list(Path("engines").iterdir()) == []


def test_the_gate_uses_the_given_folders_validation_split(gpu_standins, workspace: Path, recorded_parity: list,
                                                          tmp_path: Path) -> None:
    from fcn_deploy.data.synth import SynthConfig, synthesize

    voc = synthesize(SynthConfig(out=tmp_path / "voc", num=4, size=(64, 96))).root
    result = _whole_build(workspace, parity_data=voc)
    assert [call[:3] for call in recorded_parity] == [("gate", "voc", "val"), ("engine", "voc", "val")]
    assert str(voc) in read_sidecar(result.engine)[1]["parity"]["data"]


def test_no_parity_records_the_reason_and_runs_nothing(gpu_standins, workspace: Path, recorded_parity: list) -> None:
    from fcn_deploy.runtime.tensorrt_support import engine_build_notes

    result = _whole_build(workspace, no_parity="compared by hand on the plant's own images")
    assert recorded_parity == []
    assert read_sidecar(result.engine)[1]["parity"] == {"status": "skipped",
                                                        "reason": "compared by hand on the plant's own images"}
    assert "skipped on purpose with --no-parity (compared by hand" in engine_build_notes(result.engine)[0]


def test_no_parity_needs_a_reason(workspace: Path, recorded_parity: list) -> None:
    with pytest.raises(InputError, match="reason"):
        _whole_build(workspace, no_parity="  ")


def test_a_gate_without_a_reference_is_refused_not_passed(gpu_standins, workspace: Path, recorded_parity: list,
                                                          tmp_path: Path) -> None:
    with pytest.raises(InputError, match="reference checkpoint") as caught:
        _whole_build(workspace, reference=tmp_path / "gone.pt")
    assert "--no-parity REASON" in caught.value.hint
    assert recorded_parity == [] and "Builder.build_serialized_network" not in gpu_standins.names()


def test_build_cli_shows_the_recorded_gate(gpu_standins, workspace: Path, recorded_parity: list,
                                           capsys: pytest.CaptureFixture) -> None:
    assert run(["build", str(workspace), "--fp32", "--no-parity", "a smoke test"]) == 0
    assert "skipped on purpose with --no-parity (a smoke test)" in capsys.readouterr().out
