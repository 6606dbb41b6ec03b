"""``run_bench`` on a tiny random-weight checkpoint (and its ONNX export) at 64×64: it runs and reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fcn_deploy.bench import BenchConfig, BenchReport, find_source_checkpoint, run_bench
from fcn_deploy.errors import InputError

TINY = BenchConfig(sizes=((64, 64),), batches=(1,), warmup=1, iters=2, rounds=2, gemm_size=64, measure_rss=False)


def tiny_checkpoint(path: Path) -> Path:
    """A random-weight two-class fcn32s checkpoint."""
    torch = pytest.importorskip("torch")
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec(arch="fcn32s", num_classes=2, class_names=("background", "thing"))
    return save_checkpoint(path, build_model("fcn32s", 2), Checkpoint(spec=spec))


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny checkpoint and its ONNX export (made once for the module)."""
    from fcn_deploy.export import ExportConfig, export_onnx

    folder = tmp_path_factory.mktemp("bench")
    checkpoint = tiny_checkpoint(folder / "tiny.pt")
    result = export_onnx(checkpoint, folder / "tiny.onnx", ExportConfig(verify=False, progress=False))
    return checkpoint, result.onnx_path


def _check_report(report: BenchReport, out: Path) -> dict:
    """The JSON written by ``write_json`` is valid and holds one timed 1×64×64 entry per artifact."""
    report.write_json(out)
    data = json.loads(out.read_text())
    assert data["gemm"]["gflops_median"] > 0
    assert data["config"]["sizes"] == [[64, 64]]
    for artifact in data["artifacts"]:
        (shape,) = artifact["shapes"]
        assert (shape["batch"], shape["height"], shape["width"]) == (1, 64, 64)
        assert shape["samples"] == 2
        assert 0 < shape["median_ms"] <= shape["p90_ms"] <= shape["p99_ms"]
        assert shape["gflop"] > 0 and shape["gemm_fraction"] > 0
    return data


@pytest.mark.parametrize(
    "changes, option",
    [({"sizes": ()}, "sizes"), ({"batches": (0,)}, "batch"), ({"iters": 0}, "iters"), ({"warmup": -1}, "warmup"),
     ({"iters": 3, "rounds": 5}, "less than --rounds")],
)
def test_config_rejects_bad_values(changes, option):
    with pytest.raises(InputError, match=option):
        BenchConfig(**changes)


def test_checkpoint_alone_is_its_own_baseline(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    report = run_bench([checkpoint], TINY)
    data = _check_report(report, tmp_path / "bench.json")
    (artifact,) = data["artifacts"]
    assert artifact["label"] == "pytorch-fp32" and artifact["role"] == "model"
    assert artifact["shapes"][0]["speedup_vs_eager"] == pytest.approx(1.0)
    assert artifact["peak_rss_mb"] is None and artifact["load_s"] > 0
    assert BenchReport.from_dict(data) == report  # a saved report re-renders exactly


def test_iterations_are_spread_over_the_rounds():
    config = BenchConfig(iters=7, rounds=3)
    assert [config.iters_in_round(r) for r in range(3)] == [3, 2, 2]


def test_missing_model_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        run_bench([tmp_path / "absent.onnx"], TINY)


def test_unknown_source_checkpoint_is_not_found(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    from fcn_deploy.checkpoint import read_checkpoint

    spec = read_checkpoint(checkpoint)[0].spec.replace(source_checkpoint_sha256="0" * 64)
    assert find_source_checkpoint(spec, tmp_path / "model.onnx", [tmp_path]) is None


@pytest.mark.slow
def test_onnx_is_compared_with_its_source_checkpoint(tiny_pair, tmp_path):
    checkpoint, onnx_path = tiny_pair
    report = run_bench([onnx_path], BenchConfig(**{**TINY.__dict__, "measure_rss": True}))
    data = _check_report(report, tmp_path / "bench.json")
    assert Path(data["baseline"]) == checkpoint
    for artifact in data["artifacts"]:  # each measured in its own process
        assert artifact["peak_rss_mb"] >= artifact["rss_before_load_mb"] > 0
    roles = {a["label"]: a["role"] for a in data["artifacts"]}
    assert roles == {"pytorch-fp32": "baseline", "onnxruntime-fp32": "model"}
    onnx_entry = next(a for a in data["artifacts"] if a["label"] == "onnxruntime-fp32")
    assert onnx_entry["shapes"][0]["speedup_vs_eager"] > 0


@pytest.mark.slow
def test_onnx_without_its_checkpoint_says_the_ratio_is_unavailable(tiny_pair, tmp_path):
    _, onnx_path = tiny_pair
    alone = tmp_path / "alone"
    alone.mkdir()
    copy = Path(shutil.copy(onnx_path, alone / "tiny.onnx"))
    sidecar = json.loads(Path(str(onnx_path) + ".json").read_text())
    sidecar["source_checkpoint"] = "elsewhere/tiny.pt"
    Path(str(copy) + ".json").write_text(json.dumps(sidecar))
    report = run_bench([copy], BenchConfig(**{**TINY.__dict__, "checkpoint_search": ()}))
    assert report.baseline is None and "unavailable" in report.baseline_note
    assert report.artifacts[0].shapes[0].speedup_vs_eager is None


@pytest.mark.slow
def test_onnx_files_run_on_the_backend_asked_for(tiny_pair, tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'fcn-deploy[openvino]')")
    monkeypatch.chdir(tmp_path)  # OpenVINO's compiled-model cache goes under the working folder
    checkpoint, onnx_path = tiny_pair
    report = run_bench([checkpoint, onnx_path], BenchConfig(**{**TINY.__dict__, "measure_rss": True,
                                                              "onnx_backend": "openvino"}))
    data = _check_report(report, tmp_path / "bench.json")
    entries = {a["label"]: a for a in data["artifacts"]}
    assert set(entries) == {"pytorch-fp32", "openvino-fp32"}  # the checkpoint keeps PyTorch
    assert entries["openvino-fp32"]["backend"] == "openvino" and entries["openvino-fp32"]["peak_rss_mb"] > 0
    assert BenchReport.from_dict(data).config.onnx_backend == "openvino"


def test_bench_refuses_a_backend_or_precision_it_cannot_honour():
    with pytest.raises(InputError, match="cannot run ONNX files"):
        BenchConfig(onnx_backend="tensorrt")
    with pytest.raises(InputError, match="OpenVINO inference precision"):
        BenchConfig(precision="bf16")
    assert BenchConfig(onnx_backend="openvino", precision="bf16").onnx_choice().label() == "openvino-bf16"
