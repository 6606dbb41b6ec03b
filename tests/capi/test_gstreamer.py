"""The GStreamer element fcnsegment, run through gst-launch-1.0 and a small C host: on the native library (and
once on the embedded one) labels equal the C API's and Python's, overlays equal a blend computed here; formats,
errors, caps changes, seeks and EOS, and memory over 300 frames."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from capi_support import REPO_ROOT, TEST_SOURCE, compile_c, run_program
from PIL import Image
from test_capi import assert_ran, read_labels, write_raw
from test_native import textured

HOST_SOURCE = Path(__file__).resolve().parent / "gst_host.c"
VOC_JPEGS = REPO_ROOT.parent / "shared" / "voc-sample" / "VOCdevkit" / "VOC2012" / "JPEGImages"
FRAME_HW = (128, 160)  # every frame of a sequence is cropped to this size
#: RSS growth allowed between frame 50 and the last of 300 frames (one leaked 320×240 label mask a frame: 21 MiB)
RSS_GROWTH_BOUND_KB = 8 * 1024


@dataclass(frozen=True)
class GstSdk:
    """A deployment folder built with --gstreamer, the environment that finds its element, the C programs."""

    prefix: Path
    env: dict[str, str]
    test_program: Path
    host: Path


@pytest.fixture(scope="session")
def gst_sdk(tmp_path_factory: pytest.TempPathFactory) -> GstSdk:
    """`fcn-deploy capi build --gstreamer` (native library) once per session; the C API test program and the
    GStreamer host compiled against it; a private plugin registry."""
    from fcn_deploy.capi.gstreamer_build import gstreamer_flags
    from fcn_deploy.capi.native_build import openvino_dir
    from fcn_deploy.cli import run
    from fcn_deploy.errors import MissingComponentError

    for tool in ("gcc", "cmake", "gst-launch-1.0", "gst-inspect-1.0"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs GStreamer where it runs as root)")
    try:
        openvino_dir()
        cflags, libs = gstreamer_flags()
    except MissingComponentError as exc:
        pytest.skip(f"the element cannot be built here: {exc}")
    if not Path("/usr/include/nlohmann/json.hpp").is_file():
        pytest.skip("nlohmann/json is not installed (apt-get install -y nlohmann-json3-dev)")
    root = tmp_path_factory.mktemp("gst")
    prefix = root / "install"
    assert run(["capi", "build", "--out", str(prefix), "--gstreamer"]) == 0
    host = root / "gst_host"
    done = subprocess.run(["gcc", "-O1", "-Wall", "-Wextra", "-Werror", *cflags, "-o", str(host), str(HOST_SOURCE),
                           *libs], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root),
           "GST_PLUGIN_PATH": str(prefix / "lib" / "gstreamer-1.0"), "GST_REGISTRY": str(root / "registry.bin")}
    return GstSdk(prefix, env, compile_c(TEST_SOURCE, root / "capi_test", prefix), host)


def frames(count: int) -> list[np.ndarray]:
    """The VOC sample images cropped to FRAME_HW (synthetic textures where the sample is absent)."""
    height, width = FRAME_HW
    jpegs = sorted(VOC_JPEGS.glob("*.jpg"))[:count] if VOC_JPEGS.is_dir() else []
    result = []
    for path in jpegs:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        top, left = (rgb.shape[0] - height) // 2, (rgb.shape[1] - width) // 2
        result.append(np.ascontiguousarray(rgb[top:top + height, left:left + width]))
    result += [textured(height, width, seed) for seed in range(len(result), count)]
    return result


def write_pngs(images: list[np.ndarray], folder: Path) -> str:
    """Write frame000.png, frame001.png, ...; return multifilesrc's location pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"frame{index:03d}.png")
    return str(folder / "frame%03d.png")


