"""Where two masks disagree: on a class boundary of the reference (harmless) or inside a region (not), and the
pictures of one image that the HTML parity report shows. Pure numpy plus Pillow for the image encodings.

A boundary pixel has a 4-neighbour of another class (both sides of an edge are boundary pixels); a pixel is
"near a boundary" when a boundary pixel lies within ``BOUNDARY_RADIUS`` pixels of it in both directions (the
Chebyshev distance), found by shifting the boundary mask, never wrapping round the image's edges.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fcn_deploy.imageio import encode_mask

BOUNDARY_RADIUS = 2  # pixels: disagreement this close to a reference class boundary counts as boundary

# The disagreement map's palette indices and colours (the HTML legend names them in this order).
AGREE, AGREE_ON_BOUNDARY, DISAGREE_NEAR_BOUNDARY, DISAGREE_INTERIOR = 0, 1, 2, 3
DISAGREEMENT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (235, 235, 235),  # agreement
    (150, 150, 150),  # agreement on a reference class boundary (context)
    (255, 160, 0),  # disagreement within BOUNDARY_RADIUS px of a reference boundary
    (210, 0, 40),  # disagreement inside a region
)
INPUT_JPEG_QUALITY = 85


def class_boundaries(labels: np.ndarray) -> np.ndarray:
    """H×W bool: the pixels with a 4-neighbour of another class."""
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    rows = labels[1:, :] != labels[:-1, :]
    edge[1:, :] |= rows
    edge[:-1, :] |= rows
    columns = labels[:, 1:] != labels[:, :-1]
    edge[:, 1:] |= columns
    edge[:, :-1] |= columns
    return edge


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels in every direction (a (2r+1)² square), rows then columns, by shifts."""
    grown = np.array(mask, dtype=bool)
    for axis in (0, 1):
        source = grown.copy()
        for shift in range(1, radius + 1):
            if shift >= source.shape[axis]:
                break
            ahead = [slice(None)] * 2
            behind = [slice(None)] * 2
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            grown[tuple(ahead)] |= source[tuple(behind)]
            grown[tuple(behind)] |= source[tuple(ahead)]
    return grown


def near_boundary(labels: np.ndarray, radius: int = BOUNDARY_RADIUS) -> np.ndarray:
    """H×W bool: the pixels within ``radius`` pixels of a class boundary of ``labels``."""
    return dilate(class_boundaries(labels), radius)


@dataclass(frozen=True)
class Disagreement:
    """How many pixels of one image disagree, and how many of those lie near a reference boundary."""

    pixels: int
    near_boundary: int


def split_disagreement(disagree: np.ndarray, near: np.ndarray) -> Disagreement:
    """Count the disagreeing pixels, and those of them in the reference's boundary band ``near``."""
    return Disagreement(int(np.count_nonzero(disagree)), int(np.count_nonzero(disagree & near)))


def disagreement_map(disagree: np.ndarray, near: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """H×W uint8 palette indices: AGREE, AGREE_ON_BOUNDARY, DISAGREE_NEAR_BOUNDARY or DISAGREE_INTERIOR."""
    picture = np.where(boundary, AGREE_ON_BOUNDARY, AGREE).astype(np.uint8)
    picture[disagree & near] = DISAGREE_NEAR_BOUNDARY
    picture[disagree & ~near] = DISAGREE_INTERIOR
    return picture


def data_uri(data: bytes, media_type: str) -> str:
    """``data:`` URI of some bytes, for an image embedded in a self-contained HTML page."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def encode_jpeg(image: np.ndarray, quality: int = INPUT_JPEG_QUALITY) -> bytes:
    """H×W×3 uint8 RGB as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class ImagePictures:
    """What the HTML report shows of one image: four pictures (data URIs), per-class IoU, the confusion matrix."""

    image_id: str
    agreement: float
    input_uri: str
    reference_uri: str
    model_uri: str
    disagreement_uri: str
    reference_iou: tuple[float, ...]  # per class, against the ground truth (NaN: class absent)
    model_iou: tuple[float, ...]
    confusion: np.ndarray  # classes × classes: rows the reference's class, columns the model's


def image_pictures(
    image_id: str, agreement: float, image: np.ndarray, reference_pred: np.ndarray, model_pred: np.ndarray,
    disagree: np.ndarray, near: np.ndarray, palette: tuple[tuple[int, int, int], ...],
    ious: tuple[tuple[float, ...], tuple[float, ...]], confusion: np.ndarray,
) -> ImagePictures:
    """Encode the pictures of one image for the HTML report."""
    boundary = class_boundaries(reference_pred)
    return ImagePictures(
        image_id=image_id, agreement=agreement,
        input_uri=data_uri(encode_jpeg(image), "image/jpeg"),
        reference_uri=data_uri(encode_mask(reference_pred.astype(np.uint8), palette), "image/png"),
        model_uri=data_uri(encode_mask(model_pred.astype(np.uint8), palette), "image/png"),
        disagreement_uri=data_uri(encode_mask(disagreement_map(disagree, near, boundary), DISAGREEMENT_COLOURS),
                                  "image/png"),
        reference_iou=ious[0], model_iou=ious[1], confusion=confusion,
    )
