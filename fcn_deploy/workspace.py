"""The default workspace layout: where each stage writes by default, and how artifacts are named.

Every command takes explicit paths; these defaults are what they use when none is given, so they are
named once here (``checkpoints/``, ``export/fcn.onnx``, ``export/fcn.<precision>.onnx``, ``engines/``...).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from fcn_deploy.checkpoint import CHECKPOINT_SUFFIXES
from fcn_deploy.contract import ENGINE_SUFFIXES
from fcn_deploy.devices import Device
from fcn_deploy.errors import InputError
from fcn_deploy.progress import log

Precision = Literal["fp32", "fp16", "int8"]
Int8Target = Literal["tensorrt", "cpu"]

CHECKPOINT_DIR = Path("checkpoints")
EXPORT_DIR = Path("export")
DEFAULT_ONNX = EXPORT_DIR / "fcn.onnx"
ENGINE_DIR = Path("engines")
CALIBRATION_DIR = Path("calibration")


def timing_cache_path(tensorrt_version: str, compute_capability: str, gpu_name: str,
                      calibration_dir: Path = CALIBRATION_DIR) -> Path:
    """calibration/timing-<TensorRT version>-sm<compute capability>-<GPU name>.cache: a cache only fits its
    version and GPU (two GPUs of one compute capability, an L4 and an RTX 4090, time kernels differently)."""
    gpu = "".join(c if c.isalnum() or c in "-." else "-" for c in gpu_name.strip()).strip("-") or "unknown-gpu"
    return Path(calibration_dir) / (f"timing-{tensorrt_version}-sm{str(compute_capability).replace('.', '')}-"
                                    f"{gpu}.cache")


def precision_onnx_path(onnx_path: str | os.PathLike[str], precision: Precision, target: Int8Target = "tensorrt") -> Path:
    """export/fcn.onnx -> itself (fp32), export/fcn.fp16.onnx, export/fcn.int8.onnx or export/fcn.int8-cpu.onnx."""
    onnx_path = Path(onnx_path)
    if precision == "fp32":
        return onnx_path
    tag = "int8-cpu" if precision == "int8" and target == "cpu" else precision
    return onnx_path.with_name(f"{onnx_path.stem}.{tag}.onnx")


def engine_path(onnx_path: str | os.PathLike[str], precision: Precision, engine_dir: Path = ENGINE_DIR) -> Path:
    """export/fcn.onnx -> engines/fcn.<precision>.engine."""
    return Path(engine_dir) / f"{Path(onnx_path).stem}.{precision}.engine"


def newest_checkpoint(folder: str | os.PathLike[str] = CHECKPOINT_DIR) -> Path:
    """The most recently written checkpoint in ``folder`` (preferring '*-best.pt' files)."""
    folder = Path(folder)
    candidates = [p for p in folder.glob("*") if p.suffix in CHECKPOINT_SUFFIXES and p.is_file()] if folder.is_dir() else []
    if not candidates:
        raise InputError(f"no checkpoint found in {folder}/", "train one first with 'fcn-deploy train', or pass a path")
    best = [p for p in candidates if p.stem.endswith("-best")]
    return max(best or candidates, key=lambda p: p.stat().st_mtime)


def default_model(device: Device = "auto", workspace: Path = Path("."), *,
                  engine_unavailable: Callable[[], str | None], backend: str = "auto") -> Path:
    """The best artifact in the workspace: the newest TensorRT engine where it can run, else export/fcn.onnx.

    ``engine_unavailable`` says why engines cannot run here (None when they can): pass the TensorRT backend's
    own check (``fcn_deploy.runtime.tensorrt_support.tensorrt_unavailable``), so an engine is chosen only where
    opening it will work. An ONNX backend (``backend`` 'onnxruntime' or 'openvino') always gets export/fcn.onnx.
    """
    engine_dir = workspace / ENGINE_DIR
    wants_engine = engine_dir.is_dir() and backend in ("auto", "tensorrt")
    engines = [p for p in engine_dir.glob("*") if p.suffix in ENGINE_SUFFIXES] if wants_engine else []
    onnx_path = workspace / DEFAULT_ONNX
    reason = engine_unavailable() if engines and device != "cpu" else None
    if engines and device != "cpu" and reason is None:
        return max(engines, key=lambda p: p.stat().st_mtime)
    if onnx_path.is_file():
        if reason:
            log(f"not using the engine in {engine_dir}/: {reason}; running {onnx_path} instead")
        return onnx_path
    skipped = f" (the engine in {engine_dir}/ cannot run here: {reason})" if reason else ""
    raise InputError(
        f"no model given and {onnx_path} does not exist{skipped}",
        "export one with 'fcn-deploy export' (or build an engine), or pass the model path before the folder",
    )


def default_bench_models(workspace: Path = Path(".")) -> list[Path]:
    """What ``bench`` measures without MODEL arguments: the newest checkpoint and every ONNX file in export/."""
    models = [newest_checkpoint(workspace / CHECKPOINT_DIR)]
    export = workspace / EXPORT_DIR
    if export.is_dir():
        models.extend(sorted(export.glob("*.onnx")))
    return models
