"""A foreign segmentation ONNX (not written by fcn-deploy) -> an fcn-deploy ONNX with its spec.

The graph must have one 4-D image input and one N×C×H×W float output with C = the number of classes, at
the input's height and width. Dynamic height/width become a shape range in multiples of the alignment; a
fixed-size graph gets a one-size range, so larger images are served by tiling at exactly that size.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.contract import (
    TensorSignature,
    _signature,
    check_spec_against_graph,
    store_in_onnx,
    with_sidecar,
    write_sidecar,
)
from fcn_deploy.deps import require
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import Place, atomic_path, check_outputs_apart, sha256_file
from fcn_deploy.importers.classes import class_file_places, read_classes
from fcn_deploy.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_FLOAT_NCHW,
    INPUT_FORMATS,
    INPUT_UINT8_NHWC,
    ModelSpec,
    ShapeRange,
)

_FLOAT, _UINT8 = 1, 2
_NEEDED = ("one image input (N×3×H×W float32, or N×H×W×3 uint8 with --input-format uint8_nhwc) and one "
           "N×C×H×W float32 output of class scores at the input's height and width")
DEFAULT_ALIGNMENT = 32


@dataclass(frozen=True)
class OnnxImportConfig:
    """What the graph cannot say about itself: classes, normalisation, alignment, input layout."""

    classes: str | os.PathLike[str] = "voc"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    alignment: int | None = None  # None: 32 for dynamic sizes, the largest power of two up to 32 dividing a fixed size
    input_format: str = INPUT_FLOAT_NCHW
    shape_range: ShapeRange | None = None  # dynamic sizes only; None: the default range


def import_onnx(model: str | os.PathLike[str], out: str | os.PathLike[str], config: OnnxImportConfig = OnnxImportConfig()) -> Path:
    """Check a foreign ONNX, run it once, and write it with an fcn-deploy spec (metadata + sidecar) to ``out``."""
    model, out = Path(model), Path(out)
    check_outputs_apart(with_sidecar("--out", out), [Place("the model", model), *class_file_places(config.classes)])
    onnx = require("onnx")
    if config.input_format not in INPUT_FORMATS:
        raise InputError(f"unknown --input-format {config.input_format!r}", f"use one of: {', '.join(INPUT_FORMATS)}")
    classes = read_classes(config.classes)
    proto = _load(model)
    image, logits = _signature_pair(proto, model, config.input_format)
    spec = ModelSpec(
        arch=f"onnx-{model.stem}", num_classes=classes.num_classes, class_names=classes.names,
        palette=classes.palette, mean=config.mean, std=config.std, input_name=image.name,
        output_name=logits.name, input_format=config.input_format,
        **_geometry(image, config, model),
    )
    if logits.dims[1] is not None and logits.dims[1] != spec.num_classes:
        raise InputError(f"{model}: output {logits.describe()} has {logits.dims[1]} classes, the class list "
                         f"{spec.num_classes}", "pass the class list of this model with --classes")
    _run_once(model, spec)
    check_spec_against_graph(proto, spec, str(model))
    store_in_onnx(proto, spec)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp), save_as_external_data=False)
        extra = {"source_onnx": str(model), "source_onnx_sha256": sha256_file(model), "onnx_sha256": sha256_file(tmp)}
        write_sidecar(out, spec, extra)
    return out


def _load(path: Path) -> Any:
    onnx = require("onnx")
    if not path.is_file():
        raise InputError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError, ...
        raise InputError(f"{path} is not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    return proto


def _signature_pair(proto: Any, path: Path, input_format: str) -> tuple[TensorSignature, TensorSignature]:
    """The image input and logits output; InputError saying what was found and what is needed."""
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [_signature(i) for i in proto.graph.input if i.name not in initializers]
    outputs = [_signature(o) for o in proto.graph.output]
    found = (f"found inputs [{', '.join(i.describe() for i in inputs)}] and outputs "
             f"[{', '.join(o.describe() for o in outputs)}]")
    uint8 = input_format == INPUT_UINT8_NHWC
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(f"{path}: {found}; fcn-deploy needs {_NEEDED}",
                         "export the model with a single image input and a single logits output")
    image, logits = inputs[0], outputs[0]
    channel_ok = len(image.dims) == 4 and image.dims[3 if uint8 else 1] in (3, None)
    if image.elem_type != (_UINT8 if uint8 else _FLOAT) or not channel_ok:
        layout = "N×H×W×3 uint8" if uint8 else "N×3×H×W float32"
        raise InputError(f"{path}: {found}; the input is not {layout} (--input-format {input_format})",
                         "pass the --input-format the graph takes, or export it with an image input")
    if logits.elem_type != _FLOAT or len(logits.dims) != 4:
        raise InputError(f"{path}: {found}; fcn-deploy needs {_NEEDED}", "export the model with a logits output")
    return image, logits


def _geometry(image: TensorSignature, config: OnnxImportConfig, path: Path) -> dict[str, Any]:
    """Alignment, shape range and crop size: one fixed size, or the (default) range of a dynamic graph."""
    uint8 = config.input_format == INPUT_UINT8_NHWC
    batch, height, width = image.dims[0], image.dims[1 if uint8 else 2], image.dims[2 if uint8 else 3]
    if (height is None) != (width is None):
        raise InputError(f"{path}: input {image.describe()} fixes one of height and width only",
                         "export the model with both dynamic, or both fixed")
    if height is None:
        align = config.alignment or DEFAULT_ALIGNMENT
        shape_range = config.shape_range or ShapeRange()
    else:
        align = config.alignment or math.gcd(height, width, DEFAULT_ALIGNMENT)
        if height % align or width % align:
            raise InputError(f"{path}: the fixed input size {height}×{width} is not a multiple of --alignment {align}",
                             f"use an alignment that divides both, e.g. {math.gcd(height, width, DEFAULT_ALIGNMENT)}")
        shape_range = ShapeRange((1, height, width), (1, height, width), (8, height, width))
    if batch is not None:
        low, opt, high = shape_range.min, shape_range.opt, shape_range.max
        shape_range = ShapeRange((batch, *low[1:]), (batch, *opt[1:]), (batch, *high[1:]))
    if align < 1:
        raise InputError(f"--alignment must be positive, got {align}")
    for name in ("min", "opt", "max"):
        _, h, w = getattr(shape_range, name)
        if h % align or w % align:
            raise InputError(f"shape range {name} {h}×{w} is not a multiple of the alignment {align}")
    return {"alignment": align, "shape_range": shape_range, "crop_size": shape_range.opt[1:]}


def _run_once(path: Path, spec: ModelSpec) -> None:
    """Run ONNX Runtime at the preferred size: the output must be N×C×H×W at the input's size."""
    ort = require("onnxruntime")
    batch, height, width = spec.shape_range.opt
    rng = np.random.default_rng(0)
    if spec.input_format == INPUT_UINT8_NHWC:
        example = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    else:
        example = rng.standard_normal((batch, 3, height, width), dtype=np.float32)
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {spec.input_name: example})
    except Exception as exc:  # ONNX Runtime raises its own types
        raise InputError(f"{path} does not run in ONNX Runtime on a {example.shape} input ({exc})") from exc
    needed = (batch, spec.num_classes, height, width)
    if tuple(result.shape) != needed:
        raise InputError(f"{path}: for a {example.shape} input the output is {tuple(result.shape)}, needed {needed} "
                         f"(C = {spec.num_classes} classes, at the input's height and width)",
                         "pass the model's class list with --classes; a model whose output is smaller than its "
                         "input needs its upsampling exported into the graph")
