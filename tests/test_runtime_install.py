"""The runtime install: infer, parity of two ONNX files, bench, capi build and a Ray job run without PyTorch.

Every command runs in a fresh process whose every Python (the CLI, and the Ray head and workers it starts) gets a
``sitecustomize`` that refuses torch, torchvision and onnxscript as if they were not installed and logs who asked.
A command that needs PyTorch exits 2 naming the ``torch`` extra.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from no_torch import COMMAND_TIMEOUT
from PIL import Image

pytestmark = pytest.mark.runtime


def test_the_blocker_blocks_and_logs(no_torch):
    done = subprocess.run([sys.executable, "-c", "import fcn_deploy.deps as d; d.require('torch')"],
                          env=no_torch.env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert done.returncode != 0 and "blocked by the runtime-install test" in done.stderr
    assert no_torch.ours() == [("torch", "fcn_deploy.deps")]
    done = subprocess.run([sys.executable, "-c", "import fcn_deploy.deps as d; assert not d.installed('torch')"],
                          env=no_torch.env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert no_torch.attempts()[-1] == ("torch", "fcn_deploy.deps", "probe")


def write_images(folder: Path, count: int, size: tuple[int, int] = (70, 90)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        rgb = np.random.default_rng(index).integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / f"{index:03d}.png")
    return folder


def test_help_and_infer_run_without_torch(no_torch, tiny_fcn, tmp_path):
    assert no_torch.cli("--help").returncode == 0
    images = write_images(tmp_path / "in", 3)
    done = no_torch.cli("infer", str(tiny_fcn), str(images), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["000.png", "001.png", "002.png"]
    assert no_torch.attempts() == []


def test_parity_of_two_onnx_files_runs_without_torch(no_torch, make_tiny_fcn, tiny_voc, tmp_path):
    model = make_tiny_fcn(tmp_path / "a" / "model.onnx", seed=0)
    reference = make_tiny_fcn(tmp_path / "b" / "reference.onnx", seed=0)
    data = tiny_voc(tmp_path / "VOC2012")
    done = no_torch.cli("parity", str(model), "--reference", str(reference), "--data", str(data), "--device", "cpu",
                        "--out-dir", str(tmp_path / "parity"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "parity" / "parity.json").read_text())
    assert report["argmax_agreement"] == 1.0
    assert no_torch.attempts() == []


def test_bench_of_an_onnx_file_runs_without_torch(no_torch, tiny_fcn, tmp_path):
    done = no_torch.cli("bench", str(tiny_fcn), "--sizes", "64x96", "--batch", "1", "--iters", "2", "--warmup", "1",
                        "--rounds", "1", "--gemm-size", "64", "--device", "cpu", "--json", str(tmp_path / "bench.json"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [a["backend"] for a in report["artifacts"]] == ["onnxruntime"]
    assert "PyTorch is not installed" in report["baseline_note"]
    assert no_torch.ours() == []  # only look-ups: is the torch extra there for the FLOPs and the baseline?


def test_capi_build_runs_without_torch(no_torch, capi_toolchain, tmp_path):
    done = no_torch.cli("capi", "build", "--out", str(tmp_path / "capi"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "capi" / "lib" / "libfcn_deploy.so").is_file()
    assert no_torch.attempts() == []


@pytest.mark.slow
def test_a_ray_job_whose_workers_have_no_torch(no_torch, tiny_fcn, tmp_path_factory, tmp_path):
    """``infer --ray local``: the Ray head and its workers start with the blocker too (they inherit PYTHONPATH)."""
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'fcn-deploy[ray]')")
    from fcn_deploy.cluster import loopback_environment

    images = write_images(tmp_path / "in", 4)
    temp_root = tmp_path_factory.getbasetemp()  # the shortest: Ray's socket paths live inside its temp folder
    done = no_torch.cli("infer", str(tiny_fcn), str(images), "--out", str(tmp_path / "out"), "--device", "cpu",
                        "--ray", "local", "--workers", "1", **loopback_environment(), TMPDIR=str(temp_root))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [row["status"] for row in summary["images"]] == ["ok"] * 4
    assert "default_worker.py" in no_torch.processes()  # Ray's worker processes ran with the blocker
    assert no_torch.ours() == []


@pytest.mark.parametrize("command", [
    ("export", "{checkpoint}", "--out", "{folder}/model.onnx"),
    ("train", "--data", "{folder}", "--epochs", "1"),
    ("infer", "{checkpoint}", "{folder}", "--out", "{folder}/masks"),
    ("import", "d2l", "{checkpoint}", "--out", "{folder}/d2l.pt"),
])
def test_a_command_that_needs_torch_exits_2_naming_the_extra(no_torch, tmp_path, command):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read")
    write_images(tmp_path / "images", 1)
    args = [part.format(checkpoint=checkpoint, folder=tmp_path) for part in command]
    done = no_torch.cli(*args)
    assert done.returncode == 2, done.stderr
    assert "pip install 'fcn-deploy[torch]'" in done.stderr
