"""Any ``nn.Module`` mapping N×3×H×W images to N×C×H×W logits (or a dict holding them) -> a checkpoint.

The module is traced with ``torch.export`` (dynamic batch, height and width as multiples of the spec's
alignment) and stored as data (``fcn_deploy.program``), so export reloads it later without the user's class.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcn_deploy.checkpoint import Checkpoint, require_finite_weights, save_program_checkpoint
from fcn_deploy.deps import require
from fcn_deploy.errors import InputError
from fcn_deploy.metrics import compare_logits
from fcn_deploy.program import load_program, program_entry
from fcn_deploy.spec import INPUT_FLOAT_NCHW, UPSAMPLER_CONVTRANSPOSE, ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

MIN_AGREEMENT = 0.9999  # traced graph against the module, argmax over classes
FINITE_HINT = "the model's weights hold NaN or infinity (a diverged training run?): load finite weights first"
_TRACE_HINT = ("make forward traceable by torch.export (no data-dependent Python control flow), or export it to "
               "ONNX yourself and use 'fcn-deploy import onnx'")


def default_checkpoint_path(arch: str) -> Path:
    """checkpoints/<arch>.pt, with characters unsafe in file names replaced."""
    return Path("checkpoints") / (re.sub(r"[^A-Za-z0-9._-]+", "-", arch).strip("-") + ".pt")


def import_module(module: nn.Module, spec: ModelSpec, out: str | os.PathLike[str] | None = None) -> Path:
    """Trace ``module`` (in eval mode) and write it with ``spec`` as an fcn-deploy checkpoint; returns its path.

    The module's output must be N×C×H×W with C = ``spec.num_classes`` and H×W the input's, or a dict whose
    ``'out'`` entry (or only entry) is. Nothing is written unless the traced graph agrees with the module.
    """
    torch = require("torch")
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"import_module takes a torch.nn.Module, got {type(module).__name__}")
    spec = checked_spec(spec)
    out = Path(out) if out is not None else default_checkpoint_path(spec.arch)
    require_finite_weights({**dict(module.named_parameters()), **dict(module.named_buffers())},
                           f"the {type(module).__name__} given", InputError, FINITE_HINT)
    wrapped = logits_module(module).eval()
    _check_output(wrapped, spec)
    program = _trace(wrapped, spec)
    entry = program_entry(program)
    _check_traced(wrapped, load_program(entry, "the traced model"), spec)
    return save_program_checkpoint(out, entry, Checkpoint(spec=spec))


def checked_spec(spec: ModelSpec) -> ModelSpec:
    """The spec as a checkpoint records it (float input, fp32); InputError when its shapes break the alignment."""
    if not isinstance(spec, ModelSpec):
        raise InputError(f"spec must be a fcn_deploy.spec.ModelSpec, got {type(spec).__name__}")
    align = spec.alignment
    for name in ("min", "opt", "max"):
        _, height, width = getattr(spec.shape_range, name)
        if height % align or width % align:
            raise InputError(f"shape range {name} {height}×{width} is not a multiple of the alignment {align}",
                             f"give the shape range in multiples of {align}")
    return spec.replace(input_format=INPUT_FLOAT_NCHW, upsampler=UPSAMPLER_CONVTRANSPOSE, precision="fp32",
                        quantization=None, labels_name=None)


def logits_module(module: nn.Module) -> nn.Module:
    """``module`` wrapped so that it returns the logits tensor (``out`` of a dict, or its only entry)."""
    nn = require("torch.nn")

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module

        def forward(self, x):
            result = self.net(x)
            if isinstance(result, dict):
                result = result["out"] if "out" in result else next(iter(result.values()))
            return result

    return Logits()


def _probe(module: nn.Module, batch: Any) -> Any:
    """Run the module once, turning its failures into InputError."""
    torch = require("torch")
    try:
        with torch.inference_mode():
            return module.net(batch)
    except Exception as exc:  # user code raises anything
        raise InputError(f"the model fails on a {tuple(batch.shape)} input ({type(exc).__name__}: {exc})",
                         "the model must take a normalised N×3×H×W float32 batch") from exc


def _check_output(module: nn.Module, spec: ModelSpec) -> None:
    """InputError naming what the model returned when it is not N×C×H×W logits at the input's size."""
    torch = require("torch")
    _, height, width = spec.shape_range.opt
    raw = _probe(module, torch.zeros(2, 3, height, width))
    if isinstance(raw, dict):
        if "out" not in raw and len(raw) != 1:
            raise InputError(f"the model returns a dict with keys {sorted(raw)} and no 'out'",
                             "return the logits, or a dict holding them under 'out'")
        raw = raw["out"] if "out" in raw else next(iter(raw.values()))
    if not isinstance(raw, torch.Tensor):
        raise InputError(f"the model returns {type(raw).__name__}", "return an N×C×H×W tensor of logits")
    needed = (2, spec.num_classes, height, width)
    if tuple(raw.shape) != needed:
        what = "classes" if raw.ndim == 4 and raw.shape[1] != spec.num_classes else "sizes"
        raise InputError(
            f"for a 2×3×{height}×{width} input the model returns {tuple(raw.shape)}, needed {needed} "
            f"(N×C×H×W logits at the input size with C = {spec.num_classes} classes; the {what} differ)",
            "give the spec the model's class count, or wrap the model so that it upsamples to the input size",
        )


