"""Datasets: the VOC2012 layout reader, the synthetic generator and the torch datasets built on them."""

from __future__ import annotations

from fcn_deploy.data.transforms import (
    Size,
    aligned_size,
    check_aligned,
    crop_pair,
    normalize_image,
    pad_pair,
    parse_size,
    random_crop_box,
)
from fcn_deploy.data.voc import (
    NUM_CLASSES,
    SplitScan,
    VocLayout,
    image_size,
    read_image,
    read_mask,
    read_pair,
    scan_split,
)

__all__ = [
    "NUM_CLASSES",
    "Size",
    "SplitScan",
    "VocLayout",
    "aligned_size",
    "check_aligned",
    "crop_pair",
    "image_size",
    "normalize_image",
    "pad_pair",
    "parse_size",
    "random_crop_box",
    "read_image",
    "read_mask",
    "read_pair",
    "scan_split",
]
