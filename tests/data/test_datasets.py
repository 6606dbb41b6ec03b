"""Size parsing, normalisation, random crops and the padded whole-image batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcn_deploy.data.datasets import crop_dataset, pad_collate, whole_image_dataset
from fcn_deploy.data.transforms import (
    aligned_size,
    check_aligned,
    normalize_image,
    parse_size,
)
from fcn_deploy.data.voc import VocLayout, read_pair, scan_split
from fcn_deploy.errors import InputError
from fcn_deploy.spec import IMAGENET_MEAN, IMAGENET_STD


def test_parse_size():
    assert parse_size("320x480") == (320, 480)
    for bad in ("320", "320x", "axb", "0x32", "32x32x3"):
        with pytest.raises(InputError, match="--crop"):
            parse_size(bad, "--crop")


def test_check_aligned_suggests_the_next_multiple():
    assert check_aligned((64, 96), 32, "--crop") == (64, 96)
    with pytest.raises(InputError, match="--crop 100x96 is not a multiple of 32") as info:
        check_aligned((100, 96), 32, "--crop")
    assert "128x96" in info.value.hint


def test_normalize_image():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0] = 255
    out = normalize_image(image, IMAGENET_MEAN, IMAGENET_STD)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], (1 - 0.485) / 0.229, rtol=1e-6)
    np.testing.assert_allclose(out[2], -0.406 / 0.225, rtol=1e-6)


def test_crop_dataset_windows_come_from_the_pair(synthetic_voc_dir):
    layout = VocLayout(synthetic_voc_dir)
    scan = scan_split(layout, "train", (64, 96))
    dataset = crop_dataset(layout, scan, (64, 96), IMAGENET_MEAN, IMAGENET_STD)
    torch.manual_seed(0)
    image, labels = dataset[0]
    assert image.shape == (3, 64, 96) and image.dtype == torch.float32 and labels.dtype == torch.int64
    full_image, full_mask = read_pair(layout, scan.ids[0])
    normalized = normalize_image(full_image, IMAGENET_MEAN, IMAGENET_STD)
    hits = [
        (top, left)
        for top in range(full_mask.shape[0] - 63)
        for left in range(full_mask.shape[1] - 95)
        if np.array_equal(full_mask[top : top + 64, left : left + 96], labels.numpy())
        and np.allclose(normalized[:, top : top + 64, left : left + 96], image.numpy())
    ]
    assert hits


def test_pad_collate_pads_with_void(synthetic_voc_dir):
    layout = VocLayout(synthetic_voc_dir)
    dataset = whole_image_dataset(layout, scan_split(layout, "val"), IMAGENET_MEAN, IMAGENET_STD)
    small_image = dataset[1][0][:, :70, :100]
    small_mask = dataset[1][1][:70, :100]
    images, labels = pad_collate([dataset[0], (small_image, small_mask)])
    assert images.shape == (2, 3, 96, 128) and labels.shape == (2, 96, 128)
    assert (labels[1, 70:] == 255).all() and (labels[1, :, 100:] == 255).all()
    assert (images[1, :, 70:] == 0).all()
    assert torch.equal(labels[1, :70, :100], torch.from_numpy(small_mask.astype(np.int64)))
    assert aligned_size((70, 100)) == (96, 128)
