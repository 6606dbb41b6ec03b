"""Segmenter: mode choice, input formats, batching and option validation on stand-in backends; one real model."""

from __future__ import annotations

import numpy as np
import pytest

from fcn_deploy.errors import InputError
from fcn_deploy.runtime.base import Backend
from fcn_deploy.segmenter import (
    CONTEXT_CELLS,
    Segmenter,
    SegmenterConfig,
    context_pixels,
)
from fcn_deploy.spec import INPUT_UINT8_NHWC, ModelSpec, ShapeRange
from fcn_deploy.tiling import blend_window

SMALL_RANGE = ShapeRange((1, 32, 32), (1, 64, 96), (4, 256, 256))


class RedClassBackend(Backend):
    """One-hot 'logits': each pixel's class is its red value modulo the class count; records the batches."""

    name = "standin"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.batches: list[np.ndarray] = []

    def _red(self, batch: np.ndarray) -> np.ndarray:
        if self.spec.input_format == INPUT_UINT8_NHWC:
            return batch[..., 0].astype(np.int64)
        red = (batch[:, 0] * self.spec.std[0] + self.spec.mean[0]) * 255.0
        return np.rint(red).astype(np.int64)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        classes = self._red(batch) % self.spec.num_classes
        logits = np.zeros((classes.shape[0], self.spec.num_classes, *classes.shape[1:]), np.float32)
        np.put_along_axis(logits, classes[:, None], 1.0, axis=1)
        return logits


