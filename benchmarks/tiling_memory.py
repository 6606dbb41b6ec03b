"""Peak memory and time of tiled inference on one large random image (default 8192×8192), on the CPU.

Each case runs in a fresh child process:

- ``standin``: a cheap backend (each class a scaled input channel) isolates the cost of tiling,
  blending and streaming;
- ``onnx``: a random-weight FCN-32s exported to ONNX and run by ONNX Runtime through the same segmenter, on an
  in-memory image, ``--device cpu`` (its peak RSS from /proc/self/status, VmHWM, and the peak while segmenting
  measured separately after resetting the count);
- ``infer``: the command a user types, ``fcn-deploy infer MODEL DIR --out OUT --max-pixels N`` with every other
  option at its default (device auto), on a noise JPEG of that size: decode, segment, write the palette PNG.
  Its peak RSS is the child's own, from the rusage ``wait4`` returns to a small launcher process
  (``command_peak``: a child started by this script would report this script's own peak as well);
- ``folder``: the same command on a folder of three such JPEGs (the pipeline's pixel budget against one
  image's peak);
- ``tiff``: the same command on one tiled (256²) JPEG-compressed BigTIFF of that size (``fcn-deploy infer MODEL
  SCENE.tif --out OUT``), generated tile by tile and georeferenced: read window by window and written as a tiled
  label TIFF (then read back through GDAL, with rasterio), so neither the image nor its labels are ever whole in
  memory (its image and label terms do not apply; needs the ``tiff`` extra).

It also reports the pixels the model processed over the image's own and the time per image megapixel against
a 1024×1024 whole-image pass of the same backend (the default options' targets: at most 1.3× and 1.35×).

Each line also gives the terms of the memory bound: image bytes (3 a pixel), label bytes (1 a pixel) and the
stitching sums of the plan used (``fcn_deploy.tiling.stitch_bytes``), on top of the process before the image.
The limits are 1.2 GiB up to 12000×12000 and 1.6 GiB at 16000×16000 (``LIMITS_GIB``); the ``tiff`` case's is
1 GiB at any size, and its peak at each size within 10% of the smallest size's (``TIFF_LIMIT_GIB``,
``TIFF_GROWTH_LIMIT``: e.g. ``--sizes 10000,40000 --cases tiff``).

Usage: python benchmarks/tiling_memory.py [--sizes 4096,8192,12000,16000] [--cases standin,onnx,infer,folder,tiff]
       [--model PATH.onnx] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LIMITS_GIB = ((12000, 1.2), (16000, 1.6))  # (largest side, peak RSS limit): 1.2 GiB up to 12000², 1.6 GiB to 16000²
FOLDER_IMAGES = 3  # JPEGs in the folder case
TIFF_LIMIT_GIB = 1.0  # the tiff case (read and written window by window): 1 GiB at any size, 40000² included
TIFF_GROWTH_LIMIT = 1.10  # and its peak within 10% of the smallest size's measured in the same run
# the tiff case's scene is georeferenced (WGS 84 / UTM zone 33N, 0.5 m pixels), so its labels must be too
GEOTIFF_TAGS = [(33550, 12, 3, (0.5, 0.5, 0.0), True), (33922, 12, 6, (0.0, 0.0, 0.0, 500000.0, 4100000.0, 0.0), True),
                (34735, 3, 8, (1, 1, 0, 1, 3072, 0, 1, 32633), True)]
PIXEL_RATIO_LIMIT = 1.3  # pixels the model processes over the image's own, at the default options
TIME_RATIO_LIMIT = 1.35  # time per image megapixel over a 1-MP whole-image pass
REFERENCE_SIDE = 1024  # the 1-MP whole-image pass the time per megapixel is compared with


def reset_peak() -> bool:
    """Restart the peak RSS count from the current RSS (Linux /proc/self/clear_refs); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def random_image(size: int) -> np.ndarray:
    """A size×size×3 uint8 noise image."""
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def standin_backend():
    """A backend whose 21 class logits are scaled copies of the normalised input channels."""
    from fcn_deploy.runtime.base import Backend
    from fcn_deploy.spec import ModelSpec

    class ScaledChannels(Backend):
        name = "standin"

        def __init__(self) -> None:
            super().__init__(ModelSpec(arch="fcn32s"))
            self.scales = np.random.default_rng(1).standard_normal(self.spec.num_classes).astype(np.float32)

        def _infer(self, batch: np.ndarray) -> np.ndarray:
            logits = np.empty((batch.shape[0], self.spec.num_classes, *batch.shape[2:]), np.float32)
            for k, scale in enumerate(self.scales):
                np.multiply(batch[:, k % 3], scale, out=logits[:, k])
            return logits

    return ScaledChannels()


