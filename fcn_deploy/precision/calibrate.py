"""INT8 calibration on VOC crops: an explicit Q/DQ ONNX made with ONNX Runtime's static quantiser.

Ranges are computed here with ``create_calibrator`` (so Entropy gets 2048 histogram bins and Percentile
its percentile, which ``quantize_static`` would not pass on), handed to ``quantize_static`` through its
calibration cache, and written as a readable per-tensor table. Targets:

- ``tensorrt``: int8 activations and weights, symmetric (zero points 0), per-channel weights, float
  biases: what TensorRT's explicit quantisation accepts; checked by the Q/DQ linter afterwards.
- ``cpu``: uint8 activations, int8 per-channel weights, int32 biases: ONNX Runtime's x86 fast path.

The upsampling head (from the last convolutions to the logits) is excluded, so the output stays floating point.

Default method: percentile. On the briefly trained synthetic-data model (val mIoU 0.65) it kept 99.6% pixel
agreement (ΔmIoU +0.2 pt) like MinMax, while Entropy (KL, 512 bins) clipped harder: 98.0-98.7%, ΔmIoU -0.9 pt.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fcn_deploy.contract import load_onnx, save_onnx, with_sidecar
from fcn_deploy.data.transforms import Size, check_aligned
from fcn_deploy.data.voc import VocLayout, dataset_places
from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.fileio import Place, check_output_file, check_outputs_apart, sha256_file, write_text_atomic
from fcn_deploy.precision.crops import (
    CropBox,
    CropPlan,
    SmallPolicy,
    crop_input,
    plan_crops,
    save_plan,
)
from fcn_deploy.precision.graph import head_nodes
from fcn_deploy.precision.qdq_lint import check_qdq
from fcn_deploy.progress import log, progress_bar
from fcn_deploy.spec import ModelSpec, QuantizationInfo
from fcn_deploy.workspace import CALIBRATION_DIR, precision_onnx_path

Method = Literal["entropy", "percentile", "minmax"]
Target = Literal["tensorrt", "cpu"]
METHODS = ("entropy", "percentile", "minmax")
TARGETS = ("tensorrt", "cpu")
ENTROPY_BINS = 2048  # histogram bins for entropy/percentile (ORT's quantize_static would use 128 for entropy)
ENTROPY_QUANTIZED_BINS = 128
PERCENTILE = 99.999
COLLECT_CHUNK = 8  # crops per calibrator pass: bounds the memory held for intermediate tensors


@dataclass(frozen=True)
class CalibrationConfig:
    """Options of ``fcn-deploy calibrate``."""

    data_dir: Path
    split: str = "train"
    num: int = 256
    crop: Size = (320, 480)
    method: Method = "percentile"
    target: Target = "tensorrt"
    seed: int = 0
    small: SmallPolicy = "skip"
    histogram_bins: int = ENTROPY_BINS  # entropy/percentile histogram; entropy's search costs O(bins²) per tensor
    out: Path | None = None  # default: <onnx dir>/<stem>.int8.onnx or .int8-cpu.onnx
    calibration_dir: Path = CALIBRATION_DIR


@dataclass(frozen=True)
class CalibrationResult:
    """What calibration wrote."""

    path: Path
    spec: ModelSpec
    plan: CropPlan
    plan_path: Path
    ranges_path: Path
    quantized_nodes: int
    excluded_nodes: tuple[str, ...]


def default_int8_path(onnx_path: str | os.PathLike[str], target: Target) -> Path:
    """export/fcn.onnx -> export/fcn.int8.onnx (TensorRT) or export/fcn.int8-cpu.onnx (CPU)."""
    return precision_onnx_path(onnx_path, "int8", target)


def crop_reader(
    layout: VocLayout, boxes: tuple[CropBox, ...], crop: Size, spec: ModelSpec, advance: Any = None
) -> Any:
    """An onnxruntime CalibrationDataReader feeding the planned crops, one per batch."""
    return _reader_class()(layout, boxes, crop, spec, advance)


@functools.cache
def _reader_class() -> type:
    """Define the reader once onnxruntime is imported (keeps this module importable without it)."""
    quantization = require("onnxruntime.quantization")

    class VocCropReader(quantization.CalibrationDataReader):
        """Feeds planned crops (normalised per the spec) to ONNX Runtime's calibrators."""

        def __init__(self, layout: VocLayout, boxes: tuple[CropBox, ...], crop: Size, spec: ModelSpec,
                     advance: Any = None) -> None:
            self.layout, self.boxes, self.crop, self.spec = layout, boxes, crop, spec
            self.advance = advance or (lambda *a, **k: None)
            self.position = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.position >= len(self.boxes):
                return None
            box = self.boxes[self.position]
            self.position += 1
            batch = crop_input(self.layout, box, self.crop, self.spec)
            self.advance(1, status=box.image_id)
            return {self.spec.input_name: batch}

        def __len__(self) -> int:
            return len(self.boxes)

        def rewind(self) -> None:
            self.position = 0

    return VocCropReader


