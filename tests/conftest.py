"""Shared fixtures: the real VOC sample folder (skipped where absent) and tiny models in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VOC_SAMPLE = REPO_ROOT.parent / "shared" / "voc-sample" / "VOCdevkit" / "VOC2012"


@pytest.fixture
def voc_sample_dir() -> Path:
    """The eight real VOC2012 pairs beside the checkout; skip with the reason where they are absent."""
    if not (VOC_SAMPLE / "JPEGImages").is_dir():
        pytest.skip(f"real VOC sample not present at ../shared/voc-sample/VOCdevkit/VOC2012")
    return VOC_SAMPLE
