"""Tiling: tile placement, blend windows, band streaming and whole-image padding on plain numpy runners."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fcn_deploy.tiling import (
    BLENDS,
    SPILL_STRIP_BYTES,
    LabelStitcher,
    SeamAccumulator,
    SpilledStrip,
    align_up,
    argmax_classes,
    axis_starts,
    axis_starts_px,
    blend_window,
    extract_tile,
    fitted_tile,
    label_sink,
    neighbours_only,
    pad_to,
    plan_tiles,
    plan_tiles_px,
    resumed_plan,
    slide,
    slide_labels,
    stitch_bytes,
    stitch_labels,
    whole_labels,
    whole_size,
)

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def identity_runner(tiles: np.ndarray) -> np.ndarray:
    """'Logits' that are the tile's own RGB values: 3 classes, N×3×h×w float32."""
    return np.ascontiguousarray(tiles.transpose(0, 3, 1, 2)).astype(np.float32)


def blended_image(image: np.ndarray, tile: tuple[int, int], overlap: float, batch: int, blend: str,
                  alignment: int = 1):
    """Stitch the identity runner's output back into an H×W×3 float image, counting how often each pixel is released."""
    plan = plan_tiles(image.shape[:2], tile, overlap, batch, alignment)
    out = np.full(image.shape, np.nan, np.float64)
    released = np.zeros(image.shape[:2], np.int32)

    def sink(row, col, scores, weights):
        assert np.all(weights > 0)
        rows, cols = slice(row, row + scores.shape[1]), slice(col, col + scores.shape[2])
        released[rows, cols] += 1
        out[rows, cols] = (scores / weights).transpose(1, 2, 0)

    slide(image, plan, identity_runner, 3, blend, sink)
    return out, released, plan


@pytest.mark.parametrize("alignment", [1, 32])
@pytest.mark.parametrize("length,tile,overlap", [(1000, 256, 0.25), (777, 320, 0.25), (320, 320, 0.5),
                                                 (321, 320, 0.0), (100, 320, 0.25), (4096, 96, 0.9), (97, 32, 0.0)])
def test_axis_starts_cover_the_aligned_axis(length, tile, overlap, alignment):
    required = int(round(tile * overlap))
    if align_up(length, alignment) > tile and tile - required < alignment:
        with pytest.raises(ValueError, match="steps less than the alignment"):
            axis_starts(length, tile, overlap, alignment)  # the requested overlap cannot be kept on the grid
        return
    starts = axis_starts(length, tile, overlap, alignment)
    assert starts[0] == 0
    assert list(starts) == sorted(set(starts))
    assert all(s % alignment == 0 for s in starts)  # every tile on the model's sampling grid
    end = align_up(length, alignment)
    if end <= tile:
        assert starts == (0,)
        return
    assert starts[-1] == end - tile  # the edge tile ends at the aligned edge, less than one grid step past the image
    assert end - length < alignment
    assert all(b - a <= tile - required for a, b in zip(starts, starts[1:]))  # at least the requested overlap


def test_aligned_plan_reflect_pads_less_than_one_grid_step():
    plan = plan_tiles((375, 500), (256, 256), 0.25, 4, alignment=32)
    assert plan.ys == (0, 128) and plan.xs == (0, 128, 256)
    assert plan.canvas_hw == (384, 512)
    with pytest.raises(ValueError, match="multiple of the alignment"):
        plan_tiles((375, 500), (250, 256), 0.25, 4, alignment=32)


@pytest.mark.parametrize("alignment", [1, 32])
@pytest.mark.parametrize("image_hw,tile", [((1000, 777), (256, 320)), ((50, 70), (64, 96)), ((64, 96), (64, 96)),
                                           ((300, 40), (64, 64))])
def test_tiles_cover_every_pixel(image_hw, tile, alignment):
    plan = plan_tiles(image_hw, tile, 0.25, 4, alignment)
    covered = np.zeros(plan.canvas_hw, np.int32)
    for y in plan.ys:
        for x in plan.xs:
            covered[y : y + tile[0], x : x + tile[1]] += 1
    assert covered[: image_hw[0], : image_hw[1]].min() >= 1
    assert plan.count == len(plan.ys) * len(plan.xs)


