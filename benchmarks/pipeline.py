"""End-to-end ``infer`` throughput against the pure model time, and scaling with image size.

1. Pipeline efficiency on VOC-sized images (500×375, synthetic by default, or copies of the images of
   --images-from) in a temporary folder: interleaved rounds of ``infer_folder`` over the folder and of the
   bare backend on the same padded input size (384×512) for as many images, asking for the output whole-mode
   inference reads (the in-graph labels where the model has them). Efficiency is model time over pipeline time; it is given with and without the model load that every ``infer_folder`` call pays.
2. Scaling from 0.25 to 64 megapixels: each size runs ``infer_folder`` in a fresh process (so its peak RSS
   is its own) on enough copies of one synthetic image to total at least --min-megapixels. Time per
   megapixel excludes the model load (timed separately in the same process); 'model MP' counts the pixels
   the model really processes (tiles overlap, whole mode pads), so both per-image and per-model-pixel
   rates are shown.

    .venv/bin/python benchmarks/pipeline.py [--model M.onnx] [--json OUT] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_artifacts import DEFAULT_WORKDIR, make_artifacts, say  # noqa: E402

VOC_HW = (375, 500)
SCALING_SIDES = (512, 1024, 2048, 4096, 8192)  # 0.26, 1.0, 4.2, 16.8 and 67 megapixels


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour field with mild noise: realistic JPEG sizes and decode times at any size."""
    rng = np.random.default_rng(seed)
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    image = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, 512):  # row bands keep the float temporaries small
        rows = slice(top, min(height, top + 512))
        ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[rows, None]
        noise = rng.normal(0.0, 12.0, (ys.shape[0], 1)).astype(np.float32)
        for channel, (fy, fx) in enumerate(((3.0, 2.0), (5.0, 1.0), (1.5, 4.0))):
            plane = 127.5 + 100.0 * np.sin(2 * np.pi * (fy * ys + fx * xs + channel / 3.0)) + noise
            image[rows, :, channel] = np.clip(plane, 0, 255)
    return image


def write_jpeg(path: Path, image: np.ndarray) -> None:
    """Save ``image`` as a quality-90 JPEG (benchmark input, outside the repository)."""
    from PIL import Image

    Image.fromarray(image).save(path, format="JPEG", quality=90)


