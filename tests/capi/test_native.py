"""The native C library (C++ over OpenVINO, no Python): its deployment folder, labels equal to Python's OpenVINO
backend, the tile plan, threads, sanitizers and relocation."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from capi_support import (
    EXAMPLE_SOURCE,
    FUZZ_SOURCE,
    HOME_CACHE_LINE,
    REPO_ROOT,
    SANITIZER_FLAGS,
    TEST_SOURCE,
    compile_c,
    private_home_available,
    read_rgb,
    run_program,
    run_with_no_environment,
)
from test_capi import assert_ran, foreign_models, read_labels, voc_images, write_raw

NATIVE_DIR = REPO_ROOT / "fcn_deploy" / "capi" / "native"
PLAN_SOURCE = Path(__file__).resolve().parent / "tile_plan_main.cpp"
#: leaks the sanitizer must not report: one-time allocations inside OpenVINO and TBB (their frames, never ours)
LSAN_SUPPRESSIONS = "leak:libopenvino\nleak:libtbb\n"


def textured(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth colour pattern with noise (the random-weight model gives it several classes)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width].astype(np.float32)
    pattern = np.stack([np.sin(x / (9 + seed)) * 110 + 128, np.cos(y / (7 + seed)) * 110 + 128, (x + 2 * y) % 256], -1)
    return (pattern + rng.integers(0, 40, (height, width, 3))).clip(0, 255).astype(np.uint8)


def create_status(build, model: object, device: str) -> tuple[str, str]:
    """(status name, message) of fcn_segmenter_create run by the test program."""
    done = run_program(build.test_program, "create", model, device)
    assert_ran(done)
    status, message = done.stdout.split("\n", 1)
    return status.removeprefix("status="), message.removeprefix("message=").strip()


# --- the deployment folder ---------------------------------------------------------------------------


def test_folder_holds_the_library_openvino_header_pkgconfig_cmake_and_example(native_build):
    prefix = native_build.prefix
    libs = sorted(p.name for p in (prefix / "lib").iterdir() if p.is_file())
    assert libs[0] == "libfcn_deploy.so"
    assert {name.split(".so")[0] for name in libs[1:]} == {
        "libopenvino", "libopenvino_intel_cpu_plugin", "libopenvino_onnx_frontend", "libopenvino_ir_frontend", "libtbb"}
    header = (REPO_ROOT / "fcn_deploy" / "capi" / "fcn_deploy.h").read_bytes()
    assert (prefix / "include" / "fcn_deploy.h").read_bytes() == header
    assert (prefix / "lib" / "pkgconfig" / "fcn_deploy.pc").read_text().startswith("prefix=${pcfiledir}/../..\n")
    assert (prefix / "lib" / "cmake" / "fcn_deploy" / "fcn_deployConfig.cmake").is_file()
    assert (prefix / "share" / "fcn_deploy" / "example" / "segment.c").read_bytes() == EXAMPLE_SOURCE.read_bytes()
    assert not list(prefix.glob(".capi-build-*")), "the build left its temporary folder behind"
    dynamic = subprocess.run(["readelf", "-d", str(prefix / "lib" / "libfcn_deploy.so")], capture_output=True,
                             text=True, check=True).stdout
    assert "[$ORIGIN]" in dynamic and "python" not in dynamic.lower()
    exported = subprocess.run(["nm", "-D", "--defined-only", str(prefix / "lib" / "libfcn_deploy.so")],
                              capture_output=True, text=True, check=True).stdout.split()
    assert {s for s in exported if s.startswith("fcn_")} == {
        "fcn_version", "fcn_last_error", "fcn_status_name", "fcn_segmenter_create", "fcn_segmenter_apply",
        "fcn_masks_release", "fcn_segmenter_num_classes", "fcn_segmenter_class_name", "fcn_segmenter_palette",
        "fcn_segmenter_destroy"}
    assert not [s for s in exported if "fcn" in s and not s.startswith("fcn_")], "C++ internals are exported"


def test_cli_refuses_an_unknown_runtime(tmp_path, capsys):
    from fcn_deploy.cli import run

    assert run(["capi", "build", "--runtime", "gpu", "--out", str(tmp_path / "sdk")]) == 1
    assert "unknown --runtime 'gpu'" in capsys.readouterr().err
    assert not (tmp_path / "sdk").exists()


def test_copied_folder_runs_under_an_empty_environment_without_python(native_build, capi_model, tmp_path):
    """Copy the folder, build hosts inside it (RPATH $ORIGIN, CMake find_package, pkg-config), move it away from
    where they were built, run with `env -i`: everything loads from the moved folder and no libpython is mapped."""
    first = tmp_path / "first" / "sdk"
    shutil.copytree(native_build.prefix, first, symlinks=True)
    (first / "bin").mkdir()
    compile_c(TEST_SOURCE, first / "bin" / "capi_test", first, rpath="$ORIGIN/../lib")
    moved = tmp_path / "elsewhere" / "deploy"
    moved.parent.mkdir()
    first.rename(moved)
    image = write_raw(textured(64, 80, 0), tmp_path / "image.rgb")
    if private_home_available():  # no variable at all: the default cache goes to the home folder, a private one here
        done = run_with_no_environment(moved / "bin" / "capi_test", "maps", capi_model, image)
        assert HOME_CACHE_LINE in done.stderr, done.stderr
    else:  # the cache off, so nothing is written outside this test's folder
        done = run_program(moved / "bin" / "capi_test", "maps", capi_model, image)
    assert_ran(done)
    assert done.stdout.startswith("status=FCN_OK\n")
    mapped = {line.split()[-1] for line in done.stdout.splitlines()[1:] if "/" in line}
    assert not [path for path in mapped if "python" in Path(path).name.lower()], "libpython is loaded"
    ours = [path for path in mapped if Path(path).name.startswith(("libfcn_deploy", "libopenvino", "libtbb"))]
    assert {Path(p).name.split(".so")[0] for p in ours} >= {"libfcn_deploy", "libopenvino", "libtbb",
                                                            "libopenvino_intel_cpu_plugin", "libopenvino_onnx_frontend"}
    assert all(p.startswith(str(moved / "lib") + "/") for p in ours), ours
    # the example builds from the moved folder with CMake's find_package and with pkg-config
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    build = tmp_path / "example-build"
    subprocess.run(["cmake", "-S", str(moved / "share" / "fcn_deploy" / "example"), "-B", str(build),
                    f"-DCMAKE_PREFIX_PATH={moved}"], check=True, capture_output=True, env=env)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True, env=env)
    if shutil.which("pkg-config"):
        make = ["make", "-s", "-C", str(tmp_path), "-f", str(moved / "share/fcn_deploy/example/Makefile"),
                f"VPATH={moved / 'share/fcn_deploy/example'}"]
        subprocess.run(make, check=True, env={**env, "PKG_CONFIG_PATH": str(moved / "lib" / "pkgconfig")})
        assert (tmp_path / "segment").is_file()
    from PIL import Image

    Image.fromarray(textured(50, 70, 1)).save(tmp_path / "in.ppm")
    assert_ran(run_program(build / "segment", capi_model, tmp_path / "in.ppm", tmp_path / "out.pgm", "cpu"))
    assert (tmp_path / "out.pgm").stat().st_size > 50 * 70


# --- same results as Python's OpenVINO backend ---------------------------------------------------------


def test_labels_equal_python_openvino_for_every_format_size_and_padding(native_build, capi_model, python_openvino,
                                                                       tmp_path):
    base = textured(281, 500, 0)
    raw = write_raw(base, tmp_path / "base.rgb")
    cases = [("rgb", 0, base), ("bgr", 13, base), ("rgba", 0, base), ("bgra", 5, base),
             ("gray", 3, np.repeat(base[:, :, :1], 3, axis=2))]
    images = [textured(h, w, seed) for seed, (h, w) in enumerate([(1, 1), (5, 7), (33, 65), (300, 200), (64, 512)])]
    args = [f"{raw}:{fmt}:{pad}" for fmt, pad, _ in cases]
    args += [write_raw(image, tmp_path / f"{i}.rgb") for i, image in enumerate(images)]
    assert_ran(run_program(native_build.test_program, "apply", capi_model, tmp_path / "out", *args))
    distinct = set()
    for index, reference in enumerate([ref for _, _, ref in cases] + images):
        expected = python_openvino.segment(reference)
        assert expected.mode == "whole"
        got = read_labels(tmp_path / f"out{index}.labels", reference.shape[:2])
        np.testing.assert_array_equal(got, expected.labels, err_msg=args[index])
        distinct.update(np.unique(got).tolist())
    assert len(distinct) > 2, "the test model predicts too few classes; the comparison would prove little"


@pytest.mark.slow
def test_labels_equal_python_openvino_on_voc(native_build, capi_model, python_openvino, voc_sample_dir, tmp_path):
    voc = [read_rgb(p) for p in voc_images(voc_sample_dir)]
    args = [write_raw(rgb, tmp_path / f"voc{i}.rgb") for i, rgb in enumerate(voc)]
    assert_ran(run_program(native_build.test_program, "apply", capi_model, tmp_path / "out", *args))
    for index, rgb in enumerate(voc):
        got = read_labels(tmp_path / f"out{index}.labels", rgb.shape[:2])
        np.testing.assert_array_equal(got, python_openvino.segment(rgb).labels, err_msg=args[index])


def test_tiled_labels_equal_python_openvino(native_build, capi_model, python_openvino, tmp_path):
    """1100×1536 exceeds the model's 512×512 whole-image range: both sides tile it with the default plan."""
    image = textured(1100, 1536, 3)
    assert_ran(run_program(native_build.test_program, "apply", capi_model, tmp_path / "tiled",
                           write_raw(image, tmp_path / "tiled.rgb")))
    expected = python_openvino.segment(image)
    assert expected.mode == "slide" and expected.tiles > 1
    got = read_labels(tmp_path / "tiled0.labels", image.shape[:2])
    agreement = float(np.mean(got == expected.labels))
    assert agreement >= 0.99999, f"{agreement:.6%} of the labels agree"


