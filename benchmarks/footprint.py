"""Footprint of the runtime install (no PyTorch) beside the full install, in fresh virtual environments.

    python3 benchmarks/footprint.py [--runtime-venv DIR] [--full-venv DIR] [--model fcn.onnx] [--image photo.jpg]
                                    [--also LABEL=DIR ...] [--repeat 5] [--keep] [--json PATH]

Without --runtime-venv / --full-venv, two fresh environments are made in a temporary folder from this checkout:
``pip install .`` (the runtime) and ``pip install '.[torch]'`` (the full install), and removed afterwards unless
--keep. For each it prints the size on disk (allocated blocks, as du counts them), the largest packages, the time
to ``fcn-deploy --help`` and the time to the first mask of one image (``fcn-deploy infer`` in a fresh process,
the whole command: start, imports, model load, decode, inference, PNG write) with that process's peak RSS.
``--also LABEL=DIR`` measures further existing environments beside them (e.g. one with the CPU build of ONNX Runtime).
Times are medians of --repeat fresh processes, after one untimed run.

Without --model, a random-weight fcn32s is exported to ONNX with the full environment (the size of a real export).
Without --image, the first real VOC sample is used where the sample folder is beside the checkout, else a random
500×375 JPEG. Needs only the standard library; run it with any Python 3.10+ that has venv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VOC_IMAGES = REPO_ROOT.parent / "shared" / "voc-sample" / "VOCdevkit" / "VOC2012" / "JPEGImages"

# Runs a command as a child and prints its wall time and peak RSS (the child's, as the kernel reports it) as JSON.
MEASURE = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "returncode": done.returncode, "stderr": done.stderr[-2000:]}))
"""

# Writes a random-weight fcn32s checkpoint and its ONNX export (run by the full environment's Python).
EXPORT = r"""
import sys
import torch
from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
from fcn_deploy.export import ExportConfig, export_onnx
from fcn_deploy.model import build_model
from fcn_deploy.spec import ModelSpec
torch.manual_seed(0)
folder = sys.argv[1]
checkpoint = save_checkpoint(folder + "/fcn32s.pt", build_model("fcn32s", 21), Checkpoint(ModelSpec(arch="fcn32s")))
print(export_onnx(checkpoint, folder + "/fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path)
"""

# Writes a random 500×375 JPEG (run by an environment's Python, which has numpy and Pillow).
RANDOM_IMAGE = r"""
import sys
import numpy as np
from PIL import Image
Image.fromarray(np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(sys.argv[1])
"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_venv(folder: Path, requirement: str) -> Path:
    """A fresh virtual environment at ``folder`` with ``requirement`` installed (not editable)."""
    say(f"creating {folder.name}: pip install {requirement}")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    requirement], check=True)
    return folder


def disk_bytes(root: Path) -> int:
    """Bytes allocated to the files under ``root`` (each hard-linked file once, links not followed), like du."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def largest_packages(venv: Path, count: int = 6) -> list[tuple[str, int]]:
    """The ``count`` largest top-level entries of the environment's site-packages, with their bytes."""
    site = next(venv.glob("lib/python3*/site-packages"))
    entries = [e for e in site.iterdir() if not e.name.endswith((".dist-info", ".pth")) and e.name != "__pycache__"]
    sizes = [(e.name, disk_bytes(e) if e.is_dir() else os.lstat(e).st_blocks * 512) for e in entries]
    return sorted(sizes, key=lambda item: -item[1])[:count]


def has_torch(venv: Path) -> bool:
    check = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    return subprocess.run([str(venv / "bin" / "python"), "-c", check]).returncode == 0


def measure(command: list[str], repeat: int) -> dict[str, float]:
    """Median wall seconds and peak RSS (MiB) of ``repeat`` fresh runs of ``command``, after one untimed run."""
    runs = []
    for _ in range(repeat + 1):
        done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout)
        if result["returncode"] != 0:
            raise SystemExit(f"{' '.join(command)} failed (exit {result['returncode']}):\n{result['stderr']}")
        runs.append(result)
    timed = runs[1:]
    return {"seconds": statistics.median(r["seconds"] for r in timed),
            "peak_mib": statistics.median(r["peak_kib"] for r in timed) / 1024}


