"""The HTML parity report: written beside the Markdown and JSON, self-contained, worst images first, and the
boundary share in all three; checked on two tiny FCNs made without PyTorch."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_deploy.errors import InputError
from fcn_deploy.parity import ParityConfig, run_parity
from fcn_deploy.parity.visual import near_boundary, split_disagreement
from fcn_deploy.runtime import open_backend

pytestmark = pytest.mark.runtime

_IMG = re.compile(r'<img src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture
def pair(tmp_path_factory, make_tiny_fcn, tiny_voc) -> tuple[Path, Path, Path]:
    """Two tiny FCNs of different random weights (so they disagree) and a two-image VOC folder."""
    root = tmp_path_factory.mktemp("html")
    return (make_tiny_fcn(root / "model.onnx", seed=1), make_tiny_fcn(root / "reference.onnx", seed=0),
            tiny_voc(root / "voc"))


def _run(pair, out: Path, **changes):
    model, reference, voc = pair
    config = ParityConfig(device="cpu", report=out / "parity.md", html=out / "parity.html", progress=False, **changes)
    return run_parity(model, reference, voc, config)


def test_the_boundary_share_is_counted_from_the_two_masks(pair, tmp_path: Path) -> None:
    model, reference, voc = pair
    report = _run(pair, tmp_path)
    disagree = near = 0
    with open_backend(model, "cpu") as candidate, open_backend(reference, "cpu") as ref:
        for name in ("a", "b"):
            rgb = np.asarray(Image.open(voc / "JPEGImages" / f"{name}.jpg").convert("RGB"))
            ref_pred = ref.infer(ref.spec.to_model_input(rgb[None]))[0].argmax(0)
            model_pred = candidate.infer(candidate.spec.to_model_input(rgb[None]))[0].argmax(0)
            split = split_disagreement(ref_pred != model_pred, near_boundary(ref_pred))
            disagree, near = disagree + split.pixels, near + split.near_boundary
    assert disagree > 0 and 0 < near < disagree
    assert (report.disagreeing_pixels, report.boundary_disagreeing_pixels) == (disagree, near)
    assert report.boundary_share == pytest.approx(near / disagree)
    document = json.loads(report.json_path.read_text())
    assert document["boundary_share"] == pytest.approx(near / disagree) and document["boundary_radius_px"] == 2
    assert sum(i["disagreeing_pixels"] for i in document["images"]) == disagree
    assert document["html_path"] == str(tmp_path / "parity.html")
    markdown = report.markdown_path.read_text()
    assert (f"| disagreeing pixels within 2 px of a reference boundary | {100 * near / disagree:.2f}% "
            f"({near} of {disagree}) |") in markdown
    assert "[parity.html](parity.html)" in markdown


def test_the_html_report_is_self_contained_and_puts_the_worst_image_first(pair, tmp_path: Path) -> None:
    report = _run(pair, tmp_path)
    page = (tmp_path / "parity.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parity.html", "parity.json", "parity.md"]  # no temp left
    assert "src=\"http" not in page and "<script" not in page and "<link" not in page
    images = _IMG.findall(page)
    assert len(images) == 4 * 2 == page.count("<img")  # input, reference, model, disagreement per image
    for kind, data in images:
        picture = Image.open(io.BytesIO(base64.b64decode(data)))
        assert picture.size == (64, 64) and picture.format == kind.upper()
    worst, best = sorted(report.images, key=lambda r: r.argmax_agreement)
    assert worst.argmax_agreement < best.argmax_agreement
    assert page.index(f'id="image-{worst.image_id}"') < page.index(f'id="image-{best.image_id}"')
    table = page[page.index('<table class="images">'):]
    assert table.index(f">{worst.image_id}</a>") < table.index(f">{best.image_id}</a>")
    assert f"{100 * report.boundary_share:.2f}% ({report.boundary_disagreeing_pixels} of " in page
    for heading in ("Per-class IoU against the ground truth", "Reference vs model: confusion matrix"):
        assert heading in page
    assert page.count('<table class="confusion">') == 1 + 2 and page.count('<table class="iou">') == 1 + 2


def test_only_the_worst_images_get_pictures_when_asked_for_fewer(pair, tmp_path: Path) -> None:
    report = _run(pair, tmp_path, html_images=1)
    page = (tmp_path / "parity.html").read_text()
    worst = min(report.images, key=lambda r: r.argmax_agreement)
    assert page.count("<img") == 4 and f'id="image-{worst.image_id}"' in page
    assert "Pictures of the 1 images of lowest agreement follow, of 2" in page


def test_an_html_path_of_another_suffix_is_refused_before_any_work(pair, tmp_path: Path) -> None:
    model, reference, voc = pair
    config = ParityConfig(device="cpu", report=tmp_path / "parity.md", html=tmp_path / "parity.png", progress=False)
    with pytest.raises(InputError, match="must end in .html"):
        run_parity(model, reference, voc, config)
    assert not list(tmp_path.iterdir())


def test_identical_models_report_no_disagreement(pair, tmp_path: Path) -> None:
    model, _, voc = pair
    report = run_parity(model, model, voc, ParityConfig(device="cpu", report=tmp_path / "p.md",
                                                        html=tmp_path / "p.html", progress=False))
    assert report.disagreeing_pixels == 0 and np.isnan(report.boundary_share)
    assert report.boundary_line() == "no pixel disagrees with the reference"
    assert "n/a (no pixel disagrees)" in (tmp_path / "p.html").read_text()


def test_worst_images_keeps_the_lowest_agreements_whatever_their_order() -> None:
    from fcn_deploy.parity.html import WorstImages
    from fcn_deploy.parity.visual import ImagePictures

    kept = WorstImages(3)
    for index, agreement in enumerate([0.9, 0.2, 0.95, float("nan"), 0.5, 0.99, 0.1, 0.7]):
        if kept.wants(agreement):
            kept.add(ImagePictures(f"i{index}", agreement, "", "", "", "", (), (), np.zeros((1, 1))))
    assert [p.image_id for p in kept.worst_first()] == ["i3", "i6", "i1"]  # NaN (non-finite logits) is the worst
    assert not kept.wants(0.6) and kept.wants(0.15)
    assert not WorstImages(0).wants(0.0)