def python_labels(model: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """Labels of Python's OpenVINO backend (FP32, no cache) on ``model`` for each image."""
    from fcn_deploy.runtime.openvino_backend import OpenVinoBackend, OpenVinoOptions
    from fcn_deploy.segmenter import Segmenter

    with OpenVinoBackend(model, "cpu", OpenVinoOptions(precision="f32", cache_dir=None)) as backend:
        segmenter = Segmenter(backend)
        return [segmenter.segment(image).labels for image in images]


def native_labels(build, model: Path, images: list[np.ndarray], folder: Path) -> list[np.ndarray]:
    """Labels of the native library on ``model`` for each image (one create, one apply of them all)."""
    folder.mkdir(parents=True, exist_ok=True)
    args = [write_raw(image, folder / f"{i}.rgb") for i, image in enumerate(images)]
    assert_ran(run_program(build.test_program, "apply", model, folder / "out", *args))
    return [read_labels(folder / f"out{i}.labels", image.shape[:2]) for i, image in enumerate(images)]


#: whole images of several shapes and one the test model tiles (1100×1536 exceeds its 512×512 range)
WHOLE_AND_TILED = [(281, 500, 0), (33, 65, 1), (300, 200, 2), (1100, 1536, 3)]


def assert_same_labels(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    """Whole images label alike pixel for pixel; the tiled one (the last) in at least 99.999% of its pixels."""
    for index, (ours, theirs) in enumerate(zip(got[:-1], expected[:-1])):
        np.testing.assert_array_equal(ours, theirs, err_msg=f"image {index}")
    agreement = float(np.mean(got[-1] == expected[-1]))
    assert agreement >= 0.99999, f"tiled: {agreement:.6%} of the labels agree"
    assert len(np.unique(np.concatenate([g.ravel() for g in got]))) > 2, "too few classes to prove much"


@pytest.fixture(scope="module")
def int8_model(capi_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The INT8 Q/DQ model `fcn-deploy calibrate --target cpu` makes of the test model (on synthetic VOC images;
    the graph's nodes named first, as an export names them, so that calibration finds its head)."""
    import onnx

    from fcn_deploy.data.synth import SynthConfig, synthesize
    from fcn_deploy.precision.calibrate import CalibrationConfig, calibrate_int8

    folder = tmp_path_factory.mktemp("int8")
    model = onnx.load(str(capi_model))
    for index, node in enumerate(model.graph.node):
        node.name = f"{node.op_type.lower()}_{index}"
    named = folder / "fcn.onnx"
    onnx.save(model, str(named))
    shutil.copy(f"{capi_model}.json", f"{named}.json")
    voc = synthesize(SynthConfig(out=folder / "VOC2012", num=8, size=(64, 64), seed=5)).root
    config = CalibrationConfig(data_dir=voc, num=4, crop=(64, 64), method="minmax", target="cpu",
                               out=folder / "fcn.int8-cpu.onnx", calibration_dir=folder / "calibration")
    result = calibrate_int8(named, config)
    assert result.quantized_nodes > 0 and result.spec.precision == "int8"
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(str(result.path)).graph.node}
    return result.path


def test_int8_qdq_labels_equal_python_openvino(native_build, int8_model, tmp_path):
    images = [textured(h, w, seed) for h, w, seed in WHOLE_AND_TILED]
    assert_same_labels(native_labels(native_build, int8_model, images, tmp_path),
                       python_labels(int8_model, images))


def openvino_ir(onnx_path: Path, xml: Path) -> Path:
    """The ONNX model saved as OpenVINO IR (.xml + .bin, FP32 weights) with the model contract in its runtime
    info under the keys OpenVINO gives the ONNX metadata ('framework' / 'fcn_deploy.spec'), where
    `fcn-deploy build --target openvino` writes it."""
    import openvino as ov

    from fcn_deploy.contract import ONNX_METADATA_KEY, read_onnx_spec

    model = ov.Core().read_model(str(onnx_path))
    key = ["framework", ONNX_METADATA_KEY]
    if not model.has_rt_info(key):  # OpenVINO keeps the ONNX metadata; set it where a version would not
        model.set_rt_info(read_onnx_spec(onnx_path).to_json(), key)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def test_openvino_ir_reads_the_contract_from_its_runtime_info(native_build, capi_model, tmp_path):
    import openvino as ov

    from fcn_deploy.contract import ONNX_METADATA_KEY

    xml = openvino_ir(capi_model, tmp_path / "ir" / "fcn.xml")
    assert xml.with_suffix(".bin").is_file() and not Path(f"{xml}.json").exists()
    assert ov.Core().read_model(str(xml)).has_rt_info(["framework", ONNX_METADATA_KEY])
    images = [textured(h, w, seed) for h, w, seed in WHOLE_AND_TILED]
    assert_same_labels(native_labels(native_build, xml, images, tmp_path / "ir-out"),
                       python_labels(capi_model, images))


def test_an_openvino_ir_without_the_contract_is_refused(native_build, capi_model, tmp_path):
    import re

    xml = openvino_ir(capi_model, tmp_path / "fcn.xml")
    text = xml.read_text()
    stripped = re.sub(r"\s*<framework>.*?</framework>", "", text, flags=re.DOTALL)
    assert stripped != text
    xml.write_text(stripped)
    status, message = create_status(native_build, xml, "cpu")
    assert status == "FCN_E_BAD_MODEL", message
    assert f"{xml} is an OpenVINO IR without the fcn-deploy model contract" in message
    assert "fix: build the IR with 'fcn-deploy build --target openvino'" in message


def _python_plan(height: int, width: int, alignment: int, min_shape, max_shape) -> str:
    from fcn_deploy.segmenter import Segmenter
    from fcn_deploy.spec import ModelSpec, ShapeRange

    class _Specified:  # the plan needs only the backend's spec
        def __init__(self, spec: ModelSpec) -> None:
            self.spec = spec

    spec = ModelSpec(arch="fcn32s", alignment=alignment, shape_range=ShapeRange(min_shape, min_shape, max_shape))
    try:
        plan = Segmenter(_Specified(spec)).plan((height, width))
    except ValueError as exc:
        return f"error {exc}"
    return " ".join(map(str, [*plan.tile_hw, plan.batch, "ys", *plan.ys, "xs", *plan.xs]))


def test_native_tile_plans_equal_python(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    program = tmp_path / "tile_plan"
    subprocess.run(["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{NATIVE_DIR}", "-o", str(program),
                    str(PLAN_SOURCE), str(NATIVE_DIR / "tile_plan.cpp")], check=True)
    models = [(32, (1, 32, 32), (8, 1024, 1024)), (32, (1, 64, 96), (2, 512, 768)), (16, (2, 32, 16), (4, 256, 320)),
              (8, (1, 8, 8), (1, 64, 64)), (32, (1, 32, 32), (2, 128, 160))]
    sizes = sorted({1, 2, 31, 32, 33, 100, 255, 256, 257, 480, 511, 512, 513, 700, 1000, 1023, 1024, 1025, 1100,
                    1536, 2047, 2048, 2049, 3000, 4096, 5000, 8192} | set(range(900, 2200, 37)))
    queries, expected = [], []
    for alignment, min_shape, max_shape in models:
        for height in sizes:
            for width in (sizes[::5] if height % 3 else sizes):
                queries.append(" ".join(map(str, [height, width, alignment, min_shape[0], max_shape[0],
                                                  min_shape[1], min_shape[2], max_shape[1], max_shape[2]])))
                expected.append(_python_plan(height, width, alignment, min_shape, max_shape))
    done = subprocess.run([str(program)], input="\n".join(queries) + "\n", capture_output=True, text=True, check=True)
    native = done.stdout.splitlines()
    assert len(native) == len(queries)
    tiled = 0
    for query, ours, theirs in zip(queries, native, expected):
        if theirs.startswith("error"):
            assert ours.startswith("error"), query
            continue
        tiled += " ys 0 xs 0" not in theirs
        assert ours == theirs, f"plan for '{query}': native {ours}, Python {theirs}"
    assert tiled > 100, "too few multi-tile plans compared"


# --- devices, errors, threads --------------------------------------------------------------------------


def test_device_strings(native_build, capi_model):
    from fcn_deploy.runtime.openvino_backend import bf16_unsupported_reason, cpu_flags

    import openvino as ov

    assert create_status(native_build, capi_model, "auto") == ("FCN_OK", "")
    assert create_status(native_build, capi_model, "openvino:f32") == ("FCN_OK", "")
    status, message = create_status(native_build, capi_model, "cuda")
    assert status == "FCN_E_BACKEND_UNAVAILABLE" and "embedded" in message
    status, message = create_status(native_build, capi_model, "openvino:fp16")
    assert status == "FCN_E_INVALID_ARG" and "openvino:bf16" in message
    reason = bf16_unsupported_reason(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"), cpu_flags())
    status, message = create_status(native_build, capi_model, "openvino:bf16")
    if reason is None:
        assert (status, message) == ("FCN_OK", "")
    else:
        assert status == "FCN_E_BACKEND_UNAVAILABLE" and reason in message, message


def test_every_error_path_returns_its_code_and_a_message(native_build, capi_model, tmp_path):
    bad = foreign_models(tmp_path, capi_model)
    done = run_program(native_build.test_program, "errors", capi_model, *bad)
    assert_ran(done)
    lines = done.stdout.splitlines()
    assert len(lines) >= 30 and all(line.startswith("ok ") for line in lines), done.stdout
    for path in bad:
        assert any(line.startswith(f"ok {path} FCN_E_BAD_MODEL") and path.name in line.split(" ", 3)[3]
                   for line in lines), path


def test_a_spec_that_contradicts_the_graph_is_refused(native_build, tiny_onnx, tmp_path):
    from fcn_deploy.spec import ModelSpec, ShapeRange

    model = tiny_onnx(tmp_path / "wrong.onnx", ModelSpec(arch="fcn32s", num_classes=2, class_names=("a", "b"),
                                                         shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 128, 128))))
    status, message = create_status(native_build, model, "cpu")
    assert status == "FCN_E_BAD_MODEL" and "has 21 classes, the spec 2" in message and "fix:" in message


# --- the compiled-model cache --------------------------------------------------------------------------


def cache_entries(folder: Path) -> dict[str, int]:
    """The files under ``folder`` with their modification times (ns)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_compiled_models_are_cached_per_user_reused_moved_or_turned_off(native_build, capi_model, tmp_path):
    image = write_raw(textured(64, 80, 2), tmp_path / "image.rgb")

    def apply(env: dict[str, str], name: str) -> subprocess.CompletedProcess:
        """The test program in exactly ``env`` (run_program would turn the cache off)."""
        done = subprocess.run([str(native_build.test_program), "apply", str(capi_model), str(tmp_path / name), image],
                              capture_output=True, text=True, env=env, timeout=600)
        assert_ran(done)
        return done

    home = tmp_path / "home"
    default = home / ".cache" / "fcn-deploy" / "openvino"
    apply({"HOME": str(home)}, "first")
    entries = cache_entries(default)
    assert entries, "opening the model left nothing in the per-user cache"
    assert default.stat().st_mode & 0o777 == 0o700
    apply({"HOME": str(home)}, "second")
    assert cache_entries(default) == entries, "the second open compiled again instead of loading the cache"
    np.testing.assert_array_equal(read_labels(tmp_path / "second0.labels", (64, 80)),
                                  read_labels(tmp_path / "first0.labels", (64, 80)))
    apply({"HOME": str(home), "FCN_DEPLOY_CACHE_DIR": str(tmp_path / "chosen")}, "chosen")
    assert cache_entries(tmp_path / "chosen") and cache_entries(default) == entries
    apply({"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(home)}, "xdg")
    assert cache_entries(tmp_path / "xdg" / "fcn-deploy" / "openvino") and cache_entries(default) == entries
    apply({"HOME": str(tmp_path / "other-home"), "FCN_DEPLOY_CACHE_DIR": ""}, "off")
    assert not (tmp_path / "other-home").exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    done = apply({"FCN_DEPLOY_CACHE_DIR": str(blocked / "cache")}, "blocked")  # opens, compiles without a cache
    assert done.stderr.count("fcn_deploy: warning: no compiled-model cache") == 1, done.stderr
    assert f"{blocked}" in done.stderr and "set FCN_DEPLOY_CACHE_DIR to a writable folder" in done.stderr
    np.testing.assert_array_equal(read_labels(tmp_path / "blocked0.labels", (64, 80)),
                                  read_labels(tmp_path / "first0.labels", (64, 80)))


def thread_images(tmp_path: Path, count: int) -> list[str]:
    sizes = [(40 + 13 * i, 50 + 17 * i) for i in range(count)]
    return [write_raw(textured(h, w, i), tmp_path / f"t{i}.rgb") for i, (h, w) in enumerate(sizes)]


def test_four_threads_on_one_handle_give_the_sequential_labels(native_build, capi_model, tmp_path):
    done = run_program(native_build.test_program, "pool", capi_model, 4, *thread_images(tmp_path, 16))
    assert_ran(done)
    assert done.stdout.strip() == "ok threads=4 images=16"


# --- sanitizers ---------------------------------------------------------------------------------------


def sanitizer_env(tmp_path: Path) -> dict[str, str]:
    suppressions = tmp_path / "lsan.supp"
    suppressions.write_text(LSAN_SUPPRESSIONS)
    return {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=23",
            "LSAN_OPTIONS": f"suppressions={suppressions}:print_suppressions=0",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=24"}


@pytest.mark.slow
def test_sanitizers_find_nothing_over_errors_threads_and_cycles(sanitized_build, capi_model, tiny_onnx, tmp_path):
    env = sanitizer_env(tmp_path)
    program = sanitized_build.test_program
    bad = foreign_models(tmp_path, capi_model)
    runs = [
        ("errors", capi_model, *bad),
        ("pool", capi_model, 4, *thread_images(tmp_path, 8)),
        ("cycles", capi_model, write_raw(textured(48, 64, 5), tmp_path / "c.rgb"), 3),
        ("apply", capi_model, tmp_path / "asan", write_raw(textured(1100, 1100, 6), tmp_path / "big.rgb")),
    ]
    for args in runs:
        done = run_program(program, *args, env=env, timeout=1200)
        assert done.returncode == 0, f"{args[0]}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-6000:]}"
        assert "ERROR: AddressSanitizer" not in done.stderr and "runtime error:" not in done.stderr, done.stderr[-6000:]
    fuzz = compile_c(FUZZ_SOURCE, tmp_path / "fuzz", sanitized_build.prefix, *SANITIZER_FLAGS)
    done = run_program(fuzz, tiny_onnx(tmp_path / "tiny.onnx"), 1500, 3, env=env, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
