"""Reading checkpoints: our errors with a fix for foreign, malicious, truncated and empty files, no torch warnings."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from fcn_deploy.checkpoint import read_checkpoint
from fcn_deploy.errors import ArtifactError

torch = pytest.importorskip("torch")


class _RunsCode:
    """Unpickling this would run a shell command: a safe load must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo unpickled",))


def test_a_pickle_with_code_is_refused_without_unsafe_advice(tmp_path: Path, recwarn) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(_RunsCode(), protocol=4))
    with pytest.raises(ArtifactError, match="is not an fcn-deploy checkpoint") as info:
        read_checkpoint(path)
    text = str(info.value)
    assert "weights_only" not in text and "save_checkpoint" in info.value.hint
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("cut", [0, 0.5])
def test_empty_or_truncated_checkpoints_have_a_fix(tmp_path: Path, cut: float) -> None:
    whole = tmp_path / "whole.pt"
    torch.save({"format": "x", "w": torch.zeros(1000)}, whole)
    data = whole.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ArtifactError, match="the file is (empty|truncated, corrupt)") as info:
        read_checkpoint(path)
    assert info.value.hint and "miniz" not in str(info.value)


def test_a_foreign_state_dict_says_how_to_make_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"a": torch.zeros(2)}, path)
    with pytest.raises(ArtifactError, match="not an fcn-deploy checkpoint") as info:
        read_checkpoint(path)
    assert "save_checkpoint" in info.value.hint


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load_and_export(tmp_path: Path, bad: float) -> None:
    from fcn_deploy.checkpoint import Checkpoint, load_model, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    model = build_model("fcn32s", 21)
    with torch.no_grad():
        model.final_conv.weight[2, 7] = bad
    path = save_checkpoint(tmp_path / "diverged.pt", model, Checkpoint(spec=ModelSpec(arch="fcn32s")))
    with pytest.raises(ArtifactError, match=r"diverged.pt holds non-finite weights .* in 1 tensor\(s\)") as info:
        load_model(path)
    assert "lower --lr" in info.value.hint
    with pytest.raises(ArtifactError, match="non-finite weights"):
        export_onnx(path, tmp_path / "fcn.onnx", ExportConfig(progress=False))
    assert not (tmp_path / "fcn.onnx").exists()
