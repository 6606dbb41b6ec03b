"""A synthetic dataset in the VOC2012 layout: textured shapes of a few VOC classes on noisy backgrounds.

Each class has its own colours and texture (stripes, checks, dots...), shapes are drawn at random, object
boundaries get a void (255) band as in VOC, and everything follows from the seed: the same seed gives the same
files. It lets the whole pipeline run, and a small FCN learn, without downloading VOC.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fcn_deploy.data.transforms import Size
from fcn_deploy.data.voc import (
    IMAGE_DIR,
    IMAGE_SUFFIX,
    MASK_DIR,
    MASK_SUFFIX,
    SPLIT_DIR,
)
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import write_bytes_atomic, write_text_atomic
from fcn_deploy.palette import VOC_CLASSES, VOID_LABEL, png_palette_bytes
from fcn_deploy.progress import log, progress_bar


@dataclass(frozen=True)
class Texture:
    """How one class looks: two RGB colours and a pattern of a given period (pixels)."""

    label: int
    color_a: tuple[int, int, int]
    color_b: tuple[int, int, int]
    pattern: str  # 'hstripes' | 'vstripes' | 'checker' | 'dots' | 'diagonal'
    period: int


# aeroplane, car, cat, dog, person: each a saturated hue in two shades (so colour and texture both tell the
# class), distinct patterns; backgrounds stay muted grey-brown
SYNTH_TEXTURES: tuple[Texture, ...] = (
    Texture(1, (215, 45, 40), (125, 15, 10), "hstripes", 8),
    Texture(7, (50, 80, 220), (20, 30, 115), "checker", 8),
    Texture(8, (90, 230, 90), (20, 140, 45), "dots", 8),
    Texture(12, (245, 190, 40), (150, 105, 10), "vstripes", 6),
    Texture(15, (200, 60, 210), (100, 20, 110), "diagonal", 8),
)
SYNTH_CLASSES: tuple[int, ...] = tuple(t.label for t in SYNTH_TEXTURES)
SHAPES = ("ellipse", "rectangle", "triangle", "pentagon")
OBJECT_SIDE = (0.45, 0.8)  # an object's box spans this fraction of the image height and width
MAX_OBJECTS = 2
MIN_SIZE = 32
JPEG_QUALITY = 92


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesise and where."""

    out: Path
    num: int = 64
    size: Size = (160, 224)
    seed: int = 0
    val_fraction: float = 0.25
    overwrite: bool = False


@dataclass(frozen=True)
class SynthResult:
    """The written dataset: its root and the ids of each split."""

    root: Path
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]


