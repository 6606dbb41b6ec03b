"""Run the parity of a deployed model with its reference on a VOC split: logits, argmax agreement, mIoU.

Each image is run whole: reflect-padded to the next multiple of the alignment, one pass per model,
logits cropped back. Each model gets its input in the format its own spec declares.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.contract import with_sidecar
from fcn_deploy.data.voc import VocLayout, dataset_places, read_pair
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import Place, check_output_file, check_outputs_apart, write_text_atomic
from fcn_deploy.metrics import (
    agreeing_pixels,
    confusion_matrix,
    max_logit_difference,
    scores_from_confusion,
)
from fcn_deploy.parity.html import Confusions, WorstImages, render_html
from fcn_deploy.parity.report import ImageParity, ParityReport, render_markdown
from fcn_deploy.parity.visual import image_pictures, near_boundary, split_disagreement
from fcn_deploy.progress import ItemLines, log
from fcn_deploy.runtime import Backend, BackendChoice, open_backend
from fcn_deploy.tiling import pad_to, whole_size

REPORT_SUFFIXES = ("", ".md", ".json")
HTML_SUFFIXES = (".html", ".htm")
HTML_IMAGES = 50  # pictures of the worst 50 images: an HTML page of a few MB, whatever the split's size


@dataclass(frozen=True)
class ParityConfig:
    """Which split to run, on which device, and where the reports go (``report`` .md and .json)."""

    split: str = "val"
    device: str = "auto"
    report: Path = Path("parity") / "parity.md"
    limit: int | None = None  # only the first N ids of the split
    backend: BackendChoice = BackendChoice()  # the runtime of the model checked (the reference runs by its suffix)
    progress: bool = True
    html: Path | None = None  # the visual report (pictures, per-class IoU, confusion matrix), when wanted
    html_images: int = HTML_IMAGES  # the worst images the HTML report shows pictures of (all are in its table)


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
    outputs = [Place("the parity report", markdown_path), Place("the parity report", json_path)]
    if config.html is not None:
        outputs.append(Place("the HTML parity report", check_html_path(config.html)))
    check_outputs_apart(outputs, [*with_sidecar("the model", model), *with_sidecar("the reference", reference),
                                  *dataset_places(data_dir)])
    for output in outputs:
        check_output_file(output.path, output.what)
    if config.limit is not None and config.limit < 1:
        raise InputError(f"limit must be positive, got {config.limit}")
    if config.html_images < 0:
        raise InputError(f"the HTML report's image count must be 0 or more, got {config.html_images}")
    layout = VocLayout(Path(data_dir))
    ids = layout.check_files(config.split)[: config.limit]
    with open_backend(model, config.device, config.backend) as candidate, open_backend(reference, config.device) as ref:
        _check_compatible(candidate, ref, model, reference)
        if config.progress:
            log(f"parity of {model} ({candidate.name} on {candidate.device}) with {reference} ({ref.name} on "
                f"{ref.device}) on {len(ids)} images of split '{config.split}'...")
        pictures = WorstImages(config.html_images if config.html is not None else 0)
        results, totals = _run_images(candidate, ref, layout, ids, config, pictures)
    report = _aggregate(model, reference, candidate, ref, layout, config.split, results, totals)
    report = replace(report, markdown_path=markdown_path, json_path=json_path, html_path=config.html)
    if config.html is not None:
        write_text_atomic(config.html, render_html(report, ref.spec, Confusions(
            totals["reference_cm"], totals["model_cm"], totals["pair_cm"]), pictures.worst_first()))
    write_text_atomic(json_path, json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    write_text_atomic(markdown_path, render_markdown(report))
    if config.progress:
        log(f"wrote {markdown_path} and {json_path.name}" + (f" and {config.html}" if config.html else ""))
    return report


def check_html_path(html: str | os.PathLike[str]) -> Path:
    """The HTML report's path; InputError unless it ends in .html or .htm."""
    html = Path(html)
    if html.suffix.lower() not in HTML_SUFFIXES:
        raise InputError(f"HTML report path {html} must end in .html",
                         f"pass e.g. {html.with_suffix('.html')}")
    return html


def _check_compatible(candidate: Backend, ref: Backend, model: Any, reference: Any) -> None:
    """Both models must predict the same classes."""
    if candidate.spec.num_classes != ref.spec.num_classes:
        raise InputError(
            f"{model} predicts {candidate.spec.num_classes} classes but {reference} {ref.spec.num_classes}",
            "compare a model with the checkpoint it was exported from",
        )


