"""Parity of a deployed model with its reference on a VOC split: logits, argmax agreement, mIoU.

Each image is run whole: reflect-padded to the next multiple of the alignment, one pass per model,
logits cropped back. Each model gets its input in the format its own spec declares.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.data.progress import log
from fcn_deploy.data.transforms import normalize_image
from fcn_deploy.data.voc import VocLayout, read_pair
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import write_text_atomic
from fcn_deploy.metrics import confusion_matrix, scores_from_confusion
from fcn_deploy.runtime import Backend, open_backend
from fcn_deploy.spec import INPUT_UINT8_NHWC
from fcn_deploy.tiling import pad_to, whole_size

REPORT_SUFFIXES = ("", ".md", ".json")


@dataclass(frozen=True)
class ParityConfig:
    """Which split to run, on which device, and where the reports go (``report`` .md and .json)."""

    split: str = "val"
    device: str = "auto"
    report: Path = Path("parity") / "parity.md"
    limit: int | None = None  # only the first N ids of the split
    progress: bool = True


@dataclass(frozen=True)
class ImageParity:
    """One image: logit difference, argmax agreement, and each model's scores against the ground truth."""

    image_id: str
    height: int
    width: int
    max_abs_diff: float
    max_abs_logit: float
    argmax_agreement: float
    model_miou: float
    model_pixel_accuracy: float
    reference_miou: float
    reference_pixel_accuracy: float


@dataclass(frozen=True)
class ParityReport:
    """Per-image results and the overall aggregates (mIoU from the summed confusion matrices)."""

    model: str
    reference: str
    model_backend: str
    model_device: str
    model_precision: str
    reference_backend: str
    reference_device: str
    data_dir: str
    split: str
    num_images: int
    num_pixels: int
    max_abs_diff: float
    max_abs_logit: float
    argmax_agreement: float  # pixel-weighted over all images
    model_miou: float
    model_pixel_accuracy: float
    reference_miou: float
    reference_pixel_accuracy: float
    delta_miou: float  # model - reference
    model_seconds: float
    reference_seconds: float
    images: tuple[ImageParity, ...]
    markdown_path: Path | None = None
    json_path: Path | None = None

    @property
    def relative_diff(self) -> float:
        """max |Δlogit| / max |reference logit|."""
        if self.max_abs_logit:
            return self.max_abs_diff / self.max_abs_logit
        return 0.0 if self.max_abs_diff == 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (paths as strings, NaN kept as null)."""
        data = asdict(self)
        data["images"] = [asdict(image) for image in self.images]
        data["relative_diff"] = self.relative_diff
        for key in ("markdown_path", "json_path"):
            data[key] = str(data[key]) if data[key] is not None else None
        return _nan_to_none(data)

    def summary(self) -> str:
        """Two short result lines."""
        return (
            f"{self.num_images} images, {self.num_pixels} pixels: max |Δlogit| {self.max_abs_diff:.3g} "
            f"({self.relative_diff:.2e} of max |logit|), argmax agreement {100 * self.argmax_agreement:.4f}%\n"
            f"mIoU model {_pct(self.model_miou)} vs reference {_pct(self.reference_miou)} "
            f"(Δ {_signed_pct(self.delta_miou)}), pixel accuracy {_pct(self.model_pixel_accuracy)} vs "
            f"{_pct(self.reference_pixel_accuracy)}"
        )


def report_paths(report: Path) -> tuple[Path, Path]:
    """(Markdown, JSON) paths of a report base path; InputError for another suffix."""
    report = Path(report)
    if report.suffix.lower() not in REPORT_SUFFIXES:
        raise InputError(f"report path {report} must end in .md or .json (or have no suffix)",
                         f"pass e.g. {report.with_suffix('.md')}; both the .md and the .json are written")
    return report.with_suffix(".md"), report.with_suffix(".json")


def run_parity(
    model: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    config: ParityConfig = ParityConfig(),
) -> ParityReport:
    """Compare ``model`` with ``reference`` (any artifacts open_backend opens) on a VOC split; write both reports."""
    markdown_path, json_path = report_paths(config.report)
    if config.limit is not None and config.limit < 1:
        raise InputError(f"limit must be positive, got {config.limit}")
    layout = VocLayout(Path(data_dir))
    ids = layout.check_files(config.split)[: config.limit]
    with open_backend(model, config.device) as candidate, open_backend(reference, config.device) as ref:
        _check_compatible(candidate, ref, model, reference)
        if config.progress:
            log(f"parity of {model} ({candidate.name} on {candidate.device}) with {reference} ({ref.name} on "
                f"{ref.device}) on {len(ids)} images of split '{config.split}'...")
        results, totals = _run_images(candidate, ref, layout, ids, config)
    report = _aggregate(model, reference, candidate, ref, layout, config.split, results, totals)
    report = replace(report, markdown_path=markdown_path, json_path=json_path)
    write_text_atomic(json_path, json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    write_text_atomic(markdown_path, render_markdown(report))
    if config.progress:
        log(f"wrote {markdown_path} and {json_path.name}")
    return report


def _check_compatible(candidate: Backend, ref: Backend, model: Any, reference: Any) -> None:
    """Both models must predict the same classes."""
    if candidate.spec.num_classes != ref.spec.num_classes:
        raise InputError(
            f"{model} predicts {candidate.spec.num_classes} classes but {reference} {ref.spec.num_classes}",
            "compare a model with the checkpoint it was exported from",
        )


def model_input(backend: Backend, padded: np.ndarray) -> np.ndarray:
    """A batch of one padded uint8 H×W×3 image in the format the backend's spec declares."""
    spec = backend.spec
    if spec.input_format == INPUT_UINT8_NHWC:
        return np.ascontiguousarray(padded[None])
    return normalize_image(padded, spec.mean, spec.std)[None]


