"""Python side of libfcn_deploy.so: the functions its C entry points call inside the embedded runtime.

Every exception is caught here and turned into a status code plus a per-thread message, so nothing
ever propagates into the C host. Pixels are wrapped as numpy views of the caller's buffer (no copy).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fcn_deploy.errors import ArtifactError, InputError, MissingComponentError, describe

# fcn_pixel_format -> (bytes per pixel, channel order of R, G, B inside a pixel)
PIXEL_LAYOUTS: dict[int, tuple[int, tuple[int, int, int]]] = {
    0: (3, (0, 1, 2)),  # FCN_PIXEL_RGB8
    1: (3, (2, 1, 0)),  # FCN_PIXEL_BGR8
    2: (4, (0, 1, 2)),  # FCN_PIXEL_RGBA8
    3: (4, (2, 1, 0)),  # FCN_PIXEL_BGRA8
    4: (1, (0, 0, 0)),  # FCN_PIXEL_GRAY8
}


def image_bytes(width: int, height: int, stride: int, pixel_format: int) -> int:
    """Bytes spanned by a strided image: full strides for all rows but the last, which may be unpadded."""
    return stride * (height - 1) + width * PIXEL_LAYOUTS[pixel_format][0]


def pixels_as_rgb(buffer: Any, width: int, height: int, stride: int, pixel_format: int) -> np.ndarray:
    """An H×W×3 uint8 RGB view of a strided pixel buffer in any supported format (no copy)."""
    bytes_per_pixel, order = PIXEL_LAYOUTS[pixel_format]
    raw = np.frombuffer(buffer, dtype=np.uint8, count=image_bytes(width, height, stride, pixel_format))
    pixels = np.lib.stride_tricks.as_strided(
        raw, shape=(height, width, bytes_per_pixel), strides=(stride, bytes_per_pixel, 1), writeable=False
    )
    if pixel_format == 4:
        return np.broadcast_to(pixels, (height, width, 3))
    if order == (0, 1, 2):
        return pixels[:, :, :3]
    return pixels[:, :, 2::-1]


def status_of(exc: BaseException, codes: Any) -> int:
    """The fcn_status code for an exception caught at the C boundary."""
    if isinstance(exc, FileNotFoundError):
        return codes.FCN_E_NOT_FOUND
    if isinstance(exc, ArtifactError):
        return codes.FCN_E_BAD_MODEL
    if isinstance(exc, MissingComponentError):
        return codes.FCN_E_BACKEND_UNAVAILABLE
    if isinstance(exc, InputError):
        return codes.FCN_E_INVALID_ARG
    if isinstance(exc, MemoryError):
        return codes.FCN_E_OUT_OF_MEMORY
    return codes.FCN_E_INTERNAL


def message_of(exc: BaseException) -> str:
    """The message for fcn_last_error: ours with the fix on its own line, others with their type."""
    return describe(exc, one_line=False)


@dataclass
class _Entry:
    """An open segmenter and the lock that serialises calls on it."""

    segmenter: Any
    resources: contextlib.ExitStack
    lock: threading.Lock = field(default_factory=threading.Lock)


class Registry:
    """Open segmenters by integer key (the C handle stores the key, never a Python pointer)."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._keys = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, entry: _Entry) -> int:
        """Store ``entry`` and return its new key."""
        with self._lock:
            key = next(self._keys)
            self._entries[key] = entry
            return key

    def get(self, key: int) -> _Entry:
        """The entry of ``key``; InputError for a handle that was destroyed or never created."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            raise InputError(f"segmenter handle {key} is not open (destroyed, or never created)")
        return entry

    def pop(self, key: int) -> _Entry | None:
        """Remove and return the entry of ``key`` (None when absent)."""
        with self._lock:
            return self._entries.pop(key, None)


def open_entry(model_path: str, device: str) -> _Entry:
    """Open ``model_path`` with the Python segmenter (same tiling, blending and device choice).

    ``device`` is 'auto', 'cpu', 'cuda', or 'openvino' / 'openvino:f32' / 'openvino:bf16' for an ONNX model.
    """
    from fcn_deploy.runtime import parse_device_string
    from fcn_deploy.segmenter import open_segmenter

    where, choice = parse_device_string(device)
    resources = contextlib.ExitStack()
    try:
        segmenter = resources.enter_context(open_segmenter(model_path, device=where, choice=choice))
    except BaseException:
        resources.close()
        raise
    return _Entry(segmenter, resources)


def metadata_of(segmenter: Any) -> tuple[int, bytes, bytes]:
    """(num_classes, NUL-separated UTF-8 class names, num_classes × RGB palette bytes)."""
    spec = segmenter.spec
    names = b"\0".join(name.encode("utf-8") for name in spec.class_names) + b"\0"
    palette = bytes(channel for color in spec.palette[: spec.num_classes] for channel in color)
    return spec.num_classes, names, palette


def segment_into(ffi: Any, segmenter: Any, images: Any, count: int, masks: Any) -> None:
    """Segment ``count`` C images and copy each label map into the mask the C side allocated."""
    for index in range(count):
        image = images[index]
        width, height, stride, pixel_format = image.width, image.height, image.stride_bytes, int(image.format)
        buffer = ffi.buffer(image.data, image_bytes(width, height, stride, pixel_format))
        rgb = pixels_as_rgb(buffer, width, height, stride, pixel_format)
        labels = np.ascontiguousarray(segmenter.segment(rgb).labels, dtype=np.uint8)
        if labels.shape != (height, width):
            raise RuntimeError(f"segmenter returned labels of shape {labels.shape} for a {height}×{width} image")
        ffi.memmove(masks[index].labels, labels, labels.size)


def bind(ffi: Any, lib: Any) -> None:
    """Attach the Python implementations of the library's ``extern "Python"`` functions."""
    registry = Registry()

    def guarded(body: Callable[[], None]) -> int:
        """Run ``body``; return FCN_OK, or the status of any exception with its message stored for C."""
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - nothing may propagate into the C host
            lib._fcn_set_error(message_of(exc).encode("utf-8", "replace"))
            return status_of(exc, lib)
        return lib.FCN_OK

    @ffi.def_extern(name="_fcn_py_create", error=lib.FCN_E_INTERNAL)
    def create(model_path: Any, device: Any, handle: Any) -> int:
        def body() -> None:
            entry = open_entry(ffi.string(model_path).decode("utf-8", "surrogateescape"), ffi.string(device).decode())
            try:
                num_classes, names, palette = metadata_of(entry.segmenter)
                status = lib._fcn_store_metadata(handle, num_classes, names, len(names), palette)
                if status != lib.FCN_OK:
                    raise MemoryError("out of memory storing the class names")
            except BaseException:
                entry.resources.close()
                raise
            handle.key = registry.add(entry)

        return guarded(body)

    @ffi.def_extern(name="_fcn_py_apply", error=lib.FCN_E_INTERNAL)
    def apply(key: int, images: Any, count: int, masks: Any) -> int:
        def body() -> None:
            entry = registry.get(key)
            with entry.lock:
                segment_into(ffi, entry.segmenter, images, count, masks)

        return guarded(body)

    @ffi.def_extern(name="_fcn_py_destroy", error=lib.FCN_E_INTERNAL)
    def destroy(key: int) -> int:
        def body() -> None:
            entry = registry.pop(key)
            if entry is not None:
                with entry.lock:
                    entry.resources.close()

        return guarded(body)
