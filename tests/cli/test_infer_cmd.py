"""``fcn-deploy infer``: optional MODEL before DIR, option checks, exit codes 0 / 1 / 3."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from fcn_deploy import segmenter as segmenter_module
from fcn_deploy.cli import run
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.runtime.base import Backend
from fcn_deploy.spec import ModelSpec, ShapeRange

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


class BlueBackend(Backend):
    """Two classes: the normalised blue channel against zero (bright blue is class 1)."""

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([np.zeros_like(batch[:, 2]), batch[:, 2]], axis=1)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A working directory with export/fcn.onnx (opened as a stand-in) and a folder of two images."""
    monkeypatch.chdir(tmp_path)
    spec = ModelSpec(arch="fcn32s", num_classes=2, class_names=("background", "sky"),
                     shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128)))
    opened = []

    def open_backend(path, device="auto", choice=BackendChoice(), threads=0):
        opened.append((str(path), device) if choice == BackendChoice() else (str(path), device, choice.label()))
        return BlueBackend(spec)

    monkeypatch.setattr(segmenter_module, "open_backend", open_backend)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "fcn.onnx").write_bytes(b"stand-in")
    (tmp_path / "imgs").mkdir()
    for name in ("one.png", "two.jpg"):
        Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "imgs" / name)
    return opened


def test_folder_only_uses_the_exported_model(workspace, capsys):
    assert run(["infer", "imgs", "--out", "masks"]) == 0
    out = capsys.readouterr().out
    assert "segmented 2 images (0 skipped" in out and "masks" in out
    assert workspace == [("export/fcn.onnx", "auto")]
    summary = json.loads(open("masks/summary.json").read())
    assert summary["totals"]["segmented"] == 2
    assert run(["infer", "imgs", "--out", "masks"]) == 0
    assert "segmented 0 images (2 skipped" in capsys.readouterr().out


def test_model_then_folder_with_options(workspace, capsys):
    args = ["infer", "export/fcn.onnx", "imgs", "--out", "masks", "--device", "cpu", "--tile", "64x64",
            "--overlap", "0.5", "--blend", "mean", "--batch", "2", "--overlay", "--summary", "report.json"]
    assert run(args) == 0
    summary = json.loads(open("report.json").read())
    assert {r["mode"] for r in summary["images"]} == {"slide"}
    assert summary["config"]["segmenter"]["tile"] == [64, 64]
    assert workspace == [("export/fcn.onnx", "cpu")]
    with Image.open("masks/one.png") as mask:
        assert mask.mode == "P" and np.all(np.asarray(mask) == 1)
    assert open("masks/two.overlay.jpg", "rb").read(2) == b"\xff\xd8"


def test_backend_and_precision_reach_the_runtime(workspace, capsys):
    assert run(["infer", "imgs", "--out", "masks", "--backend", "openvino", "--precision", "bf16"]) == 0
    assert workspace == [("export/fcn.onnx", "auto", "openvino-bf16")]
    assert run(["infer", "imgs", "--out", "m2", "--precision", "bf16"]) == 1
    assert "OpenVINO inference precision" in capsys.readouterr().err


def test_bad_images_exit_3_with_error_lines(workspace, capsys):
    open("imgs/broken.png", "wb").write(b"\x89PNG\r\n\x1a\n broken")
    assert run(["infer", "imgs", "--out", "masks"]) == 3
    err = capsys.readouterr().err
    assert "error: broken.png:" in err and "error: 1 of 3 images failed" in err
    assert sorted(os.listdir("masks")) == ["one.png", "summary.json", "two.png"]


def test_an_image_name_with_a_newline_cannot_forge_an_error_line(workspace, capsys):
    open("imgs/bad\nerror: forged.png", "wb").write(b"\x89PNG\r\n\x1a\n broken")
    assert run(["infer", "imgs", "--out", "masks"]) == 3
    lines = capsys.readouterr().err.splitlines()
    forging = [line for line in lines if "forged" in line]
    assert forging and all(line.startswith("error: bad\\nerror: forged.png: ") for line in forging)
    assert not any(line.startswith("error: forged") for line in lines)


