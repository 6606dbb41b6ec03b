"""Deterministic calibration crops from a VOC split, saved as JSON so a calibration can be reproduced.

Images smaller than the crop are skipped (default) or padded bottom/right with the mean colour
(``small='pad'``); the plan records which, with counts, plus a fingerprint of the data it used.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fcn_deploy.data.transforms import Size, random_crop_box
from fcn_deploy.data.voc import VocLayout, image_size
from fcn_deploy.errors import InputError
from fcn_deploy.fileio import sha256_file, write_text_atomic
from fcn_deploy.imageio import read_image
from fcn_deploy.spec import ModelSpec

SmallPolicy = Literal["skip", "pad"]
SMALL_POLICIES = ("skip", "pad")
PLAN_FORMAT = "fcn-deploy-calibration-crops-1"


@dataclass(frozen=True)
class CropBox:
    """One calibration crop: image id and window (in the image, padded bottom/right when ``padded``)."""

    image_id: str
    top: int
    left: int
    padded: bool = False


@dataclass(frozen=True)
class CropPlan:
    """The chosen crops and how they were chosen."""

    data_dir: str
    split: str
    crop: Size
    seed: int
    small: str
    listed: int  # ids in the split
    eligible: int  # ids usable (all when padding, those at least crop-sized when skipping)
    skipped: int
    padded: int  # crops taken from padded images
    fingerprint: str  # sha256 over the used image files and the boxes
    crops: tuple[CropBox, ...]

    def to_json(self) -> str:
        payload = {"format": PLAN_FORMAT, **asdict(self)}
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"

    def describe(self) -> str:
        """One line for the log: counts of crops, images, skipped and padded."""
        return (
            f"{len(self.crops)} crops of {self.crop[0]}x{self.crop[1]} from {self.eligible}/{self.listed} images of "
            f"split '{self.split}' (images smaller than the crop: {self.skipped} skipped, {self.padded} crops padded)"
        )


def plan_crops(
    data_dir: str | os.PathLike[str], split: str, num: int, crop: Size, seed: int, small: SmallPolicy = "skip"
) -> CropPlan:
    """Pick ``num`` crops, cycling through a seeded shuffle of the eligible images (each once before repeats)."""
    if num < 1:
        raise InputError(f"--num must be at least 1, got {num}")
    if small not in SMALL_POLICIES:
        raise InputError(f"unknown small-image policy {small!r}", f"use one of: {', '.join(SMALL_POLICIES)}")
    layout = VocLayout(Path(data_dir))
    ids = layout.ids(split)
    sizes = {}
    for image_id in ids:
        path = layout.image_path(image_id)
        if not path.is_file():
            raise InputError(f"{layout.split_file(split)} lists {image_id!r} but {path} does not exist")
        sizes[image_id] = image_size(path)
    fits = [i for i in ids if sizes[i][0] >= crop[0] and sizes[i][1] >= crop[1]]
    eligible = list(ids) if small == "pad" else fits
    if not eligible:
        raise InputError(
            f"every image of split '{split}' in {data_dir} is smaller than the {crop[0]}x{crop[1]} crop",
            "pass a smaller --crop, or --small pad to pad small images",
        )
    rng = np.random.default_rng(seed)
    order: list[str] = []
    boxes = []
    while len(boxes) < num:
        if not order:
            order = [eligible[k] for k in rng.permutation(len(eligible))]
        image_id = order.pop(0)
        height, width = sizes[image_id]
        padded = height < crop[0] or width < crop[1]
        top, left = random_crop_box((max(height, crop[0]), max(width, crop[1])), crop, rng)
        boxes.append(CropBox(image_id, top, left, padded))
    used = sorted({b.image_id for b in boxes})
    digest = hashlib.sha256()
    for image_id in used:
        digest.update(f"{image_id}:{sha256_file(layout.image_path(image_id))}\n".encode())
    for box in boxes:
        digest.update(f"{box.image_id}@{box.top},{box.left},{int(box.padded)}\n".encode())
    return CropPlan(
        data_dir=str(data_dir), split=split, crop=tuple(crop), seed=seed, small=small, listed=len(ids),
        eligible=len(eligible), skipped=0 if small == "pad" else len(ids) - len(fits),
        padded=sum(b.padded for b in boxes), fingerprint=digest.hexdigest(), crops=tuple(boxes),
    )


def save_plan(plan: CropPlan, path: str | os.PathLike[str]) -> Path:
    """Write the plan as JSON (atomically)."""
    write_text_atomic(path, plan.to_json())
    return Path(path)


def load_plan(path: str | os.PathLike[str]) -> CropPlan:
    """Read a plan written by ``save_plan``; InputError for anything else (every field is checked)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.pop("format", None) != PLAN_FORMAT:
            raise ValueError("not a crop plan")
        if set(data) != {f.name for f in fields(CropPlan)}:
            raise ValueError(f"fields {sorted(data)} are not those of a crop plan")
        data["crop"] = _checked_size(data["crop"])
        data["crops"] = tuple(_checked_box(c) for c in _checked(data["crops"], list, "crops"))
        for name in ("data_dir", "split", "small", "fingerprint"):
            _checked(data[name], str, name)
        for name in ("seed", "listed", "eligible", "skipped", "padded"):
            if _checked(data[name], int, name) < 0:
                raise ValueError(f"{name} is negative")
        return CropPlan(**data)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InputError(f"cannot read crop plan {path} ({exc})",
                         "pass a crop plan written by 'fcn-deploy calibrate' (calibration/<name>.crops.json)") from exc


def _checked(value: Any, kind: type, name: str) -> Any:
    """``value`` when it is of ``kind`` (a bool is not an int), else ValueError naming the field."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name} is {type(value).__name__}, not {kind.__name__}")
    return value


def _checked_size(value: Any) -> Size:
    """[height, width] as a tuple of two positive integers."""
    height, width = (_checked(v, int, "crop") for v in _checked(value, list, "crop"))
    if height < 1 or width < 1:
        raise ValueError(f"crop {value} is not positive")
    return height, width


def _checked_box(value: Any) -> CropBox:
    """One crop box of a plan, its fields checked."""
    box = _checked(value, dict, "a crop")
    if set(box) - {"padded"} != {"image_id", "top", "left"}:
        raise ValueError(f"a crop has fields {sorted(box)}")
    top, left = _checked(box["top"], int, "top"), _checked(box["left"], int, "left")
    if top < 0 or left < 0:
        raise ValueError(f"a crop starts at a negative position ({top}, {left})")
    return CropBox(_checked(box["image_id"], str, "image_id"), top, left, _checked(box.get("padded", False), bool,
                                                                                  "padded"))


def crop_input(layout: VocLayout, box: CropBox, crop: Size, spec: ModelSpec) -> np.ndarray:
    """The model input (batch of one, in the spec's format) for one planned crop."""
    image = read_image(layout.image_path(box.image_id))
    height, width = image.shape[:2]
    if box.padded:
        pad_h, pad_w = max(crop[0] - height, 0), max(crop[1] - width, 0)
        mean_colour = np.round(np.asarray(spec.mean) * 255).astype(np.uint8)
        padded = np.empty((height + pad_h, width + pad_w, 3), np.uint8)
        padded[...] = mean_colour
        padded[:height, :width] = image
        image = padded
    window = image[box.top: box.top + crop[0], box.left: box.left + crop[1]]
    if window.shape[:2] != tuple(crop):
        raise InputError(f"image {box.image_id} changed since the crop plan was made (window {window.shape[:2]})")
    return spec.to_model_input(window[None])
