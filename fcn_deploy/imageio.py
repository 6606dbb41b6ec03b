"""Reading images for inference and writing masks: every input becomes uint8 H×W×3 RGB, every output is atomic.

Reading honours the EXIF orientation, converts any Pillow mode (grayscale, RGBA, palette, 16-bit, CMYK) to RGB
and refuses images with more than ``max_pixels`` pixels (decompression bombs). Every failure is an InputError
naming the file. Masks are VOC-style palette PNGs (mode 'P') that VOC tooling reads as class indices.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import struct
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fcn_deploy.errors import InputError
from fcn_deploy.fileio import atomic_path, write_bytes_atomic
from fcn_deploy.palette import VOC_COLORMAP, VOC_PNG_PALETTE, png_palette_bytes

#: Pillow's own default limit (about 89.5 megapixels)
DEFAULT_MAX_PIXELS = 89_478_485
MAX_PIXELS_HINT = f"give the largest pixel count to accept, e.g. --max-pixels {DEFAULT_MAX_PIXELS}"
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
OVERLAY_ALPHA = 0.5
_MAX_IMAGE_PIXELS_LOCK = threading.Lock()  # Pillow's limit is a module global; we swap it while opening
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (2, 3, 4, 5, 6, 7, 8)  # 1 is upright
_CONVERT_BAND_BYTES = 16 << 20  # rows of Pillow's image (4 bytes a pixel) converted to numpy at a time
_PACK_BAND_BYTES = 1 << 20  # rows packed from 4 to 3 bytes a pixel at a time (the first few through a temporary)
# Pillow modes it keeps 4 bytes a pixel with red, green and blue first, and the layout that maps a buffer as such
_FOUR_BYTE_RGB_LAYOUTS = {"RGB": "RGBX", "RGBX": "RGBX", "RGBA": "RGBA"}
# formats whose Pillow plugins decode the whole image, as its header sizes it, into the image core they are given
# (TIFF is not one: it turns images by their orientation tag while loading)
_DECODED_IN_PLACE_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "WEBP")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk with its CRC
_PNG_PALETTE = 3  # IHDR colour type of palette images
_OVERLAY_ROWS = 256  # rows blended at a time, to keep overlays of huge images small in memory

Palette = Sequence[Sequence[int]]


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True for file names with an image suffix this module reads (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


# what a path names when it is not a regular file: reading any of them could block for ever or never end
_NOT_REGULAR: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _refuse_non_regular(mode: int, name: object) -> None:
    """InputError naming what ``name`` is unless ``mode`` is a regular file's (a folder raises as ``open`` does)."""
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(name))
    if not stat.S_ISREG(mode):
        kind = next((label for is_kind, label in _NOT_REGULAR if is_kind(mode)), "a special file")
        raise InputError(f"{name}: is {kind}, not an image file; only regular files are read",
                         "remove it from the folder, or replace it with the image file")


def open_regular_file(path: str | os.PathLike[str], name: object = None) -> BinaryIO:
    """Open ``path`` (links followed) for binary reading if it is a regular file; InputError naming what it is
    otherwise, so a named pipe or a device named like an image never blocks a reader.

    Checked before opening (a pipe is never opened) and again on the open handle (it may have been replaced in
    between; opening without blocking makes that second look safe). Other failures are the OSError of ``open``.
    """
    name = name if name is not None else path
    _refuse_non_regular(os.stat(path).st_mode, name)
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _refuse_non_regular(os.fstat(descriptor).st_mode, name)
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_file_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular file (an encoded image sent as it is); InputError naming the file otherwise."""
    try:
        with open_regular_file(path) as handle:
            return handle.read()
    except OSError as exc:
        raise _file_error(exc, path) or InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def _file_error(exc: OSError, name: object) -> InputError | None:
    """Our words for an OSError that says what is wrong with the file itself; None for any other."""
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{name}: file not found (or a link to a missing file)")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"{name}: is a directory, not an image file", "rename or move it")
    if isinstance(exc, PermissionError):
        return InputError(f"{name}: permission denied ({exc.strerror})", "make the file readable")
    if exc.errno == errno.ELOOP:
        return InputError(f"{name}: a loop of symbolic links (it never reaches a file)",
                          "point the link at a real file, or remove it")
    return None


def _open_checked(path: BinaryIO, max_pixels: int | None, name: object = None) -> Image.Image:
    """Open an image from an open file (header only), enforcing our pixel limit instead of Pillow's global one."""
    with _MAX_IMAGE_PIXELS_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            image = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise InputError(
            f"{name or path}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
            "(possible decompression bomb)",
            "if the image is trusted, raise the limit with --max-pixels",
        )
    return image


