"""Durable atomic writes, output-location checks, stale temporaries and the folder lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fcn_deploy import fileio
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import (
    Place,
    check_output_dir,
    check_output_file,
    check_outputs_apart,
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


def test_stale_temporary_folders_of_ours_are_removed_whole(tmp_path: Path) -> None:
    stale = tmp_path / ".fcn.ab12cd_9.part"
    (stale / "fcn" / "1").mkdir(parents=True)
    (stale / "fcn" / "1" / "model.onnx").write_bytes(b"truncated")
    (tmp_path / "fcn").mkdir()
    (tmp_path / ".keep.part").mkdir()
    (tmp_path / ".link.abcdefgh.part").symlink_to(tmp_path / "fcn")  # a link goes, its target stays
    assert remove_stale_temps(tmp_path, recursive=False) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.part", "fcn"]


@pytest.fixture
def inputs(tmp_path: Path) -> list[Place]:
    """A model, a folder read whole (holding an image), and an input that does not exist."""
    (tmp_path / "model.onnx").write_bytes(b"model")
    (tmp_path / "data" / "JPEGImages").mkdir(parents=True)
    (tmp_path / "data" / "JPEGImages" / "a.jpg").write_bytes(b"jpeg")
    return [Place("the model", tmp_path / "model.onnx"), Place("JPEGImages/", tmp_path / "data" / "JPEGImages", True),
            Place("the sidecar", tmp_path / "model.onnx.json")]


@pytest.mark.parametrize(("output", "words"), [
    ("model.onnx", r"--out .*model.onnx is the model"),
    ("sub/../model.onnx", "is the model"),
    ("link.onnx", "is the model"),
    ("hard.onnx", "is the model"),
    ("data/JPEGImages", "is JPEGImages/"),
    ("data/JPEGImages/a.jpg", "is a file in JPEGImages/"),
    ("data/JPEGImages/../JPEGImages/a.jpg", "is a file in JPEGImages/"),
    ("datalink/JPEGImages/a.jpg", "is a file in JPEGImages/"),
])
def test_an_output_that_is_or_resolves_to_an_input_is_refused(tmp_path: Path, inputs, output, words) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.onnx").symlink_to("model.onnx")
    (tmp_path / "datalink").symlink_to("data")
    os.link(tmp_path / "model.onnx", tmp_path / "hard.onnx")
    with pytest.raises(InputError, match=words) as info:
        check_outputs_apart([Place("--out", tmp_path / output)], inputs)
    assert "which this command reads" in info.value.message and info.value.hint


def test_a_relative_output_is_compared_from_the_working_folder(tmp_path: Path, inputs, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path / "data")
    with pytest.raises(InputError, match="is the model"):
        check_outputs_apart([Place("--json", Path("../model.onnx"))], inputs)


def test_outputs_that_spare_every_input_pass(tmp_path: Path, inputs) -> None:
    check_outputs_apart([Place("--out", tmp_path / "out.onnx"), Place("--out", tmp_path / "model.onnx.json"),
                         Place("--out", tmp_path / "data" / "JPEGImages" / "new.md"),
                         Place("--out", tmp_path / "data"), Place("--out", tmp_path / "elsewhere", whole=True)], inputs)


def test_a_folder_replaced_whole_must_not_hold_an_input(tmp_path: Path, inputs) -> None:
    with pytest.raises(InputError, match="replaced as a whole, and it holds the model"):
        check_outputs_apart([Place("the model folder", tmp_path, whole=True)], inputs[:1])
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(InputError, match="holds the model"):
        check_outputs_apart([Place("the model folder", tmp_path / "link", whole=True)], inputs[:1])
    check_outputs_apart([Place("the model folder", tmp_path)], inputs[:1])  # a folder written into, not replaced


def test_folder_lock_refuses_a_second_holder_and_cleans_up(tmp_path: Path) -> None:
    with folder_lock(tmp_path) as lock:
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(InputError, match="another fcn-deploy run"):
            with folder_lock(tmp_path):
                pass
    assert not (tmp_path / ".fcn-deploy.lock").exists()
    with folder_lock(tmp_path):  # free again
        pass