def _logits(backend: Backend, image: np.ndarray) -> tuple[np.ndarray, float]:
    """C×H×W logits of a whole image (padded, one pass, cropped back) and the seconds it took."""
    height, width = image.shape[:2]
    spec = backend.spec
    padded = pad_to(image, *whole_size((height, width), spec.alignment, spec.shape_range.min[1:]))
    started = time.perf_counter()
    logits = backend.infer(model_input(backend, padded))[0, :, :height, :width]
    return logits, time.perf_counter() - started


def _run_images(
    candidate: Backend, ref: Backend, layout: VocLayout, ids: tuple[str, ...], config: ParityConfig
) -> tuple[list[ImageParity], dict[str, Any]]:
    """Per-image results, plus summed confusion matrices and timings."""
    classes = ref.spec.num_classes
    totals: dict[str, Any] = {
        "model_cm": np.zeros((classes, classes), np.int64), "reference_cm": np.zeros((classes, classes), np.int64),
        "agree": 0, "pixels": 0, "model_seconds": 0.0, "reference_seconds": 0.0,
    }
    results = []
    for index, image_id in enumerate(ids, 1):
        image, mask = read_pair(layout, image_id)
        model_logits, model_seconds = _logits(candidate, image)
        ref_logits, ref_seconds = _logits(ref, image)
        model_pred, ref_pred = model_logits.argmax(axis=0), ref_logits.argmax(axis=0)
        model_cm = confusion_matrix(mask, model_pred, classes)
        ref_cm = confusion_matrix(mask, ref_pred, classes)
        agree = int(np.count_nonzero(model_pred == ref_pred))
        model_scores, ref_scores = scores_from_confusion(model_cm), scores_from_confusion(ref_cm)
        result = ImageParity(
            image_id=image_id, height=int(image.shape[0]), width=int(image.shape[1]),
            max_abs_diff=float(np.max(np.abs(model_logits - ref_logits))),
            max_abs_logit=float(np.max(np.abs(ref_logits))),
            argmax_agreement=agree / model_pred.size,
            model_miou=model_scores.mean_iou, model_pixel_accuracy=model_scores.pixel_accuracy,
            reference_miou=ref_scores.mean_iou, reference_pixel_accuracy=ref_scores.pixel_accuracy,
        )
        results.append(result)
        totals["model_cm"] += model_cm
        totals["reference_cm"] += ref_cm
        totals["agree"] += agree
        totals["pixels"] += model_pred.size
        totals["model_seconds"] += model_seconds
        totals["reference_seconds"] += ref_seconds
        if config.progress:
            log(f"  [{index}/{len(ids)}] {image_id} {result.height}x{result.width}: max |Δlogit| "
                f"{result.max_abs_diff:.3g}, agreement {100 * result.argmax_agreement:.4f}%")
    return results, totals


