"""Windowed reading and streaming, resumable label writing of tiled TIFF, BigTIFF, GeoTIFF and OME-TIFF images.

``TiffWindows`` reads any window of one pyramid level through tifffile's Zarr store, which decodes only the TIFF
tiles (or strips) the window touches (JPEG, Deflate, LZW, ZSTD, ... through imagecodecs); ``PrefetchedWindows``
decodes the windows a tile plan will ask for ahead, on their own thread. ``LabelTiffWriter`` takes label blocks in
row-major order of tile rows, compresses full bands of TIFF tiles on its own thread into a spool beside the output
with a progress record after each band (``ResumeState``: a killed run resumes from there), and at the end
assembles a tiled, Deflate-compressed BigTIFF (palette photometric, the VOC colours; optional overview levels)
under a temporary name renamed when complete; the input's GeoTIFF tags or OME physical pixel size are carried over.

Memory bound (what the windowed path holds beyond the constant of the model's pass, for an image W pixels wide,
independent of its height): ``2 × batch`` prefetched windows (3 bytes a tile pixel); the label band,
(tile height + 256) × W bytes, plus ``BANDS_IN_FLIGHT`` 256 × W copy the encoder compresses; 8 bytes a 256² label
tile in the progress record; the stitcher's tile-sized overlaps. The one term that grew with the width, the
stitcher's strip of classes × seam rows × W floats (330 MiB at W = 40000 for 21 classes), is kept in a temporary
file (``tiling.SpilledStrip``), outside the process's memory. The label terms come to (tile height + 2 × 256) × W
bytes: 15 MiB at W = 10000, 59 MiB at W = 40000, so a 40000² peak is the 10000² one (about 490 MiB measured,
mostly ONNX Runtime's 1024² FCN-32s pass) plus about 44 MiB: under 1 GiB and within 10% of it
(``benchmarks/tiling_memory.py --sizes 10000,40000 --cases tiff``, figures in docs/memory.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from xml.etree import ElementTree

import numpy as np

from fcn_deploy.deps import require
from fcn_deploy.errors import FcnDeployError, InputError, MissingComponentError
from fcn_deploy.fileio import atomic_path, write_text_atomic
from fcn_deploy.imageio import open_regular_file
from fcn_deploy.palette import VOC_PNG_PALETTE

TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
TIFF_HINT = "pip install 'fcn-deploy[tiff]' (tifffile with imagecodecs decodes JPEG, Deflate, LZW, ZSTD, ... tiles)"
LABEL_TILE = 256  # side of the output's TIFF tiles
ABORT_WAIT_S = 10.0  # how long an aborted label write or window read may take to stop before it is left
# copies of finished 256-row label bands alive at once (the one the encoder thread compresses): the next band is
# copied only when that one is done, so a width's worth of labels is not held three times over
BANDS_IN_FLIGHT = 1
DEFLATE_LEVEL = 6  # zlib level of the label tiles
RESUME_SUFFIX = ".resume"  # .NAME.resume: the folder of an unfinished label write (not a temporary: it is kept)
SPOOL_NAME = "tiles.bin"  # the compressed label tiles written so far, row-major
RECORD_NAME = "progress.json"  # rows done, the tiles' sizes and the identity they were made with
RECORD_VERSION = 1

#: GeoTIFF and GDAL tags copied from the input to the labels: pixel scale, tie points, transformation, GeoKeys and
#: their double and ASCII parameters, GDAL's metadata and no-data value
GEO_TAGS: tuple[int, ...] = (33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)
_SCALED_BY_LEVEL = 33550  # ModelPixelScaleTag: a coarser pyramid level has proportionally larger pixels


def is_tiff_path(path: str | os.PathLike[str]) -> bool:
    """True for a .tif/.tiff file name (read window by window)."""
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def _tifffile() -> ModuleType:
    return require("tifffile")


class TiffWindows:
    """One pyramid level of a TIFF as an H×W×3 uint8 RGB array-like: ``shape`` and ``window[y0:y1, x0:x1]``."""

    def __init__(self, path: str | os.PathLike[str], level: int = 0) -> None:
        tifffile = _tifffile()
        require("zarr")
        import zarr

        self.path = Path(path)
        try:  # a regular file only: a pipe named .tif never blocks the run
            self._handle = open_regular_file(self.path)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read the file ({exc.strerror or exc})") from exc
        try:
            self._file = tifffile.TiffFile(self._handle, name=self.path.name)
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            self._handle.close()
            raise InputError(f"{self.path}: not a readable TIFF ({exc})") from exc
        try:
            series = self._file.series[0]
            levels = len(series.levels)
            if not 0 <= level < levels:
                raise InputError(f"{self.path}: --level {level} does not exist",
                                 f"this file has {levels} pyramid level(s): choose 0 to {levels - 1}")
            self.level = level
            self.levels = levels
            chosen = series.levels[level]
            self.axes = chosen.axes
            self._page = chosen.keyframe
            self.base_hw = tuple(int(n) for n in _yx_shape(series.levels[0].shape, series.levels[0].axes))
            self._array = zarr.open(self._file.aszarr(series=0, level=level), mode="r")
            height, width = _yx_shape(self._array.shape, self.axes)
            self.shape = (int(height), int(width), 3)
            self._check_pixels()
            self[0:1, 0:1]  # the first window: an undecodable compression is reported before any work
        except BaseException:
            self.close()
            raise

    def _check_pixels(self) -> None:
        """Refuse layouts other than one gray, RGB or RGBA plane of uint8/uint16 samples."""
        dtype = np.dtype(self._array.dtype)
        if self.axes not in ("YX", "YXS", "SYX", "CYX") or dtype not in (np.uint8, np.uint16):
            raise InputError(f"{self.path}: {dtype} pixels with axes {self.axes} are not a gray or RGB image",
                             "convert it to an 8- or 16-bit gray or RGB TIFF")

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        """The h×w×3 uint8 RGB window ``key`` (two slices), decoded from the tiles it touches."""
        rows, cols = key
        index = (slice(None), rows, cols) if self.axes in ("SYX", "CYX") else (rows, cols)
        try:
            window = np.asarray(self._array[index])
        except MemoryError:
            raise
        except Exception as exc:  # a codec's or Zarr's own error: the file, not the program, is at fault
            raise _decode_error(self.path, self._page, rows, cols, exc) from exc
        if self.axes in ("SYX", "CYX"):
            window = np.moveaxis(window, 0, -1)
        if window.dtype == np.uint16:
            window = (window >> 8).astype(np.uint8)
        if window.ndim == 2:
            return np.repeat(window[:, :, None], 3, axis=2)
        if window.shape[2] == 1:
            return np.repeat(window, 3, axis=2)
        return np.ascontiguousarray(window[:, :, :3])

    def geo_tags(self) -> list[tuple[int, int, int, Any, bool]]:
        """The input's GeoTIFF/GDAL tags as tifffile ``extratags``, the pixel scale adjusted to this level."""
        page = self._file.pages.first
        found = []
        for code in GEO_TAGS:
            tag = page.tags.get(code)
            if tag is None:
                continue
            value = tag.value
            if code == _SCALED_BY_LEVEL and self.level:
                factors = (self.base_hw[1] / self.shape[1], self.base_hw[0] / self.shape[0])
                value = tuple(v * f for v, f in zip(value, factors)) + tuple(value[2:])
            count = len(value) if isinstance(value, (tuple, list)) else tag.count
            if isinstance(value, str):
                value, count = value, len(value.encode()) + 1
            found.append((code, int(tag.dtype), count, value, True))
        return found

    def ome_pixel_size(self) -> dict[str, Any] | None:
        """The OME-XML physical pixel size (``PhysicalSizeX``/``Y`` and their units), scaled to this level; None
        for a file without one."""
        xml = self._file.ome_metadata if self._file.is_ome else None
        if not xml:
            return None
        try:
            pixels = next(e for e in ElementTree.fromstring(xml).iter() if e.tag.rsplit("}", 1)[-1] == "Pixels")
        except (ElementTree.ParseError, StopIteration):
            return None
        found: dict[str, Any] = {}
        for axis, base, level in (("X", self.base_hw[1], self.shape[1]), ("Y", self.base_hw[0], self.shape[0])):
            size = pixels.get(f"PhysicalSize{axis}")
            if size is None:
                continue
            found[f"PhysicalSize{axis}"] = float(size) * base / level
            found[f"PhysicalSize{axis}Unit"] = pixels.get(f"PhysicalSize{axis}Unit", "\u00b5m")
        return found or None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()
        self._handle.close()  # tifffile leaves a handle it was given open

    def __enter__(self) -> TiffWindows:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _yx_shape(shape: tuple[int, ...], axes: str) -> tuple[int, int]:
    return shape[axes.index("Y")], shape[axes.index("X")]


