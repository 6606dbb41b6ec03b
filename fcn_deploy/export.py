"""Checkpoint -> one self-contained ONNX file (dynamo exporter) with the model spec in its metadata.

The graph has a dynamic batch and a dynamic height and width declared as 32 × an integer; the export is
checked (ONNX checker, shape inference) and compared with the checkpoint in ONNX Runtime before it is
committed. Reading the spec back (``read_onnx_spec``) is the artifact contract's job (``fcn_deploy.contract``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from fcn_deploy.checkpoint import load_model
from fcn_deploy.contract import (  # read_onnx_spec and check_spec_against_graph stay importable from here
    check_finite_onnx,
    check_spec_against_graph,
    labels_dtype_of,
    read_onnx_spec,
    sidecar_path,
    store_in_onnx,
    with_sidecar,
    write_sidecar,
)
from fcn_deploy.deps import require
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.fileio import Place, atomic_path, check_output_file, check_outputs_apart, sha256_file
from fcn_deploy.metrics import compare_logits
from fcn_deploy.progress import log
from fcn_deploy.spec import (  # example_input stays importable from here
    INPUT_FLOAT_NCHW,
    INPUT_UINT8_NHWC,
    UPSAMPLER_MATMUL,
    UPSAMPLERS,
    ModelSpec,
    ShapeRange,
    example_input,
    normalize_images,
)
from fcn_deploy.upsampler import with_matmul_upsamplers

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    from torch import nn

DEFAULT_OPSET = 18
MIN_OPSET = 17
LabelsDtype = Literal["uint8", "int64"]


@dataclass(frozen=True)
class ExportConfig:
    """How to export: opset, graph variants, supported shapes and the post-export comparison."""

    opset: int = DEFAULT_OPSET
    with_preprocess: bool = False  # uint8 N×H×W×3 RGB input, normalised inside the graph
    with_argmax: bool = False  # per-pixel class output beside the logits (whole-image inference then reads only it)
    labels_dtype: LabelsDtype = "uint8"
    upsampler: str = UPSAMPLER_MATMUL  # 'matmul': upsamplers as batched MatMuls (the same function, faster on CPUs)
    input_name: str = "image"
    output_name: str = "logits"
    labels_name: str = "labels"
    shape_range: ShapeRange | None = None  # None: the checkpoint spec's range
    verify: bool = True
    verify_sizes: tuple[tuple[int, int], ...] = ()  # () -> the opt size and one other 32-multiple size
    verify_batch: int = 2
    rtol: float = 1e-3  # max |Δlogit| allowed, relative to max |logit|
    min_agreement: float = 0.999  # argmax agreement required
    progress: bool = True


@dataclass(frozen=True)
class ExportCheck:
    """ONNX Runtime against PyTorch on one random batch."""

    batch: int
    height: int
    width: int
    max_abs_diff: float
    max_abs_logit: float
    argmax_agreement: float
    labels_agreement: float | None = None  # the graph's labels output against argmax of its logits

    def describe(self) -> str:
        """One result line."""
        text = (
            f"{self.batch}×{self.height}×{self.width}: max |Δlogit| {self.max_abs_diff:.3g} "
            f"(max |logit| {self.max_abs_logit:.3g}), argmax agreement {100 * self.argmax_agreement:.4f}%"
        )
        if self.labels_agreement is not None:
            text += f", labels output {100 * self.labels_agreement:.4f}%"
        return text


@dataclass(frozen=True)
class ExportResult:
    """The written files, the spec they carry, timings and the comparison results."""

    onnx_path: Path
    sidecar_path: Path
    spec: ModelSpec
    export_seconds: float
    total_seconds: float
    checks: tuple[ExportCheck, ...]


def _say(config: ExportConfig, message: str) -> None:
    """One progress line on stderr."""
    if config.progress:
        log(message)


# --- export --------------------------------------------------------------------------------------


def export_onnx(checkpoint: Path, out: Path, config: ExportConfig = ExportConfig()) -> ExportResult:
    """Export a checkpoint to ``out`` (+ sidecar), check the graph and compare it with PyTorch."""
    checkpoint, out = Path(checkpoint), Path(out)
    stale = out.with_name(out.name + ".data")  # an older export's external data, removed after this one
    check_outputs_apart([*with_sidecar("--out", out), Place("the external data file of --out", stale)],
                        [Place("the checkpoint", checkpoint)])
    onnx = require("onnx")
    require("onnxscript")
    check_output_file(out, "--out")
    check_output_file(sidecar_path(out), "the sidecar of --out")
    started = time.perf_counter()
    if config.upsampler not in UPSAMPLERS:
        raise InputError(f"unknown upsampler {config.upsampler!r}", f"use one of: {', '.join(UPSAMPLERS)}")
    model, info = load_model(checkpoint)
    spec = _export_spec(info.spec, config, sha256_file(checkpoint))
    _check_config(spec, config)
    _say(config, f"exporting {checkpoint} ({spec.arch}, {spec.num_classes} classes) to {out} (opset {config.opset})...")
    proto = _trace(model, spec, config)
    export_seconds = time.perf_counter() - started
    _say(config, f"exported in {export_seconds:.1f} s")
    store_in_onnx(proto, spec)
    proto.producer_name = "fcn-deploy"
    _say(config, "checking the graph (onnx checker, shape inference)...")
    check_graph(proto, spec, str(out))
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp), save_as_external_data=False)
        checks: tuple[ExportCheck, ...] = ()
        if config.verify:
            _say(config, "comparing ONNX Runtime with the PyTorch checkpoint...")
            checks = _compare(model, tmp, spec, config)
        extra = {"source_checkpoint": str(checkpoint), "onnx_sha256": sha256_file(tmp), "opset": config.opset,
                 "labels_dtype": labels_dtype_of(proto, spec), "export_checks": [dataclasses.asdict(c) for c in checks]}
        sidecar = write_sidecar(out, spec, extra)
    if stale.exists():
        stale.unlink()
        _say(config, f"removed the stale external data file {stale}")
    total = time.perf_counter() - started
    _say(config, f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {sidecar.name} in {total:.1f} s")
    return ExportResult(out, sidecar, spec, export_seconds, total, checks)


def _export_spec(source: ModelSpec, config: ExportConfig, checkpoint_sha256: str) -> ModelSpec:
    """The checkpoint's spec, rewritten for the exported graph (names, input format, shape range)."""
    return source.replace(
        input_name=config.input_name,
        output_name=config.output_name,
        labels_name=config.labels_name if config.with_argmax else None,
        input_format=INPUT_UINT8_NHWC if config.with_preprocess else INPUT_FLOAT_NCHW,
        upsampler=config.upsampler,
        shape_range=config.shape_range or source.shape_range,
        precision="fp32",
        quantization=None,
        source_checkpoint_sha256=checkpoint_sha256,
    )


