"""The README and the guides stay true: every relative link and anchor resolves, every command line shown parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from fcn_deploy.cli import run

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
OPTION = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")
HELP_OPTION = re.compile(r"^│\s+(?:\*\s+)?(--[a-z0-9][a-z0-9-]*)", flags=re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = INLINE_CODE.sub(lambda code: code.group(0)[1:-1], heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Anchors of every heading outside code blocks (a repeated heading gets GitHub's -1, -2 suffixes)."""
    found: set[str] = set()
    for line in FENCE.sub("", markdown).splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            base, count = slug(heading.group(1)), 0
            while (name := base if count == 0 else f"{base}-{count}") in found:
                count += 1
            found.add(name)
    return found


def relative_links(markdown: str) -> list[str]:
    """Link targets outside code blocks and code spans, without web and mail addresses."""
    prose = INLINE_CODE.sub("", FENCE.sub("", markdown))
    return [target for target in LINK.findall(prose) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of the page whose file or heading does not exist, with the reason."""
    broken = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    return broken


def shown_command_lines(markdown: str) -> list[str]:
    """The `fcn-deploy ...` lines of the shell code blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in FENCE.findall(markdown):
        if not re.match(r"```(bash|sh|shell|console)\n", block):
            continue  # a picture or a file layout, not commands
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines()[1:-1]:
            words = shlex.split(line, comments=True)
            if words and (words[0] == "fcn-deploy" or words[0].endswith("/fcn-deploy")):
                lines.append(shlex.join(words[1:]))
    return lines


HELP: dict[tuple[str, ...], str] = {}


def help_text(command_path: list[str], capsys, monkeypatch) -> str:
    """The CLI's own --help of a command path, run in-process, wide enough that no option name is cut."""
    key = tuple(command_path)
    if key not in HELP:
        monkeypatch.setenv("COLUMNS", "200")
        capsys.readouterr()
        assert run([*command_path, "--help"]) == 0, f"fcn-deploy {' '.join(command_path)} --help failed"
        HELP[key] = capsys.readouterr().out
    return HELP[key]


def command_path(words: list[str], capsys, monkeypatch) -> list[str]:
    """The leading words that name a command or subcommand (the groups list theirs under 'Commands')."""
    path: list[str] = []
    for word in words:
        if word.startswith("-"):
            break
        listed = help_text(path, capsys, monkeypatch)
        commands = listed.split("Commands", 1)[1] if "Commands" in listed else ""
        if not re.search(rf"^│\s+{re.escape(word)}\s", commands, flags=re.M):
            break
        path.append(word)
    return path


def unknown_options(line: str, capsys, monkeypatch) -> list[str]:
    """The long options of a shown command line that its command's --help does not list."""
    words = shlex.split(line)
    path = command_path(words, capsys, monkeypatch)
    assert path, f"'fcn-deploy {line}' names no command"
    known = set(HELP_OPTION.findall(help_text(path, capsys, monkeypatch)))
    return [option for option in OPTION.findall(line) if option not in known]


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_and_anchor_exists(page: Path) -> None:
    assert broken_links(page) == []


def test_the_docs_show_command_lines() -> None:
    shown = [line for page in DOCS for line in shown_command_lines(page.read_text(encoding="utf-8"))]
    assert len(shown) > 30 and any(line.startswith("triton export") for line in shown)


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_every_shown_command_line_uses_options_its_help_lists(page: Path, capsys, monkeypatch) -> None:
    wrong = {}
    for line in shown_command_lines(page.read_text(encoding="utf-8")):
        unknown = unknown_options(line, capsys, monkeypatch)
        if unknown:
            wrong[line] = unknown
    assert wrong == {}


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text("# A guide\n\n## Which ONNX Runtime?\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](guide.md#which-onnx-runtime) [file](gone.md) [anchor](guide.md#which-onnx)\n"
                    "`[code](gone.md)` [web](https://example.com/x)\n```\n[block](gone.md)\n```\n", encoding="utf-8")
    assert [problem.split(":")[0] for problem in broken_links(page)] == ["gone.md", "guide.md#which-onnx"]


def test_slug_follows_github() -> None:
    assert slug("Precision: FP16 and INT8, verified on the CPU") == "precision-fp16-and-int8-verified-on-the-cpu"
    assert slug("GStreamer element `fcnsegment`") == "gstreamer-element-fcnsegment"
    assert anchors("# Notes\n## Notes\n```\n# not a heading\n```\n") == {"notes", "notes-1"}


def test_a_misspelled_option_is_found(capsys, monkeypatch) -> None:
    block = "```bash\nfcn-deploy triton export export/fcn.onnx \\\n    --out repo --max-bach 4   # --comment\n```\n"
    (line,) = shown_command_lines(block)
    assert unknown_options(line, capsys, monkeypatch) == ["--max-bach"]
    assert unknown_options("infer images/ --out masks/ --overlay", capsys, monkeypatch) == []
