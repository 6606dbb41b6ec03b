"""Peak memory and time of tiled inference on one large random image (default 8192×8192), on the CPU.

Each case runs in a fresh child process; its peak RSS is read from /proc/self/status (VmHWM; ``resource.getrusage``
elsewhere), and the peak while segmenting is measured separately after resetting the count:

- ``standin``: a cheap backend (each class a scaled input channel) isolates the cost of tiling,
  blending and streaming;
- ``onnx``: a random-weight FCN-32s exported to ONNX and run by ONNX Runtime through the same segmenter.

It also reports the pixels the model processed over the image's own and the time per image megapixel against
a 1024×1024 whole-image pass of the same backend (the default options' targets: at most 1.3× and 1.35×).

Usage: python benchmarks/tiling_memory.py [--size 8192] [--cases standin,onnx] [--model PATH.onnx]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LIMIT_GIB = 1.5
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
            "time_per_mp_ratio": round(per_mp / reference_per_mp, 3)}


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
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--cases", default="standin,onnx")
    parser.add_argument("--model", help="an fcn-deploy ONNX file (default: export a random-weight fcn32s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.size, args.model)))
        return 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if "onnx" in cases and model is None:
            print("exporting a random-weight fcn32s to ONNX ...", file=sys.stderr, flush=True)
            model = str(export_random_fcn32s(Path(tmp)))
        failed = False
        for case in cases:
            command = [sys.executable, __file__, "--child", case, "--size", str(args.size)]
            if model:
                command += ["--model", model]
            print(f"running {case} on a {args.size}x{args.size} image ...", file=sys.stderr, flush=True)
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            figures = json.loads(output.strip().splitlines()[-1])
            within = figures["peak_rss_mib"] <= LIMIT_GIB * 1024
            failed |= not within
            print(f"{case:8s} {figures['size']}x{figures['size']}  mode {figures['mode']}  {figures['tiles']} tiles of "
                  f"{figures['tile'][0]}x{figures['tile'][1]}  {figures['seconds']:.1f} s  "
                  f"peak RSS {figures['peak_rss_mib']:.0f} MiB ({'within' if within else 'OVER'} {LIMIT_GIB} GiB; "
                  f"opening the backend {figures['open_peak_mib']:.0f} MiB, "
                  f"segmenting {figures['segment_peak_mib'] or float('nan'):.0f} MiB incl. the image)")
            print(f"{'':8s} model processed {figures['processed_pixel_ratio']:.3f}x the image's pixels (limit "
                  f"{PIXEL_RATIO_LIMIT}); {figures['seconds_per_mp']:.3f} s per image MP against "
                  f"{figures['whole_1mp_seconds_per_mp']:.3f} s for a {REFERENCE_SIDE}x{REFERENCE_SIDE} whole pass: "
                  f"{figures['time_per_mp_ratio']:.2f}x (limit {TIME_RATIO_LIMIT})")
            if case == "onnx":
                failed |= figures["processed_pixel_ratio"] > PIXEL_RATIO_LIMIT
                failed |= figures["time_per_mp_ratio"] > TIME_RATIO_LIMIT
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