def launch(sdk: GstSdk, pipeline: str, *options: str) -> subprocess.CompletedProcess:
    """Run gst-launch-1.0 on a pipeline description (split on whitespace) with the element's plugin path."""
    return subprocess.run(["gst-launch-1.0", *options, *pipeline.split()], capture_output=True, text=True,
                          env=sdk.env, timeout=600)


def sequence_pipeline(location: str, count: int, caps: str, element: str, out: Path) -> str:
    """PNG frames -> caps -> fcnsegment -> PNG frames (RGB, or GRAY8 in labels mode)."""
    return (f"multifilesrc location={location} index=0 stop-index={count - 1} caps=image/png,framerate=5/1 ! pngdec "
            f"! videoconvert ! {caps} ! {element} ! videoconvert ! pngenc ! multifilesink location={out}/out%03d.png")


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def element_counts(output: str) -> list[list[int]]:
    """The class counts of every fcnsegment element message that gst-launch -m printed, in order."""
    found = re.findall(r"fcnsegment, frame=\(guint64\)(\d+).*?counts=\(guint64\)< ([\d, ]+) >", output)
    return [[int(n) for n in counts.split(",")] for _, counts in sorted(found, key=lambda f: int(f[0]))]


def c_api_labels(sdk: GstSdk, model: Path, images: list[np.ndarray], folder: Path) -> list[np.ndarray]:
    """Labels of the images from the C API's fcn_segmenter_apply (the test program)."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = [write_raw(image, folder / f"in{i}.rgb") for i, image in enumerate(images)]
    assert_ran(run_program(sdk.test_program, "apply", model, folder / "out", *specs))
    return [read_labels(folder / f"out{i}.labels", image.shape[:2]) for i, image in enumerate(images)]


# --- the element -------------------------------------------------------------------------------------


def test_element_is_installed_relocatable_and_documented(gst_sdk):
    plugin = gst_sdk.prefix / "lib" / "gstreamer-1.0" / "libgstfcnsegment.so"
    dynamic = subprocess.run(["readelf", "-d", str(plugin)], capture_output=True, text=True, check=True).stdout
    assert "[$ORIGIN/..]" in dynamic and "libfcn_deploy.so" in dynamic
    assert not list(gst_sdk.prefix.glob(".gst-build-*")), "the build left its temporary folder behind"
    done = subprocess.run(["gst-inspect-1.0", "fcnsegment"], capture_output=True, text=True, env=gst_sdk.env)
    assert_ran(done)
    for prop in ("model", "device", "mode", "alpha", "classes"):
        assert re.search(rf"^  {prop} +: ", done.stdout, re.M), f"property {prop} is not documented"
    for caps in ("RGB", "BGR", "RGBx", "BGRx", "RGBA", "BGRA", "GRAY8"):
        assert caps in done.stdout
    for mode in ("overlay", "mask", "labels"):
        assert re.search(rf"\(\d\): {mode} +- ", done.stdout), f"mode {mode} is not documented"


@pytest.mark.parametrize("caps", ["video/x-raw,format=RGB", "video/x-raw,format=BGRx", "video/x-raw,format=BGR"])
def test_labels_of_a_sequence_equal_the_c_api_and_python(gst_sdk, capi_model, python_openvino, tmp_path, caps):
    """Every frame's labels equal fcn_segmenter_apply's and the Python OpenVINO segmenter's (what `fcn-deploy infer
    --backend openvino` writes); the element messages carry each frame's class pixel counts."""
    images = frames(6)
    location = write_pngs(images, tmp_path / "in")
    (tmp_path / "out").mkdir()
    done = launch(gst_sdk, sequence_pipeline(location, len(images), caps, f"fcnsegment model={capi_model} "
                                             "mode=labels", tmp_path / "out"), "-m")
    assert_ran(done)
    reference = c_api_labels(gst_sdk, capi_model, images, tmp_path / "capi")
    counts = element_counts(done.stdout)
    assert len(counts) == len(images)
    distinct = set()
    for index, image in enumerate(images):
        got = read_png(tmp_path / "out" / f"out{index:03d}.png")
        assert got.ndim == 2 and got.shape == image.shape[:2]
        np.testing.assert_array_equal(got, reference[index], err_msg=f"frame {index} vs the C API")
        np.testing.assert_array_equal(got, python_openvino.segment(image).labels, err_msg=f"frame {index} vs Python")
        assert counts[index] == np.bincount(got.ravel(), minlength=len(counts[index])).tolist()
        distinct.update(np.unique(got).tolist())
    assert len(distinct) > 2, "the test model predicts too few classes; the comparison would prove little"


def blend(image: np.ndarray, labels: np.ndarray, palette, alpha: float, tinted: set[int]) -> np.ndarray:
    """The overlay the element documents, computed independently: pixel*(256-w) + colour*w >> 8, w = round(256a),
    on the pixels of tinted classes only."""
    weight = int(alpha * 256 + 0.5)
    colours = np.array(palette, dtype=np.int64)[labels]
    mixed = (image.astype(np.int64) * (256 - weight) + colours * weight) >> 8
    chosen = np.isin(labels, sorted(tinted))[..., None]
    return np.where(chosen, mixed, image).astype(np.uint8)


@pytest.mark.parametrize("caps, alpha, classes", [("video/x-raw,format=RGB", 0.5, ""),
                                                  ("video/x-raw,format=BGRx", 0.3, ""),
                                                  ("video/x-raw,format=RGB", 0.8, "CHOSEN")])
def test_overlay_equals_the_blend_computed_here(gst_sdk, capi_model, python_openvino, tmp_path, caps, alpha, classes):
    images = frames(3)
    labels = [python_openvino.segment(image).labels for image in images]
    palette = python_openvino.spec.palette
    tinted = set(range(1, python_openvino.spec.num_classes))
    if classes:  # the two most frequent foreground classes, one by index and one by name
        ranked = np.argsort(-np.bincount(np.concatenate([lab.ravel() for lab in labels]), minlength=256)[1:]) + 1
        tinted = {int(ranked[0]), int(ranked[1])}
        classes = f"classes={ranked[0]},{python_openvino.spec.class_names[ranked[1]]}"
    location = write_pngs(images, tmp_path / "in")
    (tmp_path / "out").mkdir()
    element = f"fcnsegment model={capi_model} mode=overlay alpha={alpha} {classes}"
    assert_ran(launch(gst_sdk, sequence_pipeline(location, len(images), caps, element, tmp_path / "out")))
    for index, image in enumerate(images):
        got = read_png(tmp_path / "out" / f"out{index:03d}.png")
        expected = blend(image, labels[index], palette, alpha, tinted)
        assert (got[..., :3] != image).any(), "nothing was blended"
        np.testing.assert_array_equal(got[..., :3], expected, err_msg=f"frame {index}")


def test_mask_mode_gives_the_palette_image(gst_sdk, capi_model, python_openvino, tmp_path):
    images = frames(2)
    location = write_pngs(images, tmp_path / "in")
    (tmp_path / "out").mkdir()
    element = f"fcnsegment model={capi_model} mode=mask"
    assert_ran(launch(gst_sdk, sequence_pipeline(location, len(images), "video/x-raw,format=BGRA", element,
                                                 tmp_path / "out")))
    palette = np.array(python_openvino.spec.palette, dtype=np.uint8)
    for index, image in enumerate(images):
        got = read_png(tmp_path / "out" / f"out{index:03d}.png")
        np.testing.assert_array_equal(got, palette[python_openvino.segment(image).labels])


def test_caps_change_mid_stream(gst_sdk, capi_model, python_openvino, tmp_path):
    """Frames of three sizes in one stream: pngdec renegotiates, every output has its frame's size and labels."""
    images = [textured(64, 96, 1), textured(96, 64, 2), textured(48, 160, 3), textured(64, 96, 4)]
    location = write_pngs(images, tmp_path / "in")
    (tmp_path / "out").mkdir()
    done = launch(gst_sdk, sequence_pipeline(location, len(images), "video/x-raw,format=RGBx",
                                             f"fcnsegment model={capi_model} mode=labels", tmp_path / "out"), "-m")
    assert_ran(done)
    sizes = re.findall(r"fcnsegment, frame=\(guint64\)\d+, timestamp=\S+ width=\(int\)(\d+), height=\(int\)(\d+)",
                       done.stdout)
    assert [(int(h), int(w)) for w, h in sizes] == [image.shape[:2] for image in images]
    for index, image in enumerate(images):
        got = read_png(tmp_path / "out" / f"out{index:03d}.png")
        np.testing.assert_array_equal(got, python_openvino.segment(image).labels, err_msg=f"frame {index}")



def test_a_video_file_through_decodebin(gst_sdk, capi_model, tmp_path):
    """The file pipeline of docs/c-and-gstreamer.md: a WebM video decoded, segmented (overlay) and encoded again."""
    video, result = tmp_path / "demo.webm", tmp_path / "seg.webm"
    assert_ran(launch(gst_sdk, f"videotestsrc num-buffers=8 ! video/x-raw,width=96,height=64 ! videoconvert ! vp8enc "
                      f"! webmmux ! filesink location={video}"))
    done = launch(gst_sdk, f"filesrc location={video} ! decodebin ! videoconvert ! fcnsegment model={capi_model} "
                  f"! videoconvert ! vp8enc ! webmmux ! filesink location={result}", "-m")
    assert_ran(done)
    assert len(element_counts(done.stdout)) == 8 and result.stat().st_size > 0

def test_element_runs_on_the_embedded_library(capi_build, gst_sdk, capi_model, python_segmenter, tmp_path):
    """The same source linked with the embedded library (a copy of its folder) gives Python's labels."""
    from fcn_deploy.capi.gstreamer_build import build_gstreamer_plugin

    prefix = tmp_path / "embedded"
    shutil.copytree(capi_build.prefix, prefix)
    element = build_gstreamer_plugin(prefix)
    sdk = GstSdk(prefix, {**gst_sdk.env, "GST_PLUGIN_PATH": str(element.plugin_path),
                          "GST_REGISTRY": str(tmp_path / "registry.bin")}, gst_sdk.test_program, gst_sdk.host)
    images = frames(2)
    location = write_pngs(images, tmp_path / "in")
    (tmp_path / "out").mkdir()
    assert_ran(launch(sdk, sequence_pipeline(location, len(images), "video/x-raw,format=BGRx",
                                             f"fcnsegment model={capi_model} device=cpu mode=labels", tmp_path / "out")))
    for index, image in enumerate(images):
        got = read_png(tmp_path / "out" / f"out{index:03d}.png")
        np.testing.assert_array_equal(got, python_segmenter.segment(image).labels, err_msg=f"frame {index}")

# --- errors ------------------------------------------------------------------------------------------


def test_build_needs_a_built_library_in_the_folder(tmp_path):
    from fcn_deploy.capi.gstreamer_build import build_gstreamer_plugin
    from fcn_deploy.errors import InputError

    with pytest.raises(InputError) as caught:
        build_gstreamer_plugin(tmp_path)
    assert "holds no built libfcn_deploy.so" in caught.value.message
    assert not (tmp_path / "lib").exists()


def test_build_without_gstreamer_names_the_packages(monkeypatch):
    from fcn_deploy.capi import gstreamer_build
    from fcn_deploy.errors import MissingComponentError

    monkeypatch.setattr(gstreamer_build.shutil, "which", lambda name: None)
    with pytest.raises(MissingComponentError) as caught:
        gstreamer_build.gstreamer_flags()
    assert "apt-get install -y libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev" in caught.value.hint


def test_missing_model_fails_the_pipeline_with_the_fix(gst_sdk, tmp_path):
    missing = tmp_path / "missing.onnx"
    done = launch(gst_sdk, f"videotestsrc num-buffers=3 ! fcnsegment model={missing} ! fakesink")
    output = done.stdout + done.stderr
    assert done.returncode > 0, output  # an error exit, not a signal (negative)
    assert f"cannot open model {missing} (FCN_E_NOT_FOUND)" in output
    assert "fix: set model= to an existing model file" in output


def test_foreign_model_and_unknown_class_fail_with_the_fix(gst_sdk, capi_model, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    done = launch(gst_sdk, f"videotestsrc num-buffers=3 ! fcnsegment model={garbage} ! fakesink")
    assert done.returncode > 0 and "(FCN_E_BAD_MODEL)" in done.stdout + done.stderr
    assert "fix: set model= to an ONNX file written by fcn-deploy export" in done.stdout + done.stderr
    done = launch(gst_sdk, f"videotestsrc num-buffers=3 ! fcnsegment model={capi_model} classes=unicorn ! fakesink")
    assert done.returncode > 0 and "unknown class 'unicorn'" in done.stdout + done.stderr


def test_host_sees_the_element_error_and_ends(gst_sdk, tmp_path):
    done = run_program(gst_sdk.host, f"videotestsrc num-buffers=3 ! fcnsegment model={tmp_path / 'x.onnx'} ! fakesink",
                       env=gst_sdk.env)
    assert done.returncode == 1, done.stderr
    assert "error=cannot open model" in done.stdout and "fix:" in done.stdout


def test_flushing_seek_eos_and_null_close_the_model(gst_sdk, capi_model):
    """The model opens in READY->PAUSED, closes at the flush of a seek and reopens with the next frame, closes at
    EOS; going to NULL afterwards finds nothing left to close."""
    env = {**gst_sdk.env, "GST_DEBUG": "fcnsegment:5", "GST_DEBUG_NO_COLOR": "1"}
    done = run_program(gst_sdk.host, f"videotestsrc ! video/x-raw,width=64,height=48 ! fcnsegment model={capi_model} "
                       "! fakesink", 5, 12, env=env)
    assert_ran(done)
    assert "seeked\n" in done.stdout and done.stdout.endswith("eos\n")
    events = re.findall(r"(opening|closing) the model", done.stderr)
    assert events == ["opening", "closing", "opening", "closing"], events
    assert len(re.findall(r"frame=\d+", done.stdout)) >= 12


# --- memory ------------------------------------------------------------------------------------------


def test_300_frames_without_rss_growth(gst_sdk, capi_model):
    done = run_program(gst_sdk.host, f"videotestsrc num-buffers=300 pattern=ball ! video/x-raw,width=320,height=240,"
                       f"format=BGRx ! fcnsegment model={capi_model} ! fakesink", env=gst_sdk.env)
    assert_ran(done)
    rss = [int(kb) for kb in re.findall(r"rss_kb=(\d+)", done.stdout)]
    assert len(rss) == 300 and done.stdout.endswith("eos\n")
    growth = max(rss[50:]) - rss[50]
    print(f"RSS at frame 50: {rss[50]} KiB, growth to frame 299: {growth} KiB")
    assert growth < RSS_GROWTH_BOUND_KB, f"RSS grew by {growth} KiB over 250 frames"


def test_gstreamer_prerequisites_are_checked_before_the_library_is_built(monkeypatch, tmp_path, capsys):
    """Without GStreamer's development files `capi build --gstreamer` stops at once (exit 2), building nothing."""
    from fcn_deploy.capi import gstreamer_build
    from fcn_deploy.cli import run

    monkeypatch.setattr(gstreamer_build.shutil, "which", lambda name: None)
    assert run(["capi", "build", "--out", str(tmp_path / "out"), "--gstreamer"]) == 2
    assert "pkg-config" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
