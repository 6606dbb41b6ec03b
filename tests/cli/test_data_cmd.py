"""``fcn-deploy data synth`` and ``data check`` through ``run``."""

from __future__ import annotations

import pytest

from fcn_deploy.cli import run

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def test_synth_then_check(tmp_path, capsys):
    out = tmp_path / "VOC2012"
    assert run(["data", "synth", "--out", str(out), "--num", "6", "--size", "64x96", "--seed", "2"]) == 0
    captured = capsys.readouterr()
    assert f"{out} (4 train, 2 val)" in captured.out
    assert len(list((out / "JPEGImages").glob("*.jpg"))) == 6
    assert run(["data", "check", str(out), "--crop", "64x64"]) == 0
    assert capsys.readouterr().out.splitlines() == ["train: read 4 examples", "val: read 2 examples"]


def test_synth_bad_size(tmp_path, capsys):
    assert run(["data", "synth", "--out", str(tmp_path / "d"), "--size", "64by96"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --size must look like HEIGHTxWIDTH") and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_synth_refuses_non_empty_out(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert run(["data", "synth", "--out", str(tmp_path), "--num", "2"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_check_missing_folder(tmp_path, capsys):
    assert run(["data", "check", str(tmp_path / "nothing")]) == 1
    assert "dataset folder not found" in capsys.readouterr().err