def _aggregate(
    model: Any, reference: Any, candidate: Backend, ref: Backend, layout: VocLayout, split: str,
    results: list[ImageParity], totals: dict[str, Any],
) -> ParityReport:
    """Overall figures from the per-image results and the summed confusion matrices."""
    model_scores = scores_from_confusion(totals["model_cm"])
    ref_scores = scores_from_confusion(totals["reference_cm"])
    return ParityReport(
        model=str(model), reference=str(reference),
        model_backend=candidate.name, model_device=candidate.device, model_precision=candidate.spec.precision,
        reference_backend=ref.name, reference_device=ref.device,
        data_dir=str(layout.root), split=split, num_images=len(results), num_pixels=int(totals["pixels"]),
        max_abs_diff=max(r.max_abs_diff for r in results),
        max_abs_logit=max(r.max_abs_logit for r in results),
        argmax_agreement=totals["agree"] / totals["pixels"],
        model_miou=model_scores.mean_iou, model_pixel_accuracy=model_scores.pixel_accuracy,
        reference_miou=ref_scores.mean_iou, reference_pixel_accuracy=ref_scores.pixel_accuracy,
        delta_miou=model_scores.mean_iou - ref_scores.mean_iou,
        model_seconds=totals["model_seconds"], reference_seconds=totals["reference_seconds"],
        images=tuple(results),
    )


# --- reports -------------------------------------------------------------------------------------


def _nan_to_none(value: Any) -> Any:
    """Replace NaN floats (metrics of absent classes) by None so the JSON stays strict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}%"


def _signed_pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:+.2f} pt"


def render_markdown(report: ParityReport) -> str:
    """The Markdown report: setup, overall figures, one row per image."""
    lines = [
        "# Parity report",
        "",
        f"- model: `{report.model}` ({report.model_backend} on {report.model_device}, {report.model_precision})",
        f"- reference: `{report.reference}` ({report.reference_backend} on {report.reference_device})",
        f"- data: `{report.data_dir}`, split `{report.split}`, {report.num_images} images, {report.num_pixels} pixels",
        "- each image run whole: reflect-padded to a multiple of the alignment, one pass, cropped back",
        "",
        "## Overall",
        "",
        "| measure | value |",
        "|---|---|",
        f"| max \\|Δlogit\\| | {report.max_abs_diff:.4g} |",
        f"| max \\|reference logit\\| | {report.max_abs_logit:.4g} |",
        f"| relative difference | {report.relative_diff:.3e} |",
        f"| argmax agreement | {100 * report.argmax_agreement:.4f}% |",
        f"| mIoU model / reference / Δ | {_pct(report.model_miou)} / {_pct(report.reference_miou)} / "
        f"{_signed_pct(report.delta_miou)} |",
        f"| pixel accuracy model / reference | {_pct(report.model_pixel_accuracy)} / "
        f"{_pct(report.reference_pixel_accuracy)} |",
        f"| inference seconds model / reference | {report.model_seconds:.2f} / {report.reference_seconds:.2f} |",
        "",
        "## Per image",
        "",
        "| image | size | max \\|Δlogit\\| | agreement | mIoU model | mIoU reference | pixel acc. model | pixel acc. reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report.images:
        lines.append(
            f"| {r.image_id} | {r.height}x{r.width} | {r.max_abs_diff:.3g} | {100 * r.argmax_agreement:.4f}% | "
            f"{_pct(r.model_miou)} | {_pct(r.reference_miou)} | {_pct(r.model_pixel_accuracy)} | "
            f"{_pct(r.reference_pixel_accuracy)} |"
        )
    return "\n".join(lines) + "\n"
