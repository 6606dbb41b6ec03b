"""The VOC2012 layout reader, on the real sample pairs and on broken copies of a synthetic set."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from fcn_deploy.data.synth import SynthConfig, synthesize
from fcn_deploy.data.voc import (
    VocLayout,
    image_size,
    read_image,
    read_mask,
    read_pair,
    scan_split,
)
from fcn_deploy.errors import InputError
from fcn_deploy.palette import VOC_PNG_PALETTE

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


@pytest.fixture
def small_voc(tmp_path):
    """Six synthetic 64×64 pairs that a test may break."""
    return synthesize(SynthConfig(out=tmp_path / "VOC2012", num=6, size=(64, 64), seed=3)).root


def test_real_sample_decodes(voc_sample_dir):
    layout = VocLayout(voc_sample_dir)
    train, val = layout.ids("train"), layout.ids("val")
    assert len(train) == 6 and len(val) == 2 and not set(train) & set(val)
    for image_id in train + val:
        image, mask = read_pair(layout, image_id)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
        values = set(np.unique(mask).tolist())
        assert 255 in values, "VOC masks have a void band on object boundaries"
        assert values <= set(range(21)) | {255} and len(values - {0, 255}) >= 1


def test_real_sample_crop_filter(voc_sample_dir):
    layout = VocLayout(voc_sample_dir)
    ids = layout.ids("train")
    sizes = [Image.open(layout.image_path(i)).size for i in ids]  # (width, height)
    expected = sum(1 for width, height in sizes if height >= 320 and width >= 480)
    scan = scan_split(layout, "train", (320, 480))
    assert 0 < expected < len(ids)  # the sample has both kinds
    assert len(scan.ids) == expected and scan.dropped == len(ids) - expected
    assert scan.describe().startswith(f"train: read {expected} examples")
    assert all(h >= 320 and w >= 480 for h, w in scan.sizes)


def test_scan_without_crop_keeps_all(voc_sample_dir):
    layout = VocLayout(voc_sample_dir)
    scan = scan_split(layout, "val")
    assert scan.ids == layout.ids("val") and scan.dropped == 0
    assert scan.sizes == tuple(image_size(layout.image_path(i)) for i in scan.ids)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="dataset folder not found"):
        VocLayout(tmp_path / "nowhere")


def test_folder_without_layout(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(InputError, match=r"missing SegmentationClass/, ImageSets/Segmentation/"):
        VocLayout(tmp_path)


def test_points_at_nested_voc2012(small_voc):
    devkit = small_voc.parent / "VOCdevkit"
    devkit.mkdir()
    shutil.move(small_voc, devkit / "VOC2012")
    with pytest.raises(InputError) as info:
        VocLayout(small_voc.parent)
    assert str(devkit / "VOC2012") in info.value.hint


def test_missing_split_list(small_voc):
    with pytest.raises(InputError, match="split list not found.*test.txt"):
        VocLayout(small_voc).ids("test")


def test_malformed_split_line(small_voc):
    (small_voc / "ImageSets/Segmentation/train.txt").write_text("synth_00000\nsynth_00001 1\n")
    with pytest.raises(InputError, match=r"train.txt:2: expected one image id"):
        VocLayout(small_voc).ids("train")


@pytest.mark.parametrize("folder, suffix", [("JPEGImages", ".jpg"), ("SegmentationClass", ".png")])
def test_id_without_file(small_voc, folder, suffix):
    (small_voc / folder / f"synth_00001{suffix}").unlink()
    with pytest.raises(InputError, match=f"lists 'synth_00001' but .*{folder}/synth_00001") as info:
        scan_split(VocLayout(small_voc), "train")
    assert "remove synth_00001" in info.value.hint


def test_mask_values_out_of_range(small_voc):
    path = small_voc / "SegmentationClass/synth_00002.png"
    mask = read_mask(path)
    mask[0, 0] = 21
    image = Image.fromarray(mask, "P")
    image.putpalette([c for color in VOC_PNG_PALETTE for c in color])
    image.save(path)
    with pytest.raises(InputError, match=r"synth_00002.png holds values \[21\]"):
        scan_split(VocLayout(small_voc), "train")


def test_rgb_mask_is_mapped_through_the_colormap(small_voc):
    path = small_voc / "SegmentationClass/synth_00000.png"
    labels = read_mask(path)
    Image.open(path).convert("RGB").save(path)
    assert np.array_equal(read_mask(path), labels)
    rgb = np.array(Image.open(path))
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    with pytest.raises(InputError, match=r"colours outside the VOC colormap: \(1, 2, 3\)"):
        read_mask(path)


def test_mask_size_must_match_image(small_voc):
    path = small_voc / "SegmentationClass/synth_00000.png"
    Image.open(path).crop((0, 0, 32, 64)).save(path)
    with pytest.raises(InputError, match="is 64x32 but its image is 64x64"):
        scan_split(VocLayout(small_voc), "train")


def test_undecodable_image(small_voc):
    path = small_voc / "JPEGImages/synth_00000.jpg"
    path.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="synth_00000.jpg"):
        read_image(path)


def test_crop_larger_than_every_image(small_voc):
    with pytest.raises(InputError, match=r"crop 96x64 is larger than every image .*at most 64 high and 64 wide"):
        scan_split(VocLayout(small_voc), "train", (96, 64))
