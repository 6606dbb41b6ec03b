"""What commands print: ``--quiet`` nothing but errors, per-image lines up to a screenful (``--verbose`` all of
them), and the last line of normal output says where the results are."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcn_deploy import progress
from fcn_deploy.cli import run

pytestmark = pytest.mark.runtime


@pytest.fixture
def parity_args(tmp_path: Path, make_tiny_fcn, tiny_voc) -> list[str]:
    """``parity`` of two tiny FCNs on a two-image VOC folder, reports under tmp_path/reports."""
    model, reference = make_tiny_fcn(tmp_path / "m.onnx", seed=1), make_tiny_fcn(tmp_path / "r.onnx", seed=0)
    return ["parity", str(model), "--reference", str(reference), "--data", str(tiny_voc(tmp_path / "voc")),
            "--device", "cpu", "--out-dir", str(tmp_path / "reports")]


def test_quiet_prints_nothing_and_still_writes_the_reports(parity_args: list[str], tmp_path: Path, capsys) -> None:
    assert run(["--quiet", *parity_args]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["parity.json", "parity.md"]
    assert run([*parity_args]) == 0 and capsys.readouterr().out  # the next command prints again


def test_quiet_still_prints_errors(tmp_path: Path, capsys) -> None:
    assert run(["-q", "data", "check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and "fix: " in captured.err


def test_verbose_and_quiet_together_are_refused(capsys) -> None:
    assert run(["--verbose", "--quiet", "data", "check", "."]) == 1
    assert "--verbose and --quiet both given" in capsys.readouterr().err


def test_per_image_lines_beyond_a_screen_are_counted_and_verbose_shows_them(parity_args: list[str], tmp_path: Path,
                                                                            capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress, "SCREEN_LINES", 1)
    assert run(parity_args) == 0
    err = capsys.readouterr().err
    assert "[1/2]" in err and "[2/2]" not in err
    assert (f"... and 1 more images (not listed: --verbose lists them; the report lists every one: "
            f"{tmp_path / 'reports' / 'parity.md'})") in err
    assert run(["--verbose", *parity_args]) == 0
    err = capsys.readouterr().err
    assert "[1/2]" in err and "[2/2]" in err and "more images" not in err


def test_parity_ends_with_its_report_paths(parity_args: list[str], tmp_path: Path, capsys) -> None:
    assert run(parity_args) == 0
    reports = tmp_path / "reports"
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"wrote {reports / 'parity.md'}, {reports / 'parity.json'}"


def test_calibrate_ends_with_the_int8_model_and_its_files(make_tiny_fcn, tiny_voc, tmp_path: Path, capsys) -> None:
    model = make_tiny_fcn(tmp_path / "m.onnx")
    out = tmp_path / "m.int8-cpu.onnx"
    assert run(["calibrate", str(model), "--data", str(tiny_voc(tmp_path / "voc")), "--num", "2", "--crop", "32x32",
                "--target", "cpu", "--out", str(out)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"wrote {out}; crop plan ") and ", ranges " in last


def test_bench_without_json_says_the_results_are_the_table(make_tiny_fcn, tmp_path: Path, capsys) -> None:
    model = make_tiny_fcn(tmp_path / "m.onnx")
    assert run(["bench", str(model), "--sizes", "64x64", "--iters", "1", "--warmup", "0", "--rounds", "1",
                "--no-rss", "--device", "cpu", "--gemm-size", "64"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "results: the table above only (--json FILE keeps them)"
    assert run(["bench", str(model), "--sizes", "64x64", "--iters", "1", "--warmup", "0", "--rounds", "1",
                "--no-rss", "--device", "cpu", "--gemm-size", "64", "--json", str(tmp_path / "b.json")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path / 'b.json'}"
