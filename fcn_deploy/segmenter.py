"""Full-image segmentation over any backend: whole-image passes when the model accepts the size, tiles otherwise.

This is the stable library entry point (the C API calls it too)::

    from fcn_deploy.segmenter import SegmenterConfig, open_segmenter

    with open_segmenter("export/fcn.onnx", device="cpu") as segmenter:
        labels = segmenter.segment_labels(rgb)  # H×W×3 uint8 RGB -> H×W uint8 class indices

A Segmenter is not thread-safe: run one ``segment`` call at a time per instance.

Memory: ``segment`` holds the caller's uint8 image (not copied), the uint8 labels it returns, and beyond them
only bounded working memory. Whole mode runs only images inside the model's shape range (at most its ``max``
size, so its padded copy and logits are bounded by the model, not by the image). Slide mode holds one batch of
tiles and their logits, one tile-sized window of blended sums and the seam between tile rows (see
``fcn_deploy.tiling``: classes × seam rows × width floats, about a third of a 320-row band): never a second
copy of the image nor an image-sized float array. ``fcn_deploy.imageio.read_image`` decodes into the one
uint8 array (Pillow's own decoded image, 4 bytes a pixel, exists only while reading).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from fcn_deploy.data.transforms import align_up
from fcn_deploy.devices import Device
from fcn_deploy.errors import ArtifactError, InputError
from fcn_deploy.runtime import Backend, BackendChoice, open_backend
from fcn_deploy.spec import ModelSpec, is_int
from fcn_deploy.tiling import (
    BLENDS,
    TilePlan,
    fitted_tile,
    pad_to,
    plan_tiles_px,
    slide_labels,
    whole_labels,
    whole_size,
)

Mode = Literal["auto", "whole", "slide"]
Blend = Literal["hann", "gaussian", "mean"]
MODES: tuple[str, ...] = ("auto", "whole", "slide")
MAX_OVERLAP = 0.9
WHOLE_COPY_ROWS = 64  # rows per block when whole-mode labels go to a windowed writer
DEFAULT_BATCH = 4
#: context a default tile overlap gives each side of a tile seam, in output-stride cells (alignment pixels each):
#: an FCN output pixel reads 2×2 cells of the stride-32 features (the upsampler), whose last 3×3 convolutions
#: read one cell further; three cells held slide-vs-whole agreement above 99.5% on the VOC samples
CONTEXT_CELLS = 3


@dataclass(frozen=True)
class SegmenterConfig:
    """How to cover an image: the mode, the tile size and overlap, tiles per batch and the blend window.

    ``tile=None`` chooses tiles from the model for each image (``fitted_tile``: the fewest tiles of at most the
    shape range's largest size, each as small as still covers); setting a tile forces slide mode.
    ``overlap=None`` overlaps tiles by the context the model needs (``context_pixels``); a number is a fraction
    of the tile. ``batch=None`` means up to 4 tiles per call, capped at the model's maximum batch and at the
    pixels of its largest whole-image pass.
    """

    mode: Mode = "auto"
    tile: tuple[int, int] | None = None
    overlap: float | None = None
    batch: int | None = None
    blend: Blend = "hann"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}", f"use one of: {', '.join(MODES)}")
        if self.blend not in BLENDS:
            raise InputError(f"unknown blend {self.blend!r}", f"use one of: {', '.join(BLENDS)}")
        if self.overlap is not None and (not isinstance(self.overlap, (int, float)) or isinstance(self.overlap, bool)
                                         or not 0.0 <= self.overlap <= MAX_OVERLAP):
            raise InputError(f"overlap must be between 0 and {MAX_OVERLAP}, got {self.overlap}",
                             "use a fraction of the tile size, e.g. 0.25")
        if self.batch is not None:
            if not is_int(self.batch) or self.batch < 1:
                raise InputError(f"batch must be a positive integer, got {self.batch}",
                                 "use a batch of 1 or more tiles per model call (default 4)")
            object.__setattr__(self, "batch", int(self.batch))
        if self.tile is not None:
            if len(self.tile) != 2 or any(not is_int(v) or v < 1 for v in self.tile):
                raise InputError(f"tile must be two positive integers (height, width), got {self.tile}",
                                 "use multiples of 32, e.g. 320x480")
            object.__setattr__(self, "tile", (int(self.tile[0]), int(self.tile[1])))
            if self.mode == "whole":
                raise InputError("a tile size was given with mode 'whole'", "drop the tile size, or use mode 'slide'")


@dataclass(frozen=True)
class SegmentResult:
    """Labels of one image and how they were computed."""

    labels: np.ndarray  # H×W uint8 class indices
    mode: str  # 'whole' or 'slide'
    tiles: int  # backend passes over image regions (1 in whole mode)
    input_hw: tuple[int, int]  # padded size (whole) or tile size (slide) fed to the model
    seconds: float


class Segmenter:
    """Segments uint8 RGB images of any size with one backend, honouring the backend's spec."""

    def __init__(self, backend: Backend, config: SegmenterConfig = SegmenterConfig()) -> None:
        self.backend = backend
        self.config = config
        self.spec: ModelSpec = backend.spec
        if self.spec.num_classes > 256:
            raise ArtifactError(f"{self.spec.num_classes} classes do not fit uint8 labels (at most 256)")
        self.batch = _checked_batch(config.batch, self.spec)
        self.tile = _checked_tile(config.tile, self.spec)
        if config.mode != "whole" and config.overlap is not None:  # default tiles are at most the largest size
            _check_step(self.tile or tuple(self.spec.shape_range.max[1:]), config.overlap, self.spec.alignment)

    # --- public API ----------------------------------------------------------------------------

    def segment(self, image: np.ndarray) -> SegmentResult:
        """Segment an H×W×3 uint8 RGB image; returns H×W uint8 labels, the mode used and the tile count."""
        image = _checked_image(image)
        started = time.perf_counter()
        height, width = image.shape[:2]
        padded = whole_size((height, width), self.spec.alignment, self.spec.shape_range.min[1:])
        mode = self.mode_for((height, width))
        if mode == "whole":
            if self.backend.has_labels:  # the argmax runs in the graph: no logits copied out
                labels = np.ascontiguousarray(self._run_labels(pad_to(image, *padded)[None])[0, :height, :width])
            else:
                labels = whole_labels(image, padded, self._run, self.spec.num_classes)
            return SegmentResult(labels, "whole", 1, padded, time.perf_counter() - started)
        plan = self.plan((height, width))
        labels = slide_labels(image, plan, self._run, self.spec.num_classes, self.config.blend)
        return SegmentResult(labels, "slide", plan.count, plan.tile_hw, time.perf_counter() - started)

    def mode_for(self, image_hw: tuple[int, int]) -> str:
        """'whole' or 'slide': the mode ``segment`` uses for an image of ``image_hw`` (InputError if none fits)."""
        height, width = image_hw
        padded = whole_size((height, width), self.spec.alignment, self.spec.shape_range.min[1:])
        fits = self.spec.shape_range.contains_hw(*padded)
        mode = self.config.mode
        if mode == "auto":
            mode = "whole" if fits and self.config.tile is None else "slide"
        if mode == "whole" and not fits:
            raise InputError(
                f"a {height}x{width} image (padded to {padded[0]}x{padded[1]}) is outside the model's "
                f"size range {self.spec.shape_range.min[1:]} .. {self.spec.shape_range.max[1:]} for whole mode",
                "use mode 'auto' or 'slide' (tiled inference)",
            )
        return mode

    def segment_into(self, image: Any, labels: Any, plan: TilePlan | None = None) -> SegmentResult:
        """Segment a windowed H×W×3 uint8 image (``shape`` and 2-D slicing, e.g. ``tiffio.TiffWindows``) into
        ``labels`` (2-D slices are writable uint8 views, e.g. ``tiffio.LabelTiffWriter``), block by block.

        The same mode, tile plan and stitching as ``segment``, so the labels are identical; slide mode never holds
        the whole image or labels (whole mode reads the image at once: it is no larger than the model's input).
        ``plan``: slide mode's plan, or the part of it a resumed run replays (``tiling.resumed_plan``).
        The result's ``labels`` is a zero-size-in-memory placeholder of the image's shape.
        """
        started = time.perf_counter()
        height, width = image.shape[:2]
        if self.mode_for((height, width)) == "whole":
            result = self.segment(image[0:height, 0:width])
            for top in range(0, height, WHOLE_COPY_ROWS):
                bottom = min(height, top + WHOLE_COPY_ROWS)
                labels[top:bottom, 0:width][...] = result.labels[top:bottom]
            return replace(result, labels=np.broadcast_to(np.uint8(0), (height, width)))
        plan = plan if plan is not None else self.plan((height, width))
        slide_labels(image, plan, self._run, self.spec.num_classes, self.config.blend, labels)
        return SegmentResult(np.broadcast_to(np.uint8(0), (height, width)), "slide", plan.count, plan.tile_hw,
                             time.perf_counter() - started)

    def segment_labels(self, image: np.ndarray) -> np.ndarray:
        """Only the H×W uint8 labels of ``segment``."""
        return self.segment(image).labels

    def plan(self, image_hw: tuple[int, int]) -> TilePlan:
        """The tile layout slide mode uses for an image of ``image_hw``."""
        spec, align = self.spec, self.spec.alignment
        if self.tile is not None:
            tile = self.tile
            overlap = tuple(_overlap_px(side, self.config.overlap, spec) for side in tile)
        else:  # per axis: the overlap for the largest tile, then the fewest, smallest tiles that cover with it
            largest, smallest = spec.shape_range.max[1:], spec.shape_range.min[1:]
            overlap = tuple(_overlap_px(side, self.config.overlap, spec) for side in largest)
            tile = tuple(fitted_tile(length, over, big, small, align)
                         for length, over, big, small in zip(image_hw, overlap, largest, smallest))
            overlap = tuple(min(over, side - align) for over, side in zip(overlap, tile))
        batch = self.batch if self.config.batch is not None else _pixel_capped_batch(self.batch, tile, spec)
        return plan_tiles_px(image_hw, tile, overlap, batch, align)

    def close(self) -> None:
        """Close the backend."""
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------

    def _run(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 N×h×w×3 tiles -> float32 N×C×h×w logits, padding the batch up to the model's minimum."""
        count, batch = tiles.shape[0], self._min_batch(tiles)
        logits = self.backend.infer(self.spec.to_model_input(batch))
        _check_output("logits", logits.shape, (batch.shape[0], self.spec.num_classes, *batch.shape[1:3]))
        return logits[:count]

    def _run_labels(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 N×h×w×3 tiles -> the model's own uint8 N×h×w labels (backends with ``has_labels``)."""
        count, batch = tiles.shape[0], self._min_batch(tiles)
        labels = self.backend.infer_labels(self.spec.to_model_input(batch))
        _check_output("labels", labels.shape, (batch.shape[0], *batch.shape[1:3]))
        return labels[:count]

    def _min_batch(self, tiles: np.ndarray) -> np.ndarray:
        """``tiles`` padded with copies of the last one up to the model's minimum batch."""
        min_batch = self.spec.shape_range.min[0]
        if tiles.shape[0] >= min_batch:
            return tiles
        return np.concatenate([tiles, np.repeat(tiles[-1:], min_batch - tiles.shape[0], axis=0)])


@contextlib.contextmanager
def open_segmenter(
    model_path: str | os.PathLike[str],
    device: Device = "auto",
    config: SegmenterConfig = SegmenterConfig(),
    choice: BackendChoice = BackendChoice(),
    *,
    threads: int = 0,
) -> Iterator[Segmenter]:
    """Open a checkpoint, ONNX file or TensorRT engine (with the chosen runtime) as a Segmenter; closed on exit.

    ``threads`` caps the CPU threads of one inference (0: the runtime's default).
    """
    with open_backend(model_path, device, choice, threads=threads) as backend:
        yield Segmenter(backend, config)


# --- validation ----------------------------------------------------------------------------------


def _checked_batch(batch: int | None, spec: ModelSpec) -> int:
    """The tiles per call: the user's value if the model accepts it, else the default capped by the model."""
    max_batch = spec.shape_range.max[0]
    if batch is None:
        return min(DEFAULT_BATCH, max_batch)
    if batch > max_batch:
        raise InputError(f"batch {batch} exceeds the model's maximum batch of {max_batch}",
                         f"use a batch of at most {max_batch}")
    return batch


def context_pixels(spec: ModelSpec) -> int:
    """The overlap (pixels, on the model's grid) that gives every tile seam the context the model needs."""
    return CONTEXT_CELLS * spec.alignment


def _overlap_px(side: int, overlap: float | None, spec: ModelSpec) -> int:
    """Overlap in pixels on a tile side: the fraction given, or the model's context capped at half the side (on
    the grid), so that tiles overlap only their neighbours."""
    if overlap is not None:
        return int(round(side * overlap))
    half = side // 2 // spec.alignment * spec.alignment
    return min(context_pixels(spec), half)


def _pixel_capped_batch(batch: int, tile: tuple[int, ...], spec: ModelSpec) -> int:
    """The default batch, capped so one call holds no more pixels than the model's largest whole-image pass."""
    largest = spec.shape_range.max[1] * spec.shape_range.max[2]
    return max(spec.shape_range.min[0], min(batch, largest // (tile[0] * tile[1])))


def _checked_tile(tile: tuple[int, int] | None, spec: ModelSpec) -> tuple[int, int] | None:
    """The user's slide tile size, checked against alignment and range (None: chosen per image from the model)."""
    align, shapes = spec.alignment, spec.shape_range
    if tile is None:
        return None
    height, width = tile
    if height % align or width % align:
        raise InputError(f"tile {height}x{width} is not a multiple of the model's alignment {align}",
                         f"use e.g. {align_up(height, align)}x{align_up(width, align)}")
    if not shapes.contains_hw(height, width):
        raise InputError(
            f"tile {height}x{width} is outside the model's size range "
            f"{shapes.min[1]}x{shapes.min[2]} .. {shapes.max[1]}x{shapes.max[2]}",
            f"use a tile inside that range, e.g. the preferred {shapes.opt[1]}x{shapes.opt[2]}",
        )
    return height, width


def _check_output(name: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """ArtifactError when the model's ``name`` output does not have the shape its spec promises."""
    if tuple(shape) != tuple(expected):
        raise ArtifactError(f"the model returned {name} of shape {tuple(shape)}, expected {tuple(expected)}",
                            "re-export the model; its graph does not match its spec")


def _check_step(tile: tuple[int, int], overlap: float, alignment: int) -> None:
    """Tiles start on the model's ``alignment`` grid, so the step between them must be at least one grid cell."""
    for side in tile:
        step = side - int(round(side * overlap))
        if step < alignment:
            most = 1.0 - alignment / side
            raise InputError(
                f"overlap {overlap} on a {tile[0]}x{tile[1]} tile steps {step} pixels, less than the model's "
                f"{alignment}-pixel grid that tiles are placed on",
                f"use an overlap of at most {most:.2f}, or a larger tile",
            )


def _checked_image(image: np.ndarray) -> np.ndarray:
    """Reject anything but a non-empty H×W×3 uint8 array."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise InputError(f"image must be H×W×3 uint8 RGB, got {image.dtype} {image.shape}",
                         "read images with fcn_deploy.imageio.read_image")
    return image
