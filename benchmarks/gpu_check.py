"""PyTorch on one CUDA GPU, without TensorRT and without a network: eager latency, tiling on CUDA, parity with the CPU.

Run through ``scripts/gpu-check.sh`` (which bounds the time and keeps every file in a temporary folder). It

1. refuses with exit code 2 and the reason when PyTorch sees no CUDA device (it never falls back to the CPU);
2. builds a random-weight fcn32s checkpoint (no downloads) in the temporary folder;
3. times the model in eager mode at 320×480, batch 1 and 8: FP32 (TF32 off), TF32 (cuDNN's default for
   convolutions), FP16 autocast, each in NCHW and channels-last (CUDA events, cuDNN autotuning on, medians);
4. compares each CUDA variant's argmax (and logits) with the CPU FP32 result on synthetic images;
5. runs ``fcn-deploy infer --device cuda`` (the PyTorch backend) on a synthetic folder of VOC-sized images, on
   a 2048×2048 image (tiled) and on an 8192×8192 image (tiled), and compares the folder's and the 2048 image's
   masks with ``infer --device cpu``;
6. prints a table and writes everything as JSON to the path given.

Usage: python benchmarks/gpu_check.py --out RESULT.json --workdir TMP_FOLDER
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HEIGHT, WIDTH = 320, 480
BATCHES = (1, 8)
WARMUP, ROUNDS = 15, 60
PARITY_IMAGES = 4
FOLDER_IMAGES = 16
TILED_SIDES = (2048, 8192)
CHILD_TIMEOUT_S = 240
NO_CUDA_EXIT = 2  # a required component (the CUDA device) is missing, as fcn-deploy's exit codes say


class NoCudaError(RuntimeError):
    """PyTorch sees no usable CUDA device."""


def require_cuda() -> Any:
    """torch, with at least one CUDA device visible; NoCudaError saying why otherwise."""
    import torch

    if torch.version.cuda is None:
        raise NoCudaError(f"PyTorch {torch.__version__} is a CPU-only build (torch.version.cuda is None)")
    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        note = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        raise NoCudaError(f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device{note}")
    return torch


def build_checkpoint(folder: Path) -> Path:
    """A random-weight fcn32s checkpoint with the default spec (whole passes up to 1024×1024, tiles above)."""
    import torch

    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    torch.manual_seed(0)
    return save_checkpoint(folder / "fcn32s-random.pt", build_model("fcn32s", 21), Checkpoint(spec=ModelSpec(arch="fcn32s")))


def synthetic_images(count: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """``count`` synthetic scenes (textured shapes on a noisy background) of ``size`` (height, width)."""
    from fcn_deploy.data.synth import synth_pair

    rng = np.random.default_rng(seed)
    return [synth_pair(size, rng)[0] for _ in range(count)]


def normalised(images: list[np.ndarray], spec: Any) -> np.ndarray:
    """uint8 H×W×3 images -> the float N×3×H×W input the checkpoint's model takes."""
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
    return ((np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255.0) - mean) / std


VARIANTS = {  # name -> (tf32 allowed, autocast fp16, channels-last)
    "fp32": (False, False, False),
    "fp32-channels-last": (False, False, True),
    "tf32": (True, False, False),
    "tf32-channels-last": (True, False, True),
    "fp16-autocast": (True, True, False),
    "fp16-autocast-channels-last": (True, True, True),
}


def _set_tf32(torch: Any, allowed: bool) -> None:
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed


def prepare(torch: Any, model: Any, x: Any, variant: str) -> Any:
    """Set ``variant``'s TF32 switch and memory format on ``model`` (in place) and return ``x`` in that format."""
    tf32, _, channels_last = VARIANTS[variant]
    _set_tf32(torch, tf32)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    return x.contiguous(memory_format=memory_format)


def forward(torch: Any, model: Any, x: Any, variant: str) -> Any:
    """One forward pass of a prepared ``model`` on a prepared CUDA tensor ``x``; float32 logits on the GPU."""
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=VARIANTS[variant][1]):
        return model(x).float()