def validate_config(config: CalibrationConfig, spec: ModelSpec) -> None:
    """Reject options that cannot work with this model, naming the fix."""
    if config.method not in METHODS:
        raise InputError(f"unknown calibration method {config.method!r}", f"use one of: {', '.join(METHODS)}")
    if config.target not in TARGETS:
        raise InputError(f"unknown target {config.target!r}", f"use one of: {', '.join(TARGETS)}")
    if config.histogram_bins < 2 * ENTROPY_QUANTIZED_BINS:
        raise InputError(f"histogram bins must be at least {2 * ENTROPY_QUANTIZED_BINS}, got {config.histogram_bins}",
                         "with fewer bins the entropy search has a single candidate and equals MinMax")
    check_aligned(config.crop, spec.alignment, "--crop")
    if not spec.shape_range.contains_hw(*config.crop):
        raise InputError(
            f"--crop {config.crop[0]}x{config.crop[1]} is outside the model's range "
            f"{spec.shape_range.min[1:]} .. {spec.shape_range.max[1:]}",
        )


def calibrate_int8(onnx_path: str | os.PathLike[str], config: CalibrationConfig) -> CalibrationResult:
    """Calibrate ``onnx_path`` (FP32) on VOC crops and write the INT8 Q/DQ ONNX, crop plan and range table."""
    out = Path(config.out) if config.out else default_int8_path(onnx_path, config.target)
    plan_path = Path(config.calibration_dir) / f"{out.stem}.crops.json"
    ranges_path = Path(config.calibration_dir) / f"{out.stem}.ranges.json"
    outputs = [*with_sidecar("--out", out), Place("the crop plan", plan_path), Place("the range table", ranges_path)]
    check_outputs_apart(outputs, [*with_sidecar("the model", onnx_path), *dataset_places(config.data_dir)])
    for output in outputs:
        check_output_file(output.path, output.what)
    quantization = require("onnxruntime.quantization")
    model, spec = load_onnx(onnx_path)
    if spec.precision != "fp32":
        raise ArtifactError(f"{onnx_path} has precision '{spec.precision}'", "calibrate the FP32 export")
    validate_config(config, spec)
    plan = plan_crops(config.data_dir, config.split, config.num, config.crop, config.seed, config.small)
    log(f"calibration: {plan.describe()}")
    excluded = tuple(head_nodes(model))
    with tempfile.TemporaryDirectory(prefix="fcn-calib-") as workdir:
        tensors = _collect_ranges(Path(onnx_path), plan, spec, config.method, config.histogram_bins,
                                  Path(workdir))
        cache = Path(workdir) / "ranges.json"
        quantization.calibrate.save_tensors_data(tensors, cache)
        quantized = Path(workdir) / "int8.onnx"
        with _quiet_quantizer():
            quantization.quantize_static(
                str(onnx_path), str(quantized), calibration_data_reader=None,
                quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=quantization.QuantType.QInt8 if config.target == "tensorrt" else quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8, nodes_to_exclude=list(excluded),
                calibrate_method=_ort_method(config.method), extra_options=_quant_options(config.target),
                calibration_cache_path=str(cache),
            )
        onnx = require("onnx")
        int8_model = onnx.load(str(quantized))
    info = QuantizationInfo(
        target=config.target, method=config.method, num_crops=len(plan.crops), crop_size=tuple(config.crop),
        data_fingerprint=plan.fingerprint,
        notes=f"ORT quantize_static QDQ, per-channel weights; float upsampling head and logits ({len(excluded)} nodes)",
    )
    int8_spec = spec.replace(precision="int8", quantization=info)
    new_files = [path for path in (plan_path, ranges_path) if not path.exists()]
    try:  # the crop plan and the range table describe the model: written with it, or not at all
        save_plan(plan, plan_path)
        write_range_table(tensors, int8_model, ranges_path, config)
        save_onnx(int8_model, out, int8_spec, {"source_onnx": str(onnx_path),
                                               "source_onnx_sha256": sha256_file(onnx_path),
                                               "crop_plan": str(plan_path), "ranges": str(ranges_path)})
    except BaseException:
        for path in new_files:  # an earlier run's files, which its model names, are never removed
            path.unlink(missing_ok=True)
        raise
    if config.target == "tensorrt":
        check_qdq(out)
    count = sum(1 for n in int8_model.graph.node if n.op_type == "QuantizeLinear")
    return CalibrationResult(out, int8_spec, plan, plan_path, ranges_path, count, excluded)


def _ort_method(method: Method) -> Any:
    calibrate = require("onnxruntime.quantization.calibrate")
    return {
        "minmax": calibrate.CalibrationMethod.MinMax,
        "entropy": calibrate.CalibrationMethod.Entropy,
        "percentile": calibrate.CalibrationMethod.Percentile,
    }[method]