class BlockClassBackend(RedClassBackend):
    """Like FCN-32s, one class per 32×32 block of the input: the block's mean red value modulo the class count."""

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        red = self._red(batch).astype(np.float64)
        n, height, width = red.shape
        means = red.reshape(n, height // 32, 32, width // 32, 32).mean(axis=(2, 4))
        blocks = np.rint(means).astype(np.int64).repeat(32, axis=1).repeat(32, axis=2)
        logits = np.zeros((n, self.spec.num_classes, height, width), np.float32)
        np.put_along_axis(logits, (blocks % self.spec.num_classes)[:, None], 1.0, axis=1)
        return logits


class LabelsBackend(RedClassBackend):
    """RedClassBackend whose model also returns labels itself; records which output each call asked for."""

    _labels_supported = True

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec.replace(labels_name="labels"))
        self.calls: list[str] = []

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append("logits")
        return super()._infer(batch)

    def _infer_labels(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append("labels")
        return (self._red(batch) % self.spec.num_classes).astype(np.uint8)


class TileOriginBackend(Backend):
    """Logits that depend on which tile a pixel was seen in, so that the blend decides the labels in overlaps.

    The image encodes each pixel's position (red = row, green = column), so the top-left pixel of a tile names
    the tile; class 0 scores ``+s`` and class 1 ``-s`` there, with ``s`` a signed value per tile.
    """

    name = "standin"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.origins: set[tuple[int, int]] = set()

    @staticmethod
    def score(origin: tuple[int, int]) -> float:
        y, x = origin
        sign = 1.0 if (y // 32 + x // 32) % 2 == 0 else -1.0
        return sign * float(np.random.default_rng([y, x]).uniform(0.5, 2.0))  # no linear pattern that cancels

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        n, height, width, _ = batch.shape
        logits = np.full((n, self.spec.num_classes, height, width), -100.0, np.float32)
        for index, tile in enumerate(batch):
            origin = (int(tile[0, 0, 0]), int(tile[0, 0, 1]))
            self.origins.add(origin)
            logits[index, 0], logits[index, 1] = self.score(origin), -self.score(origin)
        return logits


def position_image(height: int, width: int) -> np.ndarray:
    """Red = row, green = column (both below 256), blue = 0."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)


def make_segmenter(config: SegmenterConfig = SegmenterConfig(), **spec_changes) -> Segmenter:
    spec = ModelSpec(arch="fcn32s", shape_range=SMALL_RANGE).replace(**spec_changes)
    return Segmenter(RedClassBackend(spec), config)


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("height,width,mode,expected_mode", [
    (45, 70, "auto", "whole"),  # padded to 64×96, inside the range
    (250, 250, "auto", "whole"),
    (300, 200, "auto", "slide"),  # padded height 320 exceeds the range
    (1000, 777, "slide", "slide"),
    (20, 30, "slide", "slide"),  # smaller than a tile
    (45, 70, "whole", "whole"),
])
def test_labels_are_exact_in_every_mode(height, width, mode, expected_mode):
    image = noise(height, width)
    result = make_segmenter(SegmenterConfig(mode=mode)).segment(image)
    assert result.mode == expected_mode
    assert result.labels.shape == (height, width) and result.labels.dtype == np.uint8
    assert np.array_equal(result.labels, image[..., 0] % 21)
    assert result.tiles >= 1


def test_whole_and_slide_agree_and_tile_forces_slide():
    image = noise(200, 230, seed=1)
    whole = make_segmenter(SegmenterConfig(mode="whole")).segment(image)
    tiled = make_segmenter(SegmenterConfig(tile=(64, 64), overlap=0.5, blend="gaussian")).segment(image)
    assert (whole.mode, tiled.mode) == ("whole", "slide")
    assert tiled.tiles > 4 and tiled.input_hw == (64, 64)
    assert np.array_equal(whole.labels, tiled.labels)


@pytest.mark.parametrize("blend", ["hann", "gaussian", "mean"])
def test_overlaps_are_blended_with_the_configured_window(blend):
    """Labels in overlaps follow the chosen window: an oracle sums window-weighted tile scores per pixel."""
    height, width, tile = 200, 230, (64, 96)
    spec = ModelSpec(arch="fcn32s", shape_range=SMALL_RANGE, input_format=INPUT_UINT8_NHWC)
    backend = TileOriginBackend(spec)
    labels = Segmenter(backend, SegmenterConfig(tile=tile, overlap=0.5, blend=blend)).segment_labels(
        position_image(height, width))
    assert len(backend.origins) > 6
    window = blend_window(tile, blend).astype(np.float64)
    total = np.zeros((height + tile[0], width + tile[1]))
    for y, x in backend.origins:
        total[y : y + tile[0], x : x + tile[1]] += window * TileOriginBackend.score((y, x))
    total = total[:height, :width]
    decided = np.abs(total) > 1e-4 * np.abs(total).max()  # exact ties (e.g. +s and -s averaged) are left out
    assert decided.mean() > 0.99
    assert np.array_equal(labels[decided], np.where(total[decided] > 0, 0, 1))


def test_the_blend_windows_give_different_labels_in_overlaps():
    """The oracle above can tell the windows apart: each pair differs on some pixels of this image."""
    spec = ModelSpec(arch="fcn32s", shape_range=SMALL_RANGE, input_format=INPUT_UINT8_NHWC)
    image = position_image(200, 230)
    results = {blend: Segmenter(TileOriginBackend(spec), SegmenterConfig(tile=(64, 96), overlap=0.5, blend=blend))
               .segment_labels(image) for blend in ("hann", "gaussian", "mean")}
    assert not np.array_equal(results["hann"], results["gaussian"])
    assert not np.array_equal(results["hann"], results["mean"])
    assert not np.array_equal(results["gaussian"], results["mean"])


def test_tiles_sit_on_the_models_grid_so_slide_equals_whole_for_a_stride_32_model():
    # tiles placed off the 32-pixel grid would see other blocks than the whole-image pass (and other labels)
    image = noise(213, 250, seed=3)
    spec = ModelSpec(arch="fcn32s", shape_range=SMALL_RANGE)
    whole = Segmenter(BlockClassBackend(spec), SegmenterConfig(mode="whole")).segment(image)
    tiled = Segmenter(BlockClassBackend(spec), SegmenterConfig(tile=(64, 96), overlap=0.4)).segment(image)
    assert tiled.tiles > 4
    assert np.array_equal(whole.labels, tiled.labels)


def test_whole_mode_reads_the_models_labels_and_slide_mode_blends_logits():
    image = noise(100, 140, seed=4)
    backend = LabelsBackend(ModelSpec(arch="fcn32s", shape_range=ShapeRange((2, 32, 32), (2, 64, 96), (4, 256, 256))))
    segmenter = Segmenter(backend, SegmenterConfig())
    whole = segmenter.segment(image)
    assert whole.mode == "whole" and backend.calls == ["labels"]
    assert np.array_equal(whole.labels, image[..., 0] % 21) and whole.labels.flags.c_contiguous
    tiled = Segmenter(backend, SegmenterConfig(tile=(64, 64))).segment(image)
    assert tiled.mode == "slide" and set(backend.calls[1:]) == {"logits"}
    assert np.array_equal(tiled.labels, whole.labels)


def test_uint8_models_get_raw_pixels():
    image = noise(100, 140, seed=2)
    segmenter = make_segmenter(SegmenterConfig(mode="slide"), input_format=INPUT_UINT8_NHWC)
    assert np.array_equal(segmenter.segment_labels(image), image[..., 0] % 21)
    assert all(b.dtype == np.uint8 and b.shape[3] == 3 for b in segmenter.backend.batches)


def test_float_models_get_normalised_nchw():
    image = noise(40, 50, seed=3)
    segmenter = make_segmenter()
    segmenter.segment(image)
    (batch,) = segmenter.backend.batches
    assert batch.dtype == np.float32 and batch.shape == (1, 3, 64, 64)
    spec = segmenter.spec
    expected = (image / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    assert np.allclose(batch[0].transpose(1, 2, 0)[:40, :50], expected, atol=1e-5)


def test_batches_respect_the_option_and_the_model_minimum():
    image = noise(300, 300, seed=4)
    segmenter = make_segmenter(SegmenterConfig(mode="slide", tile=(64, 96), batch=3))
    result = segmenter.segment(image)
    sizes = [len(b) for b in segmenter.backend.batches]
    assert max(sizes) == 3 and sum(sizes) == result.tiles
    padded = make_segmenter(SegmenterConfig(mode="slide", tile=(64, 96), batch=3),
                            shape_range=ShapeRange((2, 32, 32), (2, 64, 96), (4, 256, 256)))
    labels = padded.segment_labels(image)
    assert min(len(b) for b in padded.backend.batches) >= 2  # a lone last tile is padded to the minimum batch
    assert np.array_equal(labels, image[..., 0] % 21)


def test_default_batch_is_capped_by_the_model():
    segmenter = make_segmenter(shape_range=ShapeRange((1, 32, 32), (1, 64, 96), (2, 256, 256)))
    assert segmenter.batch == 2
    assert segmenter.tile is None  # chosen per image
    assert segmenter.plan((1000, 1000)).batch == 1  # a 256×256 tile is the model's largest pass: one per call
    assert make_segmenter(SegmenterConfig(tile=(64, 64))).plan((1000, 1000)).batch == 4


def test_default_tiles_are_fitted_to_the_image_and_overlap_by_the_models_context():
    segmenter = make_segmenter(shape_range=ShapeRange((1, 32, 32), (1, 64, 96), (4, 1024, 1024)))
    assert context_pixels(segmenter.spec) == CONTEXT_CELLS * 32
    plan = segmenter.plan((8192, 8192))
    assert plan.tile_hw == (1024, 1024) and len(plan.ys) == len(plan.xs) == 9
    assert all(a + 1024 - b >= context_pixels(segmenter.spec) for a, b in zip(plan.ys, plan.ys[1:]))
    assert plan.count * 1024 * 1024 / 8192**2 <= 1.3  # the model processes at most 1.3× the image's pixels
    narrow = segmenter.plan((3000, 500))
    assert narrow.tile_hw[1] == 512 and len(narrow.xs) == 1  # the short side needs no seam
    assert narrow.tile_hw[0] < 1024 and len(narrow.ys) == 4  # four tiles, each as small as still covers
    small = make_segmenter(SegmenterConfig(tile=(64, 64))).plan((300, 300))
    assert all(b - a == 32 for a, b in zip(small.ys, small.ys[1:]))  # context capped at half a tile
    fraction = make_segmenter(SegmenterConfig(tile=(64, 128), overlap=0.5)).plan((300, 300))
    assert fraction.xs[1] - fraction.xs[0] <= 64  # a given fraction still overrides


@pytest.mark.parametrize("config,match", [
    (dict(tile=(100, 96)), "not a multiple of the model's alignment 32"),
    (dict(tile=(512, 96)), "outside the model's size range"),
    (dict(batch=5), "exceeds the model's maximum batch of 4"),
    (dict(tile=(64, 64), overlap=0.6), "steps 26 pixels, less than the model's 32-pixel grid"),
    (dict(overlap=0.9), "less than the model's 32-pixel grid"),  # default tiles: refused at once, not mid-run
])
def test_options_the_model_cannot_honour_are_rejected(config, match):
    with pytest.raises(InputError, match=match):
        make_segmenter(SegmenterConfig(**config))


@pytest.mark.parametrize("config,match,fix", [
    (dict(overlap=0.95), "overlap must be between 0 and 0.9", "use a fraction of the tile size, e.g. 0.25"),
    (dict(overlap=-0.1), "overlap must be between 0 and 0.9", "use a fraction of the tile size, e.g. 0.25"),
    (dict(overlap=False), "overlap must be between 0 and 0.9", "use a fraction of the tile size, e.g. 0.25"),
    (dict(batch=0), "batch must be a positive integer", "use a batch of 1 or more tiles per model call (default 4)"),
    (dict(blend="median"), "unknown blend", "use one of: hann, gaussian, mean"),
    (dict(mode="fast"), "unknown mode", "use one of: auto, whole, slide"),
    (dict(mode="whole", tile=(64, 64)), "^a tile size was given with mode 'whole'",
     "drop the tile size, or use mode 'slide'"),
    (dict(tile=(0, 64)), "tile must be two positive integers", "use multiples of 32, e.g. 320x480"),
])
def test_bad_options_are_rejected_with_their_fix(config, match, fix):
    with pytest.raises(InputError, match=match) as info:
        SegmenterConfig(**config)
    assert info.value.hint == fix


def test_the_smallest_options_are_accepted_and_numpy_integers_stored_as_ints():
    config = SegmenterConfig(overlap=0.0, batch=np.int64(1), tile=(np.int32(1), 1))
    assert (config.overlap, config.batch, config.tile) == (0.0, 1, (1, 1))
    assert type(config.batch) is int and all(type(side) is int for side in config.tile)


def test_whole_mode_refuses_images_outside_the_range():
    with pytest.raises(InputError, match="outside the model's size range"):
        make_segmenter(SegmenterConfig(mode="whole")).segment(noise(300, 64))


@pytest.mark.parametrize("image", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                   np.zeros((0, 10, 3), np.uint8), [[0]]])
def test_bad_images_are_rejected(image):
    with pytest.raises(InputError, match="image must be") as info:
        make_segmenter().segment(image)
    if isinstance(image, np.ndarray):
        assert info.value.hint == "read images with fcn_deploy.imageio.read_image"
    else:
        assert str(info.value).startswith("image must be a numpy array, got list")


def test_a_one_pixel_image_is_segmented():
    image = noise(1, 1)
    assert make_segmenter().segment_labels(image).tolist() == [[image[0, 0, 0] % 21]]


def test_a_whole_pass_is_padded_to_the_models_smallest_size_and_says_so():
    image = noise(10, 20)
    result = make_segmenter(shape_range=ShapeRange((1, 64, 96), (1, 64, 96), (4, 256, 256))).segment(image)
    assert (result.mode, result.tiles, result.input_hw) == ("whole", 1, (64, 96))
    assert np.array_equal(result.labels, image[..., 0] % 21) and 0 <= result.seconds < 60


def test_a_slide_result_says_its_tiles_tile_size_and_time():
    segmenter = make_segmenter(SegmenterConfig(tile=(64, 64), overlap=0.5))
    result = segmenter.segment(noise(100, 100))
    assert (result.mode, result.tiles, result.input_hw) == ("slide", segmenter.plan((100, 100)).count, (64, 64))
    assert 0 <= result.seconds < 60


@pytest.mark.parametrize("config", [SegmenterConfig(), SegmenterConfig(tile=(64, 64))], ids=["whole", "slide"])
def test_segment_into_writes_the_labels_and_returns_a_zero_placeholder(config):
    """The result of a windowed run holds no labels: a read-only broadcast of 0 with the image's shape."""
    image = noise(50, 70)
    labels = np.full((50, 70), 255, np.uint8)
    result = make_segmenter(config).segment_into(image, labels)
    assert np.array_equal(labels, image[..., 0] % 21)
    assert result.labels.shape == (50, 70) and result.labels.dtype == np.uint8 and result.labels.strides == (0, 0)
    assert not result.labels.any()


def test_a_given_overlap_fraction_sets_the_step_for_given_and_default_tiles():
    """No overlap asked, none made (the model's context would be the default): given 64-pixel tiles step 64, and
    default tiles are the fewest 256-pixel ones that cover 2016 pixels without overlapping (eight, not twelve)."""
    given = make_segmenter(SegmenterConfig(tile=(64, 64), overlap=0.0)).plan((320, 320))
    assert given.ys == given.xs == (0, 64, 128, 192, 256)
    fitted = make_segmenter(SegmenterConfig(overlap=0.0)).plan((2000, 2000))
    assert fitted.tile_hw == (256, 256) and len(fitted.ys) == len(fitted.xs) == 8


def test_the_default_batch_holds_no_more_pixels_than_the_largest_pass():
    """A 96×256 largest pass holds two 96×128 tiles: height × width, not a side squared."""
    spec_range = ShapeRange((1, 32, 32), (1, 64, 96), (8, 96, 256))
    assert make_segmenter(SegmenterConfig(tile=(96, 128)), shape_range=spec_range).plan((500, 500)).batch == 2
    assert make_segmenter(SegmenterConfig(tile=(32, 64)), shape_range=spec_range).plan((500, 500)).batch == 4


def test_an_overlap_that_steps_less_than_the_grid_names_the_largest_that_fits():
    with pytest.raises(InputError) as info:
        make_segmenter(SegmenterConfig(tile=(64, 128), overlap=0.75))
    assert str(info.value).startswith("overlap 0.75 on a 64x128 tile steps 16 pixels, less than the model's "
                                      "32-pixel grid")
    assert info.value.hint == "use an overlap of at most 0.50, or a larger tile"


def test_a_models_labels_of_the_wrong_shape_are_refused():
    from fcn_deploy.errors import ArtifactError

    class WrongLabels(LabelsBackend):
        def _infer_labels(self, batch):
            return super()._infer_labels(batch)[:, :-1]

    segmenter = Segmenter(WrongLabels(ModelSpec(arch="fcn32s", shape_range=SMALL_RANGE)))
    with pytest.raises(ArtifactError, match=r"^the model returned labels of shape \(1, 63, 96\), expected "
                                            r"\(1, 64, 96\)"):
        segmenter.segment(noise(64, 96))


# --- a real model ------------------------------------------------------------------------------


@pytest.fixture
def real_onnx(trained_checkpoint, tmp_path):
    """The suite's briefly trained FCN-32s, exported."""
    pytest.importorskip("onnxruntime")
    from fcn_deploy.export import ExportConfig, export_onnx

    return export_onnx(trained_checkpoint, tmp_path / "fcn.onnx", ExportConfig(verify=False, progress=False)).onnx_path


@pytest.mark.slow
def test_slide_agrees_with_whole_on_real_images(real_onnx, voc_sample_dir):
    from fcn_deploy.imageio import read_image
    from fcn_deploy.segmenter import open_segmenter

    images = sorted((voc_sample_dir / "JPEGImages").glob("*.jpg"))
    agree = total = 0
    with open_segmenter(real_onnx, "cpu", SegmenterConfig(mode="whole")) as whole, \
            open_segmenter(real_onnx, "cpu", SegmenterConfig(tile=(256, 256))) as tiled:
        for path in images:
            image = read_image(path)
            reference = whole.segment(image)
            result = tiled.segment(image)
            assert result.mode == "slide" and result.tiles >= 4
            agree += int(np.sum(reference.labels == result.labels))
            total += reference.labels.size
    agreement = agree / total
    print(f"slide vs whole agreement on {len(images)} VOC images: {agreement:.4f}")
    # trained: the bar (measured 0.995 with tiles on the 32-pixel grid, 0.966 with tiles placed anywhere)
    assert agreement >= 0.99


# --- each refusal's words and fix, and the limits it draws (mutation survivors) -----------------------------

ODD_RANGE = ShapeRange((1, 32, 64), (1, 64, 96), (4, 256, 128))  # no side equal to another: an index mix-up shows


def test_256_classes_fit_uint8_labels_and_257_are_refused(class_count):
    from fcn_deploy.errors import ArtifactError

    assert make_segmenter(**class_count(256)).segment_labels(noise(40, 40)).dtype == np.uint8
    with pytest.raises(ArtifactError, match=r"^257 classes do not fit uint8 labels \(at most 256\)"):
        make_segmenter(**class_count(257))


def test_whole_mode_ignores_an_overlap_it_never_uses():
    """The tile-step check is for tiled modes: an overlap too large for tiles does not stop a whole-image run."""
    segmenter = make_segmenter(SegmenterConfig(mode="whole", overlap=0.9))
    assert segmenter.segment(noise(40, 40)).mode == "whole"


def test_whole_mode_names_the_padded_size_and_the_models_range():
    with pytest.raises(InputError) as info:
        make_segmenter(SegmenterConfig(mode="whole"), shape_range=ODD_RANGE).segment(noise(300, 64))
    assert str(info.value).startswith("a 300x64 image (padded to 320x64) is outside the model's size range "
                                      "(32, 64) .. (256, 128) for whole mode")
    assert info.value.hint == "use mode 'auto' or 'slide' (tiled inference)"


@pytest.mark.parametrize(("tile", "message", "fix"), [
    ((100, 96), "tile 100x96 is not a multiple of the model's alignment 32", "use e.g. 128x96"),
    ((512, 96), "tile 512x96 is outside the model's size range 32x64 .. 256x128",
     "use a tile inside that range, e.g. the preferred 64x96"),
    ((64, 32), "tile 64x32 is outside the model's size range 32x64 .. 256x128",
     "use a tile inside that range, e.g. the preferred 64x96"),
])
def test_a_tile_the_model_cannot_run_is_refused_with_one_it_can(tile, message, fix):
    with pytest.raises(InputError) as info:
        make_segmenter(SegmenterConfig(tile=tile), shape_range=ODD_RANGE)
    assert str(info.value).startswith(message) and info.value.hint == fix


def test_the_largest_batch_is_accepted_and_one_more_refused_with_the_limit():
    assert make_segmenter(SegmenterConfig(batch=4)).batch == 4
    with pytest.raises(InputError) as info:
        make_segmenter(SegmenterConfig(batch=5))
    assert info.value.hint == "use a batch of at most 4"


def test_a_given_batch_is_kept_even_where_the_default_would_be_capped():
    assert make_segmenter(SegmenterConfig(tile=(256, 256))).plan((1000, 1000)).batch == 1  # the default: capped
    assert make_segmenter(SegmenterConfig(tile=(256, 256), batch=4)).plan((1000, 1000)).batch == 4


def test_the_default_overlap_is_the_models_context_capped_at_half_a_tile_on_the_grid():
    from fcn_deploy.segmenter import _overlap_px

    spec = make_segmenter().spec
    overlaps = [_overlap_px(side, None, spec) for side in (64, 96, 1024)]
    assert overlaps == [32, 32, 96] and all(type(overlap) is int for overlap in overlaps)  # 96: half is 48, off-grid


def test_tiles_below_the_models_minimum_batch_are_padded_with_copies_of_the_last():
    spec_range = ShapeRange((3, 32, 32), (3, 64, 96), (4, 256, 256))
    segmenter = make_segmenter(SegmenterConfig(tile=(64, 64), batch=2), shape_range=spec_range)
    image = noise(64, 128)
    labels = segmenter.segment_labels(image)
    assert segmenter.plan((64, 128)).count == 3  # two calls: tiles 1-2, then tile 3 alone
    assert [len(batch) for batch in segmenter.backend.batches] == [3, 3]
    first, second = segmenter.backend.batches
    assert np.array_equal(first[2], first[1]) and np.array_equal(second[1], second[0])
    assert np.array_equal(second[2], second[0]) and np.array_equal(labels, image[..., 0] % 21)


def test_a_whole_pass_below_the_models_minimum_batch_keeps_only_the_images_logits():
    spec_range = ShapeRange((2, 32, 32), (2, 64, 96), (4, 256, 256))
    image = noise(40, 50)
    assert np.array_equal(make_segmenter(shape_range=spec_range).segment_labels(image), image[..., 0] % 21)


def test_a_models_logits_of_the_wrong_shape_are_refused_with_the_fix():
    from fcn_deploy.errors import ArtifactError

    class WrongLogits(RedClassBackend):
        def _infer(self, batch):
            return super()._infer(batch)[:, :, :-1]

    segmenter = Segmenter(WrongLogits(ModelSpec(arch="fcn32s", shape_range=SMALL_RANGE)))
    with pytest.raises(ArtifactError) as info:
        segmenter.segment(noise(64, 96))
    assert str(info.value).startswith("the model returned logits of shape (1, 21, 63, 96), expected (1, 21, 64, 96)")
    assert info.value.hint == "re-export the model; its graph does not match its spec"
