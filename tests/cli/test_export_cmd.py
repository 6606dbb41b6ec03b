"""``fcn-deploy export``: defaults from the workspace folders, the written files, refused options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fcn_deploy.cli import run


@pytest.mark.slow
def test_export_with_defaults_writes_export_fcn_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec, ShapeRange

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    spec = ModelSpec(arch="fcn32s", shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128)))
    save_checkpoint(Path("checkpoints") / "fcn32s-best.pt", build_model("fcn32s"), Checkpoint(spec))
    assert run(["export"]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in Path("export").iterdir()) == ["fcn.onnx", "fcn.onnx.json"]
    assert "wrote export/fcn.onnx" in captured.out and "argmax agreement" in captured.out
    assert "exporting checkpoints/fcn32s-best.pt" in captured.err and "comparing" in captured.err
    document = json.loads(Path("export/fcn.onnx.json").read_text())
    assert document["spec"]["arch"] == "fcn32s" and document["source_checkpoint"].endswith("fcn32s-best.pt")


def test_export_without_checkpoint_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["export"]) == 1
    err = capsys.readouterr().err
    assert "error: no checkpoint found in checkpoints/" in err and "fix:" in err
    assert not Path("export").exists()


def test_bad_labels_dtype_exits_1(tmp_path: Path, capsys) -> None:
    assert run(["export", str(tmp_path / "x.pt"), "--with-argmax", "--labels-dtype", "int32"]) == 1
    assert "--labels-dtype 'int32' is not supported" in capsys.readouterr().err


def test_out_naming_a_folder_exits_1_before_any_work(tmp_path: Path, capsys) -> None:
    (tmp_path / "folder").mkdir()
    assert run(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "folder")]) == 1
    err = capsys.readouterr().err
    assert "error: --out" in err and "is a folder, not a file" in err and "  fix: " in err
