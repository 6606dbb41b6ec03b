"""The native C library against the embedded one and Python's OpenVINO backend: start-up, latency, threads, memory.

    python benchmarks/capi_native.py [--model fcn.onnx] [--native DIR] [--embedded DIR] [--rounds 2]
                                     [--repeat 5] [--tiled 4096] [--tiled-rounds 1] [--memory 8192]

Without --model, a random-weight fcn32s is exported to ONNX in a temporary folder; without --native/--embedded
the libraries are built there (`fcn-deploy capi build`). Each measurement runs in a fresh process, the three
implementations interleaved round by round, so load changes on the machine hit them alike:

- first mask: from spawning the process to its first mask (library and model load included); the native
  library twice: cold (its compiled-model cache off, FCN_DEPLOY_CACHE_DIR empty: read, compile, first inference)
  and warm (a cache folder that an earlier process filled: read, load the compiled model, first inference);
- latency: the median of ``repeat`` sequential calls after the first;
- images/s with 1 and 2 host threads sharing one handle (Python: one thread, a Segmenter is not thread-safe),
  the 2-thread figure after one untimed call per thread: the first time two calls overlap the native library
  compiles its second engine, reported apart as "first overlap";
  tiled sizes (over 1 megapixel) make one call per figure and skip the images/s runs (1 thread: 1 / latency);
- peak RSS of the process (VmHWM of /proc/self/status: getrusage's ru_maxrss would start from the RSS of this
  script at the fork, which holds the test image);
- bare: OpenVINO's own inference on an already normalised input with the native library's compile settings
  (LATENCY hint, one stream of cores/2 threads, no pinning), so ``native latency / bare - 1`` is the library's per-image
  overhead.

Sizes: 320×480 (whole image) and ``--tiled``² (tiled; 0 skips it). ``--memory N`` adds one N×N image through the
native library alone and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from capi_overhead import random_model  # benchmarks/ is on sys.path when a script here runs

from fcn_deploy.progress import log as say

REPO_ROOT = Path(__file__).resolve().parents[1]

# Times one library: first mask, sequential latency, images/s with 1 and 2 threads, peak RSS (KiB); one JSON line.
TIMER_SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <fcn_deploy.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

typedef struct { fcn_segmenter* seg; fcn_image image; int repeat; int failed; } job;

static void* run(void* argument) {
    job* j = (job*)argument;
    for (int i = 0; i < j->repeat && !j->failed; ++i) {
        fcn_mask* masks = NULL;
        j->failed = fcn_segmenter_apply(j->seg, &j->image, 1, &masks) != FCN_OK;
        fcn_masks_release(masks, 1);
    }
    return NULL;
}

static double per_second(fcn_segmenter* seg, fcn_image image, int repeat, int threads) {
    job jobs[2] = {{seg, image, repeat, 0}, {seg, image, repeat, 0}};
    pthread_t ids[2];
    double start = now_ms();
    for (int t = 0; t < threads; ++t) pthread_create(&ids[t], NULL, run, &jobs[t]);
    for (int t = 0; t < threads; ++t) pthread_join(ids[t], NULL);
    double seconds = (now_ms() - start) / 1e3;
    return jobs[0].failed || jobs[1].failed ? -1.0 : threads * repeat / seconds;
}

int main(int argc, char** argv) {
    if (argc != 8) return 2;
    int width = atoi(argv[4]), height = atoi(argv[5]), repeat = atoi(argv[6]), throughput = atoi(argv[7]);
    size_t size = (size_t)width * height * 3;
    unsigned char* pixels = malloc(size);
    FILE* file = fopen(argv[3], "rb");
    if (!pixels || !file || fread(pixels, 1, size, file) != size) return 1;
    fclose(file);
    fcn_segmenter* seg = NULL;
    fcn_image image = {pixels, width, height, width * 3, FCN_PIXEL_RGB8};
    fcn_mask* masks = NULL;
    if (fcn_segmenter_create(argv[1], argv[2], &seg) != FCN_OK || fcn_segmenter_apply(seg, &image, 1, &masks) != FCN_OK) {
        fprintf(stderr, "%s\n", fcn_last_error());
        return 1;
    }
    fcn_masks_release(masks, 1);
    printf("first\n");
    fflush(stdout);
    double latency[64];
    if (repeat > 64) repeat = 64;
    for (int i = 0; i < repeat; ++i) {
        double start = now_ms();
        if (fcn_segmenter_apply(seg, &image, 1, &masks) != FCN_OK) return 1;
        latency[i] = now_ms() - start;
        fcn_masks_release(masks, 1);
    }
    double one = throughput ? per_second(seg, image, repeat, 1) : 0.0;
    /* untimed in the figure: the first overlap of two calls (the native library compiles its second engine then) */
    double start = now_ms();
    if (throughput) per_second(seg, image, 1, 2);
    double overlap_ms = now_ms() - start;
    double two = throughput ? per_second(seg, image, repeat, 2) : 0.0;
    double peak_kib = 0.0;
    FILE* status = fopen("/proc/self/status", "r");
    char line[256];
    while (status && fgets(line, sizeof line, status))
        if (sscanf(line, "VmHWM: %lf", &peak_kib) == 1) break;
    if (status) fclose(status);
    printf("{\"latency_ms\": [");
    for (int i = 0; i < repeat; ++i) printf("%s%.3f", i ? ", " : "", latency[i]);
    printf("], \"ips_1\": %.4f, \"ips_2\": %.4f, \"first_overlap_ms\": %.1f, \"peak_rss_mib\": %.1f}\n", one, two,
           overlap_ms, peak_kib / 1024.0);
    fcn_segmenter_destroy(seg);
    free(pixels);
    return 0;
}
"""

