"""``bench --peers``: peers timed side by side, rows that say why a peer cannot run, the machine's limit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.bench import peers
from fcn_deploy.bench.peers import (
    MatmulProbes,
    PeerConfig,
    peer_models,
    peer_rows,
    run_peers,
    theoretical_peak,
)
from fcn_deploy.errors import InputError

SMALL = (64, 96)


@pytest.fixture(scope="module")
def small_models(tmp_path_factory) -> tuple[Path, Path]:
    """A random-weight fcn32s checkpoint with a small shape range and its FP32 ONNX."""
    torch = pytest.importorskip("torch")
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec, ShapeRange

    folder = tmp_path_factory.mktemp("peers")
    torch.manual_seed(2)
    spec = ModelSpec(arch="fcn32s", shape_range=ShapeRange((1, 32, 32), (1, 64, 96), (2, 256, 256)))
    checkpoint = save_checkpoint(folder / "fcn32s.pt", build_model("fcn32s"), Checkpoint(spec=spec))
    return checkpoint, export_onnx(checkpoint, folder / "fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path


def _fake_cpu(monkeypatch, vendor: str, family: str, flags: str, mhz: str = "2000.0") -> None:
    monkeypatch.setattr(peers, "_cpuinfo_fields", lambda: {"vendor_id": vendor, "cpu family": family, "flags": flags,
                                                           "cpu MHz": mhz})
    monkeypatch.setattr(peers.os, "cpu_count", lambda: 4)


@pytest.mark.parametrize(("vendor", "family", "flags", "fp32_per_cycle", "extra"), [
    ("GenuineIntel", "6", "avx2 fma avx512f avx512_bf16 avx512_vnni", 64, {"bf16", "int8"}),
    ("AuthenticAMD", "25", "avx2 fma avx512f avx512_bf16", 32, {"bf16"}),  # Zen 4: AVX-512 on a 256-bit datapath
    ("AuthenticAMD", "26", "avx2 fma avx512f avx512_vnni", 64, {"int8"}),  # Zen 5: full 512-bit
    ("GenuineIntel", "6", "avx2 fma", 32, set()),
])
def test_theoretical_peak_from_cores_clock_and_vector_units(monkeypatch, vendor, family, flags, fp32_per_cycle, extra):
    _fake_cpu(monkeypatch, vendor, family, flags)
    peaks, how = theoretical_peak()
    assert peaks["fp32"] == pytest.approx(4 * 2.0 * fp32_per_cycle)
    assert set(peaks) == {"fp32"} | extra
    if "bf16" in peaks:
        assert peaks["bf16"] == 2 * peaks["fp32"]
    assert f"{fp32_per_cycle} FP32 FLOP/cycle" in how and "4 logical CPUs × 2.00 GHz" in how


def test_matmul_probes_measure_or_say_why():
    probes = MatmulProbes(64)
    probes.sample(1)
    rates = {(m.library, m.precision): m for m in probes.rates()}
    assert rates[("numpy", "fp32")].gflops > 0 and rates[("numpy", "fp32")].samples == 1
    assert {p for _, p in rates} == {"fp32", "bf16", "int8"}
    assert all(m.gflops or m.note for m in rates.values())  # measured, or the reason it was not
    assert rates[("numpy", "bf16")].gflops is None and "bfloat16" in rates[("numpy", "bf16")].note


@pytest.mark.slow
def test_peers_run_side_by_side_and_a_missing_one_is_a_row_saying_why(small_models, tmp_path, monkeypatch):
    checkpoint, onnx = small_models
    monkeypatch.chdir(tmp_path)  # OpenVINO's compiled-model cache goes under the working folder
    config = PeerConfig(checkpoint=checkpoint, onnx=onnx, size=SMALL, warmup=0, iters=2, rounds=2, measure_rss=False,
                        matmul_size=128, peers=("pytorch-eager-nchw", "pytorch-eager-channels-last",
                                                "onnxruntime-fp32", "openvino-fp32", "onnxruntime-int8"))
    report = run_peers(config)
    rows = {row.name: row for row in report.rows}
    assert list(rows) == list(config.peers)
    assert "no INT8 ONNX given" in rows["onnxruntime-int8"].unavailable
    reference = rows["pytorch-eager-nchw"]
    assert reference.agreement == 1.0 and reference.speedup_vs_eager == pytest.approx(1.0)
    for name in ("pytorch-eager-channels-last", "onnxruntime-fp32"):
        row = rows[name]
        assert row.samples == 2 and row.median_ms > 0 and row.p99_ms >= row.median_ms
        assert row.agreement >= 0.99 and row.load_s > 0 and 0 < row.matmul_fraction
        assert row.images_per_s == pytest.approx(1000 / row.median_ms)
    if importlib.util.find_spec("openvino") is None:  # only a missing package may leave the peer out
        assert "pip install 'fcn-deploy[openvino]'" in rows["openvino-fp32"].unavailable
    else:  # installed: a peer that fails to run fails the test instead of becoming a 'cannot run here' row
        assert rows["openvino-fp32"].unavailable is None
        assert rows["openvino-fp32"].samples == 2 and rows["openvino-fp32"].agreement >= 0.99
    assert report.best_matmul("fp32").gflops > 0
    table = peer_rows(report)
    assert any("cannot run here: no INT8 ONNX given" in cell for row in table for cell in row)
    json.dumps(report.to_dict())


@pytest.mark.slow
def test_peak_rss_comes_from_a_fresh_process(small_models):
    checkpoint, onnx = small_models
    config = PeerConfig(checkpoint=checkpoint, onnx=onnx, size=SMALL, iters=1, rounds=1)
    assert peers.rss_probe("onnxruntime-fp32", config) > 50


@pytest.mark.slow
def test_models_for_the_peers(small_models, tmp_path):
    checkpoint, onnx = small_models
    assert peer_models([checkpoint, onnx], tmp_path)[:3] == (checkpoint, onnx, None)
    found, exported, _, note = peer_models([checkpoint], tmp_path)
    assert found == checkpoint and exported.is_file() and "exported" in note
    with pytest.raises(InputError, match="need the PyTorch checkpoint"):
        peer_models([_copy_without_sidecar(onnx, tmp_path)], tmp_path)  # its checkpoint is nowhere to be found


def _copy_without_sidecar(onnx: Path, folder: Path) -> Path:
    target = folder / "alone" / "fcn.onnx"
    target.parent.mkdir()
    target.write_bytes(onnx.read_bytes())
    return target


def test_bad_peer_options_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown peers"):
        PeerConfig(checkpoint=tmp_path / "a.pt", onnx=tmp_path / "a.onnx", peers=("tensorflow",))
    with pytest.raises(InputError, match="32-pixel grid"):
        PeerConfig(checkpoint=tmp_path / "a.pt", onnx=tmp_path / "a.onnx", size=(100, 96))


@pytest.mark.slow
def test_bench_peers_runs_on_a_clean_checkout(tmp_path, monkeypatch, capsys):
    from fcn_deploy.cli import run

    monkeypatch.chdir(tmp_path)
    code = run(["bench", "--peers", "--sizes", "64x96", "--iters", "1", "--rounds", "1", "--warmup", "0",
                "--no-rss", "--json", "peers.json"])
    out = capsys.readouterr().out
    assert code == 0
    assert "random-weight fcn32s" in out and "theoretical peak" in out
    report = json.loads(Path("peers.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == list(peers.PEERS)
    assert all(row["median_ms"] or row["unavailable"] for row in report["rows"])
    assert np.isfinite(report["gflop_per_batch"])


def test_a_peer_with_nan_logits_agrees_with_nothing():
    rgb = np.zeros((1, 32, 32, 3), np.uint8)

    def constant(value: float):
        def run(_feed):
            logits = np.zeros((1, 21, 32, 32), np.float32)
            logits[:, 0] = value
            return logits
        return run

    opened = [peers._Peer(name, lambda batch: batch, constant(value), 0.0, rgb)
              for name, value in ((peers.REFERENCE_PEER, 1.0), ("onnxruntime-fp32", np.nan))]
    assert peers._agreements(opened, [rgb]) == {peers.REFERENCE_PEER: 1.0, "onnxruntime-fp32": 0.0}


def test_onnx_files_are_paired_with_the_checkpoint_they_were_exported_from(tmp_path, tiny_onnx, capsys):
    """After training twice, the first ONNX in export/ may come from the old weights: never compared with the new."""
    torch = pytest.importorskip("torch")
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.fileio import sha256_file
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec, ShapeRange

    spec = ModelSpec(arch="fcn32s", shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128)))
    checkpoints = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        checkpoints.append(save_checkpoint(tmp_path / f"run{seed}.pt", build_model("fcn32s"), Checkpoint(spec=spec)))
    new, old = checkpoints[1], checkpoints[0]

    def onnx_of(name: str, checkpoint, precision: str = "fp32"):
        source = sha256_file(checkpoint) if checkpoint else None
        return tiny_onnx(tmp_path / name, spec.replace(precision=precision, source_checkpoint_sha256=source))

    stale, fresh, int8 = onnx_of("a-old.onnx", old), onnx_of("b-new.onnx", new), onnx_of("new.int8.onnx", new, "int8")
    workspace = [new, stale, fresh, int8]  # the newest checkpoint and export/*.onnx, sorted: the stale one first
    checkpoint, onnx, int8_onnx, note = peer_models(workspace, tmp_path, given=False)
    assert (checkpoint, onnx, int8_onnx) == (new, fresh, int8)
    assert f"{stale} left out: it was made from another checkpoint" in note
    with pytest.raises(InputError, match="a-old.onnx was made from another checkpoint .* different weights") as info:
        peer_models([new, stale, int8], tmp_path)
    assert f"fcn-deploy export {new} --out {stale}" in info.value.hint
    with pytest.raises(InputError, match="records no source checkpoint"):
        peer_models([new, fresh, onnx_of("imported.onnx", None)], tmp_path)
    assert peer_models([stale], tmp_path)[0] == old  # an ONNX alone finds its own checkpoint beside it
    from fcn_deploy.cli import run

    capsys.readouterr()
    short = ["--no-rss", "--sizes", "64x64", "--iters", "1", "--rounds", "1", "--warmup", "0", "--gemm-size", "64"]
    assert run(["bench", "--peers", str(new), str(stale), *short]) == 1  # refused before anything is timed
    assert "a-old.onnx was made from another checkpoint" in capsys.readouterr().err


def test_the_agreement_column_points_at_the_visual_parity_report(tmp_path):
    from fcn_deploy.bench.peers import agreement_pictures_line

    int8, checkpoint = tmp_path / "my model.int8.onnx", tmp_path / "fcn.pt"
    int8.write_bytes(b"x")
    checkpoint.write_bytes(b"x")
    line = agreement_pictures_line({"int8_onnx": str(int8), "checkpoint": str(checkpoint)})
    assert f"fcn-deploy parity '{int8}' --reference {checkpoint} --data VOC_DIR --html parity/int8.html" in line
    gone = agreement_pictures_line({"int8_onnx": str(tmp_path / "scratch.onnx"), "checkpoint": None})
    assert "fcn-deploy parity INT8.onnx --reference CHECKPOINT.pt --data VOC_DIR --html" in gone


def test_the_ir_peers_run_the_irs_of_the_same_checkpoint_or_say_how_to_build_them(small_models, nncf, make_tiny_fcn,
                                                                                  tmp_path):
    from fcn_deploy.build_openvino import OpenVinoBuildConfig, build_openvino

    checkpoint, onnx = small_models
    ir = build_openvino(onnx, OpenVinoBuildConfig(
        precision="int8", max_drop=99, calib_num=2, calib_crop=(64, 96), accuracy_control=False,
        engines_dir=tmp_path / "engines", calibration_dir=tmp_path / "calibration")).ir
    assert peers.peer_irs([checkpoint, onnx, ir], onnx) == (None, ir, "")
    other = make_tiny_fcn(tmp_path / "other" / "fcn.onnx")  # records no source checkpoint
    with pytest.raises(InputError, match="was not made from the checkpoint of"):
        peers.peer_irs([ir], other)
    assert peers.peer_irs([ir], other, given=False)[2].endswith("left out: made from another checkpoint")
    rgb = np.zeros((1, *SMALL, 3), np.uint8)
    config = PeerConfig(checkpoint=checkpoint, onnx=onnx, int8_ir=ir, size=SMALL)
    peer = peers.open_peer("openvino-ir-int8", config, rgb)
    assert peer.run(peer.feed).shape == (1, 21, *SMALL)
    peer.close()
    with pytest.raises(InputError, match="no BF16 OpenVINO IR given") as info:
        peers.open_peer("openvino-ir-bf16", config, rgb)
    assert "build --target openvino --precision bf16" in info.value.hint
