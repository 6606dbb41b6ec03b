"""A/B of ONNX Runtime CPU session settings on one ONNX model, in interleaved rounds (evidence for tuning).

Each variant is its own session on the same file; round r runs every variant in turn (rotating the start),
and each variant's figure is the median over rounds of its time relative to the first variant (the
settings OrtBackend uses). Load time is measured per variant as well.

    .venv/bin/python benchmarks/ort_options.py MODEL.onnx [--size 320x480] [--batch 1] [--rounds 7] [--iters 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fcn_deploy.data.transforms import parse_size


def _options(ort, *, spinning: bool = True, threads: int = 0, level=None):
    options = ort.SessionOptions()
    options.graph_optimization_level = level if level is not None else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _plain_runner(session, name: str, batch: np.ndarray) -> Callable[[], None]:
    """session.run with a fresh output array per call (what OrtBackend does)."""
    return lambda: session.run(None, {name: batch})


def _bound_runner(ort, session, name: str, batch: np.ndarray) -> Callable[[], None]:
    """I/O binding: input bound once, output written into one preallocated buffer reused by every call."""
    output = session.get_outputs()[0]
    probe = session.run(None, {name: batch})[0]
    buffer = np.empty(probe.shape, probe.dtype)
    binding = session.io_binding()
    binding.bind_cpu_input(name, batch)
    binding.bind_output(output.name, "cpu", 0, buffer.dtype, buffer.shape, buffer.ctypes.data)

    def run() -> None:
        session.run_with_iobinding(binding)

    run.buffer = buffer  # type: ignore[attr-defined]  # the bound memory must live as long as the runner
    return run


def variants(ort, path: Path, batch: np.ndarray) -> dict[str, tuple[Callable[[], None], float]]:
    """name -> (one inference, session load seconds)."""
    made = {}
    specs = {
        "as OrtBackend (ALL, threads=default, spinning)": dict(),
        "no spinning": dict(spinning=False),
        "threads=1": dict(threads=1),
        "EXTENDED (no NCHWc layout)": dict(level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    }
    for label, kwargs in specs.items():
        start = time.perf_counter()
        session = ort.InferenceSession(str(path), _options(ort, **kwargs), providers=["CPUExecutionProvider"])
        load = time.perf_counter() - start
        name = session.get_inputs()[0].name
        made[label] = (_plain_runner(session, name, batch), load)
        if not kwargs:
            made["I/O binding, reused output buffer"] = (_bound_runner(ort, session, name, batch), load)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--size", default="320x480")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    import onnxruntime as ort

    height, width = parse_size(args.size)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    info = session.get_inputs()[0]
    dtype = np.float16 if info.type == "tensor(float16)" else np.uint8 if info.type == "tensor(uint8)" else np.float32
    shape = (args.batch, height, width, 3) if dtype == np.uint8 else (args.batch, 3, height, width)
    batch = (np.random.default_rng(0).random(shape) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    del session
    runs = variants(ort, Path(args.model), batch)
    for run, _ in runs.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    labels = list(runs)
    for round_index in range(args.rounds):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            run = runs[label][0]
            samples = []
            for _ in range(args.iters):
                start = time.perf_counter()
                run()
                samples.append(time.perf_counter() - start)
            times[label].append(float(np.median(samples)))
    reference = times[labels[0]]
    print(f"{'variant':50s} {'median ms':>10s} {'rel. time':>10s} {'load s':>7s}")
    for label in labels:
        rel = np.median([t / r for t, r in zip(times[label], reference)])
        print(f"{label:50s} {1e3 * np.median(times[label]):10.1f} {rel:10.3f} {runs[label][1]:7.2f}")


if __name__ == "__main__":
    main()