def _check_config(spec: ModelSpec, config: ExportConfig) -> None:
    """Reject options the export cannot honour, naming the value and the fix."""
    if config.opset < MIN_OPSET:
        raise InputError(f"opset {config.opset} is too old for this exporter", f"use opset {MIN_OPSET} or newer (default {DEFAULT_OPSET})")
    names = [config.input_name, config.output_name] + ([config.labels_name] if config.with_argmax else [])
    if len(set(names)) != len(names) or not all(names):
        raise InputError(f"input/output names must be distinct and non-empty, got {names}")
    if config.labels_dtype not in get_args(LabelsDtype):
        raise InputError(f"labels_dtype {config.labels_dtype!r} is not supported", f"use one of: {', '.join(get_args(LabelsDtype))}")
    if config.with_argmax and config.labels_dtype == "uint8" and spec.num_classes > 256:
        raise InputError(f"{spec.num_classes} classes do not fit uint8 labels", "use labels_dtype 'int64'")
    if not 0 < config.rtol < 1 or not 0 < config.min_agreement <= 1:
        raise InputError(f"tolerances out of range: rtol {config.rtol}, min_agreement {config.min_agreement}")
    sr, align = spec.shape_range, spec.alignment
    for name in ("min", "opt", "max"):
        _, height, width = getattr(sr, name)
        if height % align or width % align:
            raise InputError(
                f"shape range {name} height×width {height}×{width} is not a multiple of {align}",
                f"give every height and width of the shape range as a multiple of {align}",
            )
    for height, width in config.verify_sizes:
        if height % align or width % align or not sr.contains_hw(height, width):
            raise InputError(f"comparison size {height}×{width} is not a {align}-multiple inside the shape range")


def _wrapper(model: nn.Module, spec: ModelSpec, config: ExportConfig) -> nn.Module:
    """The module that is traced: optional in-graph normalisation before, optional argmax after, and the
    upsamplers in the configured form."""
    torch = require("torch")
    nn = require("torch.nn")
    labels_dtype = torch.uint8 if config.labels_dtype == "uint8" else torch.int64

    class Exported(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = with_matmul_upsamplers(model) if config.upsampler == UPSAMPLER_MATMUL else model
            self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(spec.std).reshape(1, 3, 1, 1)))
            self.register_buffer("shift", torch.tensor(spec.mean).reshape(1, 3, 1, 1) / torch.tensor(spec.std).reshape(1, 3, 1, 1))

        def forward(self, x):
            if config.with_preprocess:  # cast first: TensorRT's shuffle (the permute) does not take uint8
                x = x.to(torch.float32).permute(0, 3, 1, 2) * self.scale - self.shift
            logits = self.net(x)
            if config.with_argmax:
                return logits, logits.argmax(dim=1).to(labels_dtype)
            return logits

    return Exported().eval()


def _dynamic_shapes(spec: ModelSpec) -> dict[str, dict[int, Any]]:
    """Dynamic batch, and height/width as ``alignment`` × an integer, over the spec's shape range."""
    torch = require("torch")
    sr, align = spec.shape_range, spec.alignment
    axes = (0, 1, 2) if spec.takes_uint8 else (0, 2, 3)
    dims: dict[int, Any] = {}
    if sr.min[0] < sr.max[0]:
        dims[axes[0]] = torch.export.Dim("batch", min=sr.min[0], max=sr.max[0])
    for index, name in ((1, "height"), (2, "width")):
        low, high = sr.min[index] // align, sr.max[index] // align
        if low < high:
            dims[axes[index]] = align * torch.export.Dim(f"{name}_{align}", min=low, max=high)
    return {"x": dims}


