"""``infer --ray`` against plain ``infer`` on one folder, in one run: fixed overhead, steady state, planning memory.

    unshare -n sh -c 'ip link set lo up && python benchmarks/ray_infer.py'   # as root: a loopback-only network
    python benchmarks/ray_infer.py --images 60 --size 256x320                # one node only outside a namespace

Steady-state images/s on Ray comes from two jobs of N and 2N images on the same running cluster, after a first
4-image job has warmed it (N / (T(2N) - T(N))); the per-job overhead is what the N-image job took beyond its
steady-state share (connect, actor start and model load, shutdown), and the fixed overhead adds the nodes'
start and stop. Planning memory is the driver's
Python allocation peak (tracemalloc) while listing and planning a folder of 100,000 empty image files and
building the path blocks handed to Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image


def make_model(folder: Path) -> Path:
    """A random-weight 21-class fcn32s exported to ONNX."""
    import torch

    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    torch.manual_seed(0)
    checkpoint = save_checkpoint(folder / "fcn.pt", build_model("fcn32s", 21), Checkpoint(spec=ModelSpec(arch="fcn32s")))
    return export_onnx(checkpoint, folder / "fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path


def make_images(folder: Path, count: int, size: tuple[int, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        rgb = np.random.default_rng(index).integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / f"{index:05d}.jpg", quality=90)
    return folder


def loopback_only() -> bool:
    """This process sees no network interface but loopback (a private namespace)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def ray_figures(model: Path, warm: Path, small: Path, large: Path, work: Path, count: int, nodes: int,
                workers: int) -> dict:
    """Start, a first small job (the cluster's one-time warm-up), jobs of N and 2N images, stop."""
    from fcn_deploy.cluster import RayConfig, infer_on_ray, short_temp_dir, start_node
    from fcn_deploy.infer import InferConfig

    config = InferConfig(device="cpu", progress=False, overwrite=True)
    started = time.perf_counter()
    head = start_node(short_temp_dir(), num_cpus=2 if nodes == 1 else 1)
    extra = [start_node(short_temp_dir(), head=head.address, num_cpus=1) for _ in range(nodes - 1)]
    start_s = time.perf_counter() - started
    try:
        cluster = RayConfig(address=head.address, workers=workers, cpus_per_worker=1 if nodes > 1 else 0.5)
        warm_s = timed(lambda: infer_on_ray(model, warm, work / f"ray{nodes}-warm", config, cluster))
        small_s = timed(lambda: infer_on_ray(model, small, work / f"ray{nodes}-small", config, cluster))
        large_s = timed(lambda: infer_on_ray(model, large, work / f"ray{nodes}-large", config, cluster))
    finally:
        stop_s = timed(lambda: [node.stop() for node in [*extra, head]])
    steady = count / (large_s - small_s) if large_s > small_s else float("nan")
    return {"nodes": nodes, "workers": workers, "start_s": round(start_s, 2), "first_job_4_images_s": round(warm_s, 2), "job_n_s": round(small_s, 2),
            "job_2n_s": round(large_s, 2), "stop_s": round(stop_s, 2), "steady_images_per_s": round(steady, 2),
            "per_job_overhead_s": round(small_s - count / steady, 2),
            "fixed_overhead_s": round(start_s + stop_s + small_s - count / steady, 2)}


def planning_memory(work: Path, files: int) -> dict:
    """Driver-side Python allocation peak while listing and planning ``files`` image paths."""
    import pyarrow

    from fcn_deploy.cluster import MAX_PATHS_PER_BLOCK
    from fcn_deploy.infer import InferConfig, plan_folder

    folder = work / "many"
    folder.mkdir()
    for index in range(files):
        (folder / f"image-{index:07d}.jpg").touch()
    tracemalloc.start()
    started = time.perf_counter()
    plan = plan_folder(folder, work / "many-out", InferConfig())
    blocks = [pyarrow.table({"path": list(plan.todo[i:i + MAX_PATHS_PER_BLOCK])})
              for i in range(0, len(plan.todo), MAX_PATHS_PER_BLOCK)]
    seconds = time.perf_counter() - started
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    arrow_bytes = sum(block.nbytes for block in blocks)
    return {"files": files, "seconds": round(seconds, 2), "python_peak_mib": round(peak / 2**20, 1),
            "python_kept_mib": round(current / 2**20, 1), "arrow_blocks_mib": round(arrow_bytes / 2**20, 1),
            "peak_bytes_per_file": round(peak / files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60, help="N: the small job's images (the large one has 2N)")
    parser.add_argument("--size", default="256x320", help="image HEIGHTxWIDTH")
    parser.add_argument("--files", type=int, default=100_000, help="files listed for the planning-memory figure")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    from fcn_deploy.cluster import loopback_environment

    os.environ.update(loopback_environment())  # the driver joins the benchmark's cluster with its token
    work = Path(tempfile.mkdtemp(prefix="fcn-ray-bench-"))
    try:
        from fcn_deploy.infer import InferConfig, infer_folder

        model = make_model(work)
        small = make_images(work / "small", args.images, (height, width))
        large = make_images(work / "large", 2 * args.images, (height, width))
        warm = make_images(work / "warm", 4, (height, width))
        config = InferConfig(device="cpu", progress=False, overwrite=True)
        plain_small = timed(lambda: infer_folder(model, small, work / "plain-small", config))
        plain_large = timed(lambda: infer_folder(model, large, work / "plain-large", config))
        figures: dict = {"images": args.images, "size": args.size, "plain": {
            "job_n_s": round(plain_small, 2), "job_2n_s": round(plain_large, 2),
            "steady_images_per_s": round(args.images / (plain_large - plain_small), 2)}}
        figures["ray_one_node"] = ray_figures(model, warm, small, large, work, args.images, nodes=1, workers=2)
        if loopback_only():
            figures["ray_two_nodes"] = ray_figures(model, warm, small, large, work, args.images, nodes=2, workers=2)
        else:
            figures["ray_two_nodes"] = "skipped: run inside a loopback-only network namespace (see the docstring)"
        figures["planning"] = planning_memory(work, args.files)
        text = json.dumps(figures, indent=2)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
