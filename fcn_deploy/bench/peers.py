"""``fcn-deploy bench --peers``: fcn-deploy's CPU paths beside the peers a user would try, in one interleaved run.

Peers: PyTorch eager (NCHW and channels-last), ``torch.compile`` (inductor, CPU), ONNX Runtime FP32 and INT8,
OpenVINO FP32, BF16 and INT8. Each gets the same input batch in its own format, is timed in interleaved rounds
(round r times every peer in turn, so the machine's load moves them together), and is reported with latency
percentiles, images/s, load (or compile) time, peak RSS of a fresh process, argmax agreement with PyTorch eager
FP32, and its analytic GFLOP/s as a share of the best matrix-multiply rate any library reached in the same run
for its precision. A peer that cannot run here (missing package, no compiler, no native BF16, no INT8 model) is a
row that says why.

The machine's limit is measured, not assumed: square matrix multiplies in numpy (its BLAS), PyTorch (oneDNN)
and OpenVINO, per precision (FP32, BF16, INT8 where a library offers it), sampled in every round; beside it the
theoretical peak from the CPU's cores, clock and vector units (``theoretical_peak`` says how).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.bench.probes import machine_info, peak_rss_mb
from fcn_deploy.bench.report import iters_in_round
from fcn_deploy.bench.run import _arch_gflop, find_source_checkpoint
from fcn_deploy.errors import FcnDeployError, InputError
from fcn_deploy.fileio import sha256_file, write_text_atomic
from fcn_deploy.metrics import agreeing_pixels
from fcn_deploy.progress import log
from fcn_deploy.workspace import CHECKPOINT_DIR, EXPORT_DIR

PEERS: tuple[str, ...] = (
    "pytorch-eager-nchw", "pytorch-eager-channels-last", "torch-compile-inductor",
    "onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-bf16", "openvino-int8",
    "openvino-ir-bf16", "openvino-ir-int8",
)
REFERENCE_PEER = "pytorch-eager-nchw"
#: the peers fcn-deploy itself offers (its deployment paths), per precision
OWN_PATHS = {"fp32": ("onnxruntime-fp32", "openvino-fp32"), "bf16": ("openvino-bf16", "openvino-ir-bf16"),
             "int8": ("onnxruntime-int8", "openvino-int8", "openvino-ir-int8")}
_PEER_PRECISION = {"pytorch-eager-nchw": "fp32", "pytorch-eager-channels-last": "fp32",
                   "torch-compile-inductor": "fp32", "onnxruntime-fp32": "fp32", "onnxruntime-int8": "int8",
                   "openvino-fp32": "fp32", "openvino-bf16": "bf16", "openvino-int8": "int8",
                   "openvino-ir-bf16": "bf16", "openvino-ir-int8": "int8"}
# the IR peers: the BF16 IR and NNCF's INT8 IR of 'build --target openvino' (OpenVINO on the IR's own precision)
_IR_PEERS = {"openvino-ir-bf16": "bf16", "openvino-ir-int8": "int8"}


@dataclass(frozen=True)
class PeerConfig:
    """The models (checkpoint, FP32 ONNX, optional INT8 ONNX), the input shape, and how long to time."""

    checkpoint: Path
    onnx: Path
    int8_onnx: Path | None = None
    bf16_ir: Path | None = None  # engines/fcn.bf16.xml of 'build --target openvino'
    int8_ir: Path | None = None  # engines/fcn.int8.xml (NNCF)
    size: tuple[int, int] = (320, 480)
    batch: int = 1
    warmup: int = 2
    iters: int = 18
    rounds: int = 6
    measure_rss: bool = True
    matmul_size: int = 1024
    images: Path | None = None  # a folder of images for the agreement (default: the timing input)
    peers: tuple[str, ...] = PEERS
    note: str = ""  # where the models came from (e.g. a random-weight model made for a clean checkout)

    def __post_init__(self) -> None:
        if self.iters < self.rounds or self.rounds < 1:
            raise InputError(f"--iters {self.iters} must be at least --rounds {self.rounds} (>= 1)")
        if self.batch < 1 or min(self.size) < 32 or any(v % 32 for v in self.size):
            raise InputError(f"peers need a positive batch and a size on the 32-pixel grid, got {self.batch}, "
                             f"{self.size}")
        unknown = [p for p in self.peers if p not in PEERS]
        if unknown:
            raise InputError(f"unknown peers {unknown}", f"choose from: {', '.join(PEERS)}")
        if self.matmul_size < 64:
            raise InputError(f"matmul size must be >= 64, got {self.matmul_size}")


@dataclass(frozen=True)
class PeerRow:
    """One peer: its timing and memory, or why it could not run."""

    name: str
    precision: str
    unavailable: str | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    images_per_s: float | None = None
    load_s: float | None = None  # open (and, for torch.compile, the first, compiling call)
    peak_rss_mb: float | None = None
    agreement: float | None = None  # argmax agreement with PyTorch eager FP32
    gflops_per_s: float | None = None
    matmul_fraction: float | None = None  # GFLOP/s over the best matmul rate of its precision in this run
    speedup_vs_eager: float | None = None  # median over rounds of eager NCHW time / this time
    samples: int = 0


@dataclass(frozen=True)
class MatmulRate:
    """One library's n×n matrix-multiply rate at one precision (best over the run's samples), or why none."""

    library: str
    precision: str
    gflops: float | None
    samples: int = 0
    note: str = ""


@dataclass(frozen=True)
class PeerReport:
    """Everything ``bench --peers`` measured."""

    created: str
    machine: tuple[tuple[str, str], ...]
    config: dict[str, Any]
    rows: tuple[PeerRow, ...]
    matmul: tuple[MatmulRate, ...]
    theoretical: tuple[tuple[str, float], ...]  # precision -> GFLOP/s (INT8: GOP/s)
    theoretical_how: str
    gflop_per_batch: float | None

    def best_matmul(self, precision: str) -> MatmulRate | None:
        """The fastest library at ``precision`` in this run."""
        rates = [m for m in self.matmul if m.precision == precision and m.gflops]
        return max(rates, key=lambda m: m.gflops or 0.0) if rates else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        data = dataclasses.asdict(self)
        data["machine"] = dict(self.machine)
        data["theoretical"] = dict(self.theoretical)
        return json.loads(json.dumps(data, default=str))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeerReport:
        """Rebuild a report from ``to_dict`` output (to re-render a saved one)."""
        try:
            return cls(created=data["created"], machine=tuple(data["machine"].items()), config=dict(data["config"]),
                       rows=tuple(PeerRow(**row) for row in data["rows"]),
                       matmul=tuple(MatmulRate(**rate) for rate in data["matmul"]),
                       theoretical=tuple(data["theoretical"].items()), theoretical_how=data["theoretical_how"],
                       gflop_per_batch=data["gflop_per_batch"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"not an fcn-deploy peer report ({exc})") from exc

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the report atomically as indented JSON."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)


# --- the peers ---------------------------------------------------------------------------------------


@dataclass
class _Peer:
    """An opened peer: its input made from uint8 RGB, a function from that input to float32 N×C×H×W logits."""

    name: str
    prepare: Callable[[np.ndarray], Any]
    run: Callable[[Any], np.ndarray]
    load_s: float
    rgb: dataclasses.InitVar[np.ndarray]
    close: Callable[[], None] = lambda: None
    rounds: list[list[float]] = field(default_factory=list)

    def __post_init__(self, rgb: np.ndarray) -> None:
        self.feed = self.prepare(rgb)


def _torch_peer(name: str, config: PeerConfig, rgb: np.ndarray) -> _Peer:
    """PyTorch eager (NCHW or channels-last) or torch.compile with inductor, on the CPU."""
    from fcn_deploy.checkpoint import load_model
    from fcn_deploy.deps import require
    from fcn_deploy.spec import normalize_images

    torch = require("torch")
    started = time.perf_counter()
    model, info = load_model(config.checkpoint)
    model = model.eval()
    layout = torch.contiguous_format if name == "pytorch-eager-nchw" else torch.channels_last
    model = model.to(memory_format=layout)
    if name == "torch-compile-inductor":
        model = torch.compile(model, backend="inductor", dynamic=False)

    def prepare(batch: np.ndarray) -> Any:
        return torch.from_numpy(normalize_images(batch, info.spec.mean, info.spec.std)).contiguous(memory_format=layout)

    def run(inputs: Any) -> np.ndarray:
        with torch.inference_mode():
            return model(inputs).float().contiguous().numpy()

    if name == "torch-compile-inductor":
        run(prepare(rgb))  # compiles: part of the load time
    return _Peer(name, prepare, run, time.perf_counter() - started, rgb)


def _backend_peer(name: str, config: PeerConfig, rgb: np.ndarray) -> _Peer:
    """An fcn-deploy runtime backend (ONNX Runtime or OpenVINO) on the FP32 or INT8 ONNX, or OpenVINO on an IR."""
    from fcn_deploy.runtime import BackendChoice, open_backend

    if name in _IR_PEERS:
        precision = _IR_PEERS[name]
        ir = config.int8_ir if precision == "int8" else config.bf16_ir
        if ir is None:
            raise InputError(f"no {precision.upper()} OpenVINO IR given",
                             f"build one: fcn-deploy build --target openvino --precision {precision}, and pass "
                             f"engines/fcn.{precision}.xml")
        started = time.perf_counter()
        backend = open_backend(ir, "cpu")
        return _Peer(name, backend.spec.to_model_input, backend.infer, time.perf_counter() - started, rgb,
                     backend.close)
    runtime, precision = name.split("-", 1)
    path = config.int8_onnx if precision == "int8" else config.onnx
    if path is None:
        raise InputError("no INT8 ONNX given", "make one with 'fcn-deploy calibrate --target cpu' and pass it")
    if runtime == "openvino":
        choice = BackendChoice("openvino", "bf16" if precision == "bf16" else "f32")
    else:
        choice = BackendChoice("onnxruntime")
    started = time.perf_counter()
    backend = open_backend(path, "cpu", choice)
    return _Peer(name, backend.spec.to_model_input, backend.infer, time.perf_counter() - started, rgb,
                 backend.close)


def open_peer(name: str, config: PeerConfig, rgb: np.ndarray) -> _Peer:
    """Open one peer for input ``rgb`` (uint8 N×H×W×3); raises with the reason where it cannot run."""
    if name.startswith(("pytorch", "torch")):
        return _torch_peer(name, config, rgb)
    return _backend_peer(name, config, rgb)


def _reason(exc: BaseException) -> str:
    """A one-line reason a peer cannot run."""
    if isinstance(exc, FcnDeployError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# --- inputs ------------------------------------------------------------------------------------------


def peer_input(config: PeerConfig) -> np.ndarray:
    """The uint8 N×H×W×3 timing batch: random pixels, seeded."""
    height, width = config.size
    return np.random.default_rng(0).integers(0, 256, (config.batch, height, width, 3), dtype=np.uint8)


def agreement_batches(config: PeerConfig) -> list[np.ndarray]:
    """Batches for the agreement: each image of ``config.images`` centre-cropped/padded to the size, else the
    timing batch."""
    if config.images is None:
        return [peer_input(config)]
    from fcn_deploy.imageio import is_image_path, read_image
    from fcn_deploy.tiling import pad_to

    height, width = config.size
    paths = sorted(p for p in Path(config.images).iterdir() if is_image_path(p.name))
    if not paths:
        raise InputError(f"no images in {config.images}", "pass a folder of jpg/png images to --peer-images")
    batches = []
    for path in paths:
        image = read_image(path)
        top, left = max(0, (image.shape[0] - height) // 2), max(0, (image.shape[1] - width) // 2)
        crop = image[top : top + height, left : left + width]
        batches.append(np.ascontiguousarray(pad_to(crop, height, width)[None].repeat(config.batch, axis=0)))
    return batches


# --- matrix-multiply rates ---------------------------------------------------------------------------


class MatmulProbes:
    """n×n matmuls in numpy, PyTorch and OpenVINO at FP32, BF16 and INT8, sampled between the peer rounds."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.runners: dict[tuple[str, str], Callable[[], None]] = {}
        self.notes: dict[tuple[str, str], str] = {}
        self.best: dict[tuple[str, str], float] = {}
        self.samples: dict[tuple[str, str], int] = {}
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
        out = np.empty_like(a)
        self.runners[("numpy", "fp32")] = lambda: np.matmul(a, b, out=out)
        self.notes[("numpy", "bf16")] = "numpy has no bfloat16"
        self.notes[("numpy", "int8")] = "numpy's integer matmul does not use the BLAS"
        self._add_torch(a, b)
        self._add_openvino(a, b)
        for key, runner in list(self.runners.items()):  # warm up; a library that fails gets a note instead
            try:
                runner()
            except Exception as exc:  # noqa: BLE001 - any library error means: not measurable here
                del self.runners[key]
                self.notes[key] = _reason(exc)

    def _add_torch(self, a: np.ndarray, b: np.ndarray) -> None:
        try:
            import torch
        except ImportError as exc:
            for precision in ("fp32", "bf16", "int8"):
                self.notes[("pytorch", precision)] = _reason(exc)
            return
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ha, hb = ta.to(torch.bfloat16), tb.to(torch.bfloat16)
        ia = torch.randint(-128, 128, ta.shape, dtype=torch.int8)
        ib = torch.randint(-128, 128, tb.shape, dtype=torch.int8)
        self.runners[("pytorch", "fp32")] = lambda: torch.mm(ta, tb)
        self.runners[("pytorch", "bf16")] = lambda: torch.mm(ha, hb)
        self.runners[("pytorch", "int8")] = lambda: torch._int_mm(ia, ib)

    def _add_openvino(self, a: np.ndarray, b: np.ndarray) -> None:
        try:
            import openvino as ov
            import openvino.opset13 as ops
        except ImportError as exc:
            for precision in ("fp32", "bf16"):
                self.notes[("openvino", precision)] = _reason(exc)
            return
        core = ov.Core()
        parameter = ops.parameter(list(a.shape), np.float32, name="a")
        model = ov.Model([ops.matmul(parameter, ops.constant(b), False, False)], [parameter], "matmul")
        for precision, hint in (("fp32", "f32"), ("bf16", "bf16")):
            try:
                compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
            except Exception as exc:  # noqa: BLE001
                self.notes[("openvino", precision)] = _reason(exc)
                continue
            request = compiled.create_infer_request()
            self.runners[("openvino", precision)] = lambda request=request: request.infer({0: a}, share_inputs=True)
        self.notes[("openvino", "int8")] = "an INT8 matmul in OpenVINO needs a quantised model; not measured"

    def sample(self, repeats: int = 2) -> None:
        """Time every runner ``repeats`` times now; keep the best rate of each."""
        flop = 2.0 * self.size**3
        for key, runner in self.runners.items():
            for _ in range(repeats):
                started = time.perf_counter()
                runner()
                rate = flop / (time.perf_counter() - started) / 1e9
                self.best[key] = max(self.best.get(key, 0.0), rate)
                self.samples[key] = self.samples.get(key, 0) + 1

    def rates(self) -> tuple[MatmulRate, ...]:
        """Every library × precision, measured or with the reason it was not."""
        keys = sorted(set(self.runners) | set(self.notes), key=lambda k: (("fp32", "bf16", "int8").index(k[1]), k[0]))
        return tuple(MatmulRate(lib, precision, self.best.get((lib, precision)), self.samples.get((lib, precision), 0),
                                self.notes.get((lib, precision), "")) for lib, precision in keys)


