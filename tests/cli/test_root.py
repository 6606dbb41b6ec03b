"""The command line's shell: help without heavy imports, error lines and exit codes."""

from __future__ import annotations

import subprocess
import sys

from fcn_deploy.cli import run

HEAVY_MODULES = ("torch", "onnx", "onnxruntime", "tensorrt", "cuda")


def test_help_lists_every_stage_without_importing_heavy_libraries() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from fcn_deploy.cli import run\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    status = run(['--help'])\n"
        f"heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "print(status, heavy)\n"
        "print(out.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, _, help_text = result.stdout.partition("\n")
    assert first == "0 []"
    for command in ("data", "train", "export", "calibrate", "build", "infer", "parity", "bench", "capi", "triton", "serve", "client"):
        assert command in help_text


def test_unknown_command_is_a_usage_error_with_exit_code_1(capsys) -> None:
    assert run(["no-such-command"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_library_errors_print_one_error_line_and_verbose_adds_the_traceback(tmp_path, capsys) -> None:
    missing = tmp_path / "missing.pt"
    assert run(["export", str(missing), "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"error: checkpoint not found: {missing}"
    assert "Traceback" not in err
    assert run(["--verbose", "export", str(missing), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "fcn_deploy.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("fcn-deploy ")


def test_ctrl_c_in_any_command_is_not_silent(own_process, tmp_path, capsys, monkeypatch):
    if own_process:
        return
    import os
    import signal

    from fcn_deploy.data import synth

    monkeypatch.setattr(synth, "synthesize", lambda config: os.kill(os.getpid(), signal.SIGINT))
    assert run(["data", "synth", "--out", str(tmp_path / "d"), "--num", "1"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_control_characters_in_error_lines_are_escaped(tmp_path, capsys) -> None:
    """A file name holding a newline (or an escape sequence) cannot forge an output line."""
    missing = tmp_path / "x\nerror: forged\x1b[2K\u202e"
    assert run(["export", str(missing), "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"error: checkpoint not found: {tmp_path}/x\\nerror: forged\\x1b[2K\\u202e"
    assert len(err.splitlines()) == 2 and err.splitlines()[1].startswith("  fix: ")


def test_listings_print_as_escaped_lines_under_the_message(capsys, monkeypatch) -> None:
    """Details of an error (a lint listing, parser errors) keep their lines; each is escaped on its own."""
    from fcn_deploy.errors import ArtifactError

    def failing(*_args, **_kwargs):
        raise ArtifactError("m.onnx breaks 2 rules:", "re-run it", details=("node a\nerror: forged", "node b"))

    monkeypatch.setattr("fcn_deploy.export.export_onnx", failing)
    assert run(["export", "x.pt"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: m.onnx breaks 2 rules:", "  node a\\nerror: forged", "  node b", "  fix: re-run it"]
    error = ArtifactError("m.onnx breaks 2 rules:", "re-run it", details=("node a", "node b"))
    assert error.one_line() == "m.onnx breaks 2 rules: node a; node b (fix: re-run it)"
    assert str(error) == "m.onnx breaks 2 rules:\n  node a\n  node b\n  fix: re-run it"