def _decode_error(path: Path, page: Any, rows: slice, cols: slice, exc: Exception) -> FcnDeployError:
    """A decoding failure in words: a compression this installation cannot decode names the extra."""
    compression = getattr(getattr(page, "compression", None), "name", None) or str(getattr(page, "compression", "?"))
    text = f"{type(exc).__name__}: {exc}"
    if any(word in text.lower() for word in ("imagecodecs", "codec", "not supported", "compression", "unknown")):
        return MissingComponentError(f"{path}: cannot decode its {compression} compressed tiles ({text})", TIFF_HINT)
    return InputError(f"{path}: the tiles of rows {rows.start}-{rows.stop}, columns {cols.start}-{cols.stop} are "
                      f"corrupt or truncated ({text})", "re-export or re-download the file")


class PrefetchedWindows:
    """Windows of ``source`` decoded ahead on their own thread, in the order ``keys`` says they will be asked for,
    at most ``depth`` waiting: decoding overlaps inference. The same ``shape`` and slicing as ``source``."""

    def __init__(self, source: Any, keys: list[tuple[slice, slice]], depth: int) -> None:
        self.shape = source.shape
        self._source = source
        self._windows: queue.Queue = queue.Queue(max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._decode, args=(keys,), name="fcn-tiff-read", daemon=True)
        self._thread.start()

    def _decode(self, keys: list[tuple[slice, slice]]) -> None:
        for key in keys:
            try:
                item: tuple[Any, Any] = (key, self._source[key])
            except BaseException as exc:  # travels to the reader of that window
                item = (key, exc)
            while not self._stop.is_set():
                try:
                    self._windows.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or isinstance(item[1], BaseException):
                return

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        while True:
            try:
                planned, window = self._windows.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._windows.empty():
                    raise RuntimeError("the TIFF reader thread ended early") from None
        if isinstance(window, BaseException):
            raise window
        if planned != key:  # a caller's bug: the windows must come in the planned order
            raise ValueError(f"window {key} asked for where {planned} was planned")
        return window

    def close(self) -> None:
        """Stop decoding ahead and wait for the thread, at most ``ABORT_WAIT_S``: a read stuck on a hung disk is
        left to its daemon thread rather than hanging the run that is ending."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._windows.get_nowait()
        self._thread.join(ABORT_WAIT_S)

    def __enter__(self) -> PrefetchedWindows:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class ResumeState:
    """What a killed label write left beside its output: label rows done and the compressed tiles that hold them.

    ``identity`` (the input's and the model's identity, the tile plan: anything that changes the labels) must match
    the record's for its rows to be reused; anything else starts from scratch.
    """

    folder: Path  # .NAME.resume beside the output
    identity: dict[str, Any]
    rows: int = 0  # label rows [0, rows) are in the spool
    tile_bytes: tuple[int, ...] = ()  # compressed size of each spooled tile, row-major

    @property
    def spool(self) -> Path:
        return self.folder / SPOOL_NAME

    @property
    def record(self) -> Path:
        return self.folder / RECORD_NAME


def resume_folder(target: str | os.PathLike[str]) -> Path:
    """The folder beside ``target`` that holds an unfinished label write (a killed run's, until it resumes)."""
    target = Path(target)
    return target.parent / f".{target.name}{RESUME_SUFFIX}"


def load_resume_state(target: str | os.PathLike[str], identity: dict[str, Any], height: int, width: int
                      ) -> ResumeState:
    """The state of an unfinished write of ``target`` (height×width labels) made with the same ``identity``; a fresh
    state otherwise (a record of another input, model or plan, or a damaged one, is discarded)."""
    folder = resume_folder(target)
    try:
        record = json.loads((folder / RECORD_NAME).read_text())
        tile_bytes = tuple(int(n) for n in record["tile_bytes"])
        rows = int(record["rows"])
        if (record.get("version") == RECORD_VERSION and record.get("identity") == identity
                and 0 <= rows <= height and len(tile_bytes) == tile_count(rows, width)
                and (folder / SPOOL_NAME).stat().st_size >= sum(tile_bytes)):
            return ResumeState(folder, identity, rows, tile_bytes)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return ResumeState(folder, identity)


def input_identity(path: str | os.PathLike[str], sample_bytes: int = 1 << 20) -> dict[str, Any]:
    """Size, modification time and a SHA-256 of the first and last MiB of a file: cheap, and changed by any rewrite."""
    path = Path(path)
    info = path.stat()
    digest = hashlib.sha256()
    with open_regular_file(path) as handle:
        digest.update(handle.read(sample_bytes))
        handle.seek(max(0, info.st_size - sample_bytes))
        digest.update(handle.read(sample_bytes))
    return {"path": str(path.resolve()), "size": info.st_size, "mtime_ns": info.st_mtime_ns,
            "sha256_ends": digest.hexdigest()}


class LabelTiffWriter:
    """H×W uint8 labels written as a tiled, compressed, palette BigTIFF while they are produced, resumably.

    ``writer[y0:y1, x0:x1]`` is a writable view for one block (as a label array would give); a block that reaches
    the right edge completes its rows. Completed bands of ``LABEL_TILE`` rows go to an encoder thread, which
    compresses their tiles into a spool file beside the output and, after each band, records the rows done
    (``ResumeState``): a killed run resumes from there. ``close()`` after the last block assembles the TIFF from
    the spool (one sequential copy of compressed tiles, plus the overview levels when asked for) and renames it into
    place; ``abort()`` leaves nothing behind, ``abort(keep_progress=True)`` keeps the spool for a resume.

    ``first_row``: a resumed run replays from this row (the rows the stitching needs); blocks above
    ``state.rows`` are dropped.
    """

    def __init__(self, target: str | os.PathLike[str], height: int, width: int, max_block_rows: int,
                 extratags: list[tuple[int, int, int, Any, bool]] = (), *, state: ResumeState | None = None,
                 first_row: int = 0, overviews: bool = False, ome_pixel_size: dict[str, Any] | None = None,
                 on_rows: Callable[[int], None] | None = None) -> None:
        self._tifffile = _tifffile()
        self.target, self.height, self.width = Path(target), height, width
        self.state = state if state is not None else ResumeState(resume_folder(target), {})
        self.resumable = state is not None
        self.done = self.state.rows  # rows spooled before this run
        if not self.done:  # a fresh start: nothing an earlier run left is reused
            shutil.rmtree(self.state.folder, ignore_errors=True)
        self.state.folder.mkdir(parents=True, exist_ok=True)
        self.base = min(first_row, self.done)  # image row of band row 0
        self.band = np.zeros((max_block_rows + LABEL_TILE + self.done - self.base, width), np.uint8)
        self.complete = self.base  # image rows whose every block has been given out
        self.extratags, self.overviews, self.ome_pixel_size = list(extratags), overviews, ome_pixel_size
        self.on_rows = on_rows
        self._tile_bytes = list(self.state.tile_bytes)
        self._bands: queue.Queue = queue.Queue()  # bounded by the slots: a band is copied only into a free one
        self._slots = threading.Semaphore(BANDS_IN_FLIGHT)
        self._failure: BaseException | None = None
        with open(self.state.spool, "ab") as spool:  # a killed run may have written past its last record
            spool.truncate(sum(self._tile_bytes))
        self._thread = threading.Thread(target=self._encode, name="fcn-tiff-write", daemon=True)
        self._thread.start()

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        self._flush()
        if rows.start < self.base or rows.stop - self.base > self.band.shape[0]:
            raise ValueError(f"rows {rows.start}-{rows.stop} are outside the open band from row {self.base}")
        if cols.stop >= self.width:
            self.complete = max(self.complete, min(rows.stop, self.height))
        return self.band[rows.start - self.base : rows.stop - self.base, cols]

    def _flush(self) -> None:
        """Drop replayed rows a resumed run already has; send every finished band of ``LABEL_TILE`` rows (and the
        last, shorter one) to the encoder."""
        if self.base < self.done <= self.complete:
            self._shift(self.done - self.base)
        while self.base >= self.done and (self.complete - self.base >= LABEL_TILE
                                          or self.complete == self.height > self.base):
            self._send_band()
            self._shift(LABEL_TILE)

    def _shift(self, rows: int) -> None:
        """Move the band up by ``rows``, ``rows`` at a time: no copy of the whole band."""
        kept = self.band.shape[0] - rows
        for start in range(0, kept, rows):
            stop = min(start + rows, kept)
            self.band[start:stop] = self.band[start + rows : stop + rows]
        self.band[kept:] = 0
        self.base += rows

    def _send_band(self) -> None:
        """Hand a copy of the band's first ``LABEL_TILE`` rows to the encoder once it has a free slot (re-raising
        what stopped it, if something did)."""
        while not self._slots.acquire(timeout=0.1):
            if self._failure is not None:
                raise self._failure
            if not self._thread.is_alive():
                raise RuntimeError("the TIFF encoder thread ended early")
        if self._failure is not None:
            raise self._failure
        self._bands.put((self.base, self.band[:LABEL_TILE].copy()))

    def _encode(self) -> None:
        """The encoder thread: compress each band's tiles onto the spool, then record the rows done."""
        try:
            with open(self.state.spool, "ab") as spool:
                while (item := self._bands.get()) is not None:
                    top, band = item
                    del item
                    self._tile_bytes += _spool_band(spool, band, self.width)
                    del band  # freed before the slot is: the next copy takes its place
                    self._slots.release()
                    rows = min(top + LABEL_TILE, self.height)
                    spool.flush()
                    if self.resumable:
                        os.fsync(spool.fileno())
                        self._record(rows)
                    if self.on_rows is not None:
                        self.on_rows(rows)
        except BaseException as exc:
            self._failure = exc

    def _record(self, rows: int) -> None:
        record = {"version": RECORD_VERSION, "identity": self.state.identity, "rows": rows,
                  "tile_bytes": self._tile_bytes}
        write_text_atomic(self.state.record, json.dumps(record, separators=(",", ":")))

    def close(self) -> Path:
        """Write what is left, wait for the encoder, assemble the TIFF and rename it into place."""
        if self.complete < self.height:
            raise ValueError(f"only {self.complete} of {self.height} label rows were written")
        self._flush()
        self._bands.put(None)
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        levels = overview_sizes(self.height, self.width) if self.overviews else []
        spools = [(self.state.spool, self._tile_bytes)]
        sizes = [(self.height, self.width)]
        for index, size in enumerate(levels, 1):  # each level from the one above it: a quarter of its pixels
            target = self.state.folder / f"level-{index}.bin"
            spools.append((target, write_half_level(*spools[-1], sizes[-1], target)))
            sizes.append(size)
        ome = bool(self.ome_pixel_size)
        with atomic_path(self.target) as temp, self._tifffile.TiffWriter(temp, bigtiff=True, ome=ome) as tif:
            for index, ((spool, lengths), (height, width)) in enumerate(zip(spools, sizes)):
                if index == 0:
                    options = label_page_options(height, width, self.ome_pixel_size)
                    # overviews: GDAL's reduced-resolution pages after the image; OME-TIFF's convention, SubIFDs
                    options.update(subifds=len(levels) if ome else None, extratags=self.extratags)
                else:
                    options = label_page_options(height, width)
                    options.update(subfiletype=1)
                tif.write(data=spooled_tiles(spool, lengths), **options)
        shutil.rmtree(self.state.folder, ignore_errors=True)
        return self.target

    def abort(self, keep_progress: bool = False) -> None:
        """Stop the encoder; remove the spool unless ``keep_progress`` (an interrupted run that may resume)."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._failure = self._failure or InputError("aborted")
                deadline = time.monotonic() + ABORT_WAIT_S  # a stuck write (a hung disk) is left to its daemon thread
                self._bands.put(None)
                while self._thread.is_alive() and time.monotonic() < deadline:
                    self._thread.join(0.1)
        if not (keep_progress and self.resumable):
            shutil.rmtree(self.state.folder, ignore_errors=True)


def band_tiles(band: np.ndarray, width: int) -> Iterator[np.ndarray]:
    """The ``LABEL_TILE``² tiles of a band in order, padded with label 0 at the right and bottom edges."""
    for x in range(0, width, LABEL_TILE):
        tile = band[:LABEL_TILE, x : x + LABEL_TILE]
        if tile.shape != (LABEL_TILE, LABEL_TILE):
            tile = np.pad(tile, ((0, LABEL_TILE - tile.shape[0]), (0, LABEL_TILE - tile.shape[1])))
        yield np.ascontiguousarray(tile)


def tile_count(height: int, width: int) -> int:
    return -(-height // LABEL_TILE) * -(-width // LABEL_TILE)


def spooled_tiles(spool: Path, lengths: list[int]) -> Iterator[bytes]:
    """The compressed tiles of a spool in order, one at a time (``lengths``: their sizes in bytes)."""
    with open(spool, "rb") as handle:
        for length in lengths:
            data = handle.read(length)
            if len(data) != length:
                raise InputError(f"{spool}: the label spool ends inside a tile", "run again with --overwrite")
            yield data


def overview_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Overview levels, each half the one above (rounded up), until the image fits one output tile."""
    sizes = []
    while max(height, width) > LABEL_TILE:
        height, width = -(-height // 2), -(-width // 2)
        sizes.append((height, width))
    return sizes


def write_half_level(source: Path, lengths: list[int], size: tuple[int, int], target: Path) -> list[int]:
    """Spool the level below ``source`` (a spool of ``size`` labels, its tiles ``lengths`` bytes): every second
    row and column (nearest neighbour, so labels stay labels), one band of tiles at a time; the new tiles' sizes."""
    height, width = size
    across, half_width = -(-width // LABEL_TILE), -(-width // 2)
    out = np.zeros((LABEL_TILE, half_width), np.uint8)
    written: list[int] = []
    filled = 0
    tiles = spooled_tiles(source, lengths)
    with open(target, "wb") as spool:
        for _ in range(-(-height // LABEL_TILE)):
            band = np.concatenate([np.frombuffer(zlib.decompress(next(tiles)), np.uint8)
                                   .reshape(LABEL_TILE, LABEL_TILE) for _ in range(across)], axis=1)
            out[filled : filled + LABEL_TILE // 2] = band[::2, :width:2]
            filled += LABEL_TILE // 2
            if filled == LABEL_TILE:
                written += _spool_band(spool, out, half_width)
                out[:], filled = 0, 0
        if filled:
            out[filled:] = 0
            written += _spool_band(spool, out, half_width)
    tiles.close()
    return written


def _spool_band(spool: Any, band: np.ndarray, width: int) -> list[int]:
    """Compress a band's tiles onto ``spool``; their sizes."""
    lengths = []
    for tile in band_tiles(band, width):
        data = zlib.compress(tile.tobytes(), DEFLATE_LEVEL)
        spool.write(data)
        lengths.append(len(data))
    return lengths


def label_page_options(height: int, width: int, ome_pixel_size: dict[str, Any] | None = None) -> dict[str, Any]:
    """tifffile ``write`` options of one level of the label TIFF: tiled, Deflate, palette with the VOC colours."""
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, : len(VOC_PNG_PALETTE)] = np.array(VOC_PNG_PALETTE, np.uint16).T * 257
    options: dict[str, Any] = dict(shape=(height, width), dtype=np.uint8, tile=(LABEL_TILE, LABEL_TILE),
                                   photometric="palette", colormap=colormap, compression="zlib")
    options["metadata"] = {"axes": "YX", **ome_pixel_size} if ome_pixel_size else None
    return options


def tiff_level_hw(path: str | os.PathLike[str], level: int = 0) -> tuple[int, int] | None:
    """(height, width) of pyramid ``level`` of a TIFF from its header; None when unreadable or not installed."""
    try:
        with open_regular_file(path) as handle, _tifffile().TiffFile(handle, name=Path(path).name) as tif:
            chosen = tif.series[0].levels[level]
            return _yx_shape(chosen.shape, chosen.axes)
    except Exception:
        return None


def is_label_tiff_of_size(path: str | os.PathLike[str], height: int, width: int) -> bool:
    """True when ``path`` is a complete palette TIFF of ``height``×``width`` labels (a finished output)."""
    try:
        tifffile = _tifffile()
        with open_regular_file(path) as handle, tifffile.TiffFile(handle, name=Path(path).name) as tif:
            page = tif.pages.first
            return page.shape[:2] == (height, width) and page.photometric == tifffile.PHOTOMETRIC.PALETTE
    except Exception:
        return False


__all__ = ["GEO_TAGS", "LABEL_TILE", "TIFF_HINT", "TIFF_SUFFIXES", "LabelTiffWriter", "PrefetchedWindows",
           "ResumeState", "TiffWindows", "input_identity", "is_label_tiff_of_size", "is_tiff_path",
           "load_resume_state", "overview_sizes", "resume_folder", "tiff_level_hw"]
