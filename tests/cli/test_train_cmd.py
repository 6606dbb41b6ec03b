"""``fcn-deploy train`` through ``run``: a tiny run succeeds; every bad input is one clear error, exit 1, no files."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from fcn_deploy.cli import run
from fcn_deploy.data.synth import encode_mask_png


def _train_args(data, out, *extra):
    return ["train", "--data", str(data), "--out-dir", str(out), "--epochs", "1", "--batch-size", "4",
            "--crop", "32x32", "--num-workers", "0", "--lr", "0.01", *extra]


def _single_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return err


def test_tiny_run_writes_checkpoints(tiny_train_voc, tmp_path, capsys):
    out = tmp_path / "ck"
    assert run(_train_args(tiny_train_voc, out)) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["fcn32s-best.pt", "fcn32s-last.pt"]
    assert str(out / "fcn32s-best.pt") in captured.out
    assert "train: read 6 examples" in captured.err and "epoch 1/1: train loss" in captured.err


def _break_missing_folder(data):
    return ["--data", str(data.parent / "absent")], "dataset folder not found"


def _break_layout(data):
    (data / "ImageSets/Segmentation/train.txt").unlink()
    (data / "ImageSets/Segmentation/val.txt").unlink()
    (data / "ImageSets/Segmentation/trainval.txt").unlink()
    (data / "ImageSets/Segmentation").rmdir()
    return [], "missing ImageSets/Segmentation/"


def _break_image(data):
    (data / "JPEGImages/synth_00003.jpg").unlink()
    return [], "lists 'synth_00003' but .*synth_00003.jpg does not exist"


def _break_mask(data):
    (data / "SegmentationClass/synth_00007.png").unlink()
    return [], "lists 'synth_00007' but .*synth_00007.png does not exist"


def _break_mask_values(data):
    mask = np.full((64, 64), 30, np.uint8)
    (data / "SegmentationClass/synth_00001.png").write_bytes(encode_mask_png(mask))
    return [], r"synth_00001.png holds values \[30\]"


def _crop_too_large(data):
    return ["--crop", "96x96"], "crop 96x96 is larger than every image"


def _unknown_arch(data):
    return ["--arch", "unet"], "unknown arch 'unet'"


def _unaligned_crop(data):
    return ["--crop", "40x40"], "--crop 40x40 is not a multiple of 32"


def _missing_weights(data):
    return ["--backbone-weights", str(data / "resnet18.pth")], "backbone weights file not found"


def _bad_resume(data):
    return ["--resume", str(data / "JPEGImages/synth_00000.jpg")], "is not an fcn-deploy checkpoint"


@pytest.mark.parametrize(
    "breaker",
    [_break_missing_folder, _break_layout, _break_image, _break_mask, _break_mask_values, _crop_too_large,
     _unknown_arch, _unaligned_crop, _missing_weights, _bad_resume],
)
def test_bad_input_exits_1_without_files(tiny_train_voc, tmp_path, capsys, breaker):
    extra, message = breaker(tiny_train_voc)
    assert run([*_train_args(tiny_train_voc, tmp_path / "ck"), *extra]) == 1  # a repeated --data: the last wins
    err = _single_error(capsys)
    assert re.search(message, err), err
    assert not (tmp_path / "ck").exists()


def test_verbose_shows_the_traceback(tiny_train_voc, tmp_path, capsys):
    assert run(["--verbose", *_train_args(tiny_train_voc, tmp_path / "ck", "--arch", "unet")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_missing_cuda_exits_2(tiny_train_voc, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert run(_train_args(tiny_train_voc, tmp_path / "ck", "--device", "cuda")) == 2
    assert "no CUDA device" in _single_error(capsys)
    assert not (tmp_path / "ck").exists()


def test_unreadable_image_in_train_split(tiny_train_voc, tmp_path, capsys):
    """A corrupt JPEG is caught while scanning (headers are read), before any checkpoint exists."""
    (tiny_train_voc / "JPEGImages/synth_00002.jpg").write_bytes(b"garbage")
    assert run(_train_args(tiny_train_voc, tmp_path / "ck")) == 1
    assert "synth_00002.jpg" in _single_error(capsys)
    assert not (tmp_path / "ck").exists()
