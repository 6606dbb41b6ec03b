"""``fcn-deploy bench``: prints the table, writes a JSON report, rejects malformed options."""

from __future__ import annotations

import json

import pytest

from fcn_deploy.cli import run
from fcn_deploy.cli.bench_cmd import parse_batches, parse_sizes
from fcn_deploy.errors import InputError

FAST = ["--sizes", "64x64", "--batch", "1", "--warmup", "0", "--iters", "1", "--rounds", "1", "--gemm-size", "64"]


@pytest.fixture
def checkpoint(tmp_path):
    """A random-weight fcn32s checkpoint with the default 21-class VOC spec."""
    pytest.importorskip("torch")
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    return save_checkpoint(tmp_path / "random.pt", build_model("fcn32s"), Checkpoint(ModelSpec(arch="fcn32s")))


def test_bench_writes_json_and_prints_table(checkpoint, tmp_path, capsys):
    out = tmp_path / "reports" / "bench.json"
    assert run(["bench", str(checkpoint), *FAST, "--no-rss", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pytorch-fp32" in printed and "GEMM reference" in printed
    data = json.loads(out.read_text())
    assert data["artifacts"][0]["shapes"][0]["samples"] == 1
    assert data["artifacts"][0]["peak_rss_mb"] is None


def test_bad_sizes_exit_1_with_the_fix(tmp_path, capsys):
    assert run(["bench", str(tmp_path / "x.pt"), "--sizes", "320by480"]) == 1
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_parsers():
    assert parse_sizes("320x480, 512X512") == ((320, 480), (512, 512))
    assert parse_batches("1,4") == (1, 4)
    with pytest.raises(InputError):
        parse_batches("1,-4")


def test_json_naming_a_folder_exits_1_before_any_work(checkpoint, tmp_path, capsys, monkeypatch):
    from fcn_deploy import bench

    monkeypatch.setattr(bench, "run_bench", lambda *args: pytest.fail("benchmarked before checking --json"))
    (tmp_path / "folder").mkdir()
    assert run(["bench", str(checkpoint), *FAST, "--no-rss", "--json", str(tmp_path / "folder")]) == 1
    err = capsys.readouterr().err
    assert "error: --json" in err and "is a folder, not a file" in err


def test_peers_json_naming_a_folder_exits_1_before_any_work(checkpoint, tmp_path, capsys, monkeypatch):
    from fcn_deploy.bench import peers

    monkeypatch.setattr(peers, "run_peers", lambda *args: pytest.fail("measured the peers before checking --json"))
    (tmp_path / "folder").mkdir()
    assert run(["bench", str(checkpoint), "--peers", "--json", str(tmp_path / "folder")]) == 1
    assert "is a folder, not a file" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--device", "cuda"], ["--backend", "openvino"], ["--precision", "bf16"]])
def test_peers_refuse_the_options_that_pick_one_runtime(checkpoint, capsys, monkeypatch, option):
    from fcn_deploy.bench import peers

    monkeypatch.setattr(peers, "run_peers", lambda *args: pytest.fail("ran the peers with an option they ignore"))
    assert run(["bench", str(checkpoint), "--peers", *option]) == 1
    err = capsys.readouterr().err
    assert f"{option[0]} {option[1]} does not apply" in err and "fix:" in err


def test_peers_take_the_gemm_size(checkpoint, monkeypatch):
    from fcn_deploy.bench import peers

    seen = []

    def record(config):
        seen.append(config.matmul_size)
        raise KeyboardInterrupt  # stop before measuring anything

    monkeypatch.setattr(peers, "run_peers", record)
    run(["bench", str(checkpoint), "--peers", "--gemm-size", "256"])
    assert seen == [256]