def export_random_fcn32s(folder: Path) -> Path:
    """A random-weight fcn32s checkpoint exported to ONNX in ``folder`` (no comparison run)."""
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    checkpoint = save_checkpoint(folder / "fcn32s-random.pt", build_model("fcn32s"), Checkpoint(ModelSpec(arch="fcn32s")))
    return export_onnx(checkpoint, folder / "fcn32s-random.onnx", ExportConfig(verify=False, progress=False)).onnx_path


def write_jpegs(size: int, folder: Path, count: int = 1) -> None:
    """``count`` size×size noise JPEGs in ``folder`` (the input of the ``infer`` and ``folder`` cases)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(random_image(size))
    for index in range(count):
        image.save(folder / f"noise-{size}-{index}.jpg", quality=90)


def write_tiled_tiff(size: int, folder: Path) -> None:
    """A size×size noise BigTIFF with 256² JPEG tiles in ``folder``, written from a generator in bounded memory."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    tiles = (-(-size // 256)) ** 2
    noise_tile = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    tifffile.imwrite(folder / f"noise-{size}.tif", data=(noise_tile for _ in range(tiles)), shape=(size, size, 3),
                     dtype=np.uint8, tile=(256, 256), photometric="rgb", compression="jpeg", bigtiff=True,
                     extratags=GEOTIFF_TAGS)


def gdal_reading(path: Path) -> dict:
    """What GDAL (through rasterio, when installed) reads of a label TIFF: its CRS, size, tiles and one window."""
    try:
        import rasterio
        from rasterio.windows import Window
    except ImportError:
        return {"gdal": "not checked: rasterio is not installed (pip install 'fcn-deploy[dev]')"}
    with rasterio.open(path) as labels:
        corner = labels.read(1, window=Window(labels.width - 300, labels.height - 300, 300, 300))
        return {"gdal": f"{labels.driver} {labels.width}x{labels.height} {labels.dtypes[0]} {labels.crs}, "
                        f"origin {labels.transform.c:.0f},{labels.transform.f:.0f}, blocks {labels.block_shapes[0]}, "
                        f"{labels.colorinterp[0].name}, classes {np.unique(corner).tolist()} in the last 300² window"}


def bound_terms(segmenter, size: int) -> dict:
    """The bound's terms for a size×size image under ``segmenter``'s plan, in MiB."""
    from fcn_deploy.tiling import stitch_bytes

    plan = segmenter.plan((size, size))
    return {"image_mib": round(3 * size * size / 2**20, 1), "labels_mib": round(size * size / 2**20, 1),
            "stitch_mib": round(stitch_bytes(plan, segmenter.spec.num_classes, labels_only=True) / 2**20, 1),
            "plan_tile": list(plan.tile_hw)}


def limit_gib(size: int) -> float:
    """The peak RSS limit for a size×size image: that of the smallest listed size it fits."""
    return next((limit for side, limit in LIMITS_GIB if size <= side), LIMITS_GIB[-1][1])


def cli_command() -> list[str]:
    """``fcn-deploy`` as installed beside this interpreter, else the same entry point through ``-m``."""
    script = Path(sys.executable).with_name("fcn-deploy")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fcn_deploy.cli"]


def run_cli_infer(case: str, size: int, model: str, images: Path, out: Path) -> dict:
    """``fcn-deploy infer MODEL IMAGES --out OUT --max-pixels N`` (defaults otherwise) as a fresh process; its time
    and its own peak RSS (``command_peak``), with the mode and tiles from the summary it writes."""
    source = next(images.iterdir()) if case == "tiff" else images  # the TIFF case: `infer scene.tif --out masks/`
    command = cli_command() + ["infer", model, str(source), "--out", str(out), "--max-pixels", str(size * size)]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "infer.log"
        returncode, seconds, cpu_seconds, peak_mib = command_peak(command, log)
        if returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {returncode}:\n{log.read_text(errors='replace')[-3000:]}")
    record = json.loads((out / "summary.json").read_text())["images"][0]
    terms = cli_bound_terms(model, size)
    if case == "tiff":
        terms.update(gdal_reading(out / f"noise-{size}.tif"))
    return {"case": case, "size": size, "images": len(list(images.iterdir())), "mode": record["mode"],
            "tiles": record["tiles"], "tile": terms["plan_tile"], "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2), "peak_rss_mib": round(peak_mib, 1),
            "command": f"fcn-deploy infer MODEL {'SCENE.tif' if case == 'tiff' else 'DIR'} --out OUT --max-pixels "
                       f"{size * size}", **terms}