def footprint(venv: Path, model: Path, image: Path, work: Path, repeat: int) -> dict:
    """Size, largest packages, --help time and first-mask time with peak RSS of one environment."""
    cli = str(venv / "bin" / "fcn-deploy")
    images = Path(tempfile.mkdtemp(prefix="images-", dir=work))
    masks = Path(tempfile.mkdtemp(prefix="masks-", dir=work))
    shutil.copy(image, images / image.name)
    say(f"measuring {venv}")
    help_run = measure([cli, "--help"], repeat)
    infer_run = measure([cli, "infer", str(model), str(images), "--out", str(masks),
                         "--device", "cpu", "--overwrite"], repeat)
    if not (masks / (image.stem + ".png")).is_file():
        raise SystemExit(f"{venv}: infer wrote no mask")
    return {"venv": str(venv), "torch": has_torch(venv), "disk_mib": disk_bytes(venv) / 2**20,
            "largest": [(name, size / 2**20) for name, size in largest_packages(venv)],
            "help_s": help_run["seconds"], "help_peak_mib": help_run["peak_mib"],
            "first_mask_s": infer_run["seconds"], "first_mask_peak_mib": infer_run["peak_mib"]}


def markdown(columns: list[tuple[str, dict]], model: Path, image: Path, repeat: int) -> str:
    """The environments side by side, then each one's largest packages."""
    rows = [
        ("PyTorch installed", lambda r: "yes" if r["torch"] else "no"),
        ("size on disk", lambda r: f"{r['disk_mib']:.0f} MiB"),
        ("`fcn-deploy --help`", lambda r: f"{r['help_s']:.2f} s"),
        ("first mask (a fresh `fcn-deploy infer`)", lambda r: f"{r['first_mask_s']:.2f} s"),
        ("peak RSS of that process", lambda r: f"{r['first_mask_peak_mib']:.0f} MiB"),
    ]
    lines = ["| | " + " | ".join(label for label, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(result) for _, result in columns) + " |" for name, cell in rows]
    lines.append("")
    lines.append(f"Model {model.name} ({model.stat().st_size / 2**20:.0f} MiB), image {image.name}; times are medians "
                 f"of {repeat} fresh processes after one untimed run, on {os.cpu_count()} CPU core(s).")
    for label, result in columns:
        largest = ", ".join(f"{name} {size:.0f}" for name, size in result["largest"])
        lines.append(f"Largest packages of {label} (MiB): {largest}.")
    return "\n".join(lines)


def labelled_venv(text: str) -> tuple[str, Path]:
    """``LABEL=DIR`` of --also."""
    label, sep, folder = text.partition("=")
    if not sep or not label or not folder:
        raise argparse.ArgumentTypeError(f"expected LABEL=DIR, got {text!r}")
    return label, Path(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime-venv", type=Path, help="An existing runtime environment (default: make one).")
    parser.add_argument("--full-venv", type=Path, help="An existing full environment (default: make one).")
    parser.add_argument("--model", type=Path, help="ONNX model (default: a random-weight fcn32s export).")
    parser.add_argument("--image", type=Path, help="Image to segment (default: the first VOC sample).")
    parser.add_argument("--repeat", type=int, default=5, help="Timed fresh processes per figure.")
    parser.add_argument("--also", type=labelled_venv, action="append", default=[], metavar="LABEL=DIR",
                        help="Another existing environment to measure, as a further column (repeatable).")
    parser.add_argument("--keep", action="store_true", help="Keep the environments this script made.")
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON here.")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="fcn-footprint-"))
    try:
        runtime = args.runtime_venv or make_venv(work / "runtime", str(REPO_ROOT))
        full = args.full_venv or make_venv(work / "full", f"{REPO_ROOT}[torch]")
        if has_torch(runtime):
            raise SystemExit(f"{runtime} has PyTorch installed: it is not a runtime install")
        model = args.model
        if model is None:
            say("exporting a random-weight fcn32s with the full environment")
            (work / "model").mkdir()
            subprocess.run([str(full / "bin" / "python"), "-c", EXPORT, str(work / "model")], check=True,
                           stdout=subprocess.DEVNULL)
            model = work / "model" / "fcn.onnx"
        image = args.image
        if image is None:
            samples = sorted(VOC_IMAGES.glob("*.jpg")) if VOC_IMAGES.is_dir() else []
            image = samples[0] if samples else work / "random.jpg"
            if not samples:
                subprocess.run([str(runtime / "bin" / "python"), "-c", RANDOM_IMAGE, str(image)], check=True)
        venvs = [("runtime: `pip install fcn-deploy`", runtime), ("full: `pip install 'fcn-deploy[torch]'`", full),
                 *args.also]
        columns = [(label, footprint(venv, model, image, work, args.repeat)) for label, venv in venvs]
        print(markdown(columns, model, image, args.repeat))
        results = dict(columns)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
