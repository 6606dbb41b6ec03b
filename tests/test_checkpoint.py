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
