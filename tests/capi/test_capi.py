"""The C API end to end: build, compile C programs against it, and compare their labels with Python's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from capi_support import EXAMPLE_SOURCE, TEST_SOURCE, compile_c, read_rgb, run_program

from fcn_deploy.deps import installed

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def voc_images(voc_sample_dir: Path) -> list[Path]:
    """The real VOC sample images, sorted."""
    images = sorted((voc_sample_dir / "JPEGImages").glob("*.jpg"))
    assert images, f"no JPEG images in {voc_sample_dir}"
    return images


def write_raw(rgb: np.ndarray, path: Path) -> str:
    """Write H×W×3 RGB bytes to ``path``; return the test program's "RAW:W:H" image argument."""
    np.ascontiguousarray(rgb).tofile(path)
    return f"{path}:{rgb.shape[1]}:{rgb.shape[0]}"


def read_labels(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A raw label file written by the test program."""
    return np.fromfile(path, dtype=np.uint8).reshape(shape)


def read_pgm(path: Path) -> np.ndarray:
    """An 8-bit binary PGM (P5) as an H×W uint8 array."""
    data = path.read_bytes()
    magic, width, height, maxval, pixels = data.split(maxsplit=4)
    assert (magic, maxval) == (b"P5", b"255")
    return np.frombuffer(pixels, dtype=np.uint8).reshape(int(height), int(width))


def assert_ran(done: subprocess.CompletedProcess) -> None:
    """Fail with the program's output when it exited non-zero."""
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


# --- build ---------------------------------------------------------------------------------------


def test_build_installs_library_header_and_pkgconfig(capi_build):
    prefix = capi_build.prefix
    assert (prefix / "lib" / "libfcn_deploy.so").is_file()
    assert (prefix / "include" / "fcn_deploy.h").read_bytes() == (
        Path(__file__).resolve().parents[2] / "fcn_deploy" / "capi" / "fcn_deploy.h"
    ).read_bytes()
    pc = (prefix / "lib" / "pkgconfig" / "fcn_deploy.pc").read_text()
    assert f"prefix={prefix}\n" in pc
    assert not list(prefix.glob(".capi-build-*")), "the build left its temporary folder behind"
    if shutil.which("pkg-config"):
        env = {"PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig"), "PATH": os.environ.get("PATH", "")}
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fcn_deploy"], capture_output=True, text=True,
                               env=env, check=True).stdout.split()
        assert f"-I{prefix}/include" in flags and f"-L{prefix}/lib" in flags and "-lfcn_deploy" in flags
    if shutil.which("readelf"):
        dynamic = subprocess.run(["readelf", "-d", str(prefix / "lib" / "libfcn_deploy.so")], capture_output=True,
                                 text=True, check=True).stdout
        assert sysconfig.get_config_var("LIBDIR") in dynamic  # rpath to libpython
        assert "libfcn_deploy.so" in dynamic  # soname