def time_variant(torch: Any, model: Any, batch: int, variant: str) -> dict[str, Any]:
    """Median and p90 latency (CUDA events, after warm-up) of ``variant`` at batch × 320×480."""
    x = prepare(torch, model, torch.randn(batch, 3, HEIGHT, WIDTH, device="cuda"), variant)
    for _ in range(WARMUP):
        forward(torch, model, x, variant)
    torch.cuda.synchronize()
    times = []
    for _ in range(ROUNDS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        forward(torch, model, x, variant)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    median = statistics.median(times)
    return {"variant": variant, "batch": batch, "median_ms": round(median, 3),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 3), "images_per_s": round(batch * 1000.0 / median, 1)}


def parity(torch: Any, model: Any, spec: Any) -> list[dict[str, Any]]:
    """Argmax agreement and max |Δlogit| (share of max |logit|) of each CUDA variant with CPU FP32."""
    x = torch.from_numpy(normalised(synthetic_images(PARITY_IMAGES, (HEIGHT, WIDTH), seed=1), spec))
    with torch.inference_mode():
        reference = model.to("cpu", memory_format=torch.contiguous_format)(x).float().numpy()
    model.to("cuda")
    scale = float(np.abs(reference).max()) or 1.0
    rows = []
    for variant in VARIANTS:
        logits = forward(torch, model, prepare(torch, model, x.to("cuda"), variant), variant).cpu().numpy()
        rows.append({"variant": variant,
                     "argmax_agreement_pct": round(100.0 * float(np.mean(logits.argmax(1) == reference.argmax(1))), 3),
                     "max_abs_logit_diff_pct": round(100.0 * float(np.abs(logits - reference).max()) / scale, 3)})
    return rows


def write_folder(folder: Path, images: list[np.ndarray], fmt: str = "JPEG") -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"synthetic_{index:03d}.{'jpg' if fmt == 'JPEG' else 'png'}", format=fmt)
    return folder


