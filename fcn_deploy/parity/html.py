"""The visual parity report: one self-contained HTML page (images as data: URIs, inline CSS, no script), which
opens from disk in any browser: the overall figures, per-class IoU, the reference-vs-model confusion matrix, a
table of every image worst first, and the pictures of the worst images.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

from fcn_deploy.metrics import scores_from_confusion
from fcn_deploy.parity.report import ImageParity, ParityReport
from fcn_deploy.parity.visual import BOUNDARY_RADIUS, DISAGREEMENT_COLOURS, ImagePictures
from fcn_deploy.spec import ModelSpec


class WorstImages:
    """The pictures of the ``limit`` images of lowest agreement seen so far (a bounded heap: memory stays flat)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._heap: list[tuple[float, int, ImagePictures]] = []  # (-agreement, order, pictures): best on top
        self._order = itertools.count()

    def wants(self, agreement: float) -> bool:
        """Whether an image of this agreement would be kept (so its pictures are worth encoding)."""
        if self.limit <= 0:
            return False
        return len(self._heap) < self.limit or _worse(agreement, -self._heap[0][0])

    def add(self, pictures: ImagePictures) -> None:
        """Keep ``pictures``, dropping the best kept image when over the limit."""
        heapq.heappush(self._heap, (-_sort_key(pictures.agreement), next(self._order), pictures))
        if len(self._heap) > self.limit:
            heapq.heappop(self._heap)

    def worst_first(self) -> list[ImagePictures]:
        """The kept pictures, lowest agreement first."""
        return [entry[2] for entry in sorted(self._heap, key=lambda entry: (-entry[0], entry[1]))]


def _sort_key(agreement: float) -> float:
    """Agreement as a sort key: NaN (non-finite logits) sorts as the worst."""
    return -1.0 if math.isnan(agreement) else agreement