def voc_folder(folder: Path, count: int, images_from: Path | None) -> list[Path]:
    """``count`` VOC-sized JPEGs in ``folder``: copies of the images of ``images_from``, or synthetic ones."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(images_from.glob("*.jpg")) if images_from else []
    paths = []
    for index in range(count):
        path = folder / f"image_{index:04d}.jpg"
        if sources:
            shutil.copyfile(sources[index % len(sources)], path)
        else:
            write_jpeg(path, synthetic_image(*VOC_HW, seed=index))
        paths.append(path)
    return paths


def voc_efficiency(model: Path, count: int, rounds: int, device: str, images_from: Path | None) -> dict:
    """Interleaved rounds of infer_folder vs the bare backend over the same number of VOC-sized images."""
    from fcn_deploy.data.transforms import aligned_size
    from fcn_deploy.data.voc import image_size
    from fcn_deploy.infer import InferConfig, infer_folder
    from fcn_deploy.runtime import open_backend
    from fcn_deploy.spec import example_input

    work = Path(tempfile.mkdtemp(prefix="fcn-pipeline-"))
    try:
        images = voc_folder(work / "images", count, images_from)
        order = [image_size(p) for p in images]
        sizes = set(order)
        config = InferConfig(device=device, overwrite=True, progress=False)
        pipeline_s, load_s, model_s = [], [], []
        with open_backend(model, device) as backend:
            # the pass whole-mode inference makes: the labels output where the graph has one, else the logits
            run_model = backend.infer_labels if backend.has_labels else backend.infer
            inputs = {hw: example_input(backend.spec, 1, *aligned_size(hw)) for hw in sizes}
            backend.infer(inputs[order[0]])
            infer_folder(model, work / "images", work / "masks", config)  # warm-up (file cache, allocator)
            for round_index in range(rounds):
                say(f"VOC-size pipeline round {round_index + 1}/{rounds}")
                start = time.perf_counter()
                infer_folder(model, work / "images", work / "masks", config)
                pipeline_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                open_backend(model, device).close()
                load_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                for hw in order:
                    run_model(inputs[hw])
                model_s.append(time.perf_counter() - start)
        ratios = [m / p for m, p in zip(model_s, pipeline_s)]
        steady = [m / (p - l) for m, p, l in zip(model_s, pipeline_s, load_s)]
        return {
            "images": count, "image_sizes": sorted([list(s) for s in sizes]),
            "source": str(images_from) if images_from else "synthetic",
            "pipeline_s_median": float(np.median(pipeline_s)), "model_s_median": float(np.median(model_s)),
            "load_s_median": float(np.median(load_s)),
            "images_per_s": count / float(np.median(pipeline_s)),
            "images_per_s_steady": count / float(np.median(np.subtract(pipeline_s, load_s))),
            "efficiency": float(np.median(ratios)), "efficiency_steady": float(np.median(steady)),
            "rounds": rounds, "model_output": "labels" if backend.has_labels else "logits",
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- scaling -------------------------------------------------------------------------------------------


MODEL_OVERLAP = "model"  # the segmenter's default: the context the model needs, in pixels


def overlap_option(text: str) -> float | None:
    """An --overlap value: 'model' (the default tiling chosen from the model) or a fraction of the tile."""
    return None if text == MODEL_OVERLAP else float(text)


def scaling_point(model: Path, side: int, min_megapixels: float, device: str, overlap: str) -> dict:
    """Write copies of one synthetic image, run them in a fresh process, return its timing and peak RSS."""
    copies = max(1, math.ceil(min_megapixels * 1e6 / (side * side)))
    work = Path(tempfile.mkdtemp(prefix="fcn-scaling-"))
    try:
        images = work / "images"
        images.mkdir()
        write_jpeg(images / "image_0000.jpg", synthetic_image(side, side))
        for index in range(1, copies):
            shutil.copyfile(images / "image_0000.jpg", images / f"image_{index:04d}.jpg")
        request = json.dumps({"model": str(model), "work": str(work), "side": side, "copies": copies,
                              "device": device, "overlap": overlap})
        done = subprocess.run([sys.executable, __file__, "--scaling-worker", request], capture_output=True, text=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"error: scaling run at {side}x{side} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling_worker(request: dict) -> None:
    """Child process: time the model load, run infer_folder on the prepared folder, print the figures."""
    from fcn_deploy.bench import peak_rss_mb
    from fcn_deploy.infer import InferConfig, infer_folder
    from fcn_deploy.runtime import open_backend
    from fcn_deploy.segmenter import SegmenterConfig

    side, model, device, copies = int(request["side"]), Path(request["model"]), request["device"], request["copies"]
    work, overlap = Path(request["work"]), overlap_option(str(request["overlap"]))
    start = time.perf_counter()
    open_backend(model, device).close()
    load_s = time.perf_counter() - start
    rss_before = peak_rss_mb()
    config = InferConfig(device=device, overwrite=True, progress=False, segmenter=SegmenterConfig(overlap=overlap))
    start = time.perf_counter()
    summary = infer_folder(model, work / "images", work / "masks", config)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    record = summary.images[0]
    tile_hw = _tile_hw(model, device, record.mode, side, overlap)
    image_mp = copies * side * side / 1e6
    model_mp = copies * record.tiles * tile_hw[0] * tile_hw[1] / 1e6
    print(json.dumps({
        "side": side, "megapixels": side * side / 1e6, "copies": copies, "mode": record.mode, "tiles": record.tiles,
        "tile_hw": list(tile_hw), "overlap": request["overlap"], "seconds": seconds, "load_s": load_s,
        "s_per_megapixel": (seconds - load_s) / image_mp, "s_per_model_megapixel": (seconds - load_s) / model_mp,
        "segment_ms": [r.milliseconds for r in summary.images], "peak_rss_mb": peak,
        "rss_before_infer_mb": rss_before,
    }), flush=True)


def _tile_hw(model: Path, device: str, mode: str, side: int, overlap: float | None) -> tuple[int, int]:
    """The input size each model pass had: the padded image (whole) or the tile (slide)."""
    if mode == "whole":
        from fcn_deploy.data.transforms import aligned_size

        return aligned_size((side, side))
    from fcn_deploy.segmenter import SegmenterConfig, open_segmenter

    with open_segmenter(model, device, SegmenterConfig(overlap=overlap)) as segmenter:
        return segmenter.plan((side, side)).tile_hw


def scaling(model: Path, sides: tuple[int, ...], min_megapixels: float, device: str, overlaps: tuple[str, ...]) -> list[dict]:
    """Every size at every overlap, each in its own process."""
    points = []
    for overlap in overlaps:
        for side in sides:
            say(f"scaling: {side}x{side} ({side * side / 1e6:.2f} MP), overlap {overlap}")
            points.append(scaling_point(model, side, min_megapixels, device, overlap))
    return points


# --- command line --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    """Both measurements for one model; returns the JSON-ready results."""
    model = Path(args.model) if args.model else make_artifacts(Path(args.workdir)).fp32
    images_from = Path(args.images_from) if args.images_from else None
    sides = SCALING_SIDES[:3] if args.quick else SCALING_SIDES
    load_start = " ".join(f"{v:.1f}" for v in os.getloadavg())
    voc = voc_efficiency(model, args.images, args.rounds, args.device, images_from)
    points = scaling(model, sides, args.min_megapixels, args.device, tuple(args.overlap))
    load_end = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return {"model": str(model), "voc": voc, "scaling": points, "load_average_start": load_start,
            "load_average_end": load_end}


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (also used by report.py)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX model (default: a random-weight fcn32s made in --workdir)")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="where default artifacts are kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=32, help="VOC-sized images per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images-from", help="copy these JPEGs (cycled) instead of synthesising images")
    parser.add_argument("--min-megapixels", type=float, default=4.0, help="pixels per scaling run (copies)")
    parser.add_argument("--overlap", nargs="+", default=[MODEL_OVERLAP, "0.25"],
                        help="slide-mode overlaps: 'model' (the default tiling) or fractions of the tile")
    parser.add_argument("--quick", action="store_true", help="scaling up to 4 megapixels only")
    parser.add_argument("--json", help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    results = run(args)
    text = json.dumps(results, indent=2)
    if args.json:
        from fcn_deploy.fileio import write_text_atomic

        write_text_atomic(args.json, text + "\n")
    print(text)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--scaling-worker":
        scaling_worker(json.loads(sys.argv[2]))
    else:
        main()