@pytest.mark.parametrize("blend", BLENDS)
def test_blend_windows_are_positive_everywhere(blend):
    window = blend_window((64, 96), blend)
    assert window.shape == (64, 96) and window.dtype == np.float32
    assert window.min() > 0  # borders included: every pixel of every tile counts
    assert np.allclose(window, window[::-1, ::-1])
    if blend == "mean":
        assert np.all(window == 1)
    else:
        assert window[32, 48] > window[0, 0]  # centres weigh more than corners


@pytest.mark.parametrize("alignment", [1, 32])
@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("image_hw,tile,overlap,batch", [
    ((1000, 777), (256, 320), 0.25, 4),
    ((1000, 777), (256, 320), 0.5, 3),
    ((50, 70), (64, 96), 0.25, 2),  # smaller than a tile on both axes
    ((300, 40), (64, 64), 0.0, 8),  # narrow: several tile rows per batch
    ((64, 96), (64, 96), 0.25, 1),  # exactly one tile
])
def test_stitching_reproduces_the_input(blend, image_hw, tile, overlap, batch, alignment):
    image = np.random.default_rng(0).integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    out, released, plan = blended_image(image, tile, overlap, batch, blend, alignment)
    assert np.allclose(out, image, atol=1e-3)
    assert np.all(released == 1)  # every pixel released exactly once


def test_stitching_holds_a_seam_and_one_window_not_a_band():
    plan = plan_tiles((12000, 12000), (320, 480), 0.25, 4, alignment=32)
    assert plan.seam_rows() == 320 - min(b - a for a, b in zip(plan.ys, plan.ys[1:]))
    assert plan.seam_rows() <= 128  # an overlap of 0.25 rounded up to the 32-pixel grid: at most 0.4 of a tile
    stitch = SeamAccumulator(21, plan, blend_window(plan.tile_hw, "hann"))
    assert stitch.nbytes == stitch_bytes(plan, 21) < 150e6  # a full-width band of 320 rows: 339 MB
    assert stitch_bytes(plan_tiles((100, 12000), (320, 480), 0.25, 4), 21) == 4 * 22 * 320 * 480  # one row: no seam


def test_slide_matches_a_full_canvas_reference_exactly():
    """The streamed sums equal blending on one full-size canvas, bit for bit (same order of additions)."""
    image = np.random.default_rng(3).integers(0, 256, (333, 517, 3), dtype=np.uint8)
    plan = plan_tiles(image.shape[:2], (96, 128), 0.4, 3, alignment=32)
    window = blend_window(plan.tile_hw, "hann")
    canvas = np.zeros((3, *plan.canvas_hw), np.float32)
    weights = np.zeros(plan.canvas_hw, np.float32)
    for y in plan.ys:
        for x in plan.xs:
            tile = identity_runner(extract_tile(image, y, x, plan.tile_hw)[None])[0] * window
            canvas[:, y : y + 96, x : x + 128] += tile
            weights[y : y + 96, x : x + 128] += window
    streamed = np.full((3, *image.shape[:2]), np.nan, np.float32)
    streamed_weights = np.full(image.shape[:2], np.nan, np.float32)

    def sink(row, col, scores, block_weights):
        streamed[:, row : row + scores.shape[1], col : col + scores.shape[2]] = scores
        streamed_weights[row : row + scores.shape[1], col : col + scores.shape[2]] = block_weights

    slide(image, plan, identity_runner, 3, "hann", sink)
    assert np.array_equal(streamed, canvas[:, :333, :517]) and np.array_equal(streamed_weights, weights[:333, :517])


def test_slide_labels_are_the_argmax_of_blended_logits():
    image = np.random.default_rng(1).integers(0, 256, (333, 257, 3), dtype=np.uint8)
    plan = plan_tiles(image.shape[:2], (128, 96), 0.25, 4)
    labels = slide_labels(image, plan, identity_runner, 3, "gaussian")
    assert labels.dtype == np.uint8 and labels.shape == (333, 257)
    assert np.array_equal(labels, np.argmax(image, axis=2))


