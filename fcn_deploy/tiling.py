"""Whole-image and tiled (sliding-window) inference on numpy arrays, independent of any runtime.

Whole mode reflect-pads an image to the model's alignment, runs it once and crops the logits. Slide mode
cuts overlapping tiles, runs them in batches and blends their logits with per-pixel window weights. Tiles
start on multiples of the alignment (the model's output stride), so they sample the image on the same grid
as the whole-image pass; the last tile ends at the aligned image edge, inside the same reflect padding.
Labels need less: where tiles overlap at most their neighbours (overlap up to half a tile), ``LabelStitcher``
keeps only the overlaps still open (the strip the next tile row shares, full width, and the columns the next
tile shares) and turns every finished block straight into labels: O(width × overlap × classes) floats, so
large tiles stay cheap in memory.

Default tiles come from the model: ``fitted_tile`` picks, per axis, the fewest tiles of at most the model's
largest size that cover the image with the overlap, then the smallest grid-aligned tile that still does, so
the model processes few pixels beyond the image's own.

Memory bound of slide mode (``stitch_bytes``): both stitchers take the tiles in row-major order and hold, beyond
the uint8 image (3 bytes a pixel, never copied) and the uint8 labels (1 byte a pixel), only the sums still
open: the seam, the rows the next tile row shares (classes × seam rows × width floats, the one term that grows
with the image, with its width alone; ``LabelStitcher`` keeps a wide one of windowed labels in a temporary file,
``SpilledStrip``), and a tile-sized part of the current row. ``LabelStitcher`` (overlaps up
to half a tile) keeps the columns the next tile shares; ``SeamAccumulator`` (larger overlaps, and any other
sink) keeps one tile-sized window of sums and their weights. Everything else is a constant independent of the
image: one batch of tiles, their logits and the model's working memory. There is no image-sized float array.
The labels are written tile row by tile row, so their pages become resident as the rows finish: a process's
resident memory climbs by the label term through the pass and peaks at its last tile row, with nothing allocated
late (docs/memory.md measures the sum of these terms through ``fcn-deploy infer``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from fcn_deploy.data.transforms import align_up

BLENDS: tuple[str, ...] = ("hann", "gaussian", "mean")
HW = tuple[int, int]  # (height, width)

#: maps uint8 N×h×w×3 RGB tiles to float32 N×C×h×w logits
TileRunner = Callable[[np.ndarray], np.ndarray]
#: receives a finished block: (first row, first column, weighted logit sums C×rows×cols, weight sums rows×cols)
BlockSink = Callable[[int, int, np.ndarray, np.ndarray], None]

_WINDOW_FLOOR = 1e-3  # hann weights never reach 0, so tile borders still count
_GAUSSIAN_SIGMA = 0.25  # standard deviation as a fraction of the tile side
SPILL_STRIP_BYTES = 16 << 20  # a larger LabelStitcher strip of windowed labels is kept in a file (SpilledStrip)


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad an H×W(×C) array at the bottom and right up to ``height``×``width`` (no copy if equal)."""
    pad_h, pad_w = height - image.shape[0], width - image.shape[1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"cannot pad {image.shape[0]}x{image.shape[1]} down to {height}x{width}")
    if pad_h == 0 and pad_w == 0:
        return image
    widths = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, widths, mode="reflect")


def axis_starts(length: int, tile: int, overlap: float, alignment: int = 1) -> tuple[int, ...]:
    """Tile offsets along one axis: evenly spread multiples of ``alignment``, overlapping at least ``overlap``.

    The tiles cover ``length`` rounded up to ``alignment`` (the last one ends there); an axis no longer than
    the tile gets one tile at 0. The image is reflect-padded wherever a tile reaches past it.
    """
    return axis_starts_px(length, tile, int(round(tile * overlap)), alignment)


