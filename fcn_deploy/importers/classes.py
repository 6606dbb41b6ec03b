"""Class lists for imported models: ``voc``, or a JSON or text file of names with an optional palette.

JSON: ``["background", "road", ...]``, or ``{"classes": [...], "palette": [[r, g, b], ...]}``.
Text: one class name per line, optionally followed by a colour as ``#RRGGBB`` (all lines or none);
empty lines and lines starting with ``//`` are skipped.
The names and palette go into the model spec, so masks, overlays, parity reports, the C API and served
models all use them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from fcn_deploy.errors import InputError
from fcn_deploy.fileio import Place
from fcn_deploy.palette import VOC_CLASSES, VOC_COLORMAP, voc_colormap

RGB = tuple[int, int, int]
_HEX_COLOUR = re.compile(r"^(.*\S)\s+#([0-9A-Fa-f]{6})$")
_FORMAT_HINT = ('give a JSON list of names, a JSON object {"classes": [...], "palette": [[r, g, b], ...]}, '
                "or a text file with one name per line (optionally 'name #RRGGBB')")


@dataclass(frozen=True)
class ClassList:
    """Class names and one RGB colour per class."""

    names: tuple[str, ...]
    palette: tuple[RGB, ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)


VOC = ClassList(VOC_CLASSES, VOC_COLORMAP)


def default_classes(num_classes: int) -> ClassList:
    """VOC's 21 classes, or ``class 0`` .. ``class N-1`` with the VOC colour sequence for any other count."""
    if num_classes == len(VOC_CLASSES):
        return VOC
    if not 1 <= num_classes <= 256:
        raise InputError(f"{num_classes} classes: between 1 and 256 are supported")
    return ClassList(tuple(f"class {i}" for i in range(num_classes)), voc_colormap(num_classes))


def class_file_places(source: str | os.PathLike[str] | None) -> list[Place]:
    """The class file a command reads (none for 'voc' or the default), as a place outputs must spare."""
    if source is None or str(source).lower() == "voc":
        return []
    return [Place("--classes", Path(source))]


def read_classes(source: str | os.PathLike[str]) -> ClassList:
    """``'voc'`` or the path of a class file (JSON or text); InputError saying what is malformed."""
    if str(source).lower() == "voc":
        return VOC
    path = Path(source)
    if not path.is_file():
        raise InputError(f"class file not found: {path}", "pass 'voc' or the path of a class file; " + _FORMAT_HINT)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read class file {path} ({exc})") from exc
    stripped = text.lstrip()
    classes = _from_json(text, path) if stripped.startswith(("[", "{")) else _from_text(text, path)
    return _checked(classes, path)


def _from_json(text: str, path: Path) -> ClassList:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"class file {path} is not valid JSON ({exc})", _FORMAT_HINT) from exc
    names, palette = (data, None) if isinstance(data, list) else (data.get("classes"), data.get("palette"))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"class file {path}: the classes are not a list of names", _FORMAT_HINT)
    if palette is None:
        return ClassList(tuple(names), default_classes(len(names)).palette if names else ())
    try:
        colours = tuple((int(c[0]), int(c[1]), int(c[2])) for c in palette if len(c) == 3)
    except (TypeError, ValueError) as exc:
        raise InputError(f"class file {path}: the palette is not a list of [r, g, b]", _FORMAT_HINT) from exc
    if len(colours) != len(palette):
        raise InputError(f"class file {path}: every palette entry needs three values [r, g, b]", _FORMAT_HINT)
    return ClassList(tuple(names), colours)


def _from_text(text: str, path: Path) -> ClassList:
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("//")]
    matches = [_HEX_COLOUR.match(line) for line in lines]
    if any(matches) and not all(matches):
        first = next(line for line, m in zip(lines, matches) if not m)
        raise InputError(f"class file {path}: some lines give a colour and '{first}' does not",
                         "give '#RRGGBB' on every line or on none")
    if not any(matches):
        return ClassList(tuple(lines), default_classes(len(lines)).palette if lines else ())
    names = tuple(m.group(1) for m in matches if m)
    palette = tuple(tuple(int(m.group(2)[i : i + 2], 16) for i in (0, 2, 4)) for m in matches if m)
    return ClassList(names, palette)  # type: ignore[arg-type]


def _checked(classes: ClassList, path: Path) -> ClassList:
    if not classes.names:
        raise InputError(f"class file {path} lists no classes", _FORMAT_HINT)
    if len(set(classes.names)) != len(classes.names):
        raise InputError(f"class file {path} lists a class name twice")
    if len(classes.palette) != len(classes.names):
        raise InputError(f"class file {path}: {len(classes.palette)} colours for {len(classes.names)} classes")
    if any(not 0 <= v <= 255 for colour in classes.palette for v in colour):
        raise InputError(f"class file {path}: palette values must lie in 0..255")
    return classes


def resolve_classes(classes: str | os.PathLike[str] | None, num_classes: int, source: str) -> ClassList:
    """The class list for a model with ``num_classes`` outputs: the given one (which must agree) or the default."""
    if classes is None:
        return default_classes(num_classes)
    chosen = read_classes(classes)
    if chosen.num_classes != num_classes:
        raise InputError(f"the class list names {chosen.num_classes} classes, {source} has {num_classes}",
                         "pass a class list with one name per output channel of the model")
    return chosen