def test_whole_mode_pads_to_the_alignment_and_crops_back():
    image = np.random.default_rng(2).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    seen = []

    def runner(batch):
        seen.append(batch.shape)
        return identity_runner(batch)

    padded = whole_size(image.shape[:2], 32)
    assert padded == (64, 96)
    labels = whole_labels(image, padded, runner, 3)
    assert seen == [(1, 64, 96, 3)] and labels.dtype == np.uint8
    assert np.array_equal(labels, np.argmax(image, axis=2))
    assert whole_size((10, 10), 32, (64, 64)) == (64, 64)
    assert whole_size((10, 10), 1, (64, 20)) == (64, 20)  # each side its own minimum
    assert align_up(33, 32) == 64 and align_up(32, 32) == 32


def test_reflect_padding():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    padded = pad_to(image, 4, 5)
    assert padded.shape == (4, 5)
    assert padded[:2, :3].tolist() == image.tolist()
    assert padded[0, 3:].tolist() == [1, 0]  # mirrored without repeating the edge
    assert pad_to(image, 2, 3) is image


def test_argmax_matches_numpy_including_ties():
    scores = np.random.default_rng(3).integers(0, 4, (7, 5, 9)).astype(np.float32)  # many ties
    out = np.empty((5, 9), np.uint8)
    argmax_classes(scores, out)
    assert np.array_equal(out, np.argmax(scores, axis=0))


def test_wrong_logit_shape_is_reported():
    image = np.zeros((64, 64, 3), np.uint8)
    plan = plan_tiles((64, 64), (32, 32), 0.0, 2)
    with pytest.raises(ValueError, match="logits of shape"):
        slide_labels(image, plan, lambda t: np.zeros((len(t), 3, 16, 16), np.float32), 3, "mean")
    with pytest.raises(ValueError, match="logits of shape"):
        whole_labels(image, (64, 64), lambda t: np.zeros((1, 3, 32, 32), np.float32), 3)


def random_logit_runner(num_classes: int):
    """Logits that depend on the pixel (a fixed random projection of its RGB), so tiles agree where they overlap."""
    weights = np.random.default_rng(4).standard_normal((num_classes, 3)).astype(np.float32)

    def run(tiles: np.ndarray) -> np.ndarray:
        return np.einsum("kc,nhwc->nkhw", weights, tiles.astype(np.float32) / 255).astype(np.float32)

    return run


def noisy_runner(num_classes: int):
    """Logits that also depend on where the pixel sits in its tile (like a real model near tile borders)."""
    base = random_logit_runner(num_classes)

    def run(tiles: np.ndarray) -> np.ndarray:
        logits = base(tiles)
        h, w = logits.shape[2:]
        ramp = np.add.outer(np.linspace(-1, 1, h), np.linspace(1, -1, w)).astype(np.float32)
        logits[:, 0] += 0.3 * ramp
        return logits

    return run


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("image_hw,tile,overlap,batch", [
    ((1000, 777), (256, 320), (64, 96), 4),
    ((1000, 777), (256, 320), (128, 160), 3),  # exactly half a tile
    ((50, 70), (64, 96), (32, 32), 2),  # smaller than a tile
    ((300, 40), (64, 64), (0, 0), 8),  # narrow: several tile rows per batch
    ((2000, 1500), (992, 992), (96, 96), 1),
])
def test_label_stitcher_equals_the_band_accumulator(blend, image_hw, tile, overlap, batch):
    image = np.random.default_rng(5).integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    plan = plan_tiles_px(image_hw, tile, overlap, batch, 32)
    assert neighbours_only(plan)
    run = noisy_runner(5)
    banded = np.empty(image_hw, np.uint8)
    slide(image, plan, run, 5, blend, label_sink(banded))
    stitched = stitch_labels(image, plan, run, 5, blend)
    assert np.mean(stitched == banded) >= 0.9999  # equal up to float summation order at near-ties
    assert len(np.unique(stitched)) > 1