def dynamic_shapes(spec: ModelSpec) -> dict[str, dict[int, Any]]:
    """Batch, height and width as torch.export Dims over the spec's range (height/width: alignment × n)."""
    torch = require("torch")
    sr, align = spec.shape_range, spec.alignment
    dims: dict[int, Any] = {}
    if sr.min[0] < sr.max[0]:
        dims[0] = torch.export.Dim("batch", min=sr.min[0], max=sr.max[0])
    for index, name in ((1, "height"), (2, "width")):
        low, high = sr.min[index] // align, sr.max[index] // align
        if low < high:
            dims[index + 1] = align * torch.export.Dim(f"{name}_{align}", min=low, max=high)
    return {"x": dims}


def _trace(module: nn.Module, spec: ModelSpec) -> Any:
    """torch.export of the wrapped module with the spec's dynamic shapes."""
    torch = require("torch")
    sr = spec.shape_range
    batch = min(max(2, sr.min[0]), sr.max[0])
    example = torch.randn(batch, 3, sr.opt[1], sr.opt[2])
    try:
        with torch.no_grad():
            return torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes(spec))
    except Exception as exc:  # the tracer raises many types
        raise InputError(f"torch.export could not trace the model for dynamic sizes in multiples of "
                         f"{spec.alignment} ({type(exc).__name__}: {str(exc)[:800]})", _TRACE_HINT) from exc


def _check_traced(module: nn.Module, traced: nn.Module, spec: ModelSpec) -> None:
    """The traced graph against the module at a second size; InputError when they disagree."""
    torch = require("torch")
    sr, align = spec.shape_range, spec.alignment
    height = sr.opt[1] + align if sr.opt[1] + align <= sr.max[1] else max(sr.opt[1] - align, sr.min[1])
    width = sr.opt[2]
    batch = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, height, width), dtype=np.float32))
    batch_size = max(1, sr.min[0])
    batch = batch.expand(batch_size, -1, -1, -1).contiguous()
    with torch.inference_mode():
        reference, candidate = module(batch).numpy(), traced(batch).numpy()
    _, _, agreement = compare_logits(reference, candidate)
    if not agreement >= MIN_AGREEMENT:  # NaN logits agree with nothing
        raise InputError(f"the traced model agrees with the module on only {100 * agreement:.3f}% of pixels at "
                         f"{height}×{width}", _TRACE_HINT)
