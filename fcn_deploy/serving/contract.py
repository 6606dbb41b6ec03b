"""What the served segmenter takes and returns, and the per-request work behind it.

Both served forms (the Python-backend model of an exported repository and ``fcn-deploy serve``) take one encoded
image per request (JPEG/PNG bytes, so requests of any image size batch together) and answer with the palette PNG
mask, the label array and an error text. Each request is decoded, segmented and encoded with the same functions
``fcn-deploy infer`` uses (``decode_image``/``read_image``, ``Segmenter.segment``, ``encode_mask``/``write_mask``),
and each gets its own outcome: one bad request never fails the others of its batch.
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
ERROR_OUTPUT = "error"  # BYTES [1]: empty, or why this request failed
OUTPUT_NAMES: tuple[str, ...] = (MASK_OUTPUT, LABELS_OUTPUT, ERROR_OUTPUT)


@dataclass(frozen=True)
class Outcome:
    """The answer to one request: the mask PNG and labels, or the error that failed it."""

    png: bytes = b""
    labels: np.ndarray | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def as_outputs(self) -> dict[str, np.ndarray]:
        """The request's output tensors with a leading batch axis of 1.

        A failed request has an empty mask and a 1×1 void (255) label array: PyTriton cannot send empty tensors.
        """
        labels = self.labels if self.labels is not None else np.full((1, 1), VOID_LABEL, np.uint8)
        return {
            MASK_OUTPUT: np.array([[self.png]], dtype=object),
            LABELS_OUTPUT: labels[None],
            ERROR_OUTPUT: np.array([[self.error.encode("utf-8")]], dtype=object),
        }


def segment_encoded(segmenter: Segmenter, data: bytes, max_pixels: int | None, name: str = "image") -> Outcome:
    """Decode one encoded image, segment it and encode its palette PNG; errors are raised (InputError for bad input)."""
    labels = segmenter.segment(decode_image(data, max_pixels, name)).labels
    return Outcome(png=encode_mask(labels, segmenter.spec.palette), labels=labels)


def request_image_bytes(tensor: object) -> bytes:
    """The encoded image of one request's ``image`` tensor (shape [1] or [1, 1] of bytes), else InputError."""
    array = np.asarray(tensor)
    if array.dtype != object and array.dtype.kind != "S":
        raise InputError(f"input '{IMAGE_INPUT}' must be BYTES (encoded image), got {array.dtype}")
    if array.size != 1:
        raise InputError(f"input '{IMAGE_INPUT}' must hold one encoded image per request, got shape {array.shape}",
                         "send one image per request; the server batches requests itself")
    value = array.reshape(-1)[0]
    if not isinstance(value, (bytes, bytearray)):
        raise InputError(f"input '{IMAGE_INPUT}' must be bytes, got {type(value).__name__}")
    return bytes(value)


def answer(segmenter: Segmenter, images: Sequence[object], max_pixels: int | None) -> list[Outcome]:
    """Segment each request's image on its own; a failure becomes that request's error and the others go on."""
    outcomes = []
    for index, tensor in enumerate(images):
        name = f"request {index + 1} of {len(images)}"
        try:
            outcomes.append(segment_encoded(segmenter, request_image_bytes(tensor), max_pixels, name))
        except FcnDeployError as exc:
            outcomes.append(Outcome(error=exc.message + (f" (fix: {exc.hint})" if exc.hint else "")))
        except MemoryError as exc:
            outcomes.append(Outcome(error=f"{name}: not enough memory to segment the image ({exc})"))
        except Exception as exc:  # a bug must not take the batch down with it: report it in this request
            last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
            outcomes.append(Outcome(error=f"{name}: internal error {type(exc).__name__}: {exc}{where}"))
    return outcomes