def _trace(model: nn.Module, spec: ModelSpec, config: ExportConfig) -> onnx.ModelProto:
    """Run torch.onnx.export (dynamo) on the wrapped model and return the ModelProto."""
    torch = require("torch")
    sr = spec.shape_range
    batch = min(max(2, sr.min[0]), sr.max[0])
    example = torch.from_numpy(example_input(spec, batch, sr.opt[1], sr.opt[2]))
    output_names = [spec.output_name] + ([spec.labels_name] if spec.labels_name else [])
    try:
        with contextlib.redirect_stdout(sys.stderr):
            program = torch.onnx.export(
                _wrapper(model, spec, config),
                (example,),
                dynamo=True,
                dynamic_shapes=_dynamic_shapes(spec),
                input_names=[spec.input_name],
                output_names=output_names,
                opset_version=config.opset,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types
        raise ArtifactError(f"torch.onnx.export failed for arch {spec.arch!r} ({type(exc).__name__}: {exc})") from exc
    return program.model_proto


def check_graph(proto: onnx.ModelProto, spec: ModelSpec, source: str) -> None:
    """ONNX checker (full), strict shape inference, finite weights and the spec/graph cross-check; ArtifactError
    on failure."""
    onnx = require("onnx")
    external = onnx.external_data_helper
    if any(external.uses_external_data(t) for t in proto.graph.initializer):
        raise ArtifactError(f"{source} keeps weights in external data files", "re-export it as one self-contained file")
    check_finite_onnx(proto, source)
    try:
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx raises ValidationError, InferenceError, ...
        raise ArtifactError(f"{source} fails the ONNX checker ({exc})") from exc
    check_spec_against_graph(inferred, spec, source)


# --- comparison ----------------------------------------------------------------------------------


def _verify_sizes(spec: ModelSpec, config: ExportConfig) -> tuple[tuple[int, int], ...]:
    """The comparison sizes: the given ones, else the opt size and a second size differing on both axes."""
    if config.verify_sizes:
        return config.verify_sizes
    sr, align = spec.shape_range, spec.alignment
    _, height, width = sr.opt

    def other(value: int, axis: int, step: int) -> int:
        if value + step <= sr.max[axis]:
            return value + step
        return max(value - step, sr.min[axis])

    second = (other(height, 1, align), other(width, 2, 3 * align))
    return tuple(dict.fromkeys([(height, width), second]))


def _ort_session(path: Path) -> Any:
    """A CPU ONNX Runtime session for the comparison."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _torch_logits(model: nn.Module, batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The checkpoint's logits for a batch in the spec's input format (normalised here when uint8)."""
    torch = require("torch")
    if spec.takes_uint8:  # the graph normalises inside; the checkpoint takes normalised input
        batch = normalize_images(batch, spec.mean, spec.std)
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()


def _compare(model: nn.Module, path: Path, spec: ModelSpec, config: ExportConfig) -> tuple[ExportCheck, ...]:
    """Run ONNX Runtime and PyTorch on random batches; ArtifactError when they diverge."""
    session = _ort_session(path)
    sr = spec.shape_range
    batch_size = min(max(config.verify_batch, sr.min[0]), sr.max[0])
    checks = []
    for index, (height, width) in enumerate(_verify_sizes(spec, config)):
        batch = example_input(spec, batch_size, height, width, seed=index + 1)
        reference = _torch_logits(model, batch, spec)
        outputs = session.run(None, {spec.input_name: batch})
        diff, peak, agreement = compare_logits(reference, outputs[0])
        labels_agreement = None
        if spec.labels_name:
            finite = np.isfinite(outputs[0]).all(axis=1)
            labels_agreement = float(np.mean((outputs[1] == outputs[0].argmax(axis=1)) & finite))
        check = ExportCheck(batch_size, height, width, diff, peak, agreement, labels_agreement)
        _say(config, "  " + check.describe())
        # written as 'not within': a NaN figure fails every comparison, so it must fail the check, not pass it
        if not diff <= config.rtol * peak + 1e-6 or not agreement >= config.min_agreement or (
            labels_agreement is not None and not labels_agreement >= config.min_agreement
        ):
            raise ArtifactError(
                f"the ONNX export diverges from the checkpoint at {check.describe()} (allowed: max |Δlogit| <= "
                f"{config.rtol:g} × max |logit|, agreement >= {100 * config.min_agreement:g}%); nothing was written",
                "report this with the checkpoint; try another --opset",
            )
        checks.append(check)
    return tuple(checks)


__all__ = ["ExportCheck", "ExportConfig", "ExportResult", "check_graph", "example_input", "export_onnx",
           "read_onnx_spec"]
