"""Frames/s of the GStreamer element fcnsegment against the C API's apply loop on the same frames.

    python benchmarks/gstreamer_fps.py [--model fcn.onnx] [--sdk DIR] [--rounds 2]

Without --model, a random-weight fcn32s is exported to ONNX in a temporary folder; without --sdk the native library
and the element are built there (`fcn-deploy capi build --gstreamer`). At each size the frames are videotestsrc's
ball pattern in RGB: the element runs `videotestsrc num-buffers=N ! fcnsegment (overlay) ! fakesink`, the C API
loop calls fcn_segmenter_apply on the same N frames dumped to a file. Both skip the first frame (model load,
first inference) and time the rest; the two alternate round by round, and the ratio is the median of per-round
ratios. Target: the element keeps at least 95 % of the C API's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from capi_overhead import random_model  # benchmarks/ is on sys.path when a script here runs

from fcn_deploy.progress import log as say

#: (width, height, frames) of each measurement
SIZES: tuple[tuple[int, int, int], ...] = ((480, 320, 30), (1280, 720, 12))
TARGET = 0.95

# `timer capi MODEL RAW W H N`: the C API loop; `timer gst PIPELINE N`: the element. Each prints frames/s over
# frames 1 .. N-1 (the element: between the class-count messages of the first and the last frame).
TIMER_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <gst/gst.h>
#include <fcn_deploy.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int capi(const char* model, const char* raw, int width, int height, int count) {
    size_t size = (size_t)width * height * 3;
    unsigned char* pixels = malloc(size * count);
    FILE* file = fopen(raw, "rb");
    if (!pixels || !file || fread(pixels, 1, size * count, file) != size * count) return 1;
    fclose(file);
    fcn_segmenter* seg = NULL;
    if (fcn_segmenter_create(model, "cpu", &seg) != FCN_OK) { fprintf(stderr, "%s\n", fcn_last_error()); return 1; }
    double start = 0;
    for (int i = 0; i < count; ++i) {
        fcn_image image = {pixels + size * i, width, height, width * 3, FCN_PIXEL_RGB8};
        fcn_mask* masks = NULL;
        if (fcn_segmenter_apply(seg, &image, 1, &masks) != FCN_OK) return 1;
        fcn_masks_release(masks, 1);
        if (i == 0) start = now_s();
    }
    printf("%.4f\n", (count - 1) / (now_s() - start));
    fcn_segmenter_destroy(seg);
    free(pixels);
    return 0;
}

static int element(const char* description, int count) {
    GError* error = NULL;
    GstElement* pipeline = gst_parse_launch(description, &error);
    if (pipeline == NULL || error != NULL) return 1;
    GstBus* bus = gst_element_get_bus(pipeline);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    double first = 0, last = 0;
    int seen = 0, failed = 0;
    for (;;) {
        GstMessage* m = gst_bus_timed_pop_filtered(bus, GST_CLOCK_TIME_NONE,
                                                   GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
        GstMessageType type = GST_MESSAGE_TYPE(m);
        if (type == GST_MESSAGE_ELEMENT && gst_structure_has_name(gst_message_get_structure(m), "fcnsegment")) {
            last = now_s();
            if (seen++ == 0) first = last;
        }
        failed = type == GST_MESSAGE_ERROR;
        gst_message_unref(m);
        if (type != GST_MESSAGE_ELEMENT) break;
    }
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(pipeline);
    if (failed || seen != count) return 1;
    printf("%.4f\n", (count - 1) / (last - first));
    return 0;
}

int main(int argc, char** argv) {
    gst_init(&argc, &argv);
    if (argc == 7 && strcmp(argv[1], "capi") == 0) return capi(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    if (argc == 4 && strcmp(argv[1], "gst") == 0) return element(argv[2], atoi(argv[3]));
    return 2;
}
"""


def build(folder: Path, sdk: Path | None) -> tuple[Path, Path, dict[str, str]]:
    """The deployment folder (built unless given), the compiled timer and the environment that finds the element."""
    from fcn_deploy.capi.gstreamer_build import gstreamer_flags
    from fcn_deploy.cli import run

    if sdk is None:
        sdk = folder / "sdk"
        if run(["capi", "build", "--out", str(sdk), "--gstreamer"]) != 0:
            sys.exit("the build failed")
    cflags, libs = gstreamer_flags()
    source, program = folder / "timer.c", folder / "timer"
    source.write_text(TIMER_SOURCE)
    subprocess.run(["gcc", "-O2", *cflags, f"-I{sdk / 'include'}", "-o", str(program), str(source),
                    f"-L{sdk / 'lib'}", f"-Wl,-rpath,{sdk / 'lib'}", "-lfcn_deploy", *libs], check=True)
    env = {**os.environ, "GST_PLUGIN_PATH": str(sdk / "lib" / "gstreamer-1.0"), "GST_REGISTRY": str(folder / "reg.bin")}
    return sdk, program, env


def frames_per_second(command: list[str], env: dict[str, str]) -> float:
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{command[1]} run failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--sdk", type=Path, help="a folder built with `fcn-deploy capi build --gstreamer`")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gst-bench-") as tmp:
        folder = Path(tmp)
        model = args.model or random_model(folder)
        _, timer, env = build(folder, args.sdk)
        rows = []
        for width, height, count in SIZES:
            source = f"videotestsrc num-buffers={count} pattern=ball ! video/x-raw,format=RGB,width={width},height={height}"
            raw = folder / f"frames-{width}x{height}.rgb"
            subprocess.run(["gst-launch-1.0", "-q", *f"{source} ! filesink location={raw}".split()], env=env, check=True)
            element_fps, capi_fps = [], []
            for r in range(args.rounds):
                runs = [("element", [str(timer), "gst", f"{source} ! fcnsegment model={model} ! fakesink", str(count)]),
                        ("capi", [str(timer), "capi", str(model), str(raw), str(width), str(height), str(count)])]
                for name, command in runs if r % 2 == 0 else runs[::-1]:
                    fps = frames_per_second(command, env)
                    (element_fps if name == "element" else capi_fps).append(fps)
                    say(f"{width}x{height} round {r + 1}: {name} {fps:.2f} frames/s")
            ratio = statistics.median(e / c for e, c in zip(element_fps, capi_fps))
            rows.append({"size": f"{width}x{height}", "frames": count, "element_fps": statistics.median(element_fps),
                         "capi_fps": statistics.median(capi_fps), "ratio": ratio, "met": ratio >= TARGET})
    print("| frame (W×H) | frames | fcnsegment frames/s | C API apply loop frames/s | element / C API | ≥ 95 % |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']} | {row['frames']} | {row['element_fps']:.2f} | {row['capi_fps']:.2f} | "
              f"{row['ratio']:.1%} | {'yes' if row['met'] else 'no'} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