@pytest.mark.parametrize("image_hw,tile,overlap", [
    ((1000, 777), (256, 320), (64, 96)),
    ((2000, 1500), (992, 992), (96, 96)),
    ((300, 40), (64, 64), (0, 0)),  # no overlap: nothing carried
])
def test_the_label_stitcher_holds_what_stitch_bytes_states(image_hw, tile, overlap):
    """The module's memory bound for labels: the seam strip plus the widest column carry, and nothing more."""
    plan = plan_tiles_px(image_hw, tile, overlap, 1, 32)
    stitcher = LabelStitcher(plan, 5, blend_window(plan.tile_hw, "hann"), np.empty(image_hw, np.uint8))
    held = 0
    for y in plan.ys:
        for x in plan.xs:
            stitcher.add(y, x, np.random.default_rng(y + x).random((5, *plan.tile_hw), np.float32))
            carry = 0 if stitcher.carry is None else stitcher.carry.nbytes
            held = max(held, stitcher.strip.nbytes + carry)
    assert held == stitch_bytes(plan, 5, labels_only=True)
    assert stitch_bytes(plan, 5, labels_only=True) < stitch_bytes(plan, 5) or not plan.seam_rows()


def test_slide_labels_uses_the_band_beyond_half_a_tile():
    plan = plan_tiles((700, 500), (128, 128), 0.75, 4)
    assert not neighbours_only(plan)
    image = np.random.default_rng(6).integers(0, 256, (700, 500, 3), dtype=np.uint8)
    assert np.array_equal(slide_labels(image, plan, identity_runner, 3, "hann"), np.argmax(image, axis=2))
    with pytest.raises(ValueError, match=r"^tiles overlap beyond their neighbours; use the band accumulator \(slide\)$"):
        stitch_labels(image, plan, identity_runner, 3, "hann")


@pytest.mark.parametrize("length,overlap,expected_tile,expected_count", [
    (8192, 96, 1024, 9),  # 996 rounds up to the grid: nine 1024-pixel tiles
    (8192, 64, 992, 9),  # nine 992-pixel tiles (8928 pixels for 8192)
    (1000, 96, 1024, 1),  # fits one tile: no overlap needed
    (20, 96, 32, 1),
    (2000, 96, 736, 3),  # three tiles are needed; 736 pixels each suffice
])
def test_fitted_tile_uses_the_fewest_and_smallest_tiles(length, overlap, expected_tile, expected_count):
    tile = fitted_tile(length, overlap, 1024, 32, 32)
    assert tile == expected_tile and tile % 32 == 0
    starts = axis_starts_px(length, tile, overlap, 32)
    assert len(starts) == expected_count
    assert starts[-1] + tile >= align_up(length, 32)
    assert all(a + tile - b >= overlap for a, b in zip(starts, starts[1:]))


def test_label_stitcher_holds_one_strip_of_the_open_overlap():
    """Row to row, the rows the next tile row shares live in one buffer, never two (a wide image shows it)."""
    import tracemalloc

    image = np.random.default_rng(7).integers(0, 256, (320, 20000, 3), dtype=np.uint8)
    plan = plan_tiles_px(image.shape[:2], (128, 128), (32, 32), 4, 32)
    strip_bytes = 3 * plan.seam_rows() * plan.canvas_hw[1] * 4
    tracemalloc.start()
    try:
        labels = stitch_labels(image, plan, identity_runner, 3, "hann")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(labels, np.argmax(image, axis=2))
    assert peak - labels.nbytes < 1.5 * strip_bytes


@pytest.mark.parametrize("stitch", ["labels", "band"])
def test_a_batch_runs_after_the_previous_batch_logits_are_freed(stitch):
    """Holding one batch's logits while the next runs would double the largest array of a tiled pass."""
    import weakref

    returned: list[weakref.ref] = []

    def runner(tiles: np.ndarray) -> np.ndarray:
        alive = [ref for ref in returned if ref() is not None]
        assert not alive, "the previous batch's logits are still alive while the next batch runs"
        logits = identity_runner(tiles)
        returned.append(weakref.ref(logits))
        return logits

    image = np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    overlap = (16, 16) if stitch == "labels" else (48, 48)  # beyond half a tile: the band accumulator
    plan = plan_tiles_px(image.shape[:2], (64, 64), overlap, 2)
    assert neighbours_only(plan) == (stitch == "labels")
    labels = slide_labels(image, plan, runner, 3, "hann")
    assert len(returned) == len(list(plan.batches())) > 2
    assert np.array_equal(labels, np.argmax(image, axis=2))


