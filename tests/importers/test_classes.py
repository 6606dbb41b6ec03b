"""Class lists: voc, JSON (list or object with palette), text (names, optional #RRGGBB), malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcn_deploy.errors import InputError
from fcn_deploy.importers.classes import read_classes, resolve_classes
from fcn_deploy.palette import VOC_CLASSES

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def test_voc_and_json_and_text(tmp_path: Path) -> None:
    assert read_classes("voc").names == VOC_CLASSES
    (tmp_path / "a.json").write_text('["sky", "road"]')
    assert read_classes(tmp_path / "a.json").names == ("sky", "road")
    (tmp_path / "b.json").write_text('{"classes": ["sky", "road"], "palette": [[1, 2, 3], [4, 5, 6]]}')
    assert read_classes(tmp_path / "b.json").palette == ((1, 2, 3), (4, 5, 6))
    (tmp_path / "c.txt").write_text("// comment\npotted plant #10ff20\n\nroad #000000\n")
    classes = read_classes(tmp_path / "c.txt")
    assert classes.names == ("potted plant", "road") and classes.palette[0] == (16, 255, 32)


@pytest.mark.parametrize("content, message", [
    ('{"classes": ["a", "b"], "palette": [[1, 2, 3]]}', "1 colours for 2 classes"),
    ("a #000000\nb\n", "some lines give a colour"),
    ('["a", "a"]', "twice"),
    ("{not json", "not valid JSON"),
    ("", "lists no classes"),
])
def test_malformed_class_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "classes.txt"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_classes(path)


def test_count_must_match_the_model(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="names 2 classes, w.pt has 3"):
        resolve_classes(tmp_path / "a.txt", 3, "w.pt")
    assert resolve_classes(None, 3, "w.pt").names == ("class 0", "class 1", "class 2")