def _calibrator_options(method: Method, bins: int) -> dict[str, Any]:
    """What ``create_calibrator`` needs for each method to really behave as documented."""
    if method == "entropy":
        return {"num_bins": bins, "num_quantized_bins": ENTROPY_QUANTIZED_BINS, "symmetric": False}
    if method == "percentile":
        return {"num_bins": bins, "percentile": PERCENTILE, "symmetric": True}
    return {"symmetric": False}


def _quant_options(target: Target) -> dict[str, Any]:
    """Quantiser options: TensorRT needs symmetric int8 everywhere and float biases."""
    if target == "tensorrt":
        return {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    return {"ActivationSymmetric": False, "WeightSymmetric": True}


def _collect_ranges(onnx_path: Path, plan: CropPlan, spec: ModelSpec, method: Method, bins: int,
                    workdir: Path) -> Any:
    """Run the calibrator over the planned crops in chunks; returns ORT's TensorsData."""
    calibrate = require("onnxruntime.quantization.calibrate")
    calibrator = calibrate.create_calibrator(
        onnx_path, None, augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=_ort_method(method), providers=["CPUExecutionProvider"],
        extra_options=_calibrator_options(method, bins),
    )
    layout = VocLayout(Path(plan.data_dir))
    try:
        with progress_bar(len(plan.crops), f"calibrating ({method})") as advance:
            for start in range(0, len(plan.crops), COLLECT_CHUNK):
                chunk = plan.crops[start: start + COLLECT_CHUNK]
                with _quiet_quantizer():
                    calibrator.collect_data(crop_reader(layout, chunk, plan.crop, spec, advance))
        with _quiet_quantizer():
            return calibrator.compute_data()
    except ValueError as exc:  # numpy's histogram refuses a tensor whose value range is too narrow for its bins
        if "bins" not in str(exc):
            raise
        raise ArtifactError(
            f"{method} calibration cannot histogram every tensor of {onnx_path.name} with {bins} bins ({exc})",
            "calibrate with --method minmax (no histogram), or on more varied crops (--num, --crop)",
        ) from exc


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Hide ONNX Runtime's quantiser chatter (prints and root-logger warnings); our progress bar reports instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        root.setLevel(level)


def read_range_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a range table written by ``write_range_table``; InputError for anything else (every entry is checked)."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(table, dict) or set(table) != {"method", "target", "tensors"}:
            raise ValueError("not a range table (keys method, target, tensors)")
        if table["method"] not in METHODS or table["target"] not in TARGETS:
            raise ValueError(f"unknown method {table['method']!r} or target {table['target']!r}")
        if not isinstance(table["tensors"], dict):
            raise ValueError("tensors is not an object")
        for name, row in table["tensors"].items():
            _check_range_row(name, row)
        return table
    except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise InputError(f"cannot read range table {path} ({exc})",
                         "pass a range table written by 'fcn-deploy calibrate' (calibration/<name>.ranges.json)") from exc


def _check_range_row(name: str, row: Any) -> None:
    """One tensor's entry: finite min <= max, and a positive scale with an integer zero point where quantised."""
    if not isinstance(row, dict) or not {"min", "max"} <= set(row) <= {"min", "max", "scale", "zero_point"}:
        raise ValueError(f"tensor {name!r}: not an entry with min and max")
    numbers = [row[k] for k in ("min", "max", "scale") if k in row]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in numbers):
        raise ValueError(f"tensor {name!r}: min, max and scale must be finite numbers")
    if row["min"] > row["max"] or row.get("scale", 1.0) <= 0:
        raise ValueError(f"tensor {name!r}: min above max, or a scale that is not positive")
    zero = row.get("zero_point", 0)
    if isinstance(zero, bool) or not isinstance(zero, int) or not -128 <= zero <= 255:
        raise ValueError(f"tensor {name!r}: zero_point must be an integer in -128 .. 255")


def write_range_table(tensors: Any, int8_model: Any, path: Path, config: CalibrationConfig) -> Path:
    """A readable JSON table: per tensor the calibrated range and the scale/zero point the model uses."""
    numpy_helper = require("onnx.numpy_helper")
    inits = {t.name: t for t in int8_model.graph.initializer}
    quant = {}
    for node in int8_model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[1] in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits else 0
            quant[node.input[0]] = {"scale": float(np.ravel(scale)[0]), "zero_point": int(np.ravel(zero)[0])}
    rows = {}
    for name in sorted(tensors.data):
        low, high = tensors[name].range_value
        rows[name] = {"min": float(np.ravel(low)[0]), "max": float(np.ravel(high)[0]), **quant.get(name, {})}
    table = {"method": config.method, "target": config.target, "tensors": rows}
    write_text_atomic(path, json.dumps(table, indent=2, sort_keys=True) + "\n")
    return path
