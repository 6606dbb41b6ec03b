"""The model contract that travels with every artifact (checkpoint, ONNX metadata, JSON sidecars).

Later stages read the spec instead of guessing classes, palette, normalisation, alignment or shapes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcn_deploy.errors import ArtifactError
from fcn_deploy.fileio import write_text_atomic
from fcn_deploy.palette import VOC_CLASSES, VOC_COLORMAP

SPEC_FORMAT_VERSION = 1
ONNX_METADATA_KEY = "fcn_deploy.spec"
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
            if len(value) != 3 or any(int(v) < 1 for v in value):
                raise ArtifactError(f"shape range '{name}' must be three positive integers, got {value}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        for axis in range(3):
            if not self.min[axis] <= self.opt[axis] <= self.max[axis]:
                raise ArtifactError(f"shape range is not ordered min <= opt <= max: {self.min} {self.opt} {self.max}")

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
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            problems.append("mean and std need three values each, std positive")
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
            raise ArtifactError("invalid model spec: " + "; ".join(problems))

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
            raise ArtifactError(f"{source} holds no fcn-deploy model spec")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            values = {k: v for k, v in data.items() if k in known}
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
            raise ArtifactError(f"{source}: {exc.message}") from exc
        except (TypeError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{source} holds a malformed fcn-deploy model spec ({exc})") from exc

    @classmethod
    def from_json(cls, text: str, source: str = "spec") -> ModelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{source} is not valid JSON ({exc})") from exc
        return cls.from_dict(data, source)


# --- ONNX metadata (works on any ModelProto; no onnx import needed) -------------------------------


def store_in_onnx(proto: Any, spec: ModelSpec) -> None:
    """Store ``spec`` in an ONNX model's metadata under ONNX_METADATA_KEY, replacing an older value."""
    kept = [p for p in proto.metadata_props if p.key != ONNX_METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=ONNX_METADATA_KEY, value=spec.to_json())


def spec_from_onnx(proto: Any, source: str) -> ModelSpec:
    """The spec in an ONNX model's metadata; ArtifactError for a model fcn-deploy did not export."""
    return spec_from_metadata({prop.key: prop.value for prop in proto.metadata_props}, source)


def spec_from_metadata(metadata: Mapping[str, str], source: str) -> ModelSpec:
    """The spec in an ONNX model's metadata map (from the proto, or from a runtime session's model meta)."""
    if ONNX_METADATA_KEY in metadata:
        return ModelSpec.from_json(metadata[ONNX_METADATA_KEY], source=f"{source} metadata")
    raise ArtifactError(
        f"{source} is not an fcn-deploy ONNX model (no '{ONNX_METADATA_KEY}' metadata)",
        "export it with 'fcn-deploy export CHECKPOINT'; other ONNX models lack the spec "
        "(classes, normalisation, alignment) it needs",
    )


# --- sidecars ------------------------------------------------------------------------------------


def sidecar_path(artifact: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of an artifact: ``fcn.onnx`` -> ``fcn.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_sidecar(
    artifact: str | os.PathLike[str], spec: ModelSpec, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``{"spec": ..., **extra}`` next to ``artifact`` (atomically) and return its path."""
    payload: dict[str, Any] = {"spec": spec.to_dict()}
    payload.update(extra or {})
    path = sidecar_path(artifact)
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(artifact: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, Any]]:
    """Read an artifact's sidecar: the spec and the whole JSON document."""
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ArtifactError(
            f"{artifact} has no sidecar {path.name}",
            "keep the .json file that fcn-deploy wrote next to the artifact, or re-run the stage that made it",
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read sidecar {path} ({exc})") from exc
    return ModelSpec.from_dict(document.get("spec", {}), source=str(path)), document
