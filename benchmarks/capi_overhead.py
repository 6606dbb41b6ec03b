"""Overhead of the C API over the Python segmenter: the same model and image, timed from C and from Python.

    python benchmarks/capi_overhead.py [--model fcn.onnx] [--image photo.jpg] [--repeat 20] [--rounds 3]

Without --model, a random-weight fcn32s is exported to ONNX in a temporary folder (about a minute).
The image is resized to 500×375 (a typical VOC size); without --image, a real VOC sample is used when the
repository's sample folder is beside the checkout, else random pixels. Two comparisons, same model and image:

- paired: this process loads libfcn_deploy.so (ctypes) and alternates fcn_segmenter_apply with
  Segmenter.segment call by call, so load changes on the machine hit both sides alike (the headline figure);
- separate: a C program times fcn_segmenter_apply in its own process (embedded interpreter started from C),
  alternating rounds with Python calls in this process.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from fcn_deploy.progress import log as say

REPO_ROOT = Path(__file__).resolve().parents[1]
VOC_IMAGES = REPO_ROOT.parent / "shared" / "voc-sample" / "VOCdevkit" / "VOC2012" / "JPEGImages"
SIZE = (500, 375)  # width, height

# Times fcn_segmenter_apply on one RGB image: prints one line of milliseconds per call.
TIMER_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <fcn_deploy.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
    if (argc != 6) return 2;
    int width = atoi(argv[3]), height = atoi(argv[4]), repeat = atoi(argv[5]);
    size_t size = (size_t)width * height * 3;
    unsigned char* pixels = malloc(size);
    FILE* file = fopen(argv[2], "rb");
    if (!pixels || !file || fread(pixels, 1, size, file) != size) return 1;
    fclose(file);
    fcn_segmenter* segmenter = NULL;
    if (fcn_segmenter_create(argv[1], "cpu", &segmenter) != FCN_OK) {
        fprintf(stderr, "%s\n", fcn_last_error());
        return 1;
    }
    fcn_image image = {pixels, width, height, width * 3, FCN_PIXEL_RGB8};
    for (int i = -2; i < repeat; ++i) { /* two warm-up calls */
        fcn_mask* masks = NULL;
        double started = now_ms();
        if (fcn_segmenter_apply(segmenter, &image, 1, &masks) != FCN_OK) {
            fprintf(stderr, "%s\n", fcn_last_error());
            return 1;
        }
        double elapsed = now_ms() - started;
        fcn_masks_release(masks, 1);
        if (i >= 0) printf("%.4f\n", elapsed);
    }
    fcn_segmenter_destroy(segmenter);
    free(pixels);
    return 0;
}
"""


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="ONNX/engine/checkpoint (default: a random fcn32s export)")
    parser.add_argument("--image", type=Path, help="image to resize to 500×375 (default: a VOC sample)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per round and side")
    parser.add_argument("--rounds", type=int, default=3, help="alternating C / Python rounds")
    return parser.parse_args()


def bench_image(path: Path | None) -> np.ndarray:
    """A 375×500×3 uint8 RGB image: the given one, a VOC sample, or random pixels."""
    from PIL import Image

    if path is None:
        candidates = sorted(VOC_IMAGES.glob("*.jpg")) if VOC_IMAGES.is_dir() else []
        if not candidates:
            return np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
        path = candidates[0]
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize(SIZE, Image.BILINEAR))


def random_model(folder: Path) -> Path:
    """Export a random-weight fcn32s to ONNX (the model the C API tests use)."""
    import torch

    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    torch.manual_seed(0)
    checkpoint = save_checkpoint(folder / "fcn32s.pt", build_model("fcn32s", 21), Checkpoint(ModelSpec(arch="fcn32s")))
    return export_onnx(checkpoint, folder / "fcn32s.onnx", ExportConfig(verify=False)).onnx_path


def build_timer(folder: Path) -> Path:
    """Build the library into ``folder`` and compile the C timing program against it."""
    from fcn_deploy.capi import build_library

    prefix = folder / "sdk"
    build_library(prefix)
    source = folder / "timer.c"
    source.write_text(TIMER_SOURCE)
    program = folder / "timer"
    subprocess.run(["gcc", "-O2", "-std=c99", "-D_POSIX_C_SOURCE=200809L", f"-I{prefix / 'include'}", "-o",
                    str(program), str(source), f"-L{prefix / 'lib'}", f"-Wl,-rpath,{prefix / 'lib'}", "-lfcn_deploy"],
                   check=True)
    return program