def _worse(agreement: float, than: float) -> bool:
    return _sort_key(agreement) < than


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.off { background: #fde0dc; }
td.worse { color: #b00020; }
figure { display: inline-block; margin: 0 0.8em 0.8em 0; vertical-align: top; }
figure img { max-width: 320px; image-rendering: pixelated; border: 1px solid #999; }
figcaption { font-size: 0.85em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #666; vertical-align: middle; }
section.image { border-top: 2px solid #ddd; padding-top: 0.6em; }
"""

_LEGEND = ("agreement", "agreement on a reference class boundary", f"disagreement within {BOUNDARY_RADIUS} px of a "
           "reference class boundary", "disagreement inside a region")


@dataclass(frozen=True)
class Confusions:
    """The confusion matrices summed over every image: each model against the ground truth (rows the truth), and
    the model against the reference (rows the reference's class)."""

    reference_vs_truth: np.ndarray
    model_vs_truth: np.ndarray
    model_vs_reference: np.ndarray


def render_html(report: ParityReport, spec: ModelSpec, confusions: Confusions,
                pictures: Sequence[ImagePictures]) -> str:
    """The whole page; ``pictures`` are the worst images' pictures, worst first."""
    names = spec.class_names
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Parity report: {escape(report.model)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Parity report</h1>",
        "<ul>",
        f"<li>model: <code>{escape(report.model)}</code> ({escape(report.model_backend)} on "
        f"{escape(report.model_device)}, {escape(report.model_precision)})</li>",
        f"<li>reference: <code>{escape(report.reference)}</code> ({escape(report.reference_backend)} on "
        f"{escape(report.reference_device)})</li>",
        f"<li>data: <code>{escape(report.data_dir)}</code>, split <code>{escape(report.split)}</code>, "
        f"{report.num_images} images, {report.num_pixels} pixels</li>",
        "</ul>",
        "<h2>Overall</h2>",
        _table(("measure", "value"), _overall_rows(report), "overall"),
        "<h2>Per-class IoU against the ground truth</h2>",
        _iou_table(scores_from_confusion(confusions.reference_vs_truth).per_class_iou,
                   scores_from_confusion(confusions.model_vs_truth).per_class_iou, names),
        "<h2>Reference vs model: confusion matrix</h2>",
        "<p>Pixels of every image; rows: the reference's class, columns: the model's. Only classes that either "
        "predicts somewhere are shown; shaded cells are disagreement.</p>",
        _confusion_table(confusions.model_vs_reference, names, "confusion"),
        "<h2>Images, worst first</h2>",
        _images_table(report.images, {p.image_id for p in pictures}),
        _pictures_note(len(pictures), report.num_images),
        *(_image_section(p, names) for p in pictures),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _pct(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}%"


def _overall_rows(report: ParityReport) -> list[tuple[str, str]]:
    share = ("n/a (no pixel disagrees)" if not report.disagreeing_pixels else
             f"{_pct(report.boundary_share)} ({report.boundary_disagreeing_pixels} of {report.disagreeing_pixels})")
    return [
        ("argmax agreement", _pct(report.argmax_agreement, 4)),
        ("disagreeing pixels", str(report.disagreeing_pixels)),
        (f"disagreeing pixels within {BOUNDARY_RADIUS} px of a reference class boundary", share),
        ("mIoU model / reference", f"{_pct(report.model_miou)} / {_pct(report.reference_miou)}"),
        ("ΔmIoU (model − reference)", "n/a" if math.isnan(report.delta_miou) else f"{100 * report.delta_miou:+.2f} pt"),
        ("max |Δlogit| / max |reference logit|", f"{report.max_abs_diff:.4g} / {report.max_abs_logit:.4g}"),
    ]


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], css_class: str) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _shown_classes(matrix: np.ndarray) -> list[int]:
    """The classes with a pixel in the row or the column of ``matrix``."""
    return [c for c in range(matrix.shape[0]) if matrix[c, :].any() or matrix[:, c].any()]


def _confusion_table(matrix: np.ndarray, names: Sequence[str], css_class: str) -> str:
    """Reference classes down, model classes across; disagreeing cells with pixels shaded."""
    shown = _shown_classes(matrix)
    if not shown:
        return "<p>(no pixel)</p>"
    head = "<th>reference \\ model</th>" + "".join(f"<th>{escape(names[c])}</th>" for c in shown)
    rows = []
    for r in shown:
        cells = "".join(
            f'<td class="off">{matrix[r, c]}</td>' if r != c and matrix[r, c] else f"<td>{matrix[r, c]}</td>"
            for c in shown)
        rows.append(f"<tr><td>{escape(names[r])}</td>{cells}</tr>")
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _images_table(images: Sequence[ImageParity], pictured: set[str]) -> str:
    """Every image, lowest agreement first; the pictured ones link to their section."""
    ordered = sorted(images, key=lambda r: (_sort_key(r.argmax_agreement), r.image_id))
    head = "".join(f"<th>{h}</th>" for h in ("image", "size", "agreement", "disagreeing pixels",
                                              f"of them within {BOUNDARY_RADIUS} px of a boundary",
                                              "mIoU model", "mIoU reference"))
    rows = []
    for r in ordered:
        name = escape(r.image_id)
        cell = f'<a href="#{_anchor(r.image_id)}">{name}</a>' if r.image_id in pictured else name
        rows.append(f"<tr><td>{cell}</td><td>{r.height}x{r.width}</td><td>{_pct(r.argmax_agreement, 4)}</td>"
                    f"<td>{r.disagreeing_pixels}</td><td>{_pct(r.boundary_share)}</td><td>{_pct(r.model_miou)}</td>"
                    f"<td>{_pct(r.reference_miou)}</td></tr>")
    return f'<table class="images"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _pictures_note(shown: int, total: int) -> str:
    if shown == total:
        return f"<p>Pictures of all {total} images follow, worst first.</p>"
    return f"<p>Pictures of the {shown} images of lowest agreement follow, of {total}; the table lists them all.</p>"


def _anchor(image_id: str) -> str:
    return "image-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in image_id)


def _figure(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'


def _legend() -> str:
    items = "".join(f'<li><span class="swatch" style="background: rgb{colour}"></span> {escape(text)}</li>'
                    for colour, text in zip(DISAGREEMENT_COLOURS, _LEGEND))
    return f'<ul class="legend">{items}</ul>'


def _iou_table(reference: Sequence[float], model: Sequence[float], names: Sequence[str]) -> str:
    """Per class present in either: IoU of the reference and of the model against the ground truth, and the Δ."""
    rows = []
    for c, (ref_iou, model_iou) in enumerate(zip(reference, model)):
        if math.isnan(ref_iou) and math.isnan(model_iou):
            continue
        delta = model_iou - ref_iou
        shown = "n/a" if math.isnan(delta) else f"{100 * delta:+.2f} pt"
        worse = ' class="worse"' if not math.isnan(delta) and delta < 0 else ""
        rows.append(f"<tr><td>{escape(names[c])}</td><td>{_pct(ref_iou)}</td><td>{_pct(model_iou)}</td>"
                    f"<td{worse}>{shown}</td></tr>")
    if not rows:
        return "<p>(no labelled pixel: no IoU)</p>"
    head = "<th>class</th><th>IoU reference</th><th>IoU model</th><th>Δ</th>"
    return f'<table class="iou"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _image_section(pictures: ImagePictures, names: Sequence[str]) -> str:
    return "\n".join([
        f'<section class="image" id="{_anchor(pictures.image_id)}">',
        f"<h3>{escape(pictures.image_id)}: agreement {_pct(pictures.agreement, 4)}</h3>",
        _figure(pictures.input_uri, "input"),
        _figure(pictures.reference_uri, "reference mask"),
        _figure(pictures.model_uri, "model mask"),
        _figure(pictures.disagreement_uri, "disagreement"),
        _legend(),
        "<h4>Per-class IoU against the ground truth</h4>",
        _iou_table(pictures.reference_iou, pictures.model_iou, names),
        "<h4>Confusion matrix, reference vs model</h4>",
        _confusion_table(pictures.confusion, names, "confusion"),
        "</section>",
    ])