# The same measurements for Python's OpenVINO backend (one thread), plus bare OpenVINO inference.
PYTHON_SOURCE = r"""
import json, os, re, sys, time
import numpy as np
from fcn_deploy.runtime.openvino_backend import OpenVinoBackend, OpenVinoOptions
from fcn_deploy.segmenter import Segmenter
model, raw, width, height, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
image = np.fromfile(raw, np.uint8).reshape(height, width, 3)
segmenter = Segmenter(OpenVinoBackend(model, "cpu", OpenVinoOptions(cache_dir=None)))
segmenter.segment(image)
print("first", flush=True)
latency = []
for _ in range(repeat):
    start = time.perf_counter(); segmenter.segment(image); latency.append((time.perf_counter() - start) * 1e3)
start = time.perf_counter()
for _ in range(repeat if repeat > 1 else 0):
    segmenter.segment(image)
ips = repeat / (time.perf_counter() - start) if repeat > 1 else 1e3 / latency[0]
bare = []
if segmenter.spec.shape_range.contains_hw(height, width) and height % 32 == 0 and width % 32 == 0:
    import openvino as ov
    core = ov.Core()
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                                                 "INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False,
                                                 "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    batch = segmenter.spec.to_model_input(image[None])
    request.infer({0: batch})
    for _ in range(repeat):
        start = time.perf_counter(); request.infer({0: batch}); bare.append((time.perf_counter() - start) * 1e3)
peak = int(re.search(r"VmHWM:\s*(\d+)", open("/proc/self/status").read()).group(1)) / 1024.0
print(json.dumps({"latency_ms": latency, "ips_1": ips, "ips_2": 0.0, "peak_rss_mib": peak, "bare_ms": bare}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="fcn-deploy ONNX (default: a random fcn32s export)")
    parser.add_argument("--native", type=Path, help="folder of `capi build --runtime native` (default: build one)")
    parser.add_argument("--embedded", type=Path, help="folder of `capi build --runtime embedded` (default: build one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="calls per latency and per throughput run")
    parser.add_argument("--tiled", type=int, default=4096, help="side of the tiled image (0: skip)")
    parser.add_argument("--tiled-rounds", type=int, default=1, help="rounds at the tiled size (minutes each)")
    parser.add_argument("--memory", type=int, default=0, help="side of a native-only peak-RSS run (0: skip)")
    return parser.parse_args()


def build_timer(library_dir: Path, output: Path) -> Path:
    source = output.with_suffix(".c")
    source.write_text(TIMER_SOURCE)
    subprocess.run(["gcc", "-O2", "-std=c99", "-D_POSIX_C_SOURCE=200809L", f"-I{library_dir / 'include'}", "-o",
                    str(output), str(source), f"-L{library_dir / 'lib'}", f"-Wl,-rpath,{library_dir / 'lib'}",
                    f"-Wl,-rpath-link,{library_dir / 'lib'}", "-lfcn_deploy", "-pthread"], check=True)
    return output


def measure(command: list[str], env: dict[str, str] | None, folder: Path) -> dict:
    """Run one measuring process in ``folder`` (so that caches relative to the working folder stay out of the
    source tree): seconds from spawn to its first mask, and the figures it prints."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=folder)
    assert process.stdout is not None
    first_line = process.stdout.readline()
    first = time.perf_counter() - started
    rest = process.stdout.read()
    if process.wait() != 0 or first_line.strip() != "first":
        raise RuntimeError(f"{command[0]} failed (exit {process.returncode})")
    figures = json.loads(rest.strip().splitlines()[-1])
    figures["first_s"] = first
    return figures