def test_cli_builds_and_reports_paths(tmp_path, capsys):
    from fcn_deploy.cli import run

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    assert run(["capi", "build", "--runtime", "embedded", "--out", str(tmp_path / "sdk")]) == 0
    out, err = capsys.readouterr()
    assert str(tmp_path / "sdk" / "lib" / "libfcn_deploy.so") in out
    assert "capi: compiling" in err  # progress lines on stderr
    (tmp_path / "file").write_text("x")
    assert run(["capi", "build", "--runtime", "embedded", "--out", str(tmp_path / "file")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_example_builds_with_its_makefile(capi_build, tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    makefile = EXAMPLE_SOURCE.parent / "Makefile"
    common = ["make", "-s", "-C", str(tmp_path), "-f", str(makefile), f"VPATH={EXAMPLE_SOURCE.parent}"]
    env = {"PATH": os.environ.get("PATH", "")}
    subprocess.run([*common, f"FCN_DEPLOY_DIR={capi_build.prefix}"], check=True, env=env)
    assert (tmp_path / "segment").is_file()
    (tmp_path / "segment").unlink()
    env["PKG_CONFIG_PATH"] = str(capi_build.prefix / "lib" / "pkgconfig")
    subprocess.run(common, check=True, env=env)
    assert (tmp_path / "segment").is_file()


# --- labels equal Python's -----------------------------------------------------------------------


@pytest.mark.slow
def test_example_labels_equal_python_on_voc(capi_build, capi_model, python_segmenter, voc_sample_dir, tmp_path):
    from PIL import Image

    distinct = set()
    for jpeg in voc_images(voc_sample_dir)[:3]:  # one process each; all eight go through one call below
        rgb = read_rgb(jpeg)
        ppm, pgm = tmp_path / f"{jpeg.stem}.ppm", tmp_path / f"{jpeg.stem}.pgm"
        Image.fromarray(rgb).save(ppm)  # binary P6
        done = run_program(capi_build.example, capi_model, ppm, pgm, "cpu")
        assert_ran(done)
        expected = python_segmenter.segment(rgb).labels
        np.testing.assert_array_equal(read_pgm(pgm), expected, err_msg=jpeg.name)
        counts = {int(m[1]): (m[2], int(m[3])) for m in re.finditer(r"^\s*(\d+) (.+?)\s+(\d+) px", done.stdout, re.M)}
        names = python_segmenter.spec.class_names
        present = np.bincount(expected.ravel(), minlength=256)
        assert counts == {c: (names[c], int(present[c])) for c in np.flatnonzero(present)}
        distinct.update(counts)
    assert len(distinct) > 1, "the test model predicts a single class; the comparison would prove nothing"


@pytest.mark.slow
def test_example_opens_an_openvino_ir_and_its_labels_equal_python(capi_build, tiny_ir, tmp_path):
    from PIL import Image

    from fcn_deploy.segmenter import open_segmenter

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    ppm, pgm = tmp_path / "noise.ppm", tmp_path / "noise.pgm"
    Image.fromarray(rgb).save(ppm)
    assert_ran(run_program(capi_build.example, tiny_ir, ppm, pgm, "cpu"))
    with open_segmenter(tiny_ir, device="cpu") as segmenter:
        assert segmenter.backend.name == "openvino"
        expected = segmenter.segment(rgb).labels
    np.testing.assert_array_equal(read_pgm(pgm), expected)
    assert len(np.unique(expected)) > 1, "the IR predicts a single class; the comparison would prove nothing"


@pytest.mark.slow
def test_all_voc_samples_every_pixel_format_and_padded_rows_equal_python(capi_build, capi_model, python_segmenter,
                                                          voc_sample_dir, tmp_path):
    voc = [read_rgb(p) for p in voc_images(voc_sample_dir)]
    first = voc[0]
    image = write_raw(first, tmp_path / "first.rgb")
    cases = [  # (format, padding bytes after each row, the RGB image Python sees)
        ("rgb", 0, first),
        ("bgr", 13, first),
        ("rgba", 0, first),
        ("bgra", 5, first),
        ("gray", 3, np.repeat(first[:, :, :1], 3, axis=2)),  # the test program's gray is the R channel
    ]
    args = [f"{image}:{fmt}:{pad}" for fmt, pad, _ in cases]
    args += [write_raw(rgb, tmp_path / f"voc{i}.rgb") for i, rgb in enumerate(voc[1:])]
    assert_ran(run_program(capi_build.test_program, "apply", capi_model, tmp_path / "out", *args))
    references = [ref for _, _, ref in cases] + voc[1:]
    for index, reference in enumerate(references):
        got = read_labels(tmp_path / f"out{index}.labels", reference.shape[:2])
        np.testing.assert_array_equal(got, python_segmenter.segment(reference).labels, err_msg=args[index])


@pytest.mark.slow
def test_two_threads_on_one_handle_get_their_own_results(capi_build, capi_model, python_segmenter,
                                                         voc_sample_dir, tmp_path):
    images = [read_rgb(p) for p in voc_images(voc_sample_dir)[2:4]]
    args = [write_raw(rgb, tmp_path / f"{i}.rgb") for i, rgb in enumerate(images)]
    assert_ran(run_program(capi_build.test_program, "threads", capi_model, tmp_path / "thread", 3, *args))
    for index, rgb in enumerate(images):
        got = read_labels(tmp_path / f"thread{index}.labels", rgb.shape[:2])
        np.testing.assert_array_equal(got, python_segmenter.segment(rgb).labels)


# --- errors and start-up -------------------------------------------------------------------------


def create_status(capi_build, model: object, device: str = "cpu", env: dict[str, str] | None = None) -> tuple[str, str]:
    """(status name, message) of fcn_segmenter_create run by the test program."""
    done = run_program(capi_build.test_program, "create", model, device, env=env)
    assert_ran(done)
    status, message = done.stdout.split("\n", 1)
    return status.removeprefix("status="), message.removeprefix("message=").strip()


def foreign_models(folder: Path, model: Path) -> list[Path]:
    """Files that are not fcn-deploy artifacts: garbage .onnx, a plain ONNX graph, a broken .pt, odd suffixes."""
    import onnx
    from onnx import TensorProto, helper

    garbage = folder / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    plain = folder / "plain.onnx"  # a valid ONNX graph without the fcn-deploy spec
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [value], [output])
    onnx.save(helper.make_model(graph), str(plain))
    checkpoint = folder / "broken.pt"
    checkpoint.write_bytes(b"\x80\x04not a checkpoint")
    text = folder / "model.txt"
    text.write_text("hello")
    # without PyTorch (the runtime install) a checkpoint is a missing backend, not a bad model
    checkpoints = [checkpoint] if installed("torch") else []
    return [garbage, plain, *checkpoints, text, model.with_name(model.name + ".json")]


@pytest.mark.slow
def test_every_error_path_returns_its_code_and_a_message(capi_build, capi_model, tmp_path):
    bad = foreign_models(tmp_path, capi_model)
    done = run_program(capi_build.test_program, "errors", capi_model, *bad)
    assert_ran(done)  # exit code = number of failed expectations
    lines = done.stdout.splitlines()
    assert len(lines) >= 30 and all(line.startswith("ok ") for line in lines), done.stdout
    for path in bad:  # each message names the file
        assert any(line.startswith(f"ok {path} FCN_E_BAD_MODEL") and path.name in line.split(" ", 3)[3]
                   for line in lines), path


@pytest.mark.slow
def test_cuda_request_matches_python(capi_build, capi_model):
    from fcn_deploy.errors import MissingComponentError
    from fcn_deploy.runtime import open_backend

    status, message = create_status(capi_build, capi_model, "cuda")
    try:
        open_backend(capi_model, "cuda").close()
    except MissingComponentError as exc:
        assert (status, message) == ("FCN_E_BACKEND_UNAVAILABLE", str(exc))
    else:
        assert (status, message) == ("FCN_OK", "")


@pytest.mark.slow
def test_starts_whatever_python_variables_the_host_sets(capi_build, capi_model, tmp_path):
    hostile = {"PATH": "/usr/bin:/bin", "PYTHONHOME": str(tmp_path / "nowhere"),
               "PYTHONPATH": str(tmp_path / "nowhere"), "PYTHONSAFEPATH": "1", "LD_LIBRARY_PATH": ""}
    assert create_status(capi_build, capi_model, env=hostile) == ("FCN_OK", "")


# --- memory --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_repeated_cycles_leak_nothing_under_valgrind(capi_build, capi_model, tmp_path):
    """Leaked bytes (definitely + indirectly lost) must not grow over create/apply/release/destroy cycles.

    The embedded interpreter keeps one-time allocations, so the test program measures after a warm-up
    cycle and again after two more; it then leaks one result on purpose to show the measurement sees it.
    PYTHONMALLOC=malloc makes Python's memory visible to valgrind (no stale pointers in pymalloc arenas).
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None or not Path("/usr/include/valgrind/memcheck.h").is_file():
        pytest.skip("valgrind (with its memcheck.h header) is not installed")
    program = compile_c(TEST_SOURCE, tmp_path / "capi_leaks", capi_build.prefix, "-DFCN_TEST_VALGRIND")
    image = write_raw(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), tmp_path / "x.rgb")
    done = run_program(valgrind, "--leak-check=full", "--show-leak-kinds=definite", program, "leaks", capi_model,
                       image, 2, env={"PYTHONMALLOC": "malloc"}, timeout=1200)
    assert_ran(done)
    figures = dict(line.split("=") for line in done.stdout.splitlines() if "=" in line)
    assert figures["running_on_valgrind"] == "1"
    assert int(figures["deliberate_leak_bytes"]) >= 64 * 64, "valgrind did not see a deliberate leak"
    assert int(figures["leak_growth_bytes"]) == 0, done.stderr[-4000:]
    # after the cycles, no definitely lost block was allocated by the library's own C code
    records = done.stderr.split("capi_test: leak records after the cycles")[1].split("capi_test: end of leak")[0]
    for record in re.split(r"\n==\d+== \n", records):
        if "definitely lost in" in record:
            frames = re.findall(r"(?:at|by) 0x[0-9A-F]+: (\w+)", record)
            first_caller = next((f for f in frames if f not in ("malloc", "calloc", "realloc")), "")
            assert not first_caller.startswith(("fcn_", "_fcn_")), record


@pytest.mark.slow
@pytest.mark.parametrize("device", ["openvino", "openvino:bf16"])
def test_openvino_device_strings_match_python(capi_build, capi_model, device, tmp_path, monkeypatch):
    from fcn_deploy.errors import FcnDeployError
    from fcn_deploy.runtime import open_backend, parse_device_string

    monkeypatch.chdir(tmp_path)  # the compiled-model cache goes under the working folder
    status, message = create_status(capi_build, capi_model, device)
    where, choice = parse_device_string(device)
    try:
        open_backend(capi_model, where, choice).close()
    except FcnDeployError as exc:
        assert message == str(exc) and status != "FCN_OK"
    else:
        assert (status, message) == ("FCN_OK", "")


@pytest.mark.slow
def test_unknown_openvino_precision_is_refused_in_c(capi_build, capi_model):
    status, message = create_status(capi_build, capi_model, "openvino:fp16")
    assert status == "FCN_E_INVALID_ARG" and "openvino:bf16" in message


SIGNAL_HOST_SOURCE = Path(__file__).resolve().parent / "signal_host.c"


@pytest.mark.parametrize("host", ["default", "handler"])
def test_a_host_receiving_sigterm_ends_by_it_or_handles_it(capi_build, capi_model, tmp_path, host):
    """Signals belong to the host: after each call every signal's handling is the host's again (runtimes loaded
    by the embedded Python may install handlers of their own; Ray's turn SIGTERM into an abort), so SIGTERM ends a
    host that left it at its default and reaches the handler of a host that has one; never a crash."""
    import signal

    program = compile_c(SIGNAL_HOST_SOURCE, tmp_path / "signal_host", capi_build.prefix)
    done = run_program(program, capi_model, host, timeout=300)
    expected = -signal.SIGTERM if host == "default" else 0
    assert done.returncode == expected, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "segmented; raising SIGTERM" in done.stdout


@pytest.mark.parametrize("where, message", [("afile", "exists and is not a folder"),
                                            ("afile/lib", "cannot be created: .*afile is a file")])
def test_an_out_that_cannot_be_a_folder_is_refused_before_building(tmp_path, where, message) -> None:
    from fcn_deploy.capi.build import install_prefix
    from fcn_deploy.errors import InputError

    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(InputError, match=f"--out .*{message}"):
        install_prefix(tmp_path / where)
    assert install_prefix(tmp_path / "new") == (tmp_path / "new").resolve()
