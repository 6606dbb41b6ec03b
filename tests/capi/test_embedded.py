"""The Python side of the C API: pixel views of strided buffers and the exception-to-status mapping."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fcn_deploy.capi.embedded import (
    PIXEL_LAYOUTS,
    image_bytes,
    message_of,
    pixels_as_rgb,
    status_of,
)
from fcn_deploy.errors import (
    ArtifactError,
    InputError,
    MissingComponentError,
    ShapeError,
)

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

RGB = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def strided_buffer(pixels: np.ndarray, pad: int) -> tuple[bytes, int]:
    """Rows of ``pixels`` (H×W×C) with ``pad`` garbage bytes after each but the last; (buffer, stride)."""
    height, width, channels = pixels.shape
    stride = width * channels + pad
    rows = [pixels[y].tobytes() + b"\xab" * pad for y in range(height)]
    return b"".join(rows)[: stride * (height - 1) + width * channels], stride


@pytest.mark.parametrize(
    ("pixel_format", "stored"),
    [
        (0, RGB),
        (1, RGB[:, :, ::-1]),
        (2, np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], axis=2)),
        (3, np.concatenate([RGB[:, :, ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)),
    ],
)
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_formats_become_rgb_views(pixel_format, stored, pad):
    buffer, stride = strided_buffer(np.ascontiguousarray(stored), pad)
    assert len(buffer) == image_bytes(7, 5, stride, pixel_format)
    view = pixels_as_rgb(buffer, 7, 5, stride, pixel_format)
    np.testing.assert_array_equal(view, RGB)
    assert not view.flags.writeable and not view.flags.owndata  # a view of the caller's bytes


def test_gray_is_repeated_over_three_channels():
    buffer, stride = strided_buffer(RGB[:, :, :1], 2)
    view = pixels_as_rgb(buffer, 7, 5, stride, 4)
    np.testing.assert_array_equal(view, np.repeat(RGB[:, :, :1], 3, axis=2))
    assert set(PIXEL_LAYOUTS) == {0, 1, 2, 3, 4}


def test_exceptions_map_to_status_codes():
    codes = SimpleNamespace(FCN_E_INVALID_ARG=1, FCN_E_NOT_FOUND=2, FCN_E_BAD_MODEL=3, FCN_E_BACKEND_UNAVAILABLE=4,
                            FCN_E_INTERNAL=5, FCN_E_OUT_OF_MEMORY=6)
    assert status_of(FileNotFoundError("x"), codes) == 2
    assert status_of(ArtifactError("x"), codes) == 3
    assert status_of(MissingComponentError("x"), codes) == 4
    assert status_of(ShapeError("x"), codes) == 1
    assert status_of(InputError("x"), codes) == 1
    assert status_of(MemoryError(), codes) == 6
    assert status_of(RuntimeError("x"), codes) == 5
    assert status_of(KeyboardInterrupt(), codes) == 5
    assert message_of(InputError("bad", "do this")) == "bad\n  fix: do this"
    assert message_of(RuntimeError("boom")) == "RuntimeError: boom"
    assert message_of(KeyboardInterrupt()) == "KeyboardInterrupt"
