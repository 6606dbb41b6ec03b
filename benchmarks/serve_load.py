"""Load test of ``fcn-deploy serve`` on 127.0.0.1: 1, 4 and 8 concurrent clients over HTTP and gRPC.

Run it in the serve environment (``.venv-serve/bin/python benchmarks/serve_load.py``). It starts the server as a
subprocess on free loopback ports, sends a bounded number of requests per phase (and stops a phase at its time
limit), and reports requests/s, p50/p90/p99 latency, the batch sizes Triton formed (its statistics), errors and
the server's RSS (the serve process and its children) at the start and the end, beside in-process ``infer``
images/s on the same images in the same run. Images: the VOC sample where present, else synthetic VOC-sized
JPEGs. Model: ``--model``, else a random-weight fcn32s exported to ONNX in a temporary folder (speed does not
depend on the weights). Writes JSON, a Markdown table and a plot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

VOC_IMAGES = ROOT.parent / "shared" / "voc-sample" / "VOCdevkit" / "VOC2012" / "JPEGImages"
MODEL_NAME = "fcn_segment"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_model(folder: Path) -> Path:
    """A random-weight fcn32s exported to ONNX (the default shape range: whole-image passes up to 1024²)."""
    import torch

    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.export import ExportConfig, export_onnx
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    torch.manual_seed(0)
    checkpoint = save_checkpoint(folder / "fcn32s.pt", build_model("fcn32s", 21), Checkpoint(spec=ModelSpec(arch="fcn32s")))
    return export_onnx(checkpoint, folder / "fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path


def make_images(folder: Path) -> Path:
    """The VOC sample images, else six synthetic JPEGs of VOC sizes."""
    if VOC_IMAGES.is_dir() and any(VOC_IMAGES.glob("*.jpg")):
        return VOC_IMAGES
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index, (h, w) in enumerate([(375, 500), (500, 375), (333, 500), (281, 500), (375, 500), (366, 500)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(folder / f"synthetic_{index}.jpg", quality=90)
    return folder


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, MiB."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total / 1024


def batch_counts(client) -> dict[int, int]:
    """Executions per batch size so far (Triton's statistics)."""
    stats = client.get_inference_statistics(MODEL_NAME)["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}


def run_phase(protocol: str, port: int, payloads: list[bytes], concurrency: int, requests: int,
              time_limit: float) -> dict:
    """``requests`` requests from ``concurrency`` threads (each its own client), stopped at ``time_limit``."""
    from fcn_deploy.serving.client import Endpoint, RemoteSegmenter

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        remote = RemoteSegmenter(Endpoint(protocol, f"127.0.0.1:{port}"), timeout_s=120)
        try:
            while time.monotonic() < deadline:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                started = time.perf_counter()
                try:
                    remote.segment(payloads[index % len(payloads)])
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
                except Exception as exc:  # counted, never hidden
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            remote.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(time_limit + 180)
    seconds = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000.0 if latencies else np.zeros(1)
    return {"protocol": protocol, "concurrency": concurrency, "sent": len(latencies) + len(errors),
            "ok": len(latencies), "errors": len(errors), "error_examples": errors[:3], "seconds": round(seconds, 2),
            "requests_per_s": round(len(latencies) / seconds, 3),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def in_process_rate(model: Path, images: Path, work: Path) -> float:
    """``infer`` images/s on the folder (the second of two runs, so the first pays the warm-up)."""
    from fcn_deploy.infer import InferConfig, infer_folder

    rate = 0.0
    for attempt in range(2):
        summary = infer_folder(model, images, work / f"infer{attempt}", InferConfig(device="cpu", progress=False))
        rate = summary.images_per_second
    return rate


def markdown(result: dict) -> str:
    rows = ["| protocol | clients | requests ok/sent | errors | requests/s | served / in-process | p50 ms | p90 ms "
            "| p99 ms | batch sizes formed (size: executions) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for phase in result["phases"]:
        batches = ", ".join(f"{size}: {count}" for size, count in sorted(phase["batches"].items()))
        rows.append(f"| {phase['protocol']} | {phase['concurrency']} | {phase['ok']}/{phase['sent']} | {phase['errors']} "
                    f"| {phase['requests_per_s']:.2f} | {phase['requests_per_s'] / result['infer_images_per_s']:.0%} "
                    f"| {phase['p50_ms']:.0f} | {phase['p90_ms']:.0f} | {phase['p99_ms']:.0f} | {batches} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=48, help="requests per phase")
    parser.add_argument("--time-limit", type=float, default=90.0, help="seconds per phase at most")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "serving.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "serving.png")
    args = parser.parse_args()
    import tritonclient.http as http

    from fcn_deploy.serving.tritonserver import python_backend_env
    from plot import line_chart

    with tempfile.TemporaryDirectory(prefix="serve-load-") as temp:
        work = Path(temp)
        model = args.model or make_model(work / "model")
        images = args.images or make_images(work / "images")
        payloads = [p.read_bytes() for p in sorted(images.glob("*.jpg"))]
        print(f"model {model}, {len(payloads)} images from {images}", flush=True)
        infer_rate = in_process_rate(model, images, work)
        print(f"in-process infer: {infer_rate:.2f} images/s", flush=True)
        http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
        env = {**python_backend_env(), "TMPDIR": str(work), "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "fcn_deploy.cli", "serve", str(model), "--device", "cpu",
                   "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
                   "--max-batch", "8", "--workspace", str(work / "workspace")]
        log = open(work / "serve.log", "wb")
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        client = http.InferenceServerClient(f"127.0.0.1:{http_port}")
        try:
            deadline = time.monotonic() + 240
            while True:
                with contextlib.suppress(Exception):
                    if client.is_model_ready(MODEL_NAME):
                        break
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start:\n{(work / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.5)
            run_phase("http", http_port, payloads, 1, len(payloads), 120)  # warm-up (not reported)
            rss_start = tree_rss_mib(server.pid)
            phases = []
            for protocol, port in (("http", http_port), ("grpc", grpc_port)):
                for concurrency in [int(c) for c in args.concurrency.split(",")]:
                    before = batch_counts(client)
                    phase = run_phase(protocol, port, payloads, concurrency, args.requests, args.time_limit)
                    after = batch_counts(client)
                    phase["batches"] = {size: after.get(size, 0) - before.get(size, 0) for size in after
                                        if after.get(size, 0) - before.get(size, 0)}
                    phases.append(phase)
                    print(json.dumps(phase), flush=True)
            rss_end = tree_rss_mib(server.pid)
        finally:
            client.close()
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(90)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            log.close()
        result = {"model": "fcn32s (random weights, ONNX, CPU)" if args.model is None else str(args.model),
                  "images": len(payloads), "image_source": "VOC sample" if images == VOC_IMAGES else "synthetic",
                  "cpu_cores": os.cpu_count(), "infer_images_per_s": round(infer_rate, 3),
                  "server_rss_mib": {"start": round(rss_start, 1), "end": round(rss_end, 1),
                                     "growth": round(rss_end / rss_start - 1.0, 4)},
                  "server_exit_code": server.returncode, "phases": phases}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    series = {f"{label} served": [(ph["concurrency"], ph["requests_per_s"]) for ph in phases if ph["protocol"] == p]
              for p, label in (("http", "HTTP"), ("grpc", "gRPC"))}
    concurrencies = sorted({ph["concurrency"] for ph in phases})
    series["in-process infer"] = [(c, infer_rate) for c in concurrencies]
    line_chart(series, args.plot, "fcn-deploy serve: images/s against concurrent clients", "concurrent clients",
               "images/s")
    print(markdown(result))
    print(f"server RSS {rss_start:.0f} -> {rss_end:.0f} MiB; wrote {args.json} and {args.plot}")


if __name__ == "__main__":
    main()
