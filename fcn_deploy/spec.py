"""The model contract that travels with every artifact (checkpoint, ONNX metadata, JSON sidecars).

Later stages read the spec instead of guessing classes, palette, normalisation, alignment or shapes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fcn_deploy.errors import ArtifactError
from fcn_deploy.palette import VOC_CLASSES, VOC_COLORMAP

SPEC_FORMAT_VERSION = 1
SPEC_HINT = "the file's model spec is missing or damaged: re-run the stage that wrote it (e.g. 'fcn-deploy export')"
MIN_STD = 1e-4  # a smaller std would scale pixels past what float32 inputs can hold usefully
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

INPUT_FLOAT_NCHW = "float32_nchw"  # normalised N×3×H×W float32
INPUT_UINT8_NHWC = "uint8_nhwc"  # raw RGB N×H×W×3 uint8, normalised inside the graph
INPUT_FORMATS = (INPUT_FLOAT_NCHW, INPUT_UINT8_NHWC)
PRECISIONS = ("fp32", "fp16", "int8")
# how the graph computes the stride-s upsamplers: as exported from training, or as one batched MatMul each
UPSAMPLER_CONVTRANSPOSE, UPSAMPLER_MATMUL = "convtranspose", "matmul"
UPSAMPLERS = (UPSAMPLER_CONVTRANSPOSE, UPSAMPLER_MATMUL)

Shape3 = tuple[int, int, int]  # (batch, height, width)


@dataclass(frozen=True)
class ShapeRange:
    """Supported (batch, height, width) range of an artifact; ``opt`` is the preferred tile size."""

    min: Shape3 = (1, 32, 32)
    opt: Shape3 = (1, 320, 480)
    max: Shape3 = (8, 1024, 1024)  # whole-image passes up to 1 MP; larger images are tiled (bounded memory)

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            value = getattr(self, name)
            if len(value) != 3 or any(not is_int(v) or v < 1 for v in value):
                raise ArtifactError(f"shape range '{name}' must be three positive integers, got {value}", SPEC_HINT)
            object.__setattr__(self, name, tuple(int(v) for v in value))
        for axis in range(3):
            if not self.min[axis] <= self.opt[axis] <= self.max[axis]:
                raise ArtifactError(f"shape range is not ordered min <= opt <= max: {self.min} {self.opt} {self.max}",
                                    SPEC_HINT)

    def contains(self, batch: int, height: int, width: int) -> bool:
        """True when (batch, height, width) lies inside [min, max] on every axis."""
        return all(lo <= v <= hi for lo, v, hi in zip(self.min, (batch, height, width), self.max))

    def contains_hw(self, height: int, width: int) -> bool:
        """True when an image of height×width fits the range at some batch size."""
        return self.min[1] <= height <= self.max[1] and self.min[2] <= width <= self.max[2]


@dataclass(frozen=True)
class QuantizationInfo:
    """How a reduced-precision artifact was produced, so its accuracy can be traced."""

    target: str = ""  # 'tensorrt' or 'cpu' for int8; '' for fp16
    method: str = ""  # calibration method for int8; '' for fp16
    num_crops: int = 0
    crop_size: tuple[int, int] = (0, 0)
    data_fingerprint: str = ""
    notes: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """Everything a later stage needs to run an artifact correctly."""

    arch: str
    num_classes: int = 21
    class_names: tuple[str, ...] = VOC_CLASSES
    palette: tuple[tuple[int, int, int], ...] = VOC_COLORMAP
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    alignment: int = 32
    crop_size: tuple[int, int] = (320, 480)
    input_name: str = "image"
    output_name: str = "logits"
    labels_name: str | None = None
    input_format: str = INPUT_FLOAT_NCHW
    upsampler: str = UPSAMPLER_CONVTRANSPOSE
    shape_range: ShapeRange = field(default_factory=ShapeRange)
    precision: str = "fp32"
    quantization: QuantizationInfo | None = None
    source_checkpoint_sha256: str | None = None
    format_version: int = SPEC_FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "palette", tuple(tuple(int(c) for c in color) for color in self.palette))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "crop_size", tuple(int(v) for v in self.crop_size))
        self._validate()

    def _validate(self) -> None:
        problems = []
        if self.num_classes < 1:
            problems.append(f"num_classes must be positive, got {self.num_classes}")
        if len(self.class_names) != self.num_classes:
            problems.append(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.palette) < self.num_classes or any(len(c) != 3 for c in self.palette):
            problems.append(f"palette needs {self.num_classes} RGB colours, has {len(self.palette)}")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(0.0 <= m <= 1.0 for m in self.mean) or not all(
                MIN_STD <= s <= 1.0 for s in self.std):  # NaN fails every comparison
            problems.append(f"mean and std need three values each, as fractions of 255: mean in 0 .. 1, std in "
                            f"{MIN_STD} .. 1")
        if any(not 0 <= c <= 255 for color in self.palette for c in color):
            problems.append("palette colours must be RGB values in 0 .. 255")
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            problems.append(f"crop_size must be two positive integers, got {self.crop_size}")
        if self.alignment < 1:
            problems.append(f"alignment must be positive, got {self.alignment}")
        if self.input_format not in INPUT_FORMATS:
            problems.append(f"input_format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.upsampler not in UPSAMPLERS:
            problems.append(f"upsampler must be one of {UPSAMPLERS}, got {self.upsampler!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.format_version > SPEC_FORMAT_VERSION:
            problems.append(f"spec format {self.format_version} is newer than this fcn-deploy understands")
        if problems:
            raise ArtifactError("invalid model spec: " + "; ".join(problems), SPEC_HINT)

    # --- the input layout ------------------------------------------------------------------------

    @property
    def takes_uint8(self) -> bool:
        """True when the model takes raw uint8 N×H×W×3 RGB (normalisation inside the graph)."""
        return self.input_format == INPUT_UINT8_NHWC

    @property
    def channel_axis(self) -> int:
        """Axis of the three colour channels in the model's input."""
        return 3 if self.takes_uint8 else 1

    @property
    def layout_name(self) -> str:
        """The input layout in words, for messages."""
        return "N×H×W×3 uint8 RGB" if self.takes_uint8 else "N×3×H×W float32"

    def input_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The input tensor's shape for a batch of height×width images."""
        return (batch, height, width, 3) if self.takes_uint8 else (batch, 3, height, width)

    def batch_hw(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """(batch, height, width) of an input tensor shape in the model's layout."""
        if self.takes_uint8:
            return int(shape[0]), int(shape[1]), int(shape[2])
        return int(shape[0]), int(shape[2]), int(shape[3])

    def to_model_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 N×H×W×3 RGB images as the model's input: as they are, or normalised N×3×H×W float32."""
        if self.takes_uint8:
            return np.ascontiguousarray(images)
        return normalize_images(images, self.mean, self.std)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (the spec is frozen)."""
        return dataclasses.replace(self, **changes)

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "spec") -> ModelSpec:
        """Rebuild a spec, raising ArtifactError (naming ``source``) on anything malformed."""
        if not isinstance(data, Mapping) or "arch" not in data:
            raise ArtifactError(f"{source} holds no fcn-deploy model spec", SPEC_HINT)
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            values = {k: v for k, v in data.items() if k in known}
            _check_json_types(values, _SPEC_TYPES)
            if isinstance(values.get("shape_range"), Mapping):
                _check_json_types(values["shape_range"], _RANGE_TYPES)
            if isinstance(values.get("quantization"), Mapping):
                _check_json_types(values["quantization"], _QUANTIZATION_TYPES)
            if "shape_range" in values:
                sr = values["shape_range"]
                values["shape_range"] = ShapeRange(tuple(sr["min"]), tuple(sr["opt"]), tuple(sr["max"]))
            if values.get("quantization") is not None:
                q = dict(values["quantization"])
                if "crop_size" in q:
                    q["crop_size"] = tuple(q["crop_size"])
                values["quantization"] = QuantizationInfo(**q)
            return cls(**values)
        except ArtifactError as exc:
            raise ArtifactError(f"{source}: {exc.message}", exc.hint or SPEC_HINT) from exc
        except (TypeError, KeyError, ValueError, OverflowError) as exc:
            raise ArtifactError(f"{source} holds a malformed fcn-deploy model spec ({exc})", SPEC_HINT) from exc

    @classmethod
    def from_json(cls, text: str, source: str = "spec") -> ModelSpec:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, RecursionError) as exc:
            raise ArtifactError(f"{source} is not valid JSON ({exc})", SPEC_HINT) from exc
        return cls.from_dict(data, source)


# --- JSON types of a spec (checked before building it, so nothing is silently converted) ----------------


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return is_int(value) or isinstance(value, (float, np.floating))


def _list_of(check: Any, length: int | None = None) -> Any:
    def test(value: Any) -> bool:
        return isinstance(value, (list, tuple)) and (length is None or len(value) == length) and all(
            check(v) for v in value)
    return test


def _optional(check: Any) -> Any:
    return lambda value: value is None or check(value)


_is_str = (lambda value: isinstance(value, str))  # noqa: E731
_SPEC_TYPES = {
    "arch": _is_str, "num_classes": is_int, "class_names": _list_of(_is_str),
    "palette": _list_of(_list_of(is_int, 3)),
    "mean": _list_of(_is_number, 3), "std": _list_of(_is_number, 3), "alignment": is_int,
    "crop_size": _list_of(is_int, 2), "input_name": _is_str, "output_name": _is_str, "labels_name": _optional(_is_str),
    "input_format": _is_str, "upsampler": _is_str, "shape_range": lambda v: isinstance(v, Mapping),
    "precision": _is_str, "quantization": _optional(lambda v: isinstance(v, Mapping)),
    "source_checkpoint_sha256": _optional(_is_str), "format_version": is_int,
}
_RANGE_TYPES = {name: _list_of(is_int, 3) for name in ("min", "opt", "max")}
_QUANTIZATION_TYPES = {"target": _is_str, "method": _is_str, "num_crops": is_int, "crop_size": _list_of(is_int, 2),
                       "data_fingerprint": _is_str, "notes": _is_str}


def _check_json_types(values: Mapping[str, Any], types: Mapping[str, Any]) -> None:
    """TypeError naming the first field whose JSON value has the wrong type."""
    for name, value in values.items():
        check = types.get(name)
        if check is not None and not check(value):
            raise TypeError(f"field {name!r} has the wrong type ({type(value).__name__}: {str(value)[:40]})")


# --- inputs ----------------------------------------------------------------------------------------


def normalize_images(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 N×H×W×3 RGB -> float32 N×3×H×W, (x / 255 - mean) / std per channel, written plane by plane."""
    std64 = np.asarray(std, np.float64)
    scale = (1.0 / (255.0 * std64)).astype(np.float32)
    offset = (-np.asarray(mean, np.float64) / std64).astype(np.float32)
    batch = np.empty((images.shape[0], 3, *images.shape[1:3]), np.float32)
    for channel in range(3):
        plane = batch[:, channel]
        np.multiply(images[..., channel], scale[channel], out=plane, dtype=np.float32)
        plane += offset[channel]
    return batch


def example_input(spec: ModelSpec, batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random batch in the spec's input format."""
    rng = np.random.default_rng(seed)
    if spec.takes_uint8:
        return rng.integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8)
    return rng.standard_normal((batch, 3, height, width), dtype=np.float32)
