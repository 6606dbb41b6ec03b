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
    ('["a", "a"]', "lists 'a' more than once"),
    ("sky\nroad\nsky\ncar\nroad\n", "lists 'road', 'sky' more than once"),
    ("{not json", "not valid JSON"),
    ("", "lists no classes"),
    # names with control characters (they travel into C strings, reports, legends) or none at all
    ("sky\nro\x00ad\n", r"class 1 'ro\\x00ad' holds a control character"),
    ('["sky", "ro\\u0000ad"]', r"class 1 'ro\\x00ad' holds a control character"),
    ('["sky", "a\\tb"]', r"class 1 'a\\tb' holds a control character"),
    ('["sky", " "]', "class 1 ' ' is empty"),
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


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffsky\nroad\n".encode())
    (tmp_path / "bom.json").write_bytes('\ufeff["sky", "road"]'.encode())
    assert read_classes(tmp_path / "bom.txt").names == ("sky", "road")
    assert read_classes(tmp_path / "bom.json").names == ("sky", "road")


@pytest.mark.parametrize("line", ["a #GGGGGG", "a #fff", "a #ff8000aa"])
def test_a_colour_that_is_not_rrggbb_is_refused_not_taken_as_a_name(tmp_path: Path, line: str) -> None:
    path = tmp_path / "classes.txt"
    path.write_text(f"// colours\nsky\n{line}\n")
    with pytest.raises(InputError, match=f"line 3: '{line.split()[-1]}' is not a colour #RRGGBB"):
        read_classes(path)
    path.write_text("sky\nitem #2\nC#\n")  # a '#' in a name that does not look like a colour stays a name
    assert read_classes(path).names == ("sky", "item #2", "C#")


def test_a_folder_is_not_a_missing_class_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"--classes {tmp_path} is a folder, not a class file"):
        read_classes(tmp_path)
