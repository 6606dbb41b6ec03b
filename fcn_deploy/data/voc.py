"""Reader for the official VOCdevkit/VOC2012 segmentation layout (also written by ``fcn-deploy data synth``).

    <root>/JPEGImages/<id>.jpg                  RGB images
    <root>/SegmentationClass/<id>.png           palette masks: 0..20 = class, 255 = void (ignored)
    <root>/ImageSets/Segmentation/<split>.txt   one id per line (train, val, trainval)

Everything here is numpy + Pillow; the torch datasets live in ``fcn_deploy.data.datasets``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fcn_deploy.data.transforms import Size
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import Place
from fcn_deploy.imageio import (
    read_image,  # the one image decoder (EXIF orientation, pixel limit); importable from here
)
from fcn_deploy.palette import VOC_CLASSES, VOC_PNG_PALETTE, VOID_LABEL

IMAGE_DIR = "JPEGImages"
MASK_DIR = "SegmentationClass"
SPLIT_DIR = os.path.join("ImageSets", "Segmentation")
IMAGE_SUFFIX = ".jpg"
MASK_SUFFIX = ".png"
NUM_CLASSES = len(VOC_CLASSES)
VALID_LABELS = frozenset(range(NUM_CLASSES)) | {VOID_LABEL}
_LAYOUT_HINT = (
    "pass the VOC2012 folder itself (the one holding JPEGImages/, SegmentationClass/ and "
    "ImageSets/Segmentation/), or make one with 'fcn-deploy data synth --out DIR'"
)


def dataset_places(root: str | os.PathLike[str], what: str = "--data") -> list[Place]:
    """The folders of a VOC2012 dataset a command reads every file of (images, masks, split lists)."""
    return [Place(f"{name}/ of {what}", Path(root) / name, whole=True) for name in (IMAGE_DIR, MASK_DIR, SPLIT_DIR)]


@dataclass(frozen=True)
class VocLayout:
    """A checked VOC2012-style folder: paths of images, masks and split lists."""

    root: Path

    def __post_init__(self) -> None:
        root = Path(self.root)
        object.__setattr__(self, "root", root)
        if not root.is_dir():
            raise InputError(f"dataset folder not found: {root}", _LAYOUT_HINT)
        missing = [d for d in (IMAGE_DIR, MASK_DIR, SPLIT_DIR) if not (root / d).is_dir()]
        if missing:
            hint = _LAYOUT_HINT
            nested = root / "VOCdevkit" / "VOC2012" if (root / "VOCdevkit").is_dir() else root / "VOC2012"
            if (nested / IMAGE_DIR).is_dir():
                hint = f"pass {nested} (the VOC2012 folder inside {root})"
            raise InputError(
                f"{root} is not a VOC2012 dataset folder: missing {', '.join(m + '/' for m in missing)}", hint
            )

    def split_file(self, split: str) -> Path:
        """The id list of a split: ImageSets/Segmentation/<split>.txt."""
        return self.root / SPLIT_DIR / f"{split}.txt"

    def ids(self, split: str) -> tuple[str, ...]:
        """The ids listed for ``split`` (one per line), checked to be non-empty and one token each."""
        path = self.split_file(split)
        if not path.is_file():
            present = sorted(p.stem for p in (self.root / SPLIT_DIR).glob("*.txt"))
            raise InputError(
                f"split list not found: {path}",
                f"splits present: {', '.join(present) or 'none'}; write {path.name} with one image id per line",
            )
        ids = []
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            token = line.strip()
            if not token:
                continue
            if len(token.split()) != 1 or "/" in token or "\\" in token:
                raise InputError(
                    f"{path}:{number}: expected one image id per line, got {token!r}",
                    "list bare ids such as 2007_000032 (no paths, suffixes or extra columns)",
                )
            ids.append(token)
        if not ids:
            raise InputError(f"split list {path} is empty", "list at least one image id in it")
        return tuple(ids)

    def image_path(self, image_id: str) -> Path:
        """JPEGImages/<id>.jpg."""
        return self.root / IMAGE_DIR / f"{image_id}{IMAGE_SUFFIX}"

    def mask_path(self, image_id: str) -> Path:
        """SegmentationClass/<id>.png."""
        return self.root / MASK_DIR / f"{image_id}{MASK_SUFFIX}"

    def check_files(self, split: str) -> tuple[str, ...]:
        """The split's ids, after checking that every one has its image and its mask."""
        ids = self.ids(split)
        for image_id in ids:
            for path in (self.image_path(image_id), self.mask_path(image_id)):
                if not path.is_file():
                    raise InputError(
                        f"{self.split_file(split)} lists {image_id!r} but {path} does not exist",
                        f"add the file, or remove {image_id} from {self.split_file(split).name}",
                    )
        return ids


def _open(path: Path, what: str) -> Image.Image:
    """Open an image file, turning every failure into an InputError naming the file."""
    if not Path(path).is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"cannot decode {what} {path} ({exc})", "replace it with a valid file") from exc
    return image


