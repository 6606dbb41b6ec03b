"""``triton export``: bad output locations end as error:/fix:, a missing component creates nothing, a killed
export's temporary folder is removed by the next one, and an interrupted export leaves nothing behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from fcn_deploy.cli import run
from fcn_deploy.errors import Interrupted
from fcn_deploy.serving import repository
from fcn_deploy.serving.repository import RepositoryConfig, export_repository


@pytest.fixture
def model(tmp_path: Path, tiny_onnx) -> Path:
    return tiny_onnx(tmp_path / "fcn.onnx")


def _repo_with(tmp_path: Path, entry: str) -> Path:
    """A repository whose 'fcn' entry is a file, a link to a folder or a dangling link."""
    repo = tmp_path / "repo"
    repo.mkdir()
    if entry == "file":
        (repo / "fcn").write_text("not a model folder")
    elif entry == "link":
        (tmp_path / "elsewhere").mkdir()
        (repo / "fcn").symlink_to(tmp_path / "elsewhere")
    else:
        (repo / "fcn").symlink_to(tmp_path / "missing")
    return repo


@pytest.mark.parametrize(("where", "words"), [
    ("afile/sub", "afile is a file, not a folder"),
    ("dangling", "exists and is not a folder"),
    ("file", "is a file, not a model folder"),
    ("link", "is a link, not a model folder"),
    ("dangling-link", "is a link, not a model folder"),
])
def test_bad_output_locations_are_refused_with_the_fix(model: Path, tmp_path: Path, capsys, where, words) -> None:
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    out = _repo_with(tmp_path, where) if where in ("file", "link", "dangling-link") else tmp_path / where
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert run(["triton", "export", str(model), "--out", str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert words in err and "fix:" in err and "Traceback" not in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.usefixtures("tritonclient_missing")
def test_without_the_config_schema_it_exits_2_and_creates_nothing(model: Path, tmp_path: Path, capsys) -> None:
    assert run(["triton", "export", str(model), "--out", str(tmp_path / "repo")]) == 2
    assert "tritonclient" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


@pytest.mark.usefixtures("config_schema")
def test_a_killed_exports_temporary_folder_is_removed_by_the_next(model: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    stale = repo / ".fcn.k3j_x9q2.part"
    (stale / "fcn" / "1").mkdir(parents=True)
    (stale / "fcn" / "1" / "model.onnx").write_bytes(b"truncated by a kill")
    (repo / ".notes.part").write_text("not ours")
    export_repository(model, repo)
    assert sorted(p.name for p in repo.iterdir()) == [".notes.part", "fcn", "fcn_segment"]


@pytest.mark.usefixtures("config_schema")
def test_sigterm_during_an_export_leaves_nothing_behind(own_process, model: Path, tmp_path: Path,
                                                        monkeypatch) -> None:
    if own_process:  # it signals its own process
        return
    real_copy = repository.shutil.copyfile

    def copy_then_terminated(source, target):
        result = real_copy(source, target)
        os.kill(os.getpid(), signal.SIGTERM)  # mid-export: the network model copied, nothing renamed yet
        return result

    monkeypatch.setattr(repository.shutil, "copyfile", copy_then_terminated)
    repo = tmp_path / "repo"
    with pytest.raises(Interrupted, match="stopped by SIGTERM") as info:
        export_repository(model, repo, RepositoryConfig())
    assert info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is gone after the export
    assert list(repo.iterdir()) == []
