"""What the served segmenter takes and returns, and the per-request work behind it.

Both served forms (the Python-backend model of an exported repository and ``fcn-deploy serve``) take one encoded
image per row of a request (JPEG/PNG bytes, so requests of any image size batch together) and answer each row
with the palette PNG mask, the label array and an error text. Each image is decoded, segmented and encoded with
the same functions ``fcn-deploy infer`` uses (``decode_image``/``read_image``, ``Segmenter.segment``,
``encode_mask``/``write_mask``), and each image gets its own outcome: one bad image never fails the others of
its request or batch, and its error names its place in the caller's request, never in the batch the server
formed.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fcn_deploy.errors import FcnDeployError, InputError
from fcn_deploy.imageio import decode_image, encode_mask
from fcn_deploy.palette import VOID_LABEL
from fcn_deploy.segmenter import Segmenter

SERVED_MODEL_NAME = "fcn_segment"
IMAGE_INPUT = "image"  # BYTES [1]: one encoded image
MASK_OUTPUT = "mask"  # BYTES [1]: the palette PNG
LABELS_OUTPUT = "labels"  # UINT8 [-1, -1]: H×W class indices
ERROR_OUTPUT = "error"  # BYTES [1]: empty, or why this image failed
OUTPUT_NAMES: tuple[str, ...] = (MASK_OUTPUT, LABELS_OUTPUT, ERROR_OUTPUT)


@dataclass(frozen=True)
class Outcome:
    """The answer for one image: the mask PNG and labels, or the error that failed it."""

    png: bytes = b""
    labels: np.ndarray | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def request_outputs(outcomes: Sequence[Outcome]) -> dict[str, np.ndarray]:
    """One request's output tensors: row ``i`` answers the request's image ``i``.

    A failed image has an empty mask and void (255) labels: PyTriton cannot send empty tensors. The labels of a
    request's images share one array, so those smaller than the largest are padded with void (255) on the
    bottom and right; each mask PNG has its own image's size.
    """
    shapes = [o.labels.shape for o in outcomes if o.labels is not None] or [(1, 1)]
    height, width = max(h for h, _ in shapes), max(w for _, w in shapes)
    labels = np.full((len(outcomes), height, width), VOID_LABEL, np.uint8)
    for row, outcome in enumerate(outcomes):
        if outcome.labels is not None:
            labels[row, : outcome.labels.shape[0], : outcome.labels.shape[1]] = outcome.labels
    return {
        MASK_OUTPUT: np.array([[o.png] for o in outcomes], dtype=object),
        LABELS_OUTPUT: labels,
        ERROR_OUTPUT: np.array([[o.error.encode("utf-8")] for o in outcomes], dtype=object),
    }


def segment_encoded(segmenter: Segmenter, data: bytes, max_pixels: int | None, name: str = "image") -> Outcome:
    """Decode one encoded image, segment it and encode its palette PNG; errors are raised (InputError for bad input)."""
    labels = segmenter.segment(decode_image(data, max_pixels, name)).labels
    return Outcome(png=encode_mask(labels, segmenter.spec.palette), labels=labels)


def request_rows(tensor: object) -> list[np.ndarray]:
    """The rows of one request's ``image`` tensor (shape [n, 1] or [n]): row ``i`` holds the request's image ``i``."""
    array = np.asarray(tensor)
    if array.ndim == 0:
        return [array.reshape(1)]
    return [row.reshape(-1) for row in array] or [np.zeros((0,), object)]


def image_names(count: int) -> list[str]:
    """How errors name the images of a request: by their place in the caller's request, never in the server's batch."""
    return ["image"] if count == 1 else [f"image {i + 1} of {count} of the request" for i in range(count)]


def row_image_bytes(row: np.ndarray, name: str) -> bytes:
    """The encoded image of one row of the ``image`` tensor (one BYTES element), else InputError naming ``name``."""
    if row.dtype != object and row.dtype.kind != "S":
        raise InputError(f"{name}: input '{IMAGE_INPUT}' must be BYTES (encoded image), got {row.dtype}")
    if row.size != 1:
        raise InputError(f"{name}: input '{IMAGE_INPUT}' must hold one encoded image per row, got {row.size} values",
                         "send each image as one BYTES element (shape [1, 1], or [n, 1] for n images)")
    value = row[0]
    if not isinstance(value, (bytes, bytearray)):
        raise InputError(f"{name}: input '{IMAGE_INPUT}' must be bytes, got {type(value).__name__}")
    return bytes(value)


def _segment_row(segmenter: Segmenter, row: np.ndarray, max_pixels: int | None, name: str) -> Outcome:
    """One image of a request, every failure caught into its outcome (named by its place in the request)."""
    try:
        return segment_encoded(segmenter, row_image_bytes(row, name), max_pixels, name)
    except FcnDeployError as exc:
        return Outcome(error=exc.message + (f" (fix: {exc.hint})" if exc.hint else ""))
    except MemoryError as exc:
        return Outcome(error=f"{name}: not enough memory to segment the image ({exc})")
    except Exception as exc:  # a bug must not take the batch down with it: report it for this image
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        return Outcome(error=f"{name}: internal error {type(exc).__name__}: {exc}{where}")


def answer(segmenter: Segmenter, requests: Sequence[object], max_pixels: int | None) -> list[list[Outcome]]:
    """For each request's ``image`` tensor, one outcome per image it holds; a failure stays with its image and
    the others go on."""
    answers = []
    for tensor in requests:
        rows = request_rows(tensor)
        names = image_names(len(rows))
        answers.append([_segment_row(segmenter, row, max_pixels, name) for row, name in zip(rows, names)])
    return answers