def _sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 integers to 0..255 with rounding."""
    values = np.clip(values, 0, 65535).astype(np.uint32)
    return ((values + 128) // 257).astype(np.uint8)


def _gray_to_uint8(image: Image.Image) -> np.ndarray:
    """A single-channel image of a wide mode ('I;16*', 'I', 'F') as uint8 H×W."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        return _sixteen_bit_to_uint8(values)
    if image.mode == "F":
        values = np.nan_to_num(values.astype(np.float64))
        scaled = values * 255.0 if values.size and values.max() <= 1.0 else values
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if values.size and values.max() > 255:  # 'I' holding 16-bit samples
        return _sixteen_bit_to_uint8(values)
    return np.clip(values, 0, 255).astype(np.uint8)


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow image as a uint8 H×W×3 RGB array (alpha dropped, palette expanded, 16-bit scaled).

    Converted in bands of rows straight into the result, so besides Pillow's decoded image only the result and
    one band (about 16 MB) exist: never a second full-size copy of the image.
    """
    if image.mode.startswith("I") or image.mode == "F":  # scaled by whole-image statistics
        gray = _gray_to_uint8(image)
        return np.repeat(gray[:, :, None], 3, axis=2)
    width, height = image.size
    result = np.empty((height, width, 3), np.uint8)
    rows = max(1, _CONVERT_BAND_BYTES // max(1, 4 * width))
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height)))
        if band.mode == "P":  # palette transparency is expanded through RGBA (Pillow warns otherwise)
            band = band.convert("RGBA")
        if band.mode != "RGB":
            band = band.convert("RGB")
        result[top : top + rows] = np.asarray(band, dtype=np.uint8)
    return result


def read_image(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file to uint8 H×W×3 RGB, upright per its EXIF orientation.

    ``max_pixels=None`` lifts the size limit. Raises InputError naming the file for anything unreadable.
    """
    path = Path(path)
    return _decode(path, path, max_pixels)


def decode_image(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image") -> np.ndarray:
    """``read_image`` for an encoded image held in memory (e.g. a request body); errors name ``name``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"{name}: expected encoded image bytes, got {type(data).__name__}")
    if not len(data):
        raise InputError(f"{name}: empty, not an image", "send the bytes of a JPEG or PNG file")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source: Path | io.BytesIO, name: object, max_pixels: int | None) -> np.ndarray:
    """Decode a file or an in-memory file to upright uint8 RGB; every failure is an InputError naming ``name``."""
    if max_pixels is not None and max_pixels < 1:
        raise InputError(f"max_pixels must be positive, got {max_pixels}", MAX_PIXELS_HINT)
    try:
        with _opened(source, name) as handle, _open_checked(handle, max_pixels, name) as image:
            pixels = _decode_in_place(image)
            if pixels is not None:
                return pixels
            if image.getexif().get(_EXIF_ORIENTATION, 1) in _TRANSPOSED_ORIENTATIONS:
                ImageOps.exif_transpose(image, in_place=True)  # otherwise it returns a full copy
            return to_rgb_array(image)
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        detail = "unknown image format" if isinstance(exc, UnidentifiedImageError) else exc  # Pillow names the handle
        raise InputError(f"{name}: not a readable image ({detail})", "replace or remove the file") from exc
    except OSError as exc:
        raise _file_error(exc, name) or InputError(f"{name}: cannot decode the image ({exc})",
                                                   "the file is corrupt or truncated; replace or remove it") from exc
    except MemoryError:
        raise
    except Exception as exc:  # a decoder fed a damaged file raises anything (ValueError, struct.error, ...)
        raise InputError(f"{name}: cannot decode the image ({type(exc).__name__}: {exc})",
                         "the file is corrupt or truncated; replace or remove it") from exc


def _opened(source: Path | io.BytesIO, name: object) -> contextlib.AbstractContextManager[BinaryIO]:
    """An in-memory file as it is, a path opened if it is a regular file."""
    return contextlib.nullcontext(source) if isinstance(source, io.BytesIO) else open_regular_file(source, name)


def _decode_in_place(image: Image.Image) -> np.ndarray | None:
    """Load an opened RGB or RGBA image with Pillow's decoder writing straight into a numpy buffer; the upright
    uint8 H×W×3 array, or None when Pillow loaded the pixels into memory of its own (other modes, a memory-mapped
    raw file), to be converted as usual.

    Pillow keeps these modes 4 bytes a pixel: decoding into its own image and converting held that image beside
    the array (7 bytes a pixel). Here the buffer it decodes into becomes the array: packed to 3 bytes a pixel in
    place and shrunk, so the peak is 4 bytes a pixel.
    """
    layout = _FOUR_BYTE_RGB_LAYOUTS.get(image.mode)
    if layout is None or image.format not in _DECODED_IN_PLACE_FORMATS:
        image.load()
        return None
    width, height = image.size
    pixels = np.empty((height, width, 4), np.uint8)
    target = Image.frombuffer(layout, image.size, pixels, "raw", layout, 0, 1).im
    image.im = target  # ImageFile.load decodes into an image core already set instead of allocating one
    image.load()
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    if image.im is not target:
        return None
    image.close()  # drops the core mapped onto the buffer, so that the buffer can shrink
    del target
    _pack_rgb(pixels)
    try:
        pixels.resize(height * width * 3)  # realloc: the fourth bytes go back to the system, the data stays put
    except ValueError:  # still referenced elsewhere: keep a packed copy instead
        return _upright(pixels.reshape(-1)[: height * width * 3].reshape(height, width, 3).copy(), orientation)
    return _upright(pixels.reshape(height, width, 3), orientation)


def _pack_rgb(pixels: np.ndarray) -> None:
    """Move the first three bytes of each pixel of an H×W×4 array to the front of its memory (H×W×3, row-major),
    a band of rows at a time: each band lands at or before where it was read, so nothing unread is overwritten
    (numpy copies a band through a temporary where it overlaps itself)."""
    height, width = pixels.shape[:2]
    packed = pixels.reshape(-1)[: height * width * 3].reshape(height, width, 3)
    rows = max(1, _PACK_BAND_BYTES // (4 * width))
    for top in range(0, height, rows):
        packed[top : top + rows] = pixels[top : top + rows, :, :3]


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """An H×W×3 array turned as Pillow's ``ImageOps.exif_transpose`` turns an image of that EXIF orientation."""
    turned = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
              5: lambda a: a.transpose(1, 0, 2), 6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
              7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: a.transpose(1, 0, 2)[::-1]}.get(orientation)
    return pixels if turned is None else np.ascontiguousarray(turned(pixels))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(height, width) of an image file as ``read_image`` returns it (EXIF orientation applied), from its header;
    None when the header cannot be read.

    Never decodes the pixels: a PNG whose EXIF chunk follows the image data counts as upright, because Pillow
    would decode the whole image to find that chunk (such an image is at worst segmented again on resume)."""
    try:
        with open_regular_file(path) as handle, _open_checked(handle, None, path) as image:
            width, height = image.size
            cheap_exif = image.format != "PNG" or "exif" in image.info
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1) if cheap_exif else 1
    except Exception:  # any unreadable header: the caller treats the image as not done
        return None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)  # these turn by 90 degrees


def is_mask_of_size(path: str | os.PathLike[str], height: int, width: int) -> bool:
    """True when ``path`` is a complete palette PNG of ``height``×``width``, judged by its header and its end.

    Enough to tell a mask we wrote from a truncated file, another image's mask or a foreign file, without
    decoding the pixels.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_PNG_SIGNATURE) + 8 + 13)
            handle.seek(0, os.SEEK_END)
            if handle.tell() < len(head) + len(_PNG_END):
                return False
            handle.seek(-len(_PNG_END), os.SEEK_END)
            tail = handle.read()
    except OSError:
        return False
    complete = len(head) == len(_PNG_SIGNATURE) + 21 and tail == _PNG_END
    if not complete or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return False
    png_width, png_height, bit_depth, color_type = struct.unpack(">IIBB", head[16:26])
    return (png_height, png_width, bit_depth, color_type) == (height, width, 8, _PNG_PALETTE)