def axis_starts_px(length: int, tile: int, overlap_px: int, alignment: int = 1) -> tuple[int, ...]:
    """``axis_starts`` with the overlap in pixels: neighbouring tiles share at least ``overlap_px`` pixels."""
    span = max(0, align_up(length, alignment) - tile)
    if span == 0:
        return (0,)
    stride = (tile - overlap_px) // alignment  # in units of ``alignment``
    if stride < 1:
        raise ValueError(f"tile {tile} with overlap {overlap_px} px steps less than the alignment {alignment}")
    units = -(-span // alignment)
    count = -(-units // stride) + 1
    # floor of an even spread: consecutive gaps differ by at most one unit and never exceed ``stride``
    return tuple(min(span, alignment * (i * units // (count - 1))) for i in range(count))


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image go and how they are batched."""

    image_hw: HW
    tile_hw: HW
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    batch: int

    @property
    def count(self) -> int:
        """Number of tiles."""
        return len(self.ys) * len(self.xs)

    @property
    def canvas_hw(self) -> HW:
        """The area the tiles cover: the image, grown to where the last tile along each axis ends."""
        return self.ys[-1] + self.tile_hw[0], self.xs[-1] + self.tile_hw[1]

    def seam_rows(self) -> int:
        """Rows of one tile row that the next tile row overlaps: the most a stitch carries from row to row."""
        return max((a + self.tile_hw[0] - b for a, b in zip(self.ys, self.ys[1:])), default=0)

    def batches(self) -> Iterator[list[tuple[int, int]]]:
        """The tiles' (y, x) in row-major order (the order the stitchers take them), ``batch`` at a time."""
        tiles = [(y, x) for y in self.ys for x in self.xs]
        for start in range(0, len(tiles), self.batch):
            yield tiles[start : start + self.batch]


def plan_tiles(
    image_hw: Sequence[int], tile_hw: Sequence[int], overlap: float, batch: int, alignment: int = 1
) -> TilePlan:
    """Lay tiles of ``tile_hw`` over an image of ``image_hw`` with at least ``overlap`` (a fraction) between them.

    With ``alignment`` (the model's output stride) every tile starts on a multiple of it, so each tile sees the
    image on the same sampling grid as one whole-image pass and the tiles' logits agree where they overlap.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    tile_h, tile_w = (int(v) for v in tile_hw)  # plan_tiles_px checks the sizes and the batch
    return plan_tiles_px(image_hw, tile_hw, (int(round(tile_h * overlap)), int(round(tile_w * overlap))), batch,
                         alignment)


def plan_tiles_px(
    image_hw: Sequence[int], tile_hw: Sequence[int], overlap_px: Sequence[int], batch: int, alignment: int = 1
) -> TilePlan:
    """``plan_tiles`` with the overlap in pixels per axis (height, width) instead of a fraction of the tile."""
    height, width = (int(v) for v in image_hw)
    tile_h, tile_w = (int(v) for v in tile_hw)
    over_h, over_w = (int(v) for v in overlap_px)
    if min(height, width, tile_h, tile_w, batch) < 1:
        raise ValueError(f"image {image_hw}, tile {tile_hw} and batch {batch} must be positive")
    if not (0 <= over_h < tile_h and 0 <= over_w < tile_w):
        raise ValueError(f"overlap {overlap_px} px must be at least 0 and less than the tile {tile_hw}")
    if alignment < 1 or tile_h % alignment or tile_w % alignment:
        raise ValueError(f"tile {tile_hw} must be a multiple of the alignment {alignment}")
    ys = axis_starts_px(height, tile_h, over_h, alignment)
    xs = axis_starts_px(width, tile_w, over_w, alignment)
    return TilePlan((height, width), (tile_h, tile_w), ys, xs, int(batch))


def fitted_tile(length: int, overlap_px: int, largest: int, smallest: int, alignment: int) -> int:
    """The tile side for an axis of ``length``: as few tiles of at most ``largest`` as the overlap allows, each
    as small as still covers the axis (on the ``alignment`` grid, at least ``smallest``)."""
    aligned = align_up(length, alignment)
    if aligned <= largest:
        return max(aligned, smallest)
    if overlap_px > largest - alignment:  # one grid cell is the smallest step
        raise ValueError(f"overlap {overlap_px} px leaves no step on a {largest}-pixel tile")
    count = -(-(aligned - overlap_px) // (largest - overlap_px))
    side = align_up(-(-(aligned + (count - 1) * overlap_px) // count), alignment)
    return min(largest, max(smallest, side))


def _window_1d(length: int, blend: str) -> np.ndarray:
    """A strictly positive, symmetric 1-D weight profile (float64)."""
    centres = (np.arange(length, dtype=np.float64) + 0.5) / length  # in (0, 1)
    if blend == "hann":
        return _WINDOW_FLOOR + (1.0 - _WINDOW_FLOOR) * np.sin(np.pi * centres) ** 2
    if blend == "gaussian":
        return np.exp(-0.5 * ((centres - 0.5) / _GAUSSIAN_SIGMA) ** 2)
    if blend == "mean":
        return np.ones(length)
    raise ValueError(f"unknown blend {blend!r}; use one of {', '.join(BLENDS)}")


def blend_window(tile_hw: Sequence[int], blend: str) -> np.ndarray:
    """Per-pixel tile weights (float32, tile_h×tile_w, every entry > 0); 'mean' is plain averaging."""
    window = np.outer(_window_1d(int(tile_hw[0]), blend), _window_1d(int(tile_hw[1]), blend))
    return window.astype(np.float32)


def extract_tile(image: np.ndarray, y: int, x: int, tile_hw: HW) -> np.ndarray:
    """The tile at (y, x), reflect-padded where the image is smaller than the tile."""
    tile = image[y : y + tile_hw[0], x : x + tile_hw[1]]
    return pad_to(tile, *tile_hw)


class SeamAccumulator:
    """Blended logit sums of a slide pass, fed tile by tile in row-major order, in bounded memory.

    It holds one tile-sized window of the current tile row (the window starts at the latest tile) and the seam:
    the sums of the rows the next tile row overlaps, for the full width. Columns left of the latest tile are
    final for the row: their rows above the next tile row go to the sink, the rest into the seam.
    """

    def __init__(self, num_classes: int, plan: TilePlan, window: np.ndarray) -> None:
        tile_h, tile_w = plan.tile_hw
        self.plan = plan
        self.window = window
        self.ones = bool(np.all(window == 1.0))  # plain averaging: the logits need no multiply (a uniform window of
        # another value, as 'hann' is on a 2×2 tile, still must: the sums are divided by the summed weights)
        self.rows = {y: index for index, y in enumerate(plan.ys)}
        seam, canvas_w = plan.seam_rows(), plan.canvas_hw[1]
        self.seam_scores = np.zeros((num_classes, seam, canvas_w), np.float32)
        self.seam_weights = np.zeros((seam, canvas_w), np.float32)
        self.scores = np.zeros((num_classes, tile_h, tile_w), np.float32)
        self.weights = np.zeros((tile_h, tile_w), np.float32)
        self.row = -1  # index of the current tile row
        self.left = 0  # image column at window column 0
        self.loaded = 0  # window columns [left, loaded) hold this row's sums
        self.carried = 0  # rows at the top of the current tile row that the seam holds sums for

    @property
    def nbytes(self) -> int:
        """Bytes of the sums held (the window and the seam)."""
        return sum(a.nbytes for a in (self.seam_scores, self.seam_weights, self.scores, self.weights))

    def add(self, y: int, x: int, logits: np.ndarray, sink: BlockSink) -> None:
        """Add one tile's C×h×w logits at (y, x) (tiles in row-major order); ``logits`` may be overwritten."""
        row = self.rows.get(y)
        if row is None or row < self.row or (row == self.row and x <= self.left):  # left: the latest tile
            raise ValueError(f"tile ({y}, {x}) is not on the plan or out of row-major order")
        if row != self.row:
            self.finish(sink)
            self.row, self.left, self.loaded = row, 0, 0
        self._release(x, sink)
        self._load(x + self.plan.tile_hw[1])
        if not self.ones:
            np.multiply(logits, self.window, out=logits)
        np.add(self.scores, logits, out=self.scores)
        self.weights += self.window

    def finish(self, sink: BlockSink) -> None:
        """Release every column of the current tile row and carry its overlap with the next row."""
        if self.row < 0:
            return
        self._release(self.loaded, sink)
        ys, tile_h = self.plan.ys, self.plan.tile_hw[0]
        self.carried = ys[self.row] + tile_h - ys[self.row + 1] if self.row + 1 < len(ys) else 0

    def _release(self, stop: int, sink: BlockSink) -> None:
        """Columns [left, stop) are final for this row: rows above the next tile row to ``sink``, the rest to the
        seam."""
        count = min(stop, self.loaded) - self.left
        if count <= 0:
            return
        ys, (tile_h, tile_w), (height, width) = self.plan.ys, self.plan.tile_hw, self.plan.image_hw
        top = ys[self.row]
        final = ys[self.row + 1] - top if self.row + 1 < len(ys) else tile_h
        rows, cols = min(final, height - top), min(self.left + count, width) - self.left
        if rows > 0 and cols > 0:
            sink(top, self.left, self.scores[:, :rows, :cols], self.weights[:rows, :cols])
        if final < tile_h:
            columns = slice(self.left, self.left + count)
            self.seam_scores[:, : tile_h - final, columns] = self.scores[:, final:, :count]
            self.seam_weights[: tile_h - final, columns] = self.weights[final:, :count]
        for plane in (*self.scores, self.weights):  # per plane: a shift never copies the whole window at once
            plane[:, : tile_w - count] = plane[:, count:]
            plane[:, tile_w - count :] = 0.0
        self.left += count

    def _load(self, end: int) -> None:
        """Extend the window to image column ``end``, starting those columns from the sums carried in the seam."""
        if end <= self.loaded:
            return
        start, carried = self.loaded, self.carried
        if carried:
            self.scores[:, :carried, start - self.left : end - self.left] = self.seam_scores[:, :carried, start:end]
            self.weights[:carried, start - self.left : end - self.left] = self.seam_weights[:carried, start:end]
        self.loaded = end


def stitch_bytes(plan: TilePlan, num_classes: int, labels_only: bool = False) -> int:
    """Bytes a slide pass holds for blending, beyond the image and the labels (see the module's memory bound).

    ``labels_only``: as ``slide_labels`` stitches (``LabelStitcher`` where tiles overlap only their neighbours).
    """
    tile_h, tile_w = plan.tile_hw
    if labels_only and neighbours_only(plan):
        seam_columns = max((a + tile_w - b for a, b in zip(plan.xs, plan.xs[1:])), default=0)
        return 4 * num_classes * (plan.seam_rows() * plan.canvas_hw[1] + tile_h * seam_columns)
    return 4 * (num_classes + 1) * (plan.seam_rows() * plan.canvas_hw[1] + tile_h * tile_w)


def argmax_classes(scores: np.ndarray, out: np.ndarray) -> None:
    """Per-pixel index of the largest of C×rows×W scores into ``out`` (first wins on ties), without a C-sized copy."""
    best = scores[0].copy()
    better = np.empty(best.shape, bool)
    out[...] = 0
    for index in range(1, scores.shape[0]):
        np.greater(scores[index], best, out=better)
        np.copyto(out, index, where=better)  # masked copy: 1.1-1.2x faster than out[better] = index (21 classes)
        np.maximum(best, scores[index], out=best)


def label_sink(labels: np.ndarray) -> BlockSink:
    """A sink writing the argmax of finished blocks into ``labels`` (H×W uint8)."""

    def sink(row: int, col: int, scores: np.ndarray, weights: np.ndarray) -> None:
        argmax_classes(scores, labels[row : row + scores.shape[1], col : col + scores.shape[2]])

    return sink


def _checked_logits(logits: np.ndarray, expected: tuple[int, ...]) -> np.ndarray:
    """``logits`` unchanged if the runner kept its contract (N×C×h×w for N tiles of h×w), else ValueError."""
    if logits.shape != expected:
        raise ValueError(f"the model returned logits of shape {logits.shape}, expected {expected}")
    return logits


def slide(
    image: np.ndarray,
    plan: TilePlan,
    run: TileRunner,
    num_classes: int,
    blend: str,
    sink: BlockSink,
) -> None:
    """Run every tile of ``plan`` through ``run`` and stream finished blocks of blended sums into ``sink``.

    Every image pixel is in exactly one block; blocks come in row-major order of their tile rows.
    """
    if image.shape[:2] != plan.image_hw:
        raise ValueError(f"image is {image.shape[:2]}, the plan is for {plan.image_hw}")
    stitch = SeamAccumulator(num_classes, plan, blend_window(plan.tile_hw, blend))
    for tiles in plan.batches():
        _run_batch(image, plan, tiles, run, num_classes, lambda y, x, logits: stitch.add(y, x, logits, sink))
    stitch.finish(sink)


def _run_batch(image: np.ndarray, plan: TilePlan, tiles: list[tuple[int, int]], run: TileRunner, num_classes: int,
               add: Callable[[int, int, np.ndarray], None]) -> None:
    """Run one batch of tiles and ``add`` each tile's logits at its (y, x).

    A function of its own so that the batch's logits are freed on return: a loop holding them while the next
    batch runs would keep two batches of logits alive (84 MiB more for one 1024×1024 tile of 21 classes).
    """
    batch = np.stack([extract_tile(image, y, x, plan.tile_hw) for y, x in tiles])
    logits = _checked_logits(run(batch), (len(tiles), num_classes, *plan.tile_hw))
    del batch
    for (y, x), tile_logits in zip(tiles, logits):
        add(y, x, tile_logits)


def resumed_plan(plan: TilePlan, row: int) -> TilePlan:
    """The tile rows a run that has the labels above image ``row`` must run again: from the first tile row that
    reaches into the tile row whose final rows hold ``row``. Every label from that tile row's top on then comes out
    exactly as in an uninterrupted run (the sums start from the same tiles, in the same order); rows above it are
    recomputed from fewer tiles and must be dropped. It starts on a batch boundary of the whole plan, so every tile
    runs in the same batch as before (a runtime's results may depend on the batch it is in)."""
    if row <= 0:
        return plan
    holding = max(index for index, y in enumerate(plan.ys) if y <= row)
    first = min(index for index, y in enumerate(plan.ys) if y + plan.tile_hw[0] > plan.ys[holding])
    while first * len(plan.xs) % plan.batch:
        first -= 1
    return replace(plan, ys=plan.ys[first:])


def tile_windows(plan: TilePlan) -> list[tuple[slice, slice]]:
    """The image windows a slide pass reads, in the order it reads them."""
    tile_h, tile_w = plan.tile_hw
    return [(slice(y, y + tile_h), slice(x, x + tile_w)) for tiles in plan.batches() for y, x in tiles]


def neighbours_only(plan: TilePlan) -> bool:
    """True when every tile overlaps only its direct neighbours on both axes (overlap at most half a tile)."""
    return all(b >= a + plan.tile_hw[0] for a, b in zip(plan.ys, plan.ys[2:])) and all(
        b >= a + plan.tile_hw[1] for a, b in zip(plan.xs, plan.xs[2:])
    )


class LabelStitcher:
    """Blends tiles added in row-major order and writes each block into ``labels`` as soon as no later tile
    touches it. Only the open overlaps are held: the rows the next tile row shares (full width) and the columns
    the next tile shares. Needs ``neighbours_only(plan)``. The argmax of the weighted sums is the argmax of the
    blended logits (the weights are positive per pixel), so no weight sums are kept."""

    def __init__(self, plan: TilePlan, num_classes: int, window: np.ndarray, labels: np.ndarray) -> None:
        if not neighbours_only(plan):
            raise ValueError("tiles overlap beyond their neighbours; use the band accumulator (slide)")
        self.plan, self.num_classes, self.window, self.labels = plan, num_classes, window, labels
        self.uniform = bool(np.all(window == window.flat[0]))  # scales every sum alike: the argmax needs no multiply
        self.rows = {y: r for r, y in enumerate(plan.ys)}
        self.columns = {x: i for i, x in enumerate(plan.xs)}
        # C×seam rows×canvas width: the previous tile row's share of this row. One buffer serves both rows: each
        # tile reads its columns before it writes the columns left of the next tile, which no later read needs.
        # With windowed labels (an image never whole in memory) a wide strip goes to a file, so that nothing held
        # grows with the image's width but the labels' band.
        shape = (num_classes, plan.seam_rows(), plan.canvas_hw[1])
        spill = not isinstance(labels, np.ndarray) and 4 * int(np.prod(shape)) > SPILL_STRIP_BYTES
        self.strip = SpilledStrip(shape) if spill else np.empty(shape, np.float32)
        self.carry: np.ndarray | None = None  # C×tile height×columns: the previous tile's share of this tile

    def add(self, y: int, x: int, logits: np.ndarray) -> None:
        """Add one tile's C×h×w logits at (y, x) (the next in row-major order); ``logits`` may be overwritten."""
        plan, (tile_h, tile_w) = self.plan, self.plan.tile_hw
        row, column = self.rows[y], self.columns[x]
        last_row, last_column = row + 1 == len(plan.ys), column + 1 == len(plan.xs)
        if not self.uniform:
            np.multiply(logits, self.window, out=logits)
        left = plan.xs[column - 1] + tile_w - x if column > 0 else 0  # columns the previous tile shares
        if left > 0:
            logits[:, :, :left] += self.carry
        if row > 0:  # rows the previous tile row shares; the carried columns already hold them
            top = plan.ys[row - 1] + tile_h - y
            if top > 0:
                logits[:, :top, left:] += self.strip[:, :top, x + left : x + tile_w]
        stop_y = tile_h if last_row else plan.ys[row + 1] - y  # rows no later tile touches
        stop_x = tile_w if last_column else plan.xs[column + 1] - x
        rows = min(stop_y, plan.image_hw[0] - y)
        cols = min(stop_x, plan.image_hw[1] - x)
        if rows > 0 and cols > 0:
            argmax_classes(logits[:, :rows, :cols], self.labels[y : y + rows, x : x + cols])
        self.carry = None if last_column else logits[:, :, stop_x:].copy()
        if not last_row and stop_y < tile_h:
            self.strip[:, : tile_h - stop_y, x : x + stop_x] = logits[:, stop_y:, :stop_x]


class SpilledStrip:
    """A C×rows×W float32 strip kept in an unnamed temporary file, column-major, so that a column range reads and
    writes as one contiguous block: ``strip[:, :rows, a:b]`` reads, ``strip[:, :rows, a:b] = values`` writes.
    What it holds never counts in the process's memory (the page cache keeps it, and may drop it to disk)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape
        self._file = tempfile.TemporaryFile(prefix="fcn-seam-")
        self._column = shape[0] * shape[1] * 4  # bytes of one column: C×rows floats

    def _columns(self, key: tuple[slice, slice, slice]) -> tuple[int | None, int, int]:
        _, rows, cols = key
        return rows.stop, cols.start, cols.stop  # rows: the first ``rows.stop`` (None: all)

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        rows, start, stop = self._columns(key)
        block = np.zeros((stop - start, self.shape[0], self.shape[1]), np.float32)
        os.preadv(self._file.fileno(), [memoryview(block).cast("B")], start * self._column)
        return block.transpose(1, 2, 0)[:, :rows]

    def __setitem__(self, key: tuple[slice, slice, slice], values: np.ndarray) -> None:
        rows, start, stop = self._columns(key)
        block = np.zeros((stop - start, self.shape[0], self.shape[1]), np.float32)
        block.transpose(1, 2, 0)[:, :rows] = values
        os.pwritev(self._file.fileno(), [memoryview(block).cast("B")], start * self._column)


def stitch_labels(image: np.ndarray, plan: TilePlan, run: TileRunner, num_classes: int, blend: str,
                  labels: np.ndarray | None = None) -> np.ndarray:
    """H×W uint8 labels by tiled inference, holding only the open overlaps (needs ``neighbours_only(plan)``).

    ``image`` may be any array-like with ``shape`` and 2-D slicing, and ``labels`` anything whose 2-D slices are
    writable uint8 views (blocks come in row-major order of tile rows): then neither is ever whole in memory.
    """
    height, width = plan.image_hw
    if image.shape[:2] != (height, width):
        raise ValueError(f"image is {image.shape[:2]}, the plan is for {plan.image_hw}")
    labels = np.empty(plan.image_hw, np.uint8) if labels is None else labels
    stitcher = LabelStitcher(plan, num_classes, blend_window(plan.tile_hw, blend), labels)
    for tiles in plan.batches():
        _run_batch(image, plan, tiles, run, num_classes, stitcher.add)
    return labels


def slide_labels(
    image: np.ndarray, plan: TilePlan, run: TileRunner, num_classes: int, blend: str,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """H×W uint8 labels of ``image`` by tiled inference (``num_classes`` at most 256).

    Overlaps up to half a tile stitch with ``LabelStitcher`` (memory of the overlaps only); larger ones blend in
    the band accumulator. ``image`` and ``labels`` may be windowed stand-ins, as for ``stitch_labels``.
    """
    if neighbours_only(plan):
        return stitch_labels(image, plan, run, num_classes, blend, labels)
    labels = np.empty(plan.image_hw, np.uint8) if labels is None else labels
    slide(image, plan, run, num_classes, blend, label_sink(labels))
    return labels


def whole_size(image_hw: Sequence[int], alignment: int, min_hw: Sequence[int] = (1, 1)) -> HW:
    """The padded size whole mode runs: at least ``min_hw``, rounded up to ``alignment``."""
    return (
        align_up(max(int(image_hw[0]), int(min_hw[0])), alignment),
        align_up(max(int(image_hw[1]), int(min_hw[1])), alignment),
    )


def whole_labels(image: np.ndarray, padded_hw: HW, run: TileRunner, num_classes: int) -> np.ndarray:
    """H×W uint8 labels from one pass over ``image`` reflect-padded to ``padded_hw``."""
    height, width = image.shape[:2]
    logits = _checked_logits(run(pad_to(image, *padded_hw)[None]), (1, num_classes, *padded_hw))
    labels = np.empty((height, width), np.uint8)
    argmax_classes(logits[0, :, :height, :width], labels)
    return labels