def image_size(path: str | os.PathLike[str]) -> Size:
    """(height, width) of an image file from its header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"cannot read image {path} ({exc})", "replace it with a valid JPEG") from exc
    return height, width


def _colour_code(r, g, b):
    """One integer per RGB colour (0xRRGGBB), for arrays or plain ints alike."""
    return (r << 16) | (g << 8) | b


_CODE_TO_LABEL = {_colour_code(*VOC_PNG_PALETTE[label]): label for label in (*range(NUM_CLASSES), VOID_LABEL)}


def _labels_from_rgb(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Map a colour-coded (RGB) mask to labels through the VOC colormap (d2l's voc_label_indices)."""
    codes = _colour_code(*(rgb[..., channel].astype(np.int64) for channel in range(3)))
    unique, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(c) for c in unique if int(c) not in _CODE_TO_LABEL]
    if unknown:
        shown = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown[:5])
        raise InputError(
            f"mask {path} has colours outside the VOC colormap: {shown}",
            "save masks as palette PNGs holding class indices 0..20 and 255 for void",
        )
    return np.array([_CODE_TO_LABEL[int(c)] for c in unique], dtype=np.uint8)[inverse].reshape(codes.shape)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a VOC mask to uint8 H×W labels, checking that every value is a class (0..20) or void (255)."""
    path = Path(path)
    image = _open(path, "mask")
    if image.mode in ("P", "L"):
        labels = np.asarray(image, dtype=np.uint8).copy()
    elif image.mode in ("RGB", "RGBA"):
        labels = _labels_from_rgb(np.asarray(image.convert("RGB")), path)
    else:
        raise InputError(
            f"mask {path} has image mode {image.mode}, expected a palette (P) or grayscale (L) PNG",
            "save masks as palette PNGs holding class indices 0..20 and 255 for void",
        )
    present = np.unique(labels)
    bad = [int(v) for v in present if int(v) not in VALID_LABELS]
    if bad:
        raise InputError(
            f"mask {path} holds values {bad[:8]} outside the classes 0..{NUM_CLASSES - 1} and void {VOID_LABEL}",
            f"relabel those pixels to a class index or to {VOID_LABEL} (ignored by loss and metrics)",
        )
    return labels


def read_pair(layout: VocLayout, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The image (uint8 H×W×3) and mask (uint8 H×W) of one id, checked to have the same size."""
    image = read_image(layout.image_path(image_id))
    mask = read_mask(layout.mask_path(image_id))
    _check_mask_size(layout.mask_path(image_id), mask, image.shape[:2])
    return image, mask


def _check_mask_size(mask_path: Path, mask: np.ndarray, image_hw: Size) -> None:
    """Reject a mask whose size differs from its image's (labels must line up pixel for pixel)."""
    if mask.shape != tuple(image_hw):
        raise InputError(
            f"mask {mask_path} is {mask.shape[0]}x{mask.shape[1]} but its image is {image_hw[0]}x{image_hw[1]}",
            "give every mask the size of its image",
        )


@dataclass(frozen=True)
class SplitScan:
    """The ids of a split that fit a crop (all ids when no crop is given), with their sizes."""

    split: str
    ids: tuple[str, ...]
    sizes: tuple[Size, ...]
    dropped: int  # listed ids smaller than the crop
    crop: Size | None = None

    def describe(self) -> str:
        """d2l-style 'read N examples' line."""
        text = f"{self.split}: read {len(self.ids)} examples"
        if self.crop is not None and self.dropped:
            text += f" ({self.dropped} smaller than the {self.crop[0]}x{self.crop[1]} crop dropped)"
        return text


def scan_split(layout: VocLayout, split: str, crop: Size | None = None) -> SplitScan:
    """Check every pair of a split (files exist, masks valid and sized like their images), drop those below ``crop``.

    Masks are decoded once here so that a bad one stops the run before training starts.
    """
    kept, sizes, dropped = [], [], 0
    tallest = widest = 0
    for image_id in layout.check_files(split):
        size = image_size(layout.image_path(image_id))
        _check_mask_size(layout.mask_path(image_id), read_mask(layout.mask_path(image_id)), size)
        tallest, widest = max(tallest, size[0]), max(widest, size[1])
        if crop is not None and (size[0] < crop[0] or size[1] < crop[1]):
            dropped += 1
            continue
        kept.append(image_id)
        sizes.append(size)
    if crop is not None and not kept:
        raise InputError(
            f"the crop {crop[0]}x{crop[1]} is larger than every image of split '{split}' in {layout.root} "
            f"(the images are at most {tallest} high and {widest} wide)",
            "pass a smaller --crop (multiples of 32 that fit the images)",
        )
    return SplitScan(split=split, ids=tuple(kept), sizes=tuple(sizes), dropped=dropped, crop=crop)
