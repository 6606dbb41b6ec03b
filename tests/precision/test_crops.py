"""Calibration crop plans: deterministic per seed, saved as JSON, small images skipped or padded with counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.data.voc import VocLayout
from fcn_deploy.errors import InputError
from fcn_deploy.precision.crops import crop_input, load_plan, plan_crops, save_plan
from fcn_deploy.spec import ModelSpec

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def test_same_seed_same_json_other_seed_other_crops(precision_voc_dir: Path, tmp_path: Path) -> None:
    first = save_plan(plan_crops(precision_voc_dir, "train", 10, (64, 96), seed=7), tmp_path / "a.json")
    second = save_plan(plan_crops(precision_voc_dir, "train", 10, (64, 96), seed=7), tmp_path / "b.json")
    other = plan_crops(precision_voc_dir, "train", 10, (64, 96), seed=8)
    assert first.read_bytes() == second.read_bytes()
    assert other.crops != load_plan(first).crops
    assert load_plan(first) == plan_crops(precision_voc_dir, "train", 10, (64, 96), seed=7)


def test_every_image_is_used_before_any_repeats(precision_voc_dir: Path) -> None:
    eligible = plan_crops(precision_voc_dir, "train", 1, (64, 96), seed=0).eligible
    plan = plan_crops(precision_voc_dir, "train", eligible + 5, (64, 96), seed=0)
    first_round = [c.image_id for c in plan.crops[:eligible]]
    assert len(set(first_round)) == eligible
    assert len(plan.crops) == eligible + 5


def test_real_voc_small_images_skipped_or_padded(voc_sample_dir: Path) -> None:
    skipped = plan_crops(voc_sample_dir, "train", 6, (352, 480), seed=0, small="skip")
    padded = plan_crops(voc_sample_dir, "train", 6, (352, 480), seed=0, small="pad")
    assert skipped.skipped > 0 and skipped.padded == 0
    assert skipped.eligible + skipped.skipped == skipped.listed
    assert padded.skipped == 0 and padded.eligible == padded.listed and padded.padded > 0
    assert "skipped" in skipped.describe()
    box = next(b for b in padded.crops if b.padded)
    x = crop_input(VocLayout(voc_sample_dir), box, (352, 480), ModelSpec(arch="fcn32s"))
    assert x.shape == (1, 3, 352, 480) and x.dtype == np.float32


def test_crop_larger_than_every_image_is_refused(precision_voc_dir: Path) -> None:
    with pytest.raises(InputError, match="smaller than"):
        plan_crops(precision_voc_dir, "train", 4, (512, 512), seed=0)
