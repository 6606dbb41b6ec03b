"""Windowed reading and streaming label writing of tiled TIFF, BigTIFF, GeoTIFF and OME-TIFF images.

``TiffWindows`` reads any window of one pyramid level through tifffile's Zarr store, which decodes only the TIFF
tiles (or strips) the window touches (JPEG, Deflate, LZW, ZSTD, ... through imagecodecs). ``LabelTiffWriter``
takes label blocks in row-major order of tile rows and writes a tiled, Deflate-compressed BigTIFF (palette
photometric, the VOC colours) on its own thread as bands of full TIFF tile rows finish, under a temporary name
renamed when complete; the input's GeoTIFF tags are carried over.

Memory bound: the reader holds the TIFF tiles of one window (plus Zarr's own per-chunk buffers); the writer holds
one band of ``band_rows`` × width label bytes and at most ``QUEUED_BANDS`` bands waiting to be encoded. Neither
grows with the image's height; both grow with its width alone (a 40000-pixel-wide image: a few tens of MiB).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fcn_deploy.deps import require
from fcn_deploy.errors import FcnDeployError, InputError, MissingComponentError
from fcn_deploy.fileio import atomic_path
from fcn_deploy.imageio import open_regular_file
from fcn_deploy.palette import VOC_PNG_PALETTE

TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
TIFF_HINT = "pip install 'fcn-deploy[tiff]' (tifffile with imagecodecs decodes JPEG, Deflate, LZW, ZSTD, ... tiles)"
LABEL_TILE = 256  # side of the output's TIFF tiles
ABORT_WAIT_S = 10.0  # how long an aborted label write may take to stop before its file is removed
QUEUED_BANDS = 2  # bands of finished label rows waiting for the encoder thread

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


class LabelTiffWriter:
    """H×W uint8 labels written as a tiled, compressed, palette BigTIFF while they are produced.

    ``writer[y0:y1, x0:x1]`` is a writable view for one block (as a label array would give); a block that reaches
    the right edge completes its rows. Completed bands of ``LABEL_TILE`` rows go to an encoder thread. ``close()``
    after the last block renames the file into place; ``abort()`` leaves nothing behind.
    """

    def __init__(self, target: str | os.PathLike[str], height: int, width: int, max_block_rows: int,
                 extratags: list[tuple[int, int, int, Any, bool]] = (), compression: str = "zlib") -> None:
        self._tifffile = _tifffile()
        self.target, self.height, self.width = Path(target), height, width
        self.band = np.zeros((max_block_rows + LABEL_TILE, width), np.uint8)
        self.base = 0  # image row of band row 0
        self.complete = 0  # image rows whose every block has been given out
        self._bands: queue.Queue = queue.Queue(QUEUED_BANDS)
        self._failure: BaseException | None = None
        self._stack = contextlib.ExitStack()
        self._temp = self._stack.enter_context(atomic_path(self.target))
        colormap = np.zeros((3, 256), np.uint16)
        colormap[:, : len(VOC_PNG_PALETTE)] = np.array(VOC_PNG_PALETTE, np.uint16).T * 257
        options = dict(shape=(height, width), dtype=np.uint8, tile=(LABEL_TILE, LABEL_TILE), photometric="palette",
                       colormap=colormap, compression=compression, bigtiff=True, extratags=list(extratags))
        self._thread = threading.Thread(target=self._encode, args=(options,), name="fcn-tiff-write", daemon=True)
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
        """Send every finished band of ``LABEL_TILE`` rows (and the last, shorter one) to the encoder."""
        while self.complete - self.base >= LABEL_TILE or (self.complete == self.height > self.base):
            self._send(self.band[:LABEL_TILE].copy())
            self.band[:-LABEL_TILE] = self.band[LABEL_TILE:].copy()
            self.band[-LABEL_TILE:] = 0
            self.base += LABEL_TILE

    def _send(self, band: np.ndarray | None) -> None:
        while True:
            if self._failure is not None:
                raise self._failure
            try:
                self._bands.put(band, timeout=0.1)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise RuntimeError("the TIFF encoder thread ended early") from self._failure

    def _tiles(self) -> Iterator[np.ndarray]:
        """Tiles in row-major order from the bands sent, the edge tiles padded with label 0."""
        while True:
            band = self._bands.get()
            if band is None:
                return
            for x in range(0, self.width, LABEL_TILE):
                tile = band[:, x : x + LABEL_TILE]
                if tile.shape[1] < LABEL_TILE:
                    tile = np.pad(tile, ((0, 0), (0, LABEL_TILE - tile.shape[1])))
                yield tile

    def _encode(self, options: dict[str, Any]) -> None:
        try:
            self._tifffile.imwrite(self._temp, data=self._tiles(), **options)
        except BaseException as exc:
            self._failure = exc
            with contextlib.suppress(queue.Empty):  # unblock a sender waiting on a full queue
                while True:
                    self._bands.get_nowait()

    def close(self) -> Path:
        """Write what is left, wait for the encoder and rename the file into place."""
        if self.complete < self.height:
            raise ValueError(f"only {self.complete} of {self.height} label rows were written")
        self._flush()
        self._send(None)
        self._thread.join()
        if self._failure is not None:
            self._stack.__exit__(type(self._failure), self._failure, self._failure.__traceback__)
            raise self._failure
        self._stack.close()
        return self.target

    def abort(self) -> None:
        """Stop the encoder and remove the temporary file."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._failure = self._failure or InputError("aborted")
                deadline = time.monotonic() + ABORT_WAIT_S  # a stuck write (a hung disk) is left to its daemon thread
                while self._thread.is_alive() and time.monotonic() < deadline:
                    with contextlib.suppress(queue.Full):
                        self._bands.put(None, timeout=0.1)
                    self._thread.join(0.1)
        with contextlib.suppress(Exception):
            self._stack.__exit__(InputError, InputError("aborted"), None)


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


__all__ = ["GEO_TAGS", "LABEL_TILE", "TIFF_HINT", "TIFF_SUFFIXES", "LabelTiffWriter", "TiffWindows",
           "is_label_tiff_of_size", "is_tiff_path", "tiff_level_hw"]
