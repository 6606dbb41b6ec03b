"""The parity report: per-image and overall figures, as JSON and as Markdown."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fcn_deploy.parity.visual import BOUNDARY_RADIUS


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
    disagreeing_pixels: int = 0  # pixels whose class differs from the reference's (or whose logits are not finite)
    boundary_disagreeing_pixels: int = 0  # of those, the pixels within BOUNDARY_RADIUS px of a reference boundary

    @property
    def boundary_share(self) -> float:
        """The share of disagreeing pixels near a reference class boundary; NaN when none disagrees."""
        return _share(self.boundary_disagreeing_pixels, self.disagreeing_pixels)


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
    disagreeing_pixels: int = 0
    boundary_disagreeing_pixels: int = 0
    html_path: Path | None = None  # the visual report, when asked for

    @property
    def boundary_share(self) -> float:
        """The share of disagreeing pixels within BOUNDARY_RADIUS px of a reference class boundary (harmless
        edge jitter, unlike a whole region flipped); NaN when no pixel disagrees."""
        return _share(self.boundary_disagreeing_pixels, self.disagreeing_pixels)

    def boundary_line(self) -> str:
        """Where the disagreeing pixels lie, as one line."""
        if not self.disagreeing_pixels:
            return "no pixel disagrees with the reference"
        return (f"{self.disagreeing_pixels} pixels disagree; {_pct(self.boundary_share)} of them lie within "
                f"{BOUNDARY_RADIUS} px of a reference class boundary")

    @property
    def relative_diff(self) -> float:
        """max |Δlogit| / max |reference logit|."""
        if self.max_abs_logit:
            return self.max_abs_diff / self.max_abs_logit
        return 0.0 if self.max_abs_diff == 0 else math.inf

    @property
    def logits_finite(self) -> bool:
        """False when either model produced a NaN or infinite logit on some image (its pixels agree with nothing)."""
        return math.isfinite(self.max_abs_diff) and math.isfinite(self.max_abs_logit)

    def non_finite_problem(self) -> str | None:
        """The failure every parity check reports for non-finite logits, or None when all were finite."""
        if self.logits_finite:
            return None
        return (f"non-finite logits (max |Δlogit| {self.max_abs_diff:.3g}, max |reference logit| "
                f"{self.max_abs_logit:.3g}): NaN or infinite pixels count as disagreement")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (paths as strings, NaN kept as null; ``logits_finite`` says whether any was NaN)."""
        data = asdict(self)
        data["images"] = [{**asdict(image), "boundary_share": image.boundary_share} for image in self.images]
        data["relative_diff"] = self.relative_diff
        data["logits_finite"] = self.logits_finite
        data["boundary_share"] = self.boundary_share
        data["boundary_radius_px"] = BOUNDARY_RADIUS
        for key in ("markdown_path", "json_path", "html_path"):
            data[key] = str(data[key]) if data[key] is not None else None
        return _nan_to_none(data)

    def summary(self) -> str:
        """Two short result lines (a third saying FAIL when some logits were not finite)."""
        text = (
            f"{self.num_images} images, {self.num_pixels} pixels: max |Δlogit| {self.max_abs_diff:.3g} "
            f"({self.relative_diff:.2e} of max |logit|), argmax agreement {100 * self.argmax_agreement:.4f}%\n"
            f"mIoU model {_pct(self.model_miou)} vs reference {_pct(self.reference_miou)} "
            f"(Δ {_signed_pct(self.delta_miou)}), pixel accuracy {_pct(self.model_pixel_accuracy)} vs "
            f"{_pct(self.reference_pixel_accuracy)}"
        )
        problem = self.non_finite_problem()
        return text + (f"\nFAIL: {problem}" if problem else "")


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


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


def _math_note(report: ParityReport) -> str:
    """What FP32 means for a TensorRT engine (TF32 where the GPU has it, unless the build turned it off) and the
    parity gate its build recorded; FP16 and INT8 engines keep FP32 layers too."""
    if report.model_backend != "tensorrt":
        return ""
    from fcn_deploy.runtime.tensorrt_support import engine_build_notes

    notes = engine_build_notes(report.model)
    if notes:
        return "; " + "; ".join(notes)
    return ("; TensorRT engine: TensorRT allows TF32 for the convolutions and matrix products of FP32 layers by "
            "default on compute capability 8.0 and newer (Ampere+), so its logits differ slightly from strict FP32")


def _boundary_cell(report: ParityReport) -> str:
    if not report.disagreeing_pixels:
        return "n/a (no pixel disagrees)"
    return f"{_pct(report.boundary_share)} ({report.boundary_disagreeing_pixels} of {report.disagreeing_pixels})"


def _html_link(report: ParityReport) -> str:
    """A Markdown link to the HTML report, relative to the Markdown's folder when both paths are known."""
    html = Path(report.html_path)
    if report.markdown_path is None:
        return f"`{html}`"
    target = Path(os.path.relpath(html.resolve(), Path(report.markdown_path).resolve().parent)).as_posix()
    return f"[{html.name}]({target})"


def render_markdown(report: ParityReport) -> str:
    """The Markdown report: setup, overall figures, one row per image."""
    lines = [
        "# Parity report",
        "",
        f"- model: `{report.model}` ({report.model_backend} on {report.model_device}, {report.model_precision})"
        + _math_note(report),
        f"- reference: `{report.reference}` ({report.reference_backend} on {report.reference_device})",
        f"- data: `{report.data_dir}`, split `{report.split}`, {report.num_images} images, {report.num_pixels} pixels",
        "- each image run whole: reflect-padded to a multiple of the alignment, one pass, cropped back",
        *([f"- **FAIL: {report.non_finite_problem()}**"] if not report.logits_finite else []),
        *([f"- pictures (inputs, masks, disagreement maps, confusion matrix): {_html_link(report)}"]
          if report.html_path is not None else []),
        "",
        "## Overall",
        "",
        "| measure | value |",
        "|---|---|",
        f"| max \\|Δlogit\\| | {report.max_abs_diff:.4g} |",
        f"| max \\|reference logit\\| | {report.max_abs_logit:.4g} |",
        f"| relative difference | {report.relative_diff:.3e} |",
        f"| argmax agreement | {100 * report.argmax_agreement:.4f}% |",
        f"| disagreeing pixels within {BOUNDARY_RADIUS} px of a reference boundary | {_boundary_cell(report)} |",
        f"| mIoU model / reference / Δ | {_pct(report.model_miou)} / {_pct(report.reference_miou)} / "
        f"{_signed_pct(report.delta_miou)} |",
        f"| pixel accuracy model / reference | {_pct(report.model_pixel_accuracy)} / "
        f"{_pct(report.reference_pixel_accuracy)} |",
        f"| inference seconds model / reference | {report.model_seconds:.2f} / {report.reference_seconds:.2f} |",
        "",
        "## Per image",
        "",
        "| image | size | max \\|Δlogit\\| | agreement | disagreement near a boundary | mIoU model | mIoU reference "
        "| pixel acc. model | pixel acc. reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.images:
        lines.append(
            f"| {r.image_id} | {r.height}x{r.width} | {r.max_abs_diff:.3g} | {100 * r.argmax_agreement:.4f}% | "
            f"{_pct(r.boundary_share)} | "
            f"{_pct(r.model_miou)} | {_pct(r.reference_miou)} | {_pct(r.model_pixel_accuracy)} | "
            f"{_pct(r.reference_pixel_accuracy)} |"
        )
    return "\n".join(lines) + "\n"