# --- a differential check on many small plans: every seam, one-pixel steps and images smaller than a tile -------


def ramp_runner(num_classes: int):
    """Logits from the pixel's RGB plus a per-class ramp over the tile: tiles disagree where they overlap, so the
    blend, every seam and the order of the sums all show in the result."""
    rng = np.random.default_rng(11)
    colour = rng.standard_normal((num_classes, 3)).astype(np.float32)
    slope = rng.standard_normal((num_classes, 2)).astype(np.float32)

    def run(tiles: np.ndarray) -> np.ndarray:
        _, h, w, _ = tiles.shape
        rows, cols = np.linspace(-1, 1, h, dtype=np.float32), np.linspace(-1, 1, w, dtype=np.float32)
        ramp = slope[:, 0, None, None] * rows[:, None] + slope[:, 1, None, None] * cols[None, :]
        return (np.einsum("kc,nhwc->nkhw", colour, tiles.astype(np.float32) / 255) + ramp).astype(np.float32)

    return run


def canvas_blend(image: np.ndarray, plan, run, num_classes: int, blend: str) -> np.ndarray:
    """The definition of the blend: every tile's weighted logits summed on one float64 canvas, divided by the
    summed weights, cropped to the image (C×H×W)."""
    window = blend_window(plan.tile_hw, blend).astype(np.float64)
    sums, weights = np.zeros((num_classes, *plan.canvas_hw)), np.zeros(plan.canvas_hw)
    (tile_h, tile_w), (height, width) = plan.tile_hw, plan.image_hw
    for y in plan.ys:
        for x in plan.xs:
            sums[:, y : y + tile_h, x : x + tile_w] += window * run(extract_tile(image, y, x, plan.tile_hw)[None])[0]
            weights[y : y + tile_h, x : x + tile_w] += window
    return (sums / weights)[:, :height, :width]


def small_plans(count: int):
    """Random small plans: sides from 1 pixel, overlaps from none to one pixel short of the tile, alignments 1-4."""
    rng = np.random.default_rng(2024)
    for _ in range(count):
        alignment = int(rng.choice([1, 1, 2, 4]))
        tile = tuple(alignment * int(rng.integers(1, 9)) for _ in range(2))
        image_hw = tuple(int(rng.integers(1, 40)) for _ in range(2))
        overlap = tuple(int(rng.integers(0, side)) for side in tile)
        try:
            plan = plan_tiles_px(image_hw, tile, overlap, int(rng.integers(1, 6)), alignment)
        except ValueError:  # the overlap leaves no step on the grid
            continue
        yield plan, str(rng.choice(BLENDS))


SMALL_PLANS = list(small_plans(160))


def test_the_small_plans_reach_every_edge_case():
    """The cases the differential tests below need are all among the random plans."""
    plans = [plan for plan, _ in SMALL_PLANS]
    steps = [b - a for plan in plans for a, b in zip(plan.xs, plan.xs[1:])]
    assert 1 in steps and any(plan.image_hw[0] == 1 for plan in plans)
    assert sum(neighbours_only(plan) for plan in plans) > 40 and sum(not neighbours_only(p) for p in plans) > 40
    assert any(plan.xs[1] - plan.xs[0] == plan.tile_hw[1] - 1 for plan in plans if len(plan.xs) > 1)  # 1-px overlap


@pytest.mark.parametrize(("plan", "blend"), SMALL_PLANS)
def test_slide_releases_each_pixel_once_with_the_canvas_blend(plan, blend):
    image = np.random.default_rng(plan.image_hw[0]).integers(0, 256, (*plan.image_hw, 3), dtype=np.uint8)
    run = ramp_runner(4)
    blended, released = np.full((4, *plan.image_hw), np.nan), np.zeros(plan.image_hw, np.int32)

    def sink(row, col, scores, weights):
        rows, cols = slice(row, row + scores.shape[1]), slice(col, col + scores.shape[2])
        released[rows, cols] += 1
        blended[:, rows, cols] = scores / weights

    slide(image, plan, run, 4, blend, sink)
    assert np.all(released == 1)
    np.testing.assert_allclose(blended, canvas_blend(image, plan, run, 4, blend), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("plan", "blend"), SMALL_PLANS)