@pytest.mark.parametrize("args,message", [
    (["imgs", "x", "y"], "expected [MODEL] DIR, got 3 paths"),
    (["imgs", "--tile", "abc"], "--tile must look like HEIGHTxWIDTH"),
    (["imgs", "--tile", "50x64"], "not a multiple of the model's alignment 32"),
    (["imgs", "--batch", "3"], "exceeds the model's maximum batch of 2"),
    (["imgs", "--blend", "median"], "unknown blend"),
    (["imgs", "--overlap", "0.95"], "overlap must be between 0 and 0.9"),
    (["imgs", "--device", "tpu"], "unknown device"),
    (["nowhere"], "input folder not found"),
])
def test_usage_errors_exit_1(workspace, capsys, args, message):
    assert run(["infer", *args, "--out", "masks"]) == 1
    assert message in capsys.readouterr().err


def test_missing_model_says_to_export(workspace, capsys):
    os.remove("export/fcn.onnx")
    assert run(["infer", "imgs", "--out", "masks"]) == 1
    err = capsys.readouterr().err
    assert "export/fcn.onnx does not exist" in err and "fcn-deploy export" in err


def test_out_is_required(workspace, capsys):
    assert run(["infer", "imgs"]) == 1
    assert "--out" in capsys.readouterr().err


def test_ctrl_c_says_how_far_it_got_and_keeps_the_summary(own_process, workspace, capsys, monkeypatch):
    if own_process:
        return
    import signal

    real_segment = segmenter_module.Segmenter.segment

    def interrupted(self, image):
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to the main thread
        return real_segment(self, image)

    monkeypatch.setattr(segmenter_module.Segmenter, "segment", interrupted)
    assert run(["infer", "imgs", "--out", "masks"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: 0 of 2 images done; run the same command again to resume" in err
    assert json.loads(open("masks/summary.json").read())["interrupted"] == "SIGINT"


def test_full_disk_summary_exits_3_with_error_and_fix(workspace, capsys, monkeypatch):
    import errno

    from fcn_deploy import infer as infer_module

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(infer_module, "write_text_atomic", no_space)
    assert run(["infer", "imgs", "--out", "masks"]) == 3
    err = capsys.readouterr().err
    assert "error: could not write the summary masks/summary.json (No space left on device)" in err
    assert "  fix: free disk space" in err


@pytest.mark.parametrize("args", [["--batch", "0"], ["--max-pixels", "0"], ["--tile", "0x0"],
                                  ["--out", "imgs/one.png/x"], ["--summary", "imgs"]])
def test_refusals_come_with_a_fix(workspace, capsys, args):
    assert run(["infer", "imgs", "--out", "masks", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\n  fix: " in err
    assert not os.path.exists("masks/one.png")


def test_error_lines_beyond_a_screen_are_counted_with_where_they_all_are(workspace, capsys, monkeypatch):
    from fcn_deploy import progress

    monkeypatch.setattr(progress, "SCREEN_LINES", 1)
    for name in ("bad1.png", "bad2.png", "bad3.png"):
        open(f"imgs/{name}", "wb").write(b"\x89PNG\r\n\x1a\n broken")
    assert run(["infer", "imgs", "--out", "masks"]) == 3
    err = capsys.readouterr().err
    assert err.count("error: bad") == 1
    assert ("... and 2 more failed images (not listed: --verbose lists them; the summary lists every one: "
            "masks/summary.json)") in err
    assert run(["--verbose", "infer", "imgs", "--out", "masks2"]) == 3
    assert capsys.readouterr().err.count("error: bad") == 3


def test_infer_ends_with_where_the_masks_are(workspace, capsys):
    assert run(["infer", "imgs", "--out", "masks"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("masks in masks, summary masks/summary.json")


def test_one_image_file_in_place_of_the_folder(workspace, capsys):
    assert run(["infer", "imgs/one.png", "--out", "masks"]) == 0
    assert "segmented 1 images (0 skipped" in capsys.readouterr().out
    assert sorted(os.listdir("masks")) == ["one.png", "summary.json"]  # only that image, not its folder's others
    assert json.loads(open("masks/summary.json").read())["images"][0]["path"] == "one.png"


def test_one_tiff_file_is_written_as_a_tiled_label_tiff(workspace, capsys):
    tifffile = pytest.importorskip("tifffile", reason="the tiff extra is not installed (pip install 'fcn-deploy[tiff]')")
    pytest.importorskip("zarr", reason="the tiff extra is not installed (pip install 'fcn-deploy[tiff]')")
    tifffile.imwrite("scene.tif", np.full((96, 80, 3), 200, np.uint8), tile=(32, 32), photometric="rgb")
    assert run(["infer", "scene.tif", "--out", "masks/"]) == 0
    with tifffile.TiffFile("masks/scene.tif") as tif:
        assert tif.pages.first.is_tiled and np.all(tif.asarray() == 1)
