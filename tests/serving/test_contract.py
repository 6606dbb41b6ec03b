"""The per-request work of the served segmenter: each request gets its own outcome, bad ones fail alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from serving.conftest import encode

from fcn_deploy.errors import InputError
from fcn_deploy.runtime.base import Backend
from fcn_deploy.segmenter import Segmenter
from fcn_deploy.serving.contract import (
    ERROR_OUTPUT,
    LABELS_OUTPUT,
    MASK_OUTPUT,
    answer,
    request_outputs,
    request_rows,
    row_image_bytes,
)
from fcn_deploy.spec import ModelSpec, ShapeRange

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


class _Stripes(Backend):
    """Logits whose argmax is (column // 8) % 21: labels that depend on the position, from any input."""

    name = "stripes"

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        n, _, h, w = batch.shape
        logits = np.zeros((n, 21, h, w), np.float32)
        columns = (np.arange(w) // 8) % 21
        logits[:, columns, :, np.arange(w)] = 1.0
        return logits


@pytest.fixture
def segmenter() -> Segmenter:
    spec = ModelSpec(arch="fcn32s", shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 256, 256)))
    return Segmenter(_Stripes(spec))


def _request(data: object) -> np.ndarray:
    return np.array([[data]], dtype=object)


def _stripe_labels(height: int, width: int) -> np.ndarray:
    """What the stand-in's segmenter must answer for any H×W image: column c has class (c // 8) % 21."""
    return np.tile(((np.arange(width) // 8) % 21).astype(np.uint8), (height, 1))


# The first VOC colours (aeroplane dark red, bicycle dark green, ...): enough for stripes up to 72 columns wide.
_VOC_COLOURS = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
                (128, 128, 128), (64, 0, 0)]


def _assert_mask_png(png: bytes, labels: np.ndarray) -> None:
    """``png`` is a palette PNG holding ``labels`` as its indices, each drawn in its VOC colour."""
    mask = Image.open(io.BytesIO(png))
    assert mask.format == "PNG" and mask.mode == "P"
    assert np.array_equal(np.asarray(mask), labels)
    assert np.array_equal(np.asarray(mask.convert("RGB")), np.asarray(_VOC_COLOURS, np.uint8)[labels])


def test_each_request_gets_its_own_outcome(segmenter) -> None:
    rng = np.random.default_rng(0)
    small, tall = rng.integers(0, 255, (40, 70, 3), np.uint8), rng.integers(0, 255, (90, 30, 3), np.uint8)
    huge = encode(np.zeros((300, 400, 3), np.uint8))
    requests = [_request(encode(small)), _request(b"not an image"), _request(encode(tall, "JPEG")[:60]),
                _request(b""), _request(huge), np.array([[1, 2]], np.uint8), _request(encode(tall))]
    answers = answer(segmenter, requests, max_pixels=100_000)
    assert [len(outcomes) for outcomes in answers] == [1] * 7
    outcomes = [outcome for (outcome,) in answers]
    assert [o.ok for o in outcomes] == [True, False, False, False, False, False, True]
    assert outcomes[1].error.startswith("image: not a readable image")
    assert not [o.error for o in outcomes if " of 7" in o.error or "request 2" in o.error]  # no batch places
    assert "cannot decode" in outcomes[2].error
    assert "empty" in outcomes[3].error
    assert "exceeds the limit of 100000" in outcomes[4].error
    assert "must be BYTES" in outcomes[5].error
    for outcome, image in ((outcomes[0], small), (outcomes[6], tall)):
        expected = _stripe_labels(*image.shape[:2])
        assert np.array_equal(outcome.labels, expected)
        _assert_mask_png(outcome.png, expected)


def test_outputs_have_a_batch_axis_and_errors_leave_a_void_placeholder(segmenter) -> None:
    (good,), (bad,) = answer(segmenter, [_request(encode(np.zeros((33, 65, 3), np.uint8))), _request(b"x")], None)
    outputs = request_outputs([good])
    assert outputs[LABELS_OUTPUT].shape == (1, 33, 65) and outputs[LABELS_OUTPUT].dtype == np.uint8
    assert outputs[MASK_OUTPUT].shape == (1, 1) and outputs[ERROR_OUTPUT][0, 0] == b""
    failed = request_outputs([bad])
    assert failed[LABELS_OUTPUT].tolist() == [[[255]]] and failed[MASK_OUTPUT][0, 0] == b""
    assert b"not a readable image" in failed[ERROR_OUTPUT][0, 0]


def test_an_unexpected_exception_fails_only_its_request(segmenter, monkeypatch) -> None:
    calls = []
    original = segmenter.segment

    def flaky(image):
        calls.append(image.shape)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return original(image)

    monkeypatch.setattr(segmenter, "segment", flaky)
    image = _request(encode(np.zeros((32, 32, 3), np.uint8)))
    outcomes = [outcome for (outcome,) in answer(segmenter, [image, image, image], None)]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error.startswith("image: internal error RuntimeError: boom")


def test_a_request_of_several_images_gets_a_row_per_image_naming_its_place(segmenter) -> None:
    rng = np.random.default_rng(2)
    wide, tall = rng.integers(0, 255, (40, 70, 3), np.uint8), rng.integers(0, 255, (90, 30, 3), np.uint8)
    several = np.array([[encode(wide)], [b"not an image"], [encode(tall)]], dtype=object)
    answers = answer(segmenter, [_request(b"x"), several, _request(encode(tall))], None)
    assert [len(outcomes) for outcomes in answers] == [1, 3, 1]
    outcomes = answers[1]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error.startswith("image 2 of 3 of the request: not a readable image")
    assert answers[0][0].error.startswith("image: ")
    outputs = request_outputs(outcomes)
    assert outputs[MASK_OUTPUT].shape == (3, 1) and outputs[ERROR_OUTPUT].shape == (3, 1)
    assert outputs[LABELS_OUTPUT].shape == (3, 90, 70) and outputs[LABELS_OUTPUT].dtype == np.uint8
    assert [e[0] for e in outputs[ERROR_OUTPUT]] == [b"", outcomes[1].error.encode(), b""]
    for row, (height, width) in ((0, (40, 70)), (2, (90, 30))):
        expected = _stripe_labels(height, width)
        padded = np.full((90, 70), 255, np.uint8)  # void below and right of the image, up to the largest one
        padded[:height, :width] = expected
        assert np.array_equal(outputs[LABELS_OUTPUT][row], padded)
        _assert_mask_png(outputs[MASK_OUTPUT][row, 0], expected)
    assert (outputs[LABELS_OUTPUT][1] == 255).all() and outputs[MASK_OUTPUT][1, 0] == b""


@pytest.mark.parametrize("tensor", [np.array([[b"a", b"b"]], dtype=object), np.array([[3]], dtype=object),
                                    np.array([[1]], np.uint8)])
def test_each_row_must_hold_one_encoded_image(tensor) -> None:
    (row,) = request_rows(tensor)
    with pytest.raises(InputError, match="^image 1 of 1: "):
        row_image_bytes(row, "image 1 of 1")