def _pattern(texture: Texture, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean H×W pattern of a texture with a random phase and a jittered period."""
    period = max(3, texture.period + int(rng.integers(-1, 2)))
    ys = np.arange(height)[:, None] + int(rng.integers(0, period))
    xs = np.arange(width)[None, :] + int(rng.integers(0, period))
    half = period / 2
    if texture.pattern == "hstripes":
        return np.broadcast_to((ys % period) < half, (height, width))
    if texture.pattern == "vstripes":
        return np.broadcast_to((xs % period) < half, (height, width))
    if texture.pattern == "checker":
        return ((ys // half + xs // half) % 2).astype(bool)
    if texture.pattern == "dots":
        return ((ys % period - half) ** 2 + (xs % period - half) ** 2) < (period / 2.6) ** 2
    return ((ys + xs) % period) < half  # diagonal


def _textured(texture: Texture, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """float32 H×W×3 fill of a class: its two (jittered) colours laid out by its pattern."""
    jitter = rng.integers(-20, 21, size=3)
    color_a = np.clip(np.array(texture.color_a) + jitter, 0, 255).astype(np.float32)
    color_b = np.clip(np.array(texture.color_b) + jitter, 0, 255).astype(np.float32)
    pattern = _pattern(texture, height, width, rng)[..., None]
    return np.where(pattern, color_a, color_b).astype(np.float32)


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Muted grey-brown background with smooth blotches (upsampled coarse noise)."""
    base = rng.uniform(70, 170) + rng.uniform(-10, 10, size=3)
    coarse = rng.normal(0, 28, size=(max(2, height // 24), max(2, width // 24), 1)).astype(np.float32)
    blotches = np.asarray(
        Image.fromarray(coarse[..., 0]).resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32
    )
    return (base[None, None, :] + blotches[..., None]).astype(np.float32)


def _shape_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of one random shape covering roughly a third to two thirds of each side."""
    box_h = rng.uniform(*OBJECT_SIDE) * height
    box_w = rng.uniform(*OBJECT_SIDE) * width
    cy = rng.uniform(box_h * 0.35, height - box_h * 0.35)
    cx = rng.uniform(box_w * 0.35, width - box_w * 0.35)
    top, left, bottom, right = cy - box_h / 2, cx - box_w / 2, cy + box_h / 2, cx + box_w / 2
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    kind = SHAPES[int(rng.integers(len(SHAPES)))]
    if kind == "ellipse":
        draw.ellipse((left, top, right, bottom), fill=1)
    elif kind == "rectangle":
        draw.rectangle((left, top, right, bottom), fill=1)
    else:
        corners = 3 if kind == "triangle" else 5
        angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
        points = [(cx + box_w / 2 * np.cos(a), cy + box_h / 2 * np.sin(a)) for a in angles]
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def _void_band(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` (chessboard distance) of a pixel with another label: VOC's boundary band."""
    band = np.zeros(labels.shape, dtype=bool)
    padded = np.pad(labels, width, mode="edge")
    height, cols = labels.shape
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            shifted = padded[width + dy : width + dy + height, width + dx : width + dx + cols]
            band |= shifted != labels
    return band


def synth_pair(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic (image uint8 H×W×3, mask uint8 H×W) pair: 1 to MAX_OBJECTS textured shapes on a noisy background."""
    height, width = size
    image = _background(height, width, rng)
    labels = np.zeros((height, width), dtype=np.uint8)
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        texture = SYNTH_TEXTURES[int(rng.integers(len(SYNTH_TEXTURES)))]
        shape = _shape_mask(height, width, rng)
        image[shape] = _textured(texture, height, width, rng)[shape]
        labels[shape] = texture.label
    image += rng.normal(0, 10, size=image.shape).astype(np.float32)
    mask = labels.copy()
    mask[_void_band(labels, max(1, round(min(height, width) / 80)))] = VOID_LABEL
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def encode_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes of a uint8 RGB image."""
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Palette-PNG bytes of a label mask, with the VOC palette (as the official masks are stored)."""
    image = Image.fromarray(mask, "P")
    image.putpalette(png_palette_bytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _check(config: SynthConfig) -> None:
    """Reject unusable options before anything is written."""
    if config.num < 2:
        raise InputError(f"--num must be at least 2 (one train and one val image), got {config.num}")
    if min(config.size) < MIN_SIZE:
        raise InputError(f"--size must be at least {MIN_SIZE}x{MIN_SIZE}, got {config.size[0]}x{config.size[1]}")
    if not 0 < config.val_fraction < 1:
        raise InputError(f"the validation fraction must lie strictly between 0 and 1, got {config.val_fraction}")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder", "pass a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not config.overwrite:
        raise InputError(f"--out {out} is not empty", "pass a new or empty folder, or add --overwrite")


def split_ids(num: int, val_fraction: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Ids synth_00000.. split into train (first) and val (last round(num × fraction), at least 1 each)."""
    ids = tuple(f"synth_{index:05d}" for index in range(num))
    num_val = min(num - 1, max(1, round(num * val_fraction)))
    return ids[: num - num_val], ids[num - num_val :]


def synthesize(config: SynthConfig) -> SynthResult:
    """Write a synthetic dataset in the VOC2012 layout under ``config.out``; pair i depends only on (seed, i)."""
    _check(config)
    root = Path(config.out)
    train_ids, val_ids = split_ids(config.num, config.val_fraction)
    with progress_bar(config.num, "synthesising") as advance:
        for index, image_id in enumerate(train_ids + val_ids):
            image, mask = synth_pair(config.size, np.random.default_rng([config.seed, index]))
            write_bytes_atomic(root / IMAGE_DIR / f"{image_id}{IMAGE_SUFFIX}", encode_jpeg(image))
            write_bytes_atomic(root / MASK_DIR / f"{image_id}{MASK_SUFFIX}", encode_mask_png(mask))
            advance()
    for split, ids in (("train", train_ids), ("val", val_ids), ("trainval", train_ids + val_ids)):
        write_text_atomic(root / SPLIT_DIR / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    names = ", ".join(VOC_CLASSES[label] for label in SYNTH_CLASSES)
    log(f"wrote {config.num} pairs ({len(train_ids)} train, {len(val_ids)} val) of classes {names} to {root}")
    return SynthResult(root=root, train_ids=train_ids, val_ids=val_ids)


__all__ = ["SYNTH_CLASSES", "SynthConfig", "SynthResult", "synth_pair", "synthesize", "split_ids"]
