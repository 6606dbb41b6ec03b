"""Durable atomic writes, output-location checks, stale temporaries and the folder lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fcn_deploy import fileio
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import (
    check_output_dir,
    check_output_file,
    folder_lock,
    is_temp_name,
    remove_stale_temps,
    write_text_atomic,
)

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def test_file_is_flushed_before_the_rename_and_the_folder_after(tmp_path: Path, monkeypatch) -> None:
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        return real_fsync(fd)

    def replace(source, target):
        events.append(("rename", Path(target).name))
        return real_replace(source, target)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(fileio.os, "replace", replace)
    write_text_atomic(tmp_path / "summary.json", "{}")
    assert events == [("fsync", "file"), ("rename", "summary.json"), ("fsync", "folder")]
    assert (tmp_path / "summary.json").read_text() == "{}"


def test_output_checks(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    assert check_output_file(tmp_path / "new" / "a.json", "--json") == tmp_path / "new" / "a.json"
    assert check_output_dir(tmp_path / "folder" / "new", "--out") == tmp_path / "folder" / "new"
    with pytest.raises(InputError, match="is a folder, not a file") as info:
        check_output_file(tmp_path / "folder", "--json")
    assert info.value.hint
    with pytest.raises(InputError, match="file is a file, not a folder"):
        check_output_file(tmp_path / "file" / "deeper" / "a.json", "--json")
    with pytest.raises(InputError, match="exists and is not a folder"):
        check_output_dir(tmp_path / "file", "--out")
    with pytest.raises(InputError, match="file is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "masks", "--out")


def test_only_our_temporaries_are_removed(tmp_path: Path) -> None:
    assert is_temp_name(".a.png.k3j_x9q2.part") and not is_temp_name("a.png.k3j_x9q2.part")
    assert not is_temp_name(".notes.part") and not is_temp_name(".a.png.TOOLONG99.part")
    (tmp_path / "sub").mkdir()
    ours = [tmp_path / ".a.png.k3j_x9q2.part", tmp_path / "sub" / ".b.png.abcdefgh.part"]
    theirs = [tmp_path / ".notes.part", tmp_path / "keep.png"]
    for path in ours + theirs:
        path.write_text("x")
    assert remove_stale_temps(tmp_path, recursive=False) == 1 and ours[1].exists()
    assert remove_stale_temps(tmp_path) == 1
    assert all(p.exists() for p in theirs)


def test_folder_lock_refuses_a_second_holder_and_cleans_up(tmp_path: Path) -> None:
    with folder_lock(tmp_path) as lock:
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(InputError, match="another fcn-deploy run"):
            with folder_lock(tmp_path):
                pass
    assert not (tmp_path / ".fcn-deploy.lock").exists()
    with folder_lock(tmp_path):  # free again
        pass
