"""The synthetic VOC-layout generator: deterministic, palette masks with a void band, split lists."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fcn_deploy.data.synth import SYNTH_CLASSES, SynthConfig, synth_pair, synthesize
from fcn_deploy.data.voc import VocLayout, read_mask, scan_split
from fcn_deploy.errors import InputError
from fcn_deploy.palette import png_palette_bytes

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    first = synthesize(SynthConfig(out=tmp_path / "a", num=5, size=(48, 64), seed=7)).root
    second = synthesize(SynthConfig(out=tmp_path / "b", num=5, size=(48, 64), seed=7)).root
    other = synthesize(SynthConfig(out=tmp_path / "c", num=5, size=(48, 64), seed=8)).root
    assert len(_files(first)) == 5 * 2 + 3
    assert _files(first) == _files(second)
    assert _files(first) != _files(other)


def test_pair_arrays_depend_only_on_the_generator_state():
    image_a, mask_a = synth_pair((40, 56), np.random.default_rng([1, 2]))
    image_b, mask_b = synth_pair((40, 56), np.random.default_rng([1, 2]))
    assert np.array_equal(image_a, image_b) and np.array_equal(mask_a, mask_b)
    assert image_a.shape == (40, 56, 3) and image_a.dtype == np.uint8 and mask_a.shape == (40, 56)


def test_masks_are_voc_palette_pngs_with_a_void_band(synthetic_voc_dir):
    layout = VocLayout(synthetic_voc_dir)
    seen = set()
    for image_id in layout.ids("trainval"):
        with Image.open(layout.mask_path(image_id)) as mask:
            assert mask.mode == "P"
            assert mask.getpalette()[:768] == png_palette_bytes()
        values = set(np.unique(read_mask(layout.mask_path(image_id))).tolist())
        assert 255 in values and 0 in values
        assert values <= {0, 255, *SYNTH_CLASSES}
        seen |= values
    assert seen == {0, 255, *SYNTH_CLASSES}


def test_lists_written(synthetic_voc_dir):
    layout = VocLayout(synthetic_voc_dir)
    train, val = layout.ids("train"), layout.ids("val")
    assert (len(train), len(val)) == (48, 16)
    assert not set(train) & set(val) and layout.ids("trainval") == train + val
    assert len(scan_split(layout, "train", (64, 96)).ids) == 48


def test_refuses_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="is not empty") as info:
        synthesize(SynthConfig(out=tmp_path, num=2, size=(32, 32)))
    assert "--overwrite" in info.value.hint
    synthesize(SynthConfig(out=tmp_path, num=2, size=(32, 32), overwrite=True))
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("num, size, message", [(1, (64, 64), "--num"), (4, (16, 64), "--size")])
def test_rejects_bad_options(tmp_path, num, size, message):
    with pytest.raises(InputError, match=message):
        synthesize(SynthConfig(out=tmp_path / "x", num=num, size=size))
    assert not (tmp_path / "x").exists()