def test_labels_are_the_argmax_of_the_canvas_blend(plan, blend):
    """Both label paths (the stitcher for neighbour-only overlaps, the band accumulator beyond) against the
    definition, wherever the two best classes are not a float rounding apart."""
    image = np.random.default_rng(plan.image_hw[1]).integers(0, 256, (*plan.image_hw, 3), dtype=np.uint8)
    run = ramp_runner(4)
    reference = canvas_blend(image, plan, run, 4, blend)
    top_two = np.sort(reference, axis=0)[-2:]
    clear = top_two[1] - top_two[0] > 1e-4
    labels = slide_labels(image, plan, run, 4, blend)
    assert labels.dtype == np.uint8 and labels.shape == plan.image_hw
    assert np.array_equal(labels[clear], np.argmax(reference, axis=0)[clear])
    if neighbours_only(plan):
        stitched = stitch_labels(image, plan, run, 4, blend)
        assert np.array_equal(stitched[clear], labels[clear])


def test_the_seam_accumulator_refuses_a_tile_off_the_plan_out_of_order_or_twice():
    plan = plan_tiles_px((64, 64), (32, 32), (16, 16), 1)
    stitch, sink = SeamAccumulator(2, plan, blend_window(plan.tile_hw, "hann")), lambda *block: None
    logits = lambda: np.ones((2, 32, 32), np.float32)  # noqa: E731
    with pytest.raises(ValueError, match=r"^tile \(5, 0\) is not on the plan or out of row-major order$"):
        stitch.add(5, 0, logits(), sink)
    stitch.add(16, 0, logits(), sink)
    stitch.add(16, 16, logits(), sink)
    for y, x in [(16, 16), (16, 0), (0, 32)]:  # the same tile again, a column back, a row back
        with pytest.raises(ValueError, match=rf"^tile \({y}, {x}\) is not on the plan or out of row-major order$"):
            stitch.add(y, x, logits(), sink)


@pytest.mark.parametrize("call", [
    lambda image, plan: slide(image, plan, identity_runner, 3, "mean", lambda *block: None),
    lambda image, plan: stitch_labels(image, plan, identity_runner, 3, "mean"),
])
def test_an_image_of_another_size_than_the_plan_is_refused(call):
    plan = plan_tiles((20, 30), (16, 16), 0.25, 1)
    with pytest.raises(ValueError, match=r"^image is \(20, 31\), the plan is for \(20, 30\)$"):
        call(np.zeros((20, 31, 3), np.uint8), plan)


@pytest.mark.parametrize(("image_hw", "tile_hw", "batch"), [
    ((0, 10), (4, 4), 1), ((10, 0), (4, 4), 1), ((10, 10), (0, 4), 1), ((10, 10), (4, 0), 1), ((10, 10), (4, 4), 0),
])
def test_a_plan_of_nothing_is_refused(image_hw, tile_hw, batch):
    message = rf"^image \{image_hw}, tile \{tile_hw} and batch {batch} must be positive$"
    with pytest.raises(ValueError, match=message.replace(")", "\\)")):
        plan_tiles_px(image_hw, tile_hw, (0, 0), batch)
    with pytest.raises(ValueError, match=message.replace(")", "\\)")):
        plan_tiles(image_hw, tile_hw, 0.0, batch)


@pytest.mark.parametrize("overlap", [(32, 0), (0, 32), (-1, 0), (0, -1)])
def test_an_overlap_of_a_whole_tile_or_a_negative_one_in_pixels_is_refused(overlap):
    message = rf"^overlap \{overlap} px must be at least 0 and less than the tile \(32, 32\)$"
    with pytest.raises(ValueError, match=message.replace(")", "\\)", 1)):
        plan_tiles_px((100, 100), (32, 32), overlap, 1)