# --- theoretical peak --------------------------------------------------------------------------------


def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where unreadable)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def theoretical_peak() -> tuple[dict[str, float], str]:
    """Peak GFLOP/s per precision from cores × clock × FLOP per cycle, and how it was computed.

    FLOP per cycle and core: two FMA pipes × the vector lanes of the widest datapath × 2 (FP32); AVX-512 BF16
    dot products do twice that, VNNI INT8 four times (in ops). The datapath: 512-bit for Intel with AVX-512 and
    AMD family 26 (Zen 5 server cores), 256-bit for other AMD cores (Zen 4 splits AVX-512 into two halves)
    and for AVX2 CPUs. The clock is the one /proc/cpuinfo reports (a boost clock may be higher).
    """
    info = _cpuinfo_fields()
    flags = set(info.get("flags", "").split())
    cores = os.cpu_count() or 1
    try:
        mhz = float(info.get("cpu MHz", "nan"))
    except ValueError:
        mhz = float("nan")
    vendor, family = info.get("vendor_id", ""), info.get("cpu family", "")
    wide = "avx512f" in flags and (vendor == "GenuineIntel" or (vendor == "AuthenticAMD" and family == "26"))
    bits = 512 if wide else (256 if {"avx2", "fma"} <= flags or "avx512f" in flags else 128)
    fp32 = 2 * (bits // 32) * 2  # FLOP per cycle and core
    peaks = {"fp32": cores * mhz / 1e3 * fp32}
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        peaks["bf16"] = 2 * peaks["fp32"]
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        peaks["int8"] = 4 * peaks["fp32"]
    how = (f"{cores} logical CPUs × {mhz / 1e3:.2f} GHz (/proc/cpuinfo; often the base clock, so a measured rate "
           f"above the peak means the cores run faster) × {fp32} FP32 FLOP/cycle (2 FMA pipes × {bits // 32} lanes "
           f"of a {bits}-bit datapath × 2); BF16 ×2 (AVX-512 BF16 dot products), INT8 ×4 ops (VNNI); "
           f"{vendor or 'unknown vendor'} family {family or '?'}; AMX, where present, is not counted")
    return peaks, how


# --- peak memory per peer ----------------------------------------------------------------------------


def rss_probe(name: str, config: PeerConfig) -> float:
    """Peak RSS (MiB) of a fresh process that opens one peer and runs it once."""
    request = json.dumps({"name": name, "config": _config_dict(config)})
    code = "import sys, json; from fcn_deploy.bench.peers import rss_worker; rss_worker(json.loads(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, request], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise InputError(f"the memory probe of {name} failed: {tail[0]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak"])


def rss_worker(request: dict[str, Any]) -> None:
    """Child process: open one peer, run it once, print the peak RSS."""

    config = _config_from_dict(request["config"])
    peer = open_peer(request["name"], config, peer_input(config))
    peer.run(peer.feed)
    print(json.dumps({"peak": peak_rss_mb()}), flush=True)


def _config_dict(config: PeerConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _config_from_dict(data: dict[str, Any]) -> PeerConfig:
    values = dict(data)
    for key in ("checkpoint", "onnx", "int8_onnx", "bf16_ir", "int8_ir", "images"):
        values[key] = Path(values[key]) if values.get(key) else None
    values["size"], values["peers"] = tuple(values["size"]), tuple(values["peers"])
    return PeerConfig(**values)


# --- the run -----------------------------------------------------------------------------------------


def _timed(peer: _Peer) -> float:
    started = time.perf_counter()
    peer.run(peer.feed)
    return time.perf_counter() - started


def _agreements(opened: list[_Peer], batches: list[np.ndarray]) -> dict[str, float]:
    """Each peer's argmax agreement with the reference peer over the agreement batches."""
    if not opened or opened[0].name != REFERENCE_PEER:
        return {}
    agree = {peer.name: 0 for peer in opened}
    total = 0
    for rgb in batches:
        reference = opened[0].run(opened[0].prepare(rgb))
        total += reference[:, 0].size
        for peer in opened:  # the same pixels, each in its format; a NaN or infinite pixel agrees with nothing
            own = reference if peer is opened[0] else peer.run(peer.prepare(rgb))
            agree[peer.name] += int(np.count_nonzero(agreeing_pixels(reference, own)))
    return {name: count / total for name, count in agree.items()}


def _spec_of(config: PeerConfig) -> Any:
    from fcn_deploy.checkpoint import read_checkpoint

    return read_checkpoint(config.checkpoint)[0].spec


def run_peers(config: PeerConfig) -> PeerReport:
    """Open every peer (or note why not), time them in interleaved rounds, and measure the machine's limit."""

    rgb = peer_input(config)
    shape = (config.batch, *config.size)
    opened: list[_Peer] = []
    unavailable: dict[str, str] = {}
    probes = MatmulProbes(config.matmul_size)
    try:
        for name in config.peers:
            log(f"opening {name}")
            try:
                opened.append(open_peer(name, config, rgb))
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run is a row saying why
                unavailable[name] = _reason(exc)
                log(f"  {name} cannot run here: {unavailable[name]}")
        for peer in opened:
            for _ in range(config.warmup):
                _timed(peer)
        log(f"timing {len(opened)} peers at batch {config.batch}, {config.size[0]}x{config.size[1]}: "
            f"{config.iters} runs each in {config.rounds} interleaved rounds, matmul probes between rounds")
        per_round = [iters_in_round(config.iters, config.rounds, r) for r in range(config.rounds)]
        for round_index, count in enumerate(per_round):
            probes.sample()
            shift = round_index % max(1, len(opened))
            for peer in opened[shift:] + opened[:shift]:
                peer.rounds.append([_timed(peer) for _ in range(count)])
        probes.sample()
        agreement = _agreements(opened, agreement_batches(config))
    finally:
        for peer in opened:
            peer.close()
    spec = _spec_of(config)
    try:
        gflop = _arch_gflop(spec.arch, spec.num_classes, shape)
    except FcnDeployError:
        gflop = None
    matmul = probes.rates()
    best = {p: max((m.gflops for m in matmul if m.precision == p and m.gflops), default=None) for p in ("fp32", "bf16", "int8")}
    reference = next((p for p in opened if p.name == REFERENCE_PEER), None)
    rows = []
    for name in config.peers:
        if name in unavailable:
            rows.append(PeerRow(name, _PEER_PRECISION[name], unavailable=unavailable[name]))
            continue
        peer = next(p for p in opened if p.name == name)
        rows.append(_row(peer, reference, agreement.get(name), gflop, best[_PEER_PRECISION[name]], config))
    if config.measure_rss:
        rows = [_with_rss(row, config) for row in rows]
    peaks, how = theoretical_peak()
    return PeerReport(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), machine=machine_info(),
        config=_config_dict(config), rows=tuple(rows), matmul=matmul, theoretical=tuple(peaks.items()),
        theoretical_how=how, gflop_per_batch=gflop,
    )


def _row(peer: _Peer, reference: _Peer | None, agreement: float | None, gflop: float | None,
         best_rate: float | None, config: PeerConfig) -> PeerRow:
    """Statistics of one timed peer."""
    times = np.asarray([t for r in peer.rounds for t in r])
    median = float(np.median(times))
    speedup = None
    if reference is not None and len(reference.rounds) == len(peer.rounds):
        speedup = float(np.median([np.median(b) / np.median(a) for a, b in zip(peer.rounds, reference.rounds)]))
    rate = gflop / median if gflop else None
    return PeerRow(
        name=peer.name, precision=_PEER_PRECISION[peer.name], median_ms=median * 1e3,
        p90_ms=float(np.percentile(times, 90) * 1e3), p99_ms=float(np.percentile(times, 99) * 1e3),
        images_per_s=config.batch / median, load_s=peer.load_s, agreement=agreement, gflops_per_s=rate,
        matmul_fraction=(rate / best_rate) if rate and best_rate else None, speedup_vs_eager=speedup,
        samples=int(times.size),
    )


def _with_rss(row: PeerRow, config: PeerConfig) -> PeerRow:
    """The row with the peak RSS of a fresh process running that peer (the row keeps a failure as a note)."""
    if row.unavailable:
        return row
    log(f"peak memory of {row.name} (fresh process)")
    try:
        return dataclasses.replace(row, peak_rss_mb=rss_probe(row.name, config))
    except (FcnDeployError, subprocess.TimeoutExpired) as exc:
        log(f"  {exc}")
        return row


# --- presentation ------------------------------------------------------------------------------------

PEER_COLUMNS = ("peer", "precision", "median ms", "p90 ms", "p99 ms", "img/s", "× eager", "GFLOP/s",
                "% best matmul", "agreement %", "load s", "peak RSS MiB")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def peer_rows(report: PeerReport) -> list[tuple[str, ...]]:
    """One row of strings per peer, in PEER_COLUMNS order."""
    rows = []
    for r in report.rows:
        if r.unavailable:
            rows.append((r.name, r.precision, f"cannot run here: {r.unavailable}", *("",) * (len(PEER_COLUMNS) - 3)))
            continue
        rows.append((
            r.name, r.precision, _fmt(r.median_ms, ".1f"), _fmt(r.p90_ms, ".1f"), _fmt(r.p99_ms, ".1f"),
            _fmt(r.images_per_s, ".2f"), _fmt(r.speedup_vs_eager, ".2f"), _fmt(r.gflops_per_s, ".0f"),
            _fmt(None if r.matmul_fraction is None else 100 * r.matmul_fraction, ".0f"),
            _fmt(None if r.agreement is None else 100 * r.agreement, ".3f"), _fmt(r.load_s, ".2f"),
            _fmt(r.peak_rss_mb, ".0f"),
        ))
    return rows


def peer_summary_lines(report: PeerReport) -> list[str]:
    """The machine's limit and the fastest path per precision, as lines under the table."""
    lines = []
    for precision in ("fp32", "bf16", "int8"):
        measured = [m for m in report.matmul if m.precision == precision]
        parts = [f"{m.library} {m.gflops:.0f}" if m.gflops else f"{m.library} n/a ({m.note})" for m in measured]
        peak = dict(report.theoretical).get(precision)
        unit = "GOP/s" if precision == "int8" else "GFLOP/s"
        theory = f"; theoretical peak {peak:.0f} {unit}" if peak else ""
        lines.append(f"matmul {precision} ({report.config['matmul_size']}²), best {unit} per library: "
                     f"{', '.join(parts)}{theory}")
    lines.append(f"theoretical peak: {report.theoretical_how}")
    timed = [r for r in report.rows if r.median_ms is not None]
    for precision, own in OWN_PATHS.items():
        ours = [r for r in timed if r.name in own]
        if not ours:
            continue
        fastest = min(ours, key=lambda r: r.median_ms or float("inf"))
        lines.append(f"fastest fcn-deploy {precision} path: {fastest.name} {fastest.median_ms:.1f} ms")
    if report.config.get("note"):
        lines.append(f"models: {report.config['note']}")
    lines.append(agreement_pictures_line(report.config))
    return lines


def agreement_pictures_line(config: dict[str, Any]) -> str:
    """Where the agreement column's disagreeing pixels are: the parity command whose HTML report shows them per
    image (on object boundaries or over whole regions), with this run's models where they are still on disk."""

    def kept(key: str, placeholder: str) -> str:
        value = config.get(key)
        return shlex.quote(value) if value and Path(value).is_file() else placeholder

    return ("agreement %: argmax agreement with pytorch-eager; to see where the INT8 pixels differ (boundaries or "
            f"whole regions): fcn-deploy parity {kept('int8_onnx', 'INT8.onnx')} --reference "
            f"{kept('checkpoint', 'CHECKPOINT.pt')} --data VOC_DIR --html parity/int8.html")


# --- which models ------------------------------------------------------------------------------------


def peer_models(models: Sequence[Path], scratch: Path, *, given: bool = True) -> tuple[Path, Path, Path | None, str]:
    """(checkpoint, FP32 ONNX, INT8 ONNX or None, note) for the peers from the models given.

    The ONNX files are paired with the checkpoint by the SHA-256 of the checkpoint each was exported from (its
    spec records it), so the agreement column compares the same weights: a file ``given`` on the command line
    that comes from another checkpoint is refused with the fix; one found in the workspace (``given`` False) is
    left out with a note. A missing FP32 ONNX is exported from the checkpoint into ``scratch``; a missing
    checkpoint is an ONNX's source (found by SHA-256); with no model at all, a random-weight fcn32s is made
    there, so the peers run on a clean checkout (its agreement figures then say little: random weights have many
    near-ties).
    """
    from fcn_deploy.checkpoint import CHECKPOINT_SUFFIXES
    from fcn_deploy.contract import read_onnx_spec
    from fcn_deploy.export import ExportConfig, export_onnx

    checkpoint = next((m for m in models if m.suffix.lower() in CHECKPOINT_SUFFIXES), None)
    onnx_files = [(m, read_onnx_spec(m)) for m in models if m.suffix.lower() == ".onnx"]
    onnx_files = [(m, spec) for m, spec in onnx_files if spec.precision in ("fp32", "int8")]
    notes = []
    digest = None  # the checkpoint's SHA-256 where it is already known (found by it)
    if checkpoint is None and onnx_files:
        path, spec = sorted(onnx_files, key=lambda item: item[1].precision != "fp32")[0]  # an FP32 one first
        checkpoint = find_source_checkpoint(spec, path, (str(CHECKPOINT_DIR),))
        digest = spec.source_checkpoint_sha256 if checkpoint is not None else None
    if checkpoint is None:
        if models:
            raise InputError("the peers need the PyTorch checkpoint (the reference)",
                             "pass the checkpoint (.pt) beside the ONNX files")
        checkpoint = _random_checkpoint(scratch)
        notes.append("no model given or found: a random-weight fcn32s (timings are real; agreement is not "
                     "representative)")
    paired, left_out = _paired_with(checkpoint, onnx_files, given, digest)
    notes.extend(left_out)
    onnx, int8 = paired.get("fp32"), paired.get("int8")
    if onnx is None:
        onnx = export_onnx(checkpoint, scratch / "fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path
        notes.append(f"FP32 ONNX exported from {checkpoint.name} for the run")
    return checkpoint, onnx, int8, "; ".join(notes)


def _paired_with(checkpoint: Path, onnx_files: Sequence[tuple[Path, Any]], given: bool,
                 digest: str | None = None) -> tuple[dict[str, Path], list[str]]:
    """The first ONNX of each precision made from ``checkpoint`` (by the source SHA-256 in its spec), and a note
    for each one left out; InputError for a ``given`` one made from other weights. ``digest``: the checkpoint's
    SHA-256 when already computed (a checkpoint can be hundreds of MB)."""
    wanted = digest or sha256_file(checkpoint)
    paired: dict[str, Path] = {}
    left_out = []
    for path, spec in onnx_files:
        source = spec.source_checkpoint_sha256
        if source == wanted:
            paired.setdefault(spec.precision, path)
            continue
        origin = (f"was made from another checkpoint (source SHA-256 {source[:12]}…, {checkpoint.name} has "
                  f"{wanted[:12]}…)" if source else "records no source checkpoint (an imported ONNX?)")
        if given:
            redo = (f"re-export it: fcn-deploy export {checkpoint} --out {path}" if spec.precision == "fp32"
                    else f"calibrate it again from an ONNX exported from {checkpoint}")
            raise InputError(f"{path} {origin}: its agreement with {checkpoint} would compare different weights",
                             f"pass the checkpoint {path.name} was made from, or {redo}")
        left_out.append(f"{path} left out: it {origin}")
        log(f"  {left_out[-1]}")
    return paired, left_out


def peer_irs(models: Sequence[Path], onnx: Path, *, given: bool = True) -> tuple[Path | None, Path | None, str]:
    """(BF16 IR, INT8 IR, note) among ``models``: the IRs made from the same checkpoint as the FP32 ONNX ``onnx``
    (by the source SHA-256 their specs keep), so their agreement compares the same weights; another one is
    refused when ``given``, else left out with a note."""
    from fcn_deploy.contract import IR_SUFFIX, read_onnx_spec, read_sidecar

    source = read_onnx_spec(onnx).source_checkpoint_sha256
    found: dict[str, Path] = {}
    notes = []
    for path in (m for m in models if m.suffix.lower() == IR_SUFFIX):
        spec, document = read_sidecar(path)
        precision = document.get("precision")
        if precision not in ("bf16", "int8") or precision in found:
            continue
        if source and spec.source_checkpoint_sha256 == source:
            found[precision] = path
            continue
        if given:
            raise InputError(f"{path} was not made from the checkpoint of {onnx}: its agreement would compare "
                             "different weights", f"build it from {onnx}: fcn-deploy build {onnx} --target openvino")
        notes.append(f"{path} left out: made from another checkpoint")
    return found.get("bf16"), found.get("int8"), "; ".join(notes)


def _random_checkpoint(folder: Path) -> Path:
    """A random-weight fcn32s checkpoint (seeded) in ``folder``."""
    from fcn_deploy.checkpoint import Checkpoint, save_checkpoint
    from fcn_deploy.deps import require
    from fcn_deploy.model import build_model
    from fcn_deploy.spec import ModelSpec

    require("torch").manual_seed(0)
    return save_checkpoint(folder / "fcn32s-random.pt", build_model("fcn32s"), Checkpoint(spec=ModelSpec(arch="fcn32s")))


def workspace_models() -> list[Path]:
    """The newest checkpoint in checkpoints/, every ONNX in export/ and every IR in engines/ (none on a clean
    checkout)."""
    from fcn_deploy.workspace import ENGINE_DIR, default_bench_models

    irs = sorted(ENGINE_DIR.glob("*.xml")) if ENGINE_DIR.is_dir() else []
    try:
        return default_bench_models() + irs
    except FcnDeployError:  # no checkpoint: the peers make a random-weight model
        return (sorted(EXPORT_DIR.glob("*.onnx")) if EXPORT_DIR.is_dir() else []) + irs