# Run by a fresh interpreter: runs the command after the log path, its output to that log, and prints its exit code,
# wall seconds, CPU seconds (user + system) and peak RSS (``ru_maxrss``, KiB), all from ``wait4``, as JSON.
_PEAK_LAUNCHER = r"""
import json, os, subprocess, sys, time
with open(sys.argv[1], "wb") as log:
    started = time.perf_counter()
    child = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"returncode": os.waitstatus_to_exitcode(status), "seconds": time.perf_counter() - started,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_kib": usage.ru_maxrss}))
"""


def command_peak(command: list[str], log: Path) -> tuple[int, float, float, float]:
    """Run ``command`` (its output to ``log``); its exit code, wall and CPU seconds and own peak RSS in MiB (CPU
    seconds compare runs made at different loads on a shared machine; wall seconds do not).

    Started through a small launcher: a child's ``ru_maxrss`` starts from the peak of the address space it runs in
    until it execs, which for a child that ``subprocess`` starts (vfork) is its parent's, so a child of this script
    would report the peak of the images this script made (1.8 GiB at 16000², whatever the child used). The launcher's
    own peak, the floor of the figure, is that of a bare interpreter (about 10 MiB).
    """
    launched = subprocess.run([sys.executable, "-S", "-c", _PEAK_LAUNCHER, str(log), *command], check=True,
                              capture_output=True, text=True)
    figures = json.loads(launched.stdout.strip().splitlines()[-1])
    return figures["returncode"], figures["seconds"], figures["cpu_seconds"], figures["peak_kib"] / 1024


def cli_bound_terms(model: str, size: int) -> dict:
    """The bound's terms for the plan ``fcn-deploy infer`` uses on a size×size image (in this process, not the
    measured one)."""
    from fcn_deploy.runtime import open_backend
    from fcn_deploy.segmenter import Segmenter

    with open_backend(model, "cpu") as backend:
        return bound_terms(Segmenter(backend), size)


def run_case(case: str, size: int, model: str | None) -> dict:
    """Segment one random image with the case's backend in this process; return time, RSS and mode."""
    from fcn_deploy.bench import peak_rss_mb
    from fcn_deploy.runtime import open_backend
    from fcn_deploy.segmenter import Segmenter

    backend = standin_backend() if case == "standin" else open_backend(model, "cpu")
    reference_s = whole_pass_seconds(backend, REFERENCE_SIDE)
    opened_peak = peak_rss_mb()
    separate = reset_peak()
    image = random_image(size)
    started = time.perf_counter()
    with backend:
        segmenter = Segmenter(backend)
        result = segmenter.segment(image)
    seconds = time.perf_counter() - started
    segment_peak = peak_rss_mb()
    plan = segmenter.plan((size, size))
    processed = plan.count * plan.tile_hw[0] * plan.tile_hw[1] if result.mode == "slide" else size * size
    per_mp = seconds / (size * size / 1e6)
    reference_per_mp = reference_s / (REFERENCE_SIDE**2 / 1e6)
    return {"case": case, "size": size, "mode": result.mode, "tiles": result.tiles, "tile": list(result.input_hw),
            "seconds": round(seconds, 2), "peak_rss_mib": round(max(opened_peak, segment_peak), 1),
            "open_peak_mib": round(opened_peak, 1), "segment_peak_mib": round(segment_peak, 1) if separate else None,
            "classes_seen": int(np.unique(result.labels).size),
            "processed_pixel_ratio": round(processed / (size * size), 4),
            "seconds_per_mp": round(per_mp, 4), "whole_1mp_seconds_per_mp": round(reference_per_mp, 4),
            "time_per_mp_ratio": round(per_mp / reference_per_mp, 3), **bound_terms(segmenter, size)}


