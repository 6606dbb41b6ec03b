"""Fuzzing the calibration files: a crop plan or range table is read whole and checked, or refused with our error."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from mutations import budget, json_documents

from fcn_deploy.errors import InputError
from fcn_deploy.precision.calibrate import read_range_table
from fcn_deploy.precision.crops import PLAN_FORMAT, CropBox, CropPlan, load_plan

VALID_PLAN = json.loads(CropPlan("voc", "train", (64, 96), 0, "skip", 2, 2, 0, 0, "ab" * 32,
                                 (CropBox("a", 0, 5), CropBox("b", 3, 0, True))).to_json())
VALID_RANGES = {"method": "percentile", "target": "tensorrt",
                "tensors": {"image": {"min": -2.1, "max": 2.6, "scale": 0.02, "zero_point": 0}, "x": {"min": 0, "max": 1}}}


@settings(max_examples=budget(300))
@given(text=json_documents(VALID_PLAN))
@example(text="[1, 2, 3]")  # found: a JSON list raised AttributeError
@example(text=json.dumps({**VALID_PLAN, "crop": ["a", "b"]}))  # found: a crop of strings was accepted
@example(text=json.dumps({**VALID_PLAN, "crops": [{"image_id": "a", "top": -4, "left": 0}]}))
def test_crop_plan_reader(fuzz_dir, text: str) -> None:
    path = fuzz_dir / "plan.crops.json"
    path.write_text(text)
    try:
        plan = load_plan(path)
    except InputError as exc:
        assert exc.hint
        return
    assert json.loads(plan.to_json())["format"] == PLAN_FORMAT
    assert all(isinstance(b.top, int) and b.top >= 0 and b.left >= 0 for b in plan.crops) and min(plan.crop) >= 1


@settings(max_examples=budget(300))
@given(text=json_documents(VALID_RANGES))
@example(text=json.dumps({**VALID_RANGES, "tensors": {"x": {"min": 1, "max": 0}}}))
def test_range_table_reader(fuzz_dir, text: str) -> None:
    path = fuzz_dir / "model.ranges.json"
    path.write_text(text)
    try:
        table = read_range_table(path)
    except InputError as exc:
        assert exc.hint
        return
    assert all(row["min"] <= row["max"] for row in table["tensors"].values())