def time_c(program: Path, model: Path, raw: Path, repeat: int) -> list[float]:
    """Per-call milliseconds of fcn_segmenter_apply, measured inside a C process with an empty environment."""
    done = subprocess.run([str(program), str(model), str(raw), str(SIZE[0]), str(SIZE[1]), str(repeat)],
                          capture_output=True, text=True, env={}, check=True)
    return [float(line) for line in done.stdout.split()]


def time_python(segmenter, image: np.ndarray, repeat: int) -> list[float]:
    """Per-call milliseconds of Segmenter.segment in this process (after two warm-up calls)."""
    times = []
    for index in range(-2, repeat):
        started = time.perf_counter()
        segmenter.segment(image)
        if index >= 0:
            times.append((time.perf_counter() - started) * 1e3)
    return times


class Image(ctypes.Structure):
    """fcn_image."""

    _fields_ = [("data", ctypes.c_void_p), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("stride_bytes", ctypes.c_int), ("format", ctypes.c_int)]


class Mask(ctypes.Structure):
    """fcn_mask."""

    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("labels", ctypes.POINTER(ctypes.c_uint8))]


def time_paired(library: Path, model: Path, segmenter, image: np.ndarray, repeat: int) -> tuple[list[float], list[float]]:
    """Per-call milliseconds of fcn_segmenter_apply (through ctypes) and Segmenter.segment, alternating calls."""
    lib = ctypes.CDLL(str(library))
    lib.fcn_last_error.restype = ctypes.c_char_p
    handle = ctypes.c_void_p()
    if lib.fcn_segmenter_create(str(model).encode(), b"cpu", ctypes.byref(handle)) != 0:
        raise RuntimeError(lib.fcn_last_error().decode())
    c_image = Image(image.ctypes.data, image.shape[1], image.shape[0], image.strides[0], 0)
    masks = ctypes.POINTER(Mask)()
    c_times, py_times = [], []
    try:
        for index in range(-2, repeat):
            started = time.perf_counter()
            if lib.fcn_segmenter_apply(handle, ctypes.byref(c_image), 1, ctypes.byref(masks)) != 0:
                raise RuntimeError(lib.fcn_last_error().decode())
            c_elapsed = (time.perf_counter() - started) * 1e3
            lib.fcn_masks_release(masks, 1)
            started = time.perf_counter()
            segmenter.segment(image)
            py_elapsed = (time.perf_counter() - started) * 1e3
            if index >= 0:
                c_times.append(c_elapsed)
                py_times.append(py_elapsed)
    finally:
        lib.fcn_segmenter_destroy(handle)
    return c_times, py_times


def summary(name: str, c_times: list[float], py_times: list[float], paired: bool = False) -> None:
    """Print medians, minima and the overhead of one comparison."""
    c_median, py_median = statistics.median(c_times), statistics.median(py_times)
    c_min, py_min = min(c_times), min(py_times)
    print(f"{name} ({len(c_times)} calls a side)")
    print(f"  Python Segmenter.segment : median {py_median:8.2f} ms   min {py_min:8.2f} ms")
    print(f"  C fcn_segmenter_apply    : median {c_median:8.2f} ms   min {c_min:8.2f} ms")
    print(f"  C API overhead           : median {100 * (c_median / py_median - 1):+6.2f} %   "
          f"min {100 * (c_min / py_min - 1):+6.2f} %   (expected <= 5 %)")
    if paired:
        differences = [c - p for c, p in zip(c_times, py_times)]
        print(f"  median of per-pair differences (C - Python): {statistics.median(differences):+.2f} ms")


def main() -> None:
    """Run the alternating rounds and print the comparison."""
    from fcn_deploy.segmenter import open_segmenter

    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="capi-overhead-") as tmp:
        folder = Path(tmp)
        model = args.model
        if model is None:
            say("exporting a random-weight fcn32s to ONNX ...")
            model = random_model(folder)
        image = bench_image(args.image)
        raw = folder / "image.rgb"
        image.tofile(raw)
        say("building the C library and the timing program ...")
        program = build_timer(folder)
        c_times: list[float] = []
        py_times: list[float] = []
        with open_segmenter(model, device="cpu") as segmenter:
            say(f"paired: {args.repeat * args.rounds} alternating calls in this process")
            paired = time_paired(folder / "sdk" / "lib" / "libfcn_deploy.so", model, segmenter, image,
                                 args.repeat * args.rounds)
            for round_index in range(args.rounds):
                say(f"separate, round {round_index + 1}/{args.rounds}: C process, then Python ({args.repeat} calls each)")
                c_times += time_c(program, model, raw, args.repeat)
                py_times += time_python(segmenter, image, args.repeat)
    print(f"model {model.name}, image {SIZE[0]}×{SIZE[1]}")
    summary("paired, one process", *paired, paired=True)
    summary("separate C process", c_times, py_times)


if __name__ == "__main__":
    main()
