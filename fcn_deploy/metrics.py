"""Segmentation metrics (pure numpy): confusion matrix and mIoU with void (255) ignored, and logit comparison."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcn_deploy.errors import ArtifactError
from fcn_deploy.palette import VOID_LABEL


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """num_classes×num_classes counts, rows = ground truth, columns = prediction; void is skipped."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
    keep = (labels != VOID_LABEL) & (labels >= 0) & (labels < num_classes)
    index = labels[keep] * num_classes + predictions[keep]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegmentationScores:
    """Pixel accuracy and mean IoU over the classes that occur in ground truth or prediction."""

    pixel_accuracy: float
    mean_iou: float
    per_class_iou: tuple[float, ...]  # NaN where a class is absent from both


def scores_from_confusion(matrix: np.ndarray) -> SegmentationScores:
    """Pixel accuracy and mIoU; classes absent from both truth and prediction do not count."""
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    true_positive = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
    present = ~np.isnan(iou)
    return SegmentationScores(
        pixel_accuracy=float(true_positive.sum() / total) if total else float("nan"),
        mean_iou=float(iou[present].mean()) if present.any() else float("nan"),
        per_class_iou=tuple(float(v) for v in iou),
    )


def max_logit_difference(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(max |Δlogit|, max |reference logit|) of two logit arrays of one shape; NaN when either holds a NaN."""
    if reference.shape != candidate.shape:
        raise ArtifactError(f"output shape {candidate.shape} differs from the reference's {reference.shape}")
    diff = float(np.max(np.abs(reference.astype(np.float32) - candidate.astype(np.float32))))
    return diff, float(np.max(np.abs(reference)))


def agreeing_pixels(reference: np.ndarray, candidate: np.ndarray, class_axis: int = 1) -> np.ndarray:
    """Where both logit arrays pick the same class and are finite: a NaN or infinite pixel agrees with nothing
    (numpy's argmax of an all-NaN pixel is class 0 in both, which would read as agreement)."""
    same = reference.argmax(axis=class_axis) == candidate.argmax(axis=class_axis)
    same &= np.isfinite(reference).all(axis=class_axis)
    same &= np.isfinite(candidate).all(axis=class_axis)
    return same


def compare_logits(reference: np.ndarray, candidate: np.ndarray, class_axis: int = 1) -> tuple[float, float, float]:
    """(max |Δlogit|, max |reference logit|, argmax agreement) of two logit arrays (classes on ``class_axis``).

    Non-finite logits make the difference NaN and count as disagreement, so no gate can pass them.
    """
    diff, peak = max_logit_difference(reference, candidate)
    agreement = float(np.mean(agreeing_pixels(reference, candidate, class_axis)))
    return diff, peak, agreement