def whole_pass_seconds(backend, side: int, runs: int = 3) -> float:
    """Median seconds of a whole-image pass over a side×side image (after one warm-up), labels included."""
    from fcn_deploy.segmenter import Segmenter, SegmenterConfig

    segmenter = Segmenter(backend, SegmenterConfig(mode="whole"))
    image = random_image(side)
    segmenter.segment(image)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        segmenter.segment(image)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="8192", help="image sides, comma-separated (e.g. 4096,8192,12000)")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)  # one size (the child's, or the old option)
    parser.add_argument("--cases", default="standin,onnx")
    parser.add_argument("--model", help="an fcn-deploy ONNX file (default: export a random-weight fcn32s)")
    parser.add_argument("--json", help="also write every case's figures to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.size, args.model)))
        return 0
    sizes = [args.size] if args.size else [int(v) for v in args.sizes.split(",") if v.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    results, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if {"onnx", "infer", "folder", "tiff"} & set(cases) and model is None:
            print("exporting a random-weight fcn32s to ONNX ...", file=sys.stderr, flush=True)
            model = str(export_random_fcn32s(Path(tmp)))
        for size in sizes:  # one case at a time: the figures are peaks of a whole process
            for case in cases:
                figures = run_child(case, size, model, Path(tmp))
                results.append(figures)
                failed |= not report(figures)
    failed |= not report_tiff_growth(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


def run_child(case: str, size: int, model: str | None, tmp: Path) -> dict:
    """One case in a fresh process (``infer`` and ``folder``: the CLI on JPEGs written for them); its figures."""
    print(f"running {case} on {FOLDER_IMAGES if case == 'folder' else 'a'} {size}x{size} image(s) ...", file=sys.stderr,
          flush=True)
    if case in ("infer", "folder", "tiff"):
        assert model is not None
        images, out = tmp / f"images-{size}", tmp / f"masks-{size}"
        if case == "tiff":
            write_tiled_tiff(size, images)
        else:
            write_jpegs(size, images, FOLDER_IMAGES if case == "folder" else 1)
        try:
            return run_cli_infer(case, size, model, images, out)
        finally:
            shutil.rmtree(images, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "--child", case, "--size", str(size)]
    if model:
        command += ["--model", model]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def report(figures: dict) -> bool:
    """Print one case's lines; True when it meets its limits (peak RSS; pixels and time for the onnx case)."""
    limit = TIFF_LIMIT_GIB if figures["case"] == "tiff" else limit_gib(figures["size"])
    within = figures["peak_rss_mib"] <= limit * 1024
    count = f"{figures['images']} x " if figures.get("images", 1) > 1 else ""
    print(f"{figures['case']:8s} {count}{figures['size']}x{figures['size']}  mode {figures['mode']}  "
          f"{figures['tiles']} tiles of {figures['tile'][0]}x{figures['tile'][1]}  {figures['seconds']:.1f} s  peak RSS "
          f"{figures['peak_rss_mib']:.0f} MiB ({'within' if within else 'OVER'} {limit} GiB); bound terms: image "
          f"{figures['image_mib']:.0f} + labels {figures['labels_mib']:.0f} + stitch {figures['stitch_mib']:.0f} MiB",
          flush=True)
    if "open_peak_mib" in figures:
        print(f"{'':8s} opening the backend {figures['open_peak_mib']:.0f} MiB, segmenting "
              f"{figures['segment_peak_mib'] or float('nan'):.0f} MiB incl. the image; model processed "
              f"{figures['processed_pixel_ratio']:.3f}x the image's pixels (limit {PIXEL_RATIO_LIMIT}); "
              f"{figures['seconds_per_mp']:.3f} s per image MP against {figures['whole_1mp_seconds_per_mp']:.3f} s for a "
              f"{REFERENCE_SIDE}x{REFERENCE_SIDE} whole pass: {figures['time_per_mp_ratio']:.2f}x (limit "
              f"{TIME_RATIO_LIMIT})", flush=True)
    if figures["case"] in ("infer", "tiff"):
        megapixels = figures["size"] ** 2 / 1e6
        print(f"{'':8s} {figures['seconds'] / megapixels:.3f} s per image MP, end to end; "
              f"{figures['cpu_seconds'] / megapixels:.3f} CPU s per image MP", flush=True)
    if "gdal" in figures:
        print(f"{'':8s} read back by GDAL: {figures['gdal']}", flush=True)
    if figures["case"] == "onnx":
        within &= figures["processed_pixel_ratio"] <= PIXEL_RATIO_LIMIT
        within &= figures["time_per_mp_ratio"] <= TIME_RATIO_LIMIT
    return within


def report_tiff_growth(results: list[dict]) -> bool:
    """For the tiff case at several sizes: each peak against the smallest size's (the bound does not grow with
    the image: within ``TIFF_GROWTH_LIMIT``); True when every size is within it."""
    tiffs = sorted((r for r in results if r["case"] == "tiff"), key=lambda r: r["size"])
    if len(tiffs) < 2:
        return True
    base, within = tiffs[0], True
    for figures in tiffs[1:]:
        ratio = figures["peak_rss_mib"] / base["peak_rss_mib"]
        within &= ratio <= TIFF_GROWTH_LIMIT
        print(f"tiff     {figures['size']}x{figures['size']} peak {ratio:.3f}x that of {base['size']}x{base['size']} "
              f"(limit {TIFF_GROWTH_LIMIT}x)", flush=True)
    return within


if __name__ == "__main__":
    sys.exit(main())