def _logits(backend: Backend, image: np.ndarray) -> tuple[np.ndarray, float]:
    """C×H×W logits of a whole image (padded, one pass, cropped back) and the seconds it took."""
    height, width = image.shape[:2]
    spec = backend.spec
    padded = pad_to(image, *whole_size((height, width), spec.alignment, spec.shape_range.min[1:]))
    started = time.perf_counter()
    logits = backend.infer(spec.to_model_input(padded[None]))[0, :, :height, :width]
    return logits, time.perf_counter() - started


def _run_images(
    candidate: Backend, ref: Backend, layout: VocLayout, ids: tuple[str, ...], config: ParityConfig,
    pictures: WorstImages,
) -> tuple[list[ImageParity], dict[str, Any]]:
    """Per-image results, plus summed confusion matrices and timings; the worst images' pictures into
    ``pictures``."""
    classes = ref.spec.num_classes
    totals: dict[str, Any] = {
        "model_cm": np.zeros((classes, classes), np.int64), "reference_cm": np.zeros((classes, classes), np.int64),
        "pair_cm": np.zeros((classes, classes), np.int64), "disagree": 0, "boundary_disagree": 0,
        "agree": 0, "pixels": 0, "model_seconds": 0.0, "reference_seconds": 0.0,
    }
    results = []
    lines = ItemLines("images", f"the report lists every one: {report_paths(config.report)[0]}")
    for index, image_id in enumerate(ids, 1):
        image, mask = read_pair(layout, image_id)
        model_logits, model_seconds = _logits(candidate, image)
        ref_logits, ref_seconds = _logits(ref, image)
        max_abs_diff, max_abs_logit = max_logit_difference(ref_logits, model_logits)
        model_pred, ref_pred = model_logits.argmax(axis=0), ref_logits.argmax(axis=0)
        model_cm = confusion_matrix(mask, model_pred, classes)
        ref_cm = confusion_matrix(mask, ref_pred, classes)
        agreeing = agreeing_pixels(ref_logits, model_logits, class_axis=0)
        agree = int(np.count_nonzero(agreeing))
        near = near_boundary(ref_pred)
        disagreement = split_disagreement(~agreeing, near)
        pair_cm = confusion_matrix(ref_pred, model_pred, classes)
        model_scores, ref_scores = scores_from_confusion(model_cm), scores_from_confusion(ref_cm)
        result = ImageParity(
            image_id=image_id, height=int(image.shape[0]), width=int(image.shape[1]),
            max_abs_diff=max_abs_diff, max_abs_logit=max_abs_logit,
            argmax_agreement=agree / model_pred.size,
            model_miou=model_scores.mean_iou, model_pixel_accuracy=model_scores.pixel_accuracy,
            reference_miou=ref_scores.mean_iou, reference_pixel_accuracy=ref_scores.pixel_accuracy,
            disagreeing_pixels=disagreement.pixels, boundary_disagreeing_pixels=disagreement.near_boundary,
        )
        if pictures.wants(result.argmax_agreement):
            pictures.add(image_pictures(
                image_id, result.argmax_agreement, image, ref_pred, model_pred, ~agreeing, near, ref.spec.palette,
                (ref_scores.per_class_iou, model_scores.per_class_iou), pair_cm))
        results.append(result)
        totals["pair_cm"] += pair_cm
        totals["disagree"] += disagreement.pixels
        totals["boundary_disagree"] += disagreement.near_boundary
        totals["model_cm"] += model_cm
        totals["reference_cm"] += ref_cm
        totals["agree"] += agree
        totals["pixels"] += model_pred.size
        totals["model_seconds"] += model_seconds
        totals["reference_seconds"] += ref_seconds
        if config.progress:
            lines.line(f"  [{index}/{len(ids)}] {image_id} {result.height}x{result.width}: max |Δlogit| "
                       f"{result.max_abs_diff:.3g}, agreement {100 * result.argmax_agreement:.4f}%")
    lines.close()
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
        max_abs_diff=float(np.max([r.max_abs_diff for r in results])),  # np.max keeps a NaN, Python's max may not
        max_abs_logit=float(np.max([r.max_abs_logit for r in results])),
        argmax_agreement=totals["agree"] / totals["pixels"],
        model_miou=model_scores.mean_iou, model_pixel_accuracy=model_scores.pixel_accuracy,
        reference_miou=ref_scores.mean_iou, reference_pixel_accuracy=ref_scores.pixel_accuracy,
        delta_miou=model_scores.mean_iou - ref_scores.mean_iou,
        model_seconds=totals["model_seconds"], reference_seconds=totals["reference_seconds"],
        images=tuple(results),
        disagreeing_pixels=int(totals["disagree"]), boundary_disagreeing_pixels=int(totals["boundary_disagree"]),
    )