def image_file(folder: Path, height: int, width: int) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:height, :width].astype(np.float32)
    pattern = np.stack([np.sin(x / 40) * 110 + 128, np.cos(y / 30) * 110 + 128, (x + 2 * y) % 256], -1)
    pixels = (pattern + rng.integers(0, 40, (height, width, 3))).clip(0, 255).astype(np.uint8)
    path = folder / f"image-{height}x{width}.rgb"
    pixels.tofile(path)
    return path


#: the native library's compiled-model cache: off (every process compiles) and a folder filled beforehand
NATIVE_COLD, NATIVE_WARM = "native", "native, warm cache"
#: one call per figure above this many pixels (tiled sizes); no images/s runs there
TILED_PIXELS = 1024 * 1024


def report(size: str, results: dict[str, list[dict]]) -> None:
    """One table row per implementation (medians over rounds); images/s of one call where none was measured."""
    say(f"\n{size}: first mask s | latency ms | img/s 1 thread | img/s 2 threads | peak RSS MiB")
    for name, runs in results.items():
        def med(key: str) -> float:
            return statistics.median(r[key] for r in runs)
        latency = statistics.median(v for r in runs for v in r["latency_ms"])
        one = med("ips_1") or 1e3 / latency
        two = f"{med('ips_2'):7.3f}" if med("ips_2") else "      -"
        say(f"  {name:18s} {med('first_s'):6.2f} | {latency:9.1f} | {one:7.3f} | {two} | {med('peak_rss_mib'):7.0f}")
    bare = [v for r in results.get("python", []) for v in r.get("bare_ms", [])]
    if bare and NATIVE_COLD in results:
        native = statistics.median(v for r in results[NATIVE_COLD] for v in r["latency_ms"])
        say(f"  bare OpenVINO inference {statistics.median(bare):.1f} ms: native overhead "
            f"{native / statistics.median(bare) - 1:+.1%}")
    for name in (NATIVE_COLD, NATIVE_WARM):
        runs = results.get(name, [])
        if runs and all(r["ips_2"] for r in runs):
            ratios = ", ".join(f"{r['ips_2'] / r['ips_1']:.2f}x" for r in runs)
            overlap = statistics.median(r["first_overlap_ms"] for r in runs)
            say(f"  {name}: 2 threads against 1 per round {ratios}; first overlap of two calls {overlap:.0f} ms")


def main() -> None:
    args = parse_args()
    from fcn_deploy.capi.build import build_library
    from fcn_deploy.capi.native_build import build_native_library

    with tempfile.TemporaryDirectory(prefix="capi-native-bench-") as tmp:
        folder = Path(tmp)
        model = args.model or random_model(folder)
        native = args.native or build_native_library(folder / "native").prefix
        embedded = args.embedded or build_library(folder / "embedded").library.parent.parent
        native_timer = build_timer(native, folder / "native-timer")
        cold, warm = {"FCN_DEPLOY_CACHE_DIR": ""}, {"FCN_DEPLOY_CACHE_DIR": str(folder / "cache")}
        # name: (timer, device, environment; None inherits this one)
        timers = {NATIVE_COLD: (native_timer, "cpu", cold), NATIVE_WARM: (native_timer, "cpu", warm),
                  "embedded": (build_timer(embedded, folder / "embedded-timer"), "openvino:f32", None)}
        sizes = [(320, 480)] + ([(args.tiled, args.tiled)] if args.tiled else [])
        for height, width in sizes:
            raw = image_file(folder, height, width)
            whole = height * width <= TILED_PIXELS
            repeat = args.repeat if whole else 1
            # fill the warm cache (the compiled model does not depend on the image)
            measure([str(native_timer), str(model), "cpu", str(raw), str(width), str(height), "1", "0"], warm, folder)
            results: dict[str, list[dict]] = {name: [] for name in [*timers, "python"]}
            rounds = args.rounds if whole else args.tiled_rounds
            for round_index in range(rounds):
                for name, (timer, device, env) in timers.items():
                    command = [str(timer), str(model), device, str(raw), str(width), str(height), str(repeat),
                               str(int(whole))]
                    results[name].append(measure(command, env, folder))
                command = [sys.executable, "-c", PYTHON_SOURCE, str(model), str(raw), str(width), str(height),
                           str(repeat)]
                results["python"].append(measure(command, None, folder))
                say(f"{height}x{width}: round {round_index + 1}/{rounds} done")
            report(f"{height}x{width}", results)
        if args.memory:
            raw = image_file(folder, args.memory, args.memory)
            figures = measure([str(native_timer), str(model), "cpu", str(raw), str(args.memory), str(args.memory),
                               "1", "0"], cold, folder)
            say(f"\n{args.memory}x{args.memory} through the native library: peak RSS {figures['peak_rss_mib']:.0f} MiB, "
                f"{figures['latency_ms'][0] / 1e3:.1f} s a call")


if __name__ == "__main__":
    main()