def large_image(side: int) -> np.ndarray:
    """A side×side scene: a 1024×1024 synthetic scene tiled (cheap to make, not one repeated tile per model pass)."""
    scene = synthetic_images(1, (1024, 1024), seed=2)[0]
    reps = -(-side // 1024)
    return np.tile(scene, (reps, reps, 1))[:side, :side]


def infer_run(checkpoint: Path, folder: Path, out: Path, device: str, workdir: Path) -> dict[str, Any]:
    """``fcn-deploy infer CHECKPOINT FOLDER --device DEVICE`` in a child process; its summary with the wall time."""
    command = [sys.executable, "-m", "fcn_deploy.cli", "infer", str(checkpoint), str(folder), "--out", str(out),
               "--device", device]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, cwd=workdir)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {completed.returncode}:\n{completed.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    images = [r for r in summary["images"] if r["status"] == "ok"]
    return {"device": device, "backend": summary["backend"], "images": len(images),
            "modes": sorted({r["mode"] for r in images}), "tiles": sum(r["tiles"] for r in images),
            "segment_ms_total": round(sum(r["milliseconds"] for r in images), 1),
            "run_seconds": summary["totals"]["seconds"], "wall_seconds_with_startup": round(wall, 2),
            "megapixels": round(sum(r["height"] * r["width"] for r in images) / 1e6, 2)}


def mask_agreement(a: Path, b: Path) -> float:
    """Share (%) of pixels whose labels agree over every mask of folder ``a`` and its twin in ``b``."""
    from PIL import Image

    same = total = 0
    for mask in sorted(a.glob("*.png")):
        left, right = np.asarray(Image.open(mask)), np.asarray(Image.open(b / mask.name))
        same += int(np.count_nonzero(left == right))
        total += left.size
    return round(100.0 * same / max(total, 1), 3)


def tiling(checkpoint: Path, workdir: Path) -> dict[str, Any]:
    """``infer --device cuda`` on a folder and on large images; CPU comparisons where they stay cheap."""
    from PIL import Image

    results: dict[str, Any] = {}
    folder = write_folder(workdir / "folder", synthetic_images(FOLDER_IMAGES, (375, 500), seed=3))
    results["folder_cuda"] = infer_run(checkpoint, folder, workdir / "folder-cuda", "cuda", workdir)
    results["folder_cpu"] = infer_run(checkpoint, folder, workdir / "folder-cpu", "cpu", workdir)
    results["folder_mask_agreement_pct"] = mask_agreement(workdir / "folder-cuda", workdir / "folder-cpu")
    for side in TILED_SIDES:
        big = workdir / f"big{side}"
        big.mkdir()
        Image.fromarray(large_image(side)).save(big / f"scene_{side}.png", compress_level=1)
        results[f"tiled_{side}_cuda"] = infer_run(checkpoint, big, workdir / f"big{side}-cuda", "cuda", workdir)
        if side <= 2048:
            results[f"tiled_{side}_cpu"] = infer_run(checkpoint, big, workdir / f"big{side}-cpu", "cpu", workdir)
            results[f"tiled_{side}_mask_agreement_pct"] = mask_agreement(workdir / f"big{side}-cuda",
                                                                         workdir / f"big{side}-cpu")
    return results


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['gpu']} | PyTorch {result['torch']} | CUDA {result['cuda']} | cuDNN {result['cudnn']}")
    print(f"\nfcn32s (random weights) eager latency at {HEIGHT}x{WIDTH}:")
    print(f"{'variant':30s} {'batch':>5s} {'median ms':>10s} {'p90 ms':>8s} {'images/s':>9s} {'vs fp32':>8s}")
    base = {r["batch"]: r["median_ms"] for r in result["latency"] if r["variant"] == "fp32"}
    for r in result["latency"]:
        print(f"{r['variant']:30s} {r['batch']:5d} {r['median_ms']:10.3f} {r['p90_ms']:8.3f} "
              f"{r['images_per_s']:9.1f} {base[r['batch']] / r['median_ms']:7.2f}x")
    print("\nparity with CPU FP32 (synthetic images):")
    for r in result["parity"]:
        print(f"{r['variant']:30s} argmax agreement {r['argmax_agreement_pct']:8.3f}%   "
              f"max |dlogit| {r['max_abs_logit_diff_pct']:.3f}% of max |logit|")
    print("\nfcn-deploy infer through the PyTorch backend:")
    for key, value in result["tiling"].items():
        if isinstance(value, dict):
            print(f"{key:18s} {value['images']:3d} images {value['megapixels']:7.2f} MP  modes {','.join(value['modes']):11s} "
                  f"tiles {value['tiles']:5d}  segment {value['segment_ms_total']:9.1f} ms  "
                  f"run {value['run_seconds']:7.2f} s  (wall with start-up {value['wall_seconds_with_startup']:.1f} s)")
        else:
            print(f"{key:18s} {value:.3f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON result path")
    parser.add_argument("--workdir", type=Path, required=True, help="temporary folder for the checkpoint and images")
    args = parser.parse_args()
    try:
        torch = require_cuda()
    except NoCudaError as exc:
        print(f"error: no CUDA device: {exc}\n"
              "fix: run on a machine with an NVIDIA GPU, its driver and a CUDA build of PyTorch; "
              "this check never falls back to the CPU", file=sys.stderr)
        return NO_CUDA_EXIT
    from fcn_deploy.checkpoint import load_model

    torch.backends.cudnn.benchmark = True  # autotuned convolution kernels, as a deployment would use
    started = time.perf_counter()
    checkpoint = build_checkpoint(args.workdir)
    model, info = load_model(checkpoint)
    model = model.eval().to("cuda")
    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
        "model": "fcn32s (ResNet-18, random weights)", "input": [HEIGHT, WIDTH], "warmup": WARMUP, "rounds": ROUNDS,
    }
    result["latency"] = [time_variant(torch, model, batch, variant) for batch in BATCHES for variant in VARIANTS]
    result["parity"] = parity(torch, model, info.spec)
    result["tiling"] = tiling(checkpoint, args.workdir)
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
