"""Array helpers shared by training, calibration and parity: size parsing, normalisation, crops, padding.

Everything here is plain numpy so that modules using it import without torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fcn_deploy.errors import InputError
from fcn_deploy.palette import VOID_LABEL
from fcn_deploy.spec import normalize_images

Size = tuple[int, int]  # (height, width)


def parse_size(text: str, option: str = "--size") -> Size:
    """Parse 'HEIGHTxWIDTH' (e.g. '320x480') into (height, width) of positive integers."""
    parts = str(text).strip().lower().split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"{option} must look like HEIGHTxWIDTH (e.g. 320x480), got {text!r}",
                         f"write it as two numbers joined by x, e.g. {option} 320x480") from None
    if height < 1 or width < 1:
        raise InputError(f"{option} needs a positive height and width, got {text!r}",
                         f"use multiples of 32, e.g. {option} 320x480")
    return height, width


def check_aligned(size: Size, alignment: int, option: str) -> Size:
    """Reject a size that is not a multiple of ``alignment`` (the FCN output stride) on both axes."""
    height, width = size
    if height % alignment or width % alignment:
        up = aligned_size(size, alignment)
        raise InputError(
            f"{option} {height}x{width} is not a multiple of {alignment} on both sides",
            f"use a multiple of {alignment}, e.g. {up[0]}x{up[1]}",
        )
    return size


def normalize_image(
    image: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """uint8 H×W×3 RGB -> float32 3×H×W, scaled to [0, 1] then standardised per channel."""
    return normalize_images(image[None], mean, std)[0]


def random_crop_box(image_size: Size, crop: Size, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly random ``crop`` inside an image of ``image_size``."""
    top = int(rng.integers(0, image_size[0] - crop[0] + 1))
    left = int(rng.integers(0, image_size[1] - crop[1] + 1))
    return top, left


def crop_pair(image: np.ndarray, mask: np.ndarray, top: int, left: int, crop: Size) -> tuple[np.ndarray, np.ndarray]:
    """The same window of an image (H×W×C) and its mask (H×W)."""
    rows, cols = slice(top, top + crop[0]), slice(left, left + crop[1])
    return image[rows, cols], mask[rows, cols]


def align_up(value: int, alignment: int) -> int:
    """``value`` rounded up to a multiple of ``alignment``."""
    return -(-int(value) // alignment) * alignment


def aligned_size(size: Size, alignment: int = 32) -> Size:
    """``size`` rounded up to multiples of ``alignment``."""
    return align_up(size[0], alignment), align_up(size[1], alignment)


def pad_pair(
    image: np.ndarray, mask: np.ndarray, size: Size
) -> tuple[np.ndarray, np.ndarray]:
    """Pad a normalised 3×H×W image with 0 (the mean colour) and its mask with void, bottom and right."""
    _, height, width = image.shape
    pad_h, pad_w = size[0] - height, size[1] - width
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"cannot pad {height}x{width} down to {size[0]}x{size[1]}")
    image = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=0.0)
    mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=VOID_LABEL)
    return image, mask