def test_tile_rows_two_apart_that_still_overlap_are_not_neighbours_only():
    plan = plan_tiles_px((12, 6), (6, 6), (4, 0), 1)  # rows start 0, 2, 4, 6: the third still overlaps the first
    assert plan.ys == (0, 2, 4, 6) and not neighbours_only(plan)
    assert neighbours_only(plan_tiles_px((12, 6), (6, 6), (3, 0), 1))  # rows 0, 3, 6: only neighbours touch


def test_padding_down_is_refused_on_either_axis():
    for height, width in [(4, 6), (6, 2)]:
        for image in (np.zeros((5, 3, 4), np.uint8), np.zeros((5, 3), np.uint8)):  # the size is height × width
            with pytest.raises(ValueError, match=rf"^cannot pad 5x3 down to {height}x{width}$"):
                pad_to(image, height, width)


def test_the_blend_windows_are_hann_and_gaussian_profiles():
    """'hann' is a raised sin² sampled at pixel centres (numpy's Hann window at the odd points of twice the
    length), 'gaussian' a bell of the module's sigma centred on the tile; the outer product gives the 2-D window."""
    from fcn_deploy.tiling import _GAUSSIAN_SIGMA, _WINDOW_FLOOR

    for length in (1, 2, 7, 32):
        hann = blend_window((1, length), "hann")[0]
        np.testing.assert_allclose(hann, _WINDOW_FLOOR + (1 - _WINDOW_FLOOR) * np.hanning(2 * length + 1)[1::2],
                                   rtol=1e-6)
        centres = (np.arange(length) + 0.5) / length
        gaussian = blend_window((1, length), "gaussian")[0].astype(np.float64)
        np.testing.assert_allclose(-2 * np.log(gaussian), ((centres - 0.5) / _GAUSSIAN_SIGMA) ** 2, atol=1e-6)
    np.testing.assert_allclose(blend_window((3, 4), "hann"),
                               np.outer(blend_window((1, 3), "hann"), blend_window((1, 4), "hann")), rtol=1e-6)
    with pytest.raises(ValueError, match=r"^unknown blend 'median'; use one of hann, gaussian, mean$"):
        blend_window((4, 4), "median")


@pytest.mark.parametrize("overlap", [1.0, 1.5, -0.1])
def test_an_overlap_of_a_whole_tile_or_more_is_refused(overlap):
    with pytest.raises(ValueError, match=rf"^overlap must be in \[0, 1\), got {overlap}$"):
        plan_tiles((100, 100), (32, 32), overlap, 1)


def test_plans_and_starts_are_on_the_pixel_grid_unless_told():
    """Without an alignment a tile may start on any pixel: 69 pixels of travel in three even steps."""
    assert plan_tiles((100, 100), (31, 31), 0.0, 1).xs == (0, 23, 46, 69)
    assert plan_tiles_px((100, 100), (31, 31), (0, 0), 1).xs == (0, 23, 46, 69)
    assert axis_starts(100, 31, 0.0) == axis_starts_px(100, 31, 0) == (0, 23, 46, 69)


def fewest_smallest_tile(length: int, overlap: int, largest: int, smallest: int, alignment: int) -> int:
    """fitted_tile by search: the fewest tiles of at most ``largest`` that cover the aligned axis with the overlap,
    then the smallest grid side that still does."""
    aligned = align_up(length, alignment)
    sides = range(alignment, largest + 1, alignment)

    def covers(side: int, count: int) -> bool:
        return side + (count - 1) * (side - overlap) >= aligned and (count == 1 or side - overlap >= alignment)

    count = next(n for n in range(1, aligned + 1) if covers(largest, n))
    return max(smallest, min(side for side in sides if covers(side, count)))


