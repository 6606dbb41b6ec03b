"""``fcn-deploy serve --backend/--precision``: the choice reaches the segmenter, and every refusal comes as
error:/fix: before anything of the server starts (these run without the serving stack)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from fcn_deploy.cli import run
from fcn_deploy.errors import InputError, MissingComponentError
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.serving import server as server_module
from fcn_deploy.serving.server import ServeConfig


@pytest.fixture
def server_starts(monkeypatch, tmp_path) -> list[str]:
    """Records (and stops at) the first step of the server proper: loading PyTriton; runs in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)  # OpenVINO's cache, if anything compiles, stays in tmp_path
    started: list[str] = []

    def require(name: str):
        started.append(name)
        raise MissingComponentError("the server was started", "stand-in: nothing is served in this test")

    monkeypatch.setattr(server_module, "require", require)
    return started


@pytest.fixture
def openvino() -> None:
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'fcn-deploy[openvino]')")


def test_backend_and_precision_reach_the_segmenter(server_starts, monkeypatch, tmp_path, capsys) -> None:
    opened = []

    @contextlib.contextmanager
    def open_segmenter(model, device, config, choice):
        opened.append((str(model), device, choice))
        yield object()

    monkeypatch.setattr(server_module, "open_segmenter", open_segmenter)
    (tmp_path / "fcn.onnx").write_bytes(b"stand-in")
    assert run(["serve", "fcn.onnx", "--backend", "openvino", "--precision", "bf16", "--instances", "2"]) == 2
    assert opened == [("fcn.onnx", "auto", BackendChoice("openvino", "bf16"))] * 2
    assert server_starts == ["pytriton.triton"]  # the model was opened first, then the server began
    assert "the server was started" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "host"), [([], "127.0.0.1"), (["--host", "192.0.2.7"], "192.0.2.7")])
def test_serve_binds_this_machine_only_unless_host_is_given(monkeypatch, tmp_path, capsys, args, host) -> None:
    bound: list[str] = []

    def check_ports_free(config: ServeConfig) -> None:  # the first use of the address; nothing is bound here
        bound.append(config.host)
        raise InputError("stand-in: no port is bound in this test")

    monkeypatch.setattr(server_module, "check_ports_free", check_ports_free)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fcn.onnx").write_bytes(b"stand-in")
    assert run(["serve", "fcn.onnx", *args]) == 1
    assert "stand-in: no port is bound" in capsys.readouterr().err
    assert bound == [host]
    assert ServeConfig().host == "127.0.0.1"  # the library's default too


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--precision", "bf16"], 1, "precision 'bf16' is an OpenVINO inference precision"),
    (["--backend", "onnx"], 1, "unknown backend 'onnx'"),
    (["--backend", "openvino", "--precision", "fp16"], 1, "unknown precision 'fp16'"),
])
def test_bad_choices_are_refused(server_starts, tmp_path, capsys, args, code, words) -> None:
    (tmp_path / "fcn.onnx").write_bytes(b"stand-in")
    assert run(["serve", "fcn.onnx", *args]) == code
    err = capsys.readouterr().err
    assert f"error: {words}" in err and "fix:" in err
    assert server_starts == []


def test_a_checkpoint_with_backend_openvino_is_refused(server_starts, tmp_path, capsys) -> None:
    (tmp_path / "fcn32s.pt").write_bytes(b"checkpoint")
    assert run(["serve", "fcn32s.pt", "--backend", "openvino"]) == 1
    err = capsys.readouterr().err
    assert "error: --backend openvino cannot run fcn32s.pt" in err and "fix: pass an ONNX file" in err
    assert server_starts == []


def test_missing_openvino_is_refused_naming_the_extra(server_starts, openvino_missing, tmp_path, capsys) -> None:
    (tmp_path / "fcn.onnx").write_bytes(b"stand-in")
    assert run(["serve", "fcn.onnx", "--backend", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "openvino" in err and "fcn-deploy[openvino]" in err
    assert server_starts == []


def test_bf16_without_native_bf16_is_refused(server_starts, openvino, random_onnx: Path, monkeypatch,
                                             tmp_path, capsys) -> None:
    from fcn_deploy.runtime import openvino_backend

    monkeypatch.setattr(openvino_backend, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert run(["serve", str(random_onnx), "--backend", "openvino", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert "error: precision 'bf16' refused" in err and "none of the native BF16 instructions" in err
    assert "fix: use --precision f32" in err
    assert server_starts == []
    assert not (tmp_path / "cache").exists()  # refused before anything was compiled
