"""Fuzzing image decoding and preparation: any file ends in our InputError or an image the model can take."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import example, given, settings
from mutations import budget, mutated
from PIL import Image

from fcn_deploy.errors import InputError
from fcn_deploy.imageio import read_image
from fcn_deploy.runtime.base import Backend
from fcn_deploy.segmenter import Segmenter
from fcn_deploy.spec import INPUT_UINT8_NHWC, ModelSpec, ShapeRange
from fcn_deploy.tiling import pad_to, whole_size

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too

MAX_PIXELS = 1 << 16  # mutated headers claiming huge sizes are refused before decoding
SPECS = (ModelSpec(arch="fcn32s"), ModelSpec(arch="fcn32s", input_format=INPUT_UINT8_NHWC))


def _encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _seeds() -> list[bytes]:
    """Small valid files of every format and mode the reader meets (EXIF orientation included)."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    return [
        _encoded(rgb, "PNG"), _encoded(rgb, "JPEG"), _encoded(rgb, "JPEG", exif=exif.tobytes()),
        _encoded(rgb.convert("CMYK"), "JPEG"), _encoded(rgb, "BMP"), _encoded(rgb, "TIFF"),
        _encoded(rgb, "TIFF", compression="tiff_lzw"), _encoded(rgb, "WEBP"), _encoded(rgb, "GIF"),
        _encoded(palette, "PNG"), _encoded(rgb.convert("RGBA"), "PNG"), _encoded(rgb.convert("LA"), "PNG"),
        _encoded(Image.fromarray(rng.integers(0, 65536, (6, 8), dtype=np.uint16)), "PNG"),
        _encoded(Image.fromarray(rng.random((6, 8), dtype=np.float32)), "TIFF"),
        _encoded(rgb.convert("1"), "PNG"),
    ]


SEEDS = _seeds()


@settings(max_examples=budget(1500))
@given(data=mutated(SEEDS))
@example(data=SEEDS[0][:40])  # a PNG cut inside its header
def test_any_file_decodes_to_a_model_input_or_our_error(fuzz_dir, data: bytes) -> None:
    path = fuzz_dir / "image.png"
    path.write_bytes(data)
    try:
        image = read_image(path, MAX_PIXELS)
    except InputError as exc:
        assert str(path) in exc.message
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 1
    padded_hw = whole_size(image.shape[:2], 32, (32, 32))
    batch = pad_to(image, *padded_hw)[None]
    for spec in SPECS:
        model_input = spec.to_model_input(batch)
        assert model_input.shape == spec.input_shape(1, *padded_hw)
        assert model_input.dtype == (np.uint8 if spec.takes_uint8 else np.float32)
        assert np.isfinite(model_input).all()


# --- the same decoding behind the served request and the Ray per-file worker -------------------------------


class _HalfAndHalf(Backend):
    """Two classes: the normalised red channel against zero."""

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([np.zeros_like(batch[:, 0]), batch[:, 0]], axis=1)


def _segmenter() -> Segmenter:
    spec = ModelSpec(arch="fcn32s", num_classes=2, class_names=("background", "thing"),
                     shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (2, 96, 96)))
    return Segmenter(_HalfAndHalf(spec))


@settings(max_examples=budget(300))
@given(data=mutated(SEEDS))
def test_a_served_request_is_answered_or_refused_never_an_internal_error(data: bytes) -> None:
    from fcn_deploy.serving.contract import answer

    ((outcome,),) = answer(_segmenter(), [np.array([[data]], dtype=object)], MAX_PIXELS)
    assert "internal error" not in outcome.error
    if outcome.ok:
        assert outcome.labels is not None and outcome.png.startswith(b"\x89PNG")
    else:
        assert outcome.error.startswith("image: ")


@settings(max_examples=budget(300))
@given(data=mutated(SEEDS))
def test_the_per_file_worker_step_ends_in_a_record(fuzz_dir, data: bytes) -> None:
    from fcn_deploy.infer import InferConfig, image_job, process_image

    (fuzz_dir / "in").mkdir(exist_ok=True)
    (fuzz_dir / "in" / "x.png").write_bytes(data)
    job = image_job(fuzz_dir / "in", fuzz_dir / "out", "x.png", overlay=True)
    record = process_image(_segmenter(), job, InferConfig(max_pixels=MAX_PIXELS))
    assert record.status in ("ok", "failed") and (record.status == "ok") == job.mask.is_file()
    assert (record.error is None) == (record.status == "ok")
    job.mask.unlink(missing_ok=True)