@pytest.mark.parametrize("alignment", [1, 8, 32])
def test_fitted_tile_equals_a_search_for_the_fewest_and_smallest_tiles(alignment):
    rng = np.random.default_rng(alignment)
    for _ in range(300):
        largest = alignment * int(rng.integers(2, 20))
        length, overlap = int(rng.integers(1, 8 * largest)), int(rng.integers(0, largest - alignment + 1))
        smallest = alignment * int(rng.integers(1, 3))
        tile = fitted_tile(length, overlap, largest, smallest, alignment)
        assert type(tile) is int and tile == fewest_smallest_tile(length, overlap, largest, smallest, alignment), (
            length, overlap, largest, smallest)


def test_fitted_tile_refuses_an_overlap_that_leaves_no_grid_step():
    assert fitted_tile(1000, 480, 512, 32, 32) == 512  # one grid step of travel is enough
    assert fitted_tile(512, 512, 512, 64, 32) == 512  # one tile covers the axis: the overlap does not matter
    with pytest.raises(ValueError, match=r"^overlap 500 px leaves no step on a 512-pixel tile$"):
        fitted_tile(1000, 500, 512, 32, 32)


@pytest.mark.parametrize(("image_h", "overlap", "batch", "row", "expected"), [
    (416, 32, 1, 0, (0, 96, 192, 288)),  # nothing done yet: the whole plan
    (416, 32, 1, 100, (0, 96, 192, 288)),  # row 100 is final in tile row 1, which tile row 0 reaches into
    (416, 32, 1, 192, (96, 192, 288)),  # tile row 2 starts at 192; tile row 1 (96-224) reaches into it
    (384, 0, 1, 256, (256,)),  # no overlap: a tile row that ends where the next starts is not rerun
    (512, 32, 2, 384, (192, 288, 384)),  # tile row 3 would start the batch of rows 3-4 halfway: back to row 2
])
def test_a_resumed_plan_starts_at_the_first_tile_row_reaching_the_row(image_h, overlap, batch, row, expected):
    """Tiles 128 high and 64 wide (one column), so a height taken for a width shows."""
    plan = plan_tiles_px((image_h, 64), (128, 64), (overlap, 0), batch)
    assert resumed_plan(plan, row) == replace(plan, ys=expected)


def test_a_spilled_strip_reads_back_what_was_written_column_range_by_range():
    """A write replaces whole columns (one contiguous block each): rows past the written ones read back as 0."""
    strip, model = SpilledStrip((3, 5, 20)), np.zeros((3, 5, 20), np.float32)
    rng = np.random.default_rng(8)
    for rows, start, stop in [(5, 0, 20), (2, 3, 9), (4, 15, 20), (5, 0, 1)]:
        values = rng.standard_normal((3, rows, stop - start)).astype(np.float32)
        strip[:, :rows, start:stop] = values
        model[:, :, start:stop] = 0.0
        model[:, :rows, start:stop] = values
        assert np.array_equal(strip[:, :rows, start:stop], values)
    assert np.array_equal(strip[:, :, 0:20], model) and np.array_equal(strip[:, :3, 7:12], model[:, :3, 7:12])


class WindowedLabels:
    """Labels that are not one array in memory (as a windowed TIFF's are): 2-D slices of a backing array."""

    def __init__(self, shape):
        self.array = np.zeros(shape, np.uint8)

    def __getitem__(self, key):
        return self.array[key]


@pytest.mark.parametrize(("width", "windowed", "spilled"), [
    (4096, True, False),  # 16 classes × 64 seam rows × 4096 columns × 4 bytes: exactly the limit, kept in memory
    (4224, True, True),  # past it: windowed labels keep the strip in a file
    (4224, False, False),  # labels in memory: the image is in memory too, the strip stays there
])
def test_only_a_strip_past_the_limit_for_windowed_labels_goes_to_a_file(width, windowed, spilled):
    plan = plan_tiles_px((192, width), (128, 128), (64, 0), 1)
    assert 4 * 16 * plan.seam_rows() * plan.canvas_hw[1] - SPILL_STRIP_BYTES == 4 * 16 * 64 * (width - 4096)
    labels = WindowedLabels((192, width)) if windowed else np.zeros((192, width), np.uint8)
    stitcher = LabelStitcher(plan, 16, blend_window(plan.tile_hw, "hann"), labels)
    assert isinstance(stitcher.strip, SpilledStrip) is spilled
