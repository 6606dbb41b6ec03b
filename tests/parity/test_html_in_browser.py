"""The HTML parity report in a real browser: headless Chromium opens it from disk (a file: URL, no server) and
every image loads, the tables are there, nothing is logged as an error, and the page is not blank."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromium import INSTALL_COMMAND, Chromium, find_chromium
from fcn_deploy.parity import ParityConfig, run_parity

PAGE_STATE = """JSON.stringify({
  images: Array.from(document.images, (i) => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})),
  tables: Array.from(document.querySelectorAll("table"), (t) => t.className),
  title: document.title,
})"""


@pytest.fixture
def chromium_executable() -> str:
    """Chromium's path; the test skips with the install command where it is absent."""
    found = find_chromium()
    if found is None:
        pytest.skip(f"Chromium is not installed: {INSTALL_COMMAND}")
    return found


@pytest.fixture
def html_report(tmp_path: Path, make_tiny_fcn, tiny_voc) -> Path:
    """The HTML parity report of two tiny FCNs that disagree, on a two-image VOC folder."""
    model, reference = make_tiny_fcn(tmp_path / "m.onnx", seed=1), make_tiny_fcn(tmp_path / "r.onnx", seed=0)
    config = ParityConfig(device="cpu", report=tmp_path / "report" / "parity.md",
                          html=tmp_path / "report" / "parity.html", progress=False)
    run_parity(model, reference, tiny_voc(tmp_path / "voc"), config)
    return config.html


def _ours_running(profile: Path) -> list[int]:
    """PIDs of processes whose command line names our profile folder (the browser and its helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(profile).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_html_report_opens_from_disk_with_every_image_loaded(chromium_executable: str, html_report: Path,
                                                                 tmp_path: Path) -> None:
    profile = tmp_path / "chromium-profile"
    with Chromium(chromium_executable, profile, tmp_path / "chromium.log") as browser:
        session = browser.open_page(html_report.resolve().as_uri())
        state = json.loads(browser.evaluate(session, PAGE_STATE))
        shot = browser.screenshot(session)
        errors = browser.errors(session)
    assert state["title"].startswith("Parity report")
    assert len(state["images"]) == 8  # input, reference, model, disagreement for each of the two images
    broken = [image for image in state["images"] if not (image["complete"] and image["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert {"overall", "iou", "confusion", "images"} <= set(state["tables"])
    assert errors == [], f"the page logged errors: {errors}"
    picture = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    assert picture.shape[0] > 100 and picture.shape[1] > 100
    not_white = np.any(picture < 240, axis=-1).mean()
    colours = len(np.unique(picture.reshape(-1, 3), axis=0))
    assert not_white > 0.01 and colours > 20, f"blank screenshot ({not_white:.4f} not white, {colours} colours)"
    if os.path.isdir("/proc"):  # the browser's helper processes leave with it
        deadline = time.monotonic() + 20
        while _ours_running(profile) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ours_running(profile) == []