# --- writing -------------------------------------------------------------------------------------


def mask_palette(palette: Palette = VOC_COLORMAP) -> tuple[tuple[int, int, int], ...]:
    """256 colours: the model's class colours, then the VOC PNG palette (so 255, void, stays VOC's)."""
    colors = tuple(tuple(int(c) for c in color) for color in palette)[:256]
    return colors + VOC_PNG_PALETTE[len(colors) :]


def _check_labels(labels: np.ndarray) -> None:
    """Reject anything but H×W uint8 labels."""
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.ndim != 2:
        raise InputError(f"labels must be an H×W uint8 array, got {getattr(labels, 'dtype', type(labels))} "
                         f"{getattr(labels, 'shape', '')}")


def write_mask(path: str | os.PathLike[str], labels: np.ndarray, palette: Palette = VOC_COLORMAP) -> Path:
    """Write H×W uint8 labels as a palette PNG (mode 'P', VOC colours), atomically."""
    write_bytes_atomic(path, encode_mask(labels, palette))
    return Path(path)


def encode_mask(labels: np.ndarray, palette: Palette = VOC_COLORMAP) -> bytes:
    """H×W uint8 labels as the bytes of a palette PNG (mode 'P', VOC colours): what ``write_mask`` writes."""
    _check_labels(labels)
    image = Image.fromarray(np.ascontiguousarray(labels))
    image.putpalette(png_palette_bytes(mask_palette(palette)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def overlay(image: np.ndarray, labels: np.ndarray, palette: Palette = VOC_COLORMAP, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The image tinted with class colours (class 0, background, left untinted), in row chunks."""
    _check_labels(labels)
    if image.shape[:2] != labels.shape:
        raise InputError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    colors = np.asarray(mask_palette(palette), np.uint16)
    weight = int(round(alpha * 256))
    result = np.empty_like(image)
    for top in range(0, image.shape[0], _OVERLAY_ROWS):
        rows = slice(top, top + _OVERLAY_ROWS)
        pixels, classes = image[rows].astype(np.uint16), labels[rows]
        tinted = (pixels * (256 - weight) + colors[classes] * weight) >> 8
        result[rows] = np.where((classes == 0)[..., None], pixels, tinted).astype(np.uint8)
    return result


def write_overlay(
    path: str | os.PathLike[str], image: np.ndarray, labels: np.ndarray, palette: Palette = VOC_COLORMAP
) -> Path:
    """Write the colour overlay of ``labels`` on ``image`` as a JPEG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(overlay(image, labels, palette)).save(tmp, format="JPEG", quality=90)
    return Path(path)
