"""Segment every image of a folder into VOC palette masks, resumably, with a summary of what happened.

A reader thread decodes the next images while the model runs, and a writer thread encodes and writes
finished masks, each through bounded queues. Every output is written to a temporary name and renamed, so an
interrupted run leaves no half-written file and the next run skips what is done (a mask counts as done when its
PNG header says it is a palette image of the image's size). A bad image, or an output that cannot be written,
is reported (stderr and summary) and the run goes on; if any image failed, BatchFailure is raised at the end.

Output locations are checked before any work; one run at a time writes into a folder (an advisory lock);
Ctrl-C and SIGTERM stop the run after the images already segmented are written, and the summary then marks
what is done.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.contract import with_sidecar
from fcn_deploy.devices import DEVICES, Device
from fcn_deploy.errors import (
    ArtifactError,
    BatchFailure,
    FcnDeployError,
    InputError,
    Interrupted,
    describe,
    printable,
)
from fcn_deploy.fileio import (
    LOCK_NAME,
    Place,
    check_output_dir,
    check_output_file,
    check_outputs_apart,
    folder_lock,
    remove_stale_temps,
    sha256_file,
    write_text_atomic,
)
from fcn_deploy.heap import return_freed_heap
from fcn_deploy.imageio import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_HINT,
    image_size,
    is_image_path,
    is_mask_of_size,
    read_image,
    write_mask,
    write_overlay,
)
from fcn_deploy.interrupts import signals_interrupt
from fcn_deploy.progress import ItemLines, progress_bar, rows_status
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.runtime.tensorrt_support import tensorrt_unavailable
from fcn_deploy.segmenter import (
    WHOLE_COPY_ROWS,
    Segmenter,
    SegmenterConfig,
    SegmentResult,
    open_segmenter,
)
from fcn_deploy.tiffio import (
    LabelTiffWriter,
    PrefetchedWindows,
    TiffWindows,
    input_identity,
    is_label_tiff_of_size,
    is_tiff_path,
    load_resume_state,
    tiff_level_hw,
)
from fcn_deploy.tiling import TilePlan, resumed_plan, tile_windows
from fcn_deploy.workspace import default_model  # importable from here too

SUMMARY_NAME = "summary.json"


def summary_location(summary: Path | None, out_dir: Path) -> Path:
    """Where a folder run's summary goes: ``summary`` as given, else ``<out_dir>/summary.json``."""
    return Path(summary) if summary is not None else out_dir / SUMMARY_NAME
MASK_SUFFIX = ".png"
TIFF_MASK_SUFFIX = ".tif"
WINDOWED = object()  # in the decoded queue in place of an image: a TIFF read window by window
OVERLAY_SUFFIX = ".overlay.jpg"


@dataclass(frozen=True)
class InferConfig:
    """Options of a folder run; ``summary=None`` writes ``<out_dir>/summary.json``."""

    segmenter: SegmenterConfig = SegmenterConfig()
    device: Device = "auto"
    backend: BackendChoice = BackendChoice()
    recursive: bool = False
    overlay: bool = False
    overwrite: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    summary: Path | None = None
    progress: bool = True
    prefetch: int = 2  # decoded images / finished masks waiting in each queue
    wait: bool = False  # another run holds the output folder: wait for it (True) or refuse (False)
    # images in flight (decoded, segmented or being written) hold at most this many pixels in all; a larger
    # image runs alone, so a folder of huge images costs one image's memory, not one per pipeline stage
    inflight_pixels: int = 32_000_000
    level: int = 0  # pyramid level of TIFF inputs (0: full resolution)
    overviews: bool = False  # label TIFFs get overview levels, each half the one above (nearest neighbour)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}", f"use one of: {', '.join(DEVICES)}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise InputError(f"max_pixels must be positive, got {self.max_pixels}", MAX_PIXELS_HINT)
        if self.prefetch < 1:
            raise InputError(f"prefetch must be positive, got {self.prefetch}")
        if self.inflight_pixels < 1:
            raise InputError(f"inflight_pixels must be positive, got {self.inflight_pixels}")
        if self.level < 0:
            raise InputError(f"level must be 0 (full resolution) or more, got {self.level}")


@dataclass(frozen=True)
class ImageRecord:
    """What happened to one input image."""

    path: str  # relative to the input folder, '/'-separated
    status: str  # 'ok', 'skipped' (outputs exist), 'failed' or 'pending' (the run was interrupted first)
    height: int | None = None
    width: int | None = None
    mode: str | None = None  # 'whole' or 'slide'
    tiles: int = 0
    milliseconds: float = 0.0  # segmentation time (decode and write excluded)
    output: str | None = None  # the mask, relative to the output folder
    error: str | None = None


@dataclass(frozen=True)
class InferSummary:
    """A whole folder run: per-image records and totals (also written as JSON)."""

    model: str
    backend: str
    device: str
    in_dir: str
    out_dir: str
    summary_path: str
    config: dict[str, Any]
    seconds: float
    images: tuple[ImageRecord, ...] = field(default_factory=tuple)
    interrupted: str | None = None  # 'SIGINT' or 'SIGTERM' when the run stopped early

    @property
    def done(self) -> int:
        """Images whose mask exists (segmented now or skipped as done)."""
        return self.count("ok") + self.count("skipped")

    def count(self, status: str) -> int:
        """How many images ended with ``status``."""
        return sum(1 for record in self.images if record.status == status)

    @property
    def images_per_second(self) -> float:
        """Segmented images per wall-clock second of the run."""
        return self.count("ok") / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with totals first."""
        totals = {"images": len(self.images), "segmented": self.count("ok"), "skipped": self.count("skipped"),
                  "failed": self.count("failed"), "pending": self.count("pending"), "seconds": round(self.seconds, 3),
                  "images_per_second": round(self.images_per_second, 3)}
        head = {k: v for k, v in asdict(self).items() if k != "images"}
        return {**head, "totals": totals, "images": [asdict(r) for r in self.images]}


@dataclass(frozen=True)
class ImageJob:
    """One image to segment and where its outputs go."""

    relative: str
    source: Path
    mask: Path
    output: str  # the mask, relative to the output folder
    overlay: Path | None


@dataclass(frozen=True)
class FolderPlan:
    """What a folder run has to do: the images to segment and the records already final (skipped, clashing).

    Only relative paths are kept, so planning a large folder holds no more than its file names.
    """

    todo: tuple[str, ...]  # relative '/'-separated paths of the images to segment
    records: tuple[ImageRecord, ...]


# --- folder discovery --------------------------------------------------------------


def find_images(in_dir: Path, recursive: bool, exclude: Path | None = None) -> list[Path]:
    """Image files under ``in_dir`` (relative, sorted), skipping the ``exclude`` subtree (the output folder)."""
    return scan_images(in_dir, recursive, exclude)[0]


def scan_images(in_dir: Path, recursive: bool, exclude: Path | None = None) -> tuple[list[Path], list[ImageRecord]]:
    """``find_images`` plus a failed record for every subfolder that cannot be read (its images are unknown).

    InputError when ``in_dir`` itself cannot be read.
    """
    excluded = exclude.resolve() if exclude is not None else None
    found: list[Path] = []
    unreadable: list[ImageRecord] = []

    def on_error(exc: OSError) -> None:
        folder = Path(exc.filename) if exc.filename else in_dir
        if folder == in_dir:
            raise InputError(f"cannot read the input folder {in_dir} ({exc.strerror})", "make it readable")
        unreadable.append(ImageRecord(folder.relative_to(in_dir).as_posix() + "/", "failed", error=(
            f"cannot read this folder ({exc.strerror}); its images were not segmented")))

    for root, dirs, files in os.walk(in_dir, onerror=on_error):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if excluded is None or (root_path / d).resolve() != excluded)
        found.extend((root_path / name).relative_to(in_dir) for name in files if is_image_path(name))
        if not recursive:
            break
    return sorted(found, key=lambda p: p.as_posix()), unreadable


def single_image(path: Path) -> Path | None:
    """The file name when ``path`` is one image file (``infer scene.tif --out masks/``), else None."""
    return Path(path.name) if path.is_file() and is_image_path(path) else None


def image_job(in_dir: Path, out_dir: Path, relative: str, overlay: bool, tiff_masks: bool = True) -> ImageJob:
    """Where the outputs of the image ``relative`` (to ``in_dir``) go under ``out_dir``; ``tiff_masks=False`` for
    a run whose masks are always PNGs (the client writes the server's PNG)."""
    mask_relative = mask_relative_of(Path(relative), tiff_masks)
    overlay_path = out_dir / Path(relative).with_suffix(OVERLAY_SUFFIX) if overlay else None
    return ImageJob(relative, in_dir / relative, out_dir / mask_relative, mask_relative, overlay_path)


def mask_relative_of(relative: Path, tiff_masks: bool = True) -> str:
    """The mask's path for the image ``relative``: a palette PNG, or a tiled label TIFF for a TIFF input."""
    tiff = tiff_masks and is_tiff_path(relative)
    return relative.with_suffix(TIFF_MASK_SUFFIX if tiff else MASK_SUFFIX).as_posix()


def plan_images(in_dir: Path, out_dir: Path, relatives: Iterable[Path], overwrite: bool, overlay: bool,
                level: int = 0, tiff_masks: bool = True) -> FolderPlan:
    """Fail images whose mask name another image already claims or whose outputs cannot be written inside
    ``out_dir``; skip those already done unless ``overwrite``."""
    todo: list[str] = []
    records: list[ImageRecord] = []
    claimed: dict[str, str] = {}
    out_real = out_dir.resolve()
    for relative_path in relatives:
        relative = relative_path.as_posix()
        mask_relative = mask_relative_of(relative_path, tiff_masks)
        key = mask_relative.lower()
        if key in claimed:
            records.append(ImageRecord(relative, "failed", error=(
                f"its mask {mask_relative} is also the mask of {claimed[key]}; rename one of them")))
            continue
        claimed[key] = relative
        job = image_job(in_dir, out_dir, relative, overlay, tiff_masks)
        outputs = [job.mask] + ([job.overlay] if job.overlay is not None else [])
        problem = next((p for p in (_output_problem(o, out_dir, out_real) for o in outputs) if p), None)
        if problem:
            records.append(ImageRecord(relative, "failed", error=f"cannot write its output: {problem}"))
        elif not overwrite and _done(job, level):
            records.append(ImageRecord(relative, "skipped", output=mask_relative))
        else:
            todo.append(relative)
    return FolderPlan(tuple(todo), tuple(records))


def _done(job: ImageJob, level: int = 0) -> bool:
    """Every output of ``job`` exists, and the mask is a complete palette PNG (or TIFF) of the image's size."""
    if not job.mask.is_file() or (job.overlay is not None and not job.overlay.is_file()):
        return False
    if job.mask.suffix == TIFF_MASK_SUFFIX:
        size = tiff_level_hw(job.source, level)
        return size is not None and is_label_tiff_of_size(job.mask, *size)
    size = image_size(job.source)
    return size is not None and is_mask_of_size(job.mask, *size)


def _output_problem(path: Path, out_dir: Path, out_real: Path) -> str | None:
    """Why ``path`` (under ``out_dir``) cannot be written: a file where a folder must be, or a link out of it."""
    relative = path.relative_to(out_dir)
    for depth in range(1, len(relative.parts) + 1):
        here = out_dir.joinpath(*relative.parts[:depth])
        is_last = depth == len(relative.parts)
        if here.is_symlink():
            target = here.resolve()
            if target != out_real and out_real not in target.parents:
                return (f"{here} is a link to {target}, outside the output folder; fcn-deploy never writes "
                        "outside --out (remove the link)")
        if not is_last and here.exists() and not here.is_dir():
            return f"{here} is a file where a folder must be (move it away)"
        if is_last and here.is_dir():
            return f"{here} is a folder where the output file must be (move it away)"
        if not here.exists():
            return None
    return None


# --- the per-image steps (shared by the threaded pipeline below and by cluster workers) ------------


def failed_record(job: ImageJob, exc: BaseException) -> ImageRecord:
    """The record of a failed image; the record's path already names the file, so the message need not."""
    message = describe(exc)
    prefix = f"{job.source}: "
    return ImageRecord(job.relative, "failed", error=message[len(prefix):] if message.startswith(prefix) else message)


def decode_image(job: ImageJob, max_pixels: int | None) -> np.ndarray:
    """The image of ``job`` as H×W×3 uint8 RGB; InputError for anything unreadable (memory included)."""
    try:
        return read_image(job.source, max_pixels)
    except MemoryError as exc:
        raise InputError(f"{job.source}: not enough memory to decode ({exc})") from exc


def segment_image(segmenter: Segmenter, job: ImageJob, image: np.ndarray) -> SegmentResult | ImageRecord:
    """The segmentation of a decoded image, or its failed record; a broken model (ArtifactError) propagates."""
    try:
        return segmenter.segment(image)
    except ArtifactError:
        raise
    except (InputError, MemoryError) as exc:
        return failed_record(job, exc)


def write_outputs(job: ImageJob, image: np.ndarray | None, result: SegmentResult, palette: Any) -> ImageRecord:
    """Write the mask (and overlay) atomically; the ok record, or a failed one when writing fails.

    ``image`` is needed only when the job has an overlay."""
    if job.overlay is not None and image is None:
        raise TypeError("write_outputs: a job with an overlay needs its image")  # a caller's bug, not the image's
    try:
        write_mask(job.mask, result.labels, palette)
        if job.overlay is not None and image is not None:
            write_overlay(job.overlay, image, result.labels, palette)
    except (FcnDeployError, OSError, ValueError) as exc:
        with contextlib.suppress(OSError):  # both outputs or none
            job.mask.unlink(missing_ok=True)
        return failed_record(job, _write_error(exc))
    return _ok_record(job, result)


def _write_error(exc: BaseException) -> BaseException:
    """An output failure in words: an OSError (a full disk, a read-only folder) with its cause and a fix."""
    if isinstance(exc, OSError):
        return InputError(f"cannot write its output ({exc.strerror or exc})",
                          "free disk space or fix the output folder's permissions, then run again")
    return exc


def segment_windowed(segmenter: Segmenter, job: ImageJob, config: InferConfig,
                     on_rows: Callable[[int, int], None] | None = None) -> ImageRecord:
    """Segment a TIFF window by window into a tiled label TIFF, neither ever whole in memory; its record.

    Windows are decoded ahead on their own thread and labels encoded on another, both overlapping inference. A
    killed or interrupted run resumes from the last label band it recorded (``tiffio.ResumeState``), when the
    input, the model, the backend and the tile plan are the same. ``on_rows(done, total)`` hears of tile rows done.
    A file that cannot be read, a corrupt tile or a compression this installation cannot decode fails the image
    alone (the message names the extra to install where that is the cause); a broken model propagates."""
    if job.overlay is not None:
        return ImageRecord(job.relative, "failed", error=(
            "overlays are not written for TIFF inputs (read window by window); run without --overlay"))
    try:
        with TiffWindows(job.source, config.level) as image:
            height, width = image.shape[:2]
            slide = segmenter.mode_for((height, width)) == "slide"
            plan = segmenter.plan((height, width))
            identity = windowed_identity(segmenter, job, config, plan) if slide else None
            state = load_resume_state(job.mask, identity, height, width) if identity is not None else None
            done = state.rows if state is not None else 0
            replay = resumed_plan(plan, done) if done < height else None
            rows = _tile_rows_counter(plan, done, on_rows)
            writer = LabelTiffWriter(job.mask, height, width, max(plan.tile_hw[0], WHOLE_COPY_ROWS),
                                     image.geo_tags(), state=state,
                                     first_row=replay.ys[0] if replay is not None else height,
                                     overviews=config.overviews, ome_pixel_size=image.ome_pixel_size(), on_rows=rows)
            try:
                if replay is None:
                    result = SegmentResult(np.broadcast_to(np.uint8(0), (height, width)), "slide", plan.count,
                                           plan.tile_hw, 0.0)
                elif slide:
                    depth = 2 * plan.batch
                    with PrefetchedWindows(image, tile_windows(replay), depth) as windows:
                        result = segmenter.segment_into(windows, writer, replay)
                else:
                    result = segmenter.segment_into(image, writer)
                writer.close()
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what is recorded stays for the next run
                writer.abort(keep_progress=True)
                raise
            except BaseException:
                writer.abort()
                raise
    except ArtifactError:
        raise
    except (FcnDeployError, MemoryError) as exc:
        return failed_record(job, exc)
    except OSError as exc:
        return failed_record(job, _write_error(exc))
    return _ok_record(job, result)


def windowed_identity(segmenter: Segmenter, job: ImageJob, config: InferConfig, plan: TilePlan
                      ) -> dict[str, Any] | None:
    """What a resumed label write must share with the run it resumes: the input (its identity), the pyramid
    level, the model (its SHA-256), backend and device, and the tile plan. None when the backend names no model
    file (nothing to check the model against: no resume)."""
    model = getattr(segmenter.backend, "path", None)
    if model is None:
        return None
    return {"input": input_identity(job.source), "level": config.level, "model_sha256": _model_sha256(Path(model)),
            "backend": segmenter.backend.name, "device": str(segmenter.backend.device),
            "classes": segmenter.spec.num_classes, "blend": segmenter.config.blend,
            "plan": {"tile": list(plan.tile_hw), "ys": list(plan.ys), "xs": list(plan.xs), "batch": plan.batch}}


@functools.lru_cache(maxsize=4)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _model_sha256(path: Path) -> str:
    """SHA-256 of the model file, hashed once per version of it."""
    info = path.stat()
    return _cached_sha256(str(path.resolve()), info.st_size, info.st_mtime_ns)


def _tile_rows_counter(plan: TilePlan, rows_before: int, on_rows: Callable[[int, int], None] | None
                       ) -> Callable[[int], None] | None:
    """A label-rows listener that tells ``on_rows`` how many of the plan's tile rows are done (their labels
    written)."""
    if on_rows is None:
        return None
    ends = [*plan.ys[1:], plan.image_hw[0]]  # each tile row's last final label row (exclusive)

    def rows_done(label_rows: int) -> None:
        on_rows(sum(end <= label_rows for end in ends), len(ends))

    rows_done(rows_before)  # where this run starts: the rate of the ETA counts from here
    return rows_done


def process_image(segmenter: Segmenter, job: ImageJob, config: InferConfig) -> ImageRecord:
    """Decode, segment and write one image; its status record. One bad image costs only itself.

    An image over ``config.inflight_pixels`` hands back the memory each step leaves behind, as the pipeline does.
    A TIFF is read and written window by window (``segment_windowed``)."""
    if is_tiff_path(job.source):
        return segment_windowed(segmenter, job, config)
    try:
        image = decode_image(job, config.max_pixels)
    except InputError as exc:
        return failed_record(job, exc)
    large = image.shape[0] * image.shape[1] > config.inflight_pixels
    if large:
        return_freed_heap()
    result = segment_image(segmenter, job, image)
    if large:
        segmenter.backend.release_working_memory()
    if isinstance(result, ImageRecord):
        return result
    record = write_outputs(job, image, result, segmenter.spec.palette)
    if large:
        del image, result
        return_freed_heap()
    return record


# --- the pipeline ------------------------------------------------------------------------------


class ProgressReporter:
    """Progress bar (images/s) and error lines on stderr; silent when progress is off."""

    def __init__(self, total: int, enabled: bool, summary_path: Path | None = None) -> None:
        self.total = total
        self.enabled = enabled
        self._errors = ItemLines("failed images", f"the summary lists every one: {summary_path or SUMMARY_NAME}")
        self._bar = contextlib.ExitStack()
        self._advance: Callable[..., None] | None = None
        self._started = time.perf_counter()
        self._segmented = 0

    def __enter__(self) -> ProgressReporter:
        if self.enabled:
            self._advance = self._bar.enter_context(progress_bar(self.total, "segmenting"))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.close()
        self._errors.close()

    def advance(self, segmented: bool) -> None:
        """One image finished (segmented, or failed)."""
        self._segmented += int(segmented)
        if self._advance is not None:
            rate = self._segmented / max(time.perf_counter() - self._started, 1e-9)
            self._advance(status=f"{rate:.2f} images/s")

    def image_rows(self, relative: str) -> Callable[[int, int], None] | None:
        """A listener that shows an image's tile rows done and the time left in the bar (windowed TIFFs); None
        when progress is off."""
        if self._advance is None:
            return None
        advance, started, first = self._advance, time.perf_counter(), []

        def show(done: int, total: int) -> None:
            first[:] = first or [done]
            advance(steps=0, status=f"{printable(relative)}: "
                                    f"{rows_status(done, total, first[0], time.perf_counter() - started)}")

        return show

    def error(self, relative: str, message: str) -> None:
        """One error line for a failed image (a screenful of them; the rest are counted, summary.json has all)."""
        if self.enabled:
            self._errors.line(f"error: {printable(relative)}: {printable(message)}")

    def report_planned(self, records: tuple[ImageRecord, ...]) -> None:
        """Error lines for the images that failed while planning (clashing mask names)."""
        for record in records:
            if record.error:
                self.error(record.path, record.error)


def _put(target: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless the run is stopping; False when it was dropped."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class PixelBudget:
    """Admits images into a pipeline by their pixel count: one waits while those in flight and it would exceed
    ``limit``; an image larger than the limit is admitted once nothing else is in flight, and then runs alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._changed = threading.Condition()

    def acquire(self, pixels: int, stop: threading.Event) -> bool:
        """Wait until ``pixels`` fit (or nothing is in flight) and take them; False if ``stop`` was set first."""
        with self._changed:
            while self.in_flight and self.in_flight + pixels > self.limit:
                if stop.is_set():
                    return False
                self._changed.wait(0.1)
            self.in_flight += pixels
            return True

    def release(self, pixels: int) -> None:
        """An image left the pipeline (written, or failed)."""
        with self._changed:
            self.in_flight -= pixels
            self._changed.notify_all()


def _pixels(job: ImageJob) -> int:
    """The pixel count of a job's image from its header; 0 when unreadable (decoding then fails at once)."""
    size = image_size(job.source)
    return size[0] * size[1] if size is not None else 0


class _Pipeline:
    """Reader thread -> segmentation on the calling thread -> writer thread, with bounded queues and the images
    in flight held to ``config.inflight_pixels``."""

    def __init__(self, segmenter: Segmenter, config: InferConfig, reporter: ProgressReporter,
                 records: list[ImageRecord]) -> None:
        self.segmenter = segmenter
        self.config = config
        self.reporter = reporter
        self.records = records  # the caller's list: what was done survives an interruption
        self.budget = PixelBudget(config.inflight_pixels)
        self.stop = threading.Event()
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()

    def _record(self, record: ImageRecord) -> None:
        """Keep a record, print its error line and advance the bar."""
        with self._lock:
            self.records.append(record)
            if record.error:
                self.reporter.error(record.path, record.error)
            self.reporter.advance(record.status == "ok")

    def _fail(self, exc: BaseException) -> None:
        """Stop the run for an unexpected error in a stage thread; the main thread re-raises the first one."""
        if self.fatal is None:
            self.fatal = exc
        self.stop.set()

    def _read(self, jobs: list[ImageJob], decoded: queue.Queue) -> None:
        """The reader thread: decode the jobs' images; anything but a bad image stops the run."""
        try:
            self._decode_all(jobs, decoded)
        except BaseException as exc:
            self._fail(exc)

    def _decode_all(self, jobs: list[ImageJob], decoded: queue.Queue) -> None:
        """Decode images ahead of the model, within the pixel budget; a decoding error travels in place of the
        image (and gives its pixels back at once)."""
        for job in jobs:
            if is_tiff_path(job.source):  # read window by window while it is segmented: nothing decoded here
                if not _put(decoded, (job, WINDOWED, 0), self.stop):
                    return
                continue
            pixels = _pixels(job)
            if self.stop.is_set() or not self.budget.acquire(pixels, self.stop):
                return
            try:
                item: Any = decode_image(job, self.config.max_pixels)
            except InputError as exc:
                item = exc
                self.budget.release(pixels)
            if pixels > self.budget.limit:  # the decoder's freed buffer (4 bytes a pixel) would stay resident
                return_freed_heap()
            if not _put(decoded, (job, item, pixels), self.stop):
                return
            del item  # held while waiting for the next image's turn, it would outlive its trip through the pipeline
        _put(decoded, None, self.stop)

    def _write(self, finished: queue.Queue) -> None:
        """Write masks (and overlays) as they come; a write error fails only that image."""
        palette = self.segmenter.spec.palette
        try:
            while True:
                try:
                    item = finished.get(timeout=0.1)
                except queue.Empty:
                    if self.stop.is_set():
                        return
                    continue
                if item is None:
                    return
                job, image, result, pixels = item
                self._record(write_outputs(job, image, result, palette))
                del item, image, result  # the image leaves the pipeline here
                if pixels > self.budget.limit:  # the encoder's freed buffers would stay resident
                    return_freed_heap()
                self.budget.release(pixels)
        except BaseException as exc:  # anything else stops the run; the main thread re-raises it
            self._fail(exc)

    def run(self, jobs: list[ImageJob]) -> None:
        """Push every job through the three stages; re-raise anything fatal after the threads stop."""
        decoded: queue.Queue = queue.Queue(self.config.prefetch)
        finished: queue.Queue = queue.Queue(self.config.prefetch)
        reader = threading.Thread(target=self._read, args=(jobs, decoded), name="fcn-infer-read", daemon=True)
        writer = threading.Thread(target=self._write, args=(finished,), name="fcn-infer-write", daemon=True)
        reader.start()
        writer.start()
        try:
            self._segment_all(decoded, finished)
            _put(finished, None, self.stop)
            writer.join()
        finally:
            self.stop.set()
            reader.join(timeout=5)  # a reader still decoding a huge image writes nothing; let it go
            writer.join()  # writes the images already segmented (at most ``prefetch`` of them), then ends
        if self.fatal is not None:
            raise self.fatal

    def _segment_all(self, decoded: queue.Queue, finished: queue.Queue) -> None:
        """Segment decoded images until the reader's end marker (or a stop)."""
        while not self.stop.is_set():
            try:
                item = decoded.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return
            job, image, pixels = item
            del item
            if isinstance(image, BaseException):
                self._record(failed_record(job, image))
                continue
            if image is WINDOWED:
                on_rows = self.reporter.image_rows(job.relative)
                self._record(segment_windowed(self.segmenter, job, self.config, on_rows))
                continue
            result = segment_image(self.segmenter, job, image)
            if pixels > self.budget.limit:  # it ran alone: the runtime's working memory need not wait for the next
                self.segmenter.backend.release_working_memory()  # one while it is decoded
            if isinstance(result, ImageRecord):
                self._record(result)
                self.budget.release(pixels)
                continue
            # the writer needs the image only for an overlay; the labels alone are a third of its size
            _put(finished, (job, image if job.overlay is not None else None, result, pixels), self.stop)
            del image, result


def _ok_record(job: ImageJob, result: SegmentResult) -> ImageRecord:
    """The record of a segmented image (its labels have the image's size)."""
    height, width = result.labels.shape[:2]
    return ImageRecord(job.relative, "ok", height, width, result.mode, result.tiles,
                       round(result.seconds * 1000.0, 2), job.output)


# --- entry point -------------------------------------------------------------------------------


def check_locations(model: Path | None, in_dir: Path, out_dir: Path, summary: Path, relatives: Iterable[Path],
                    overlay: bool, tiff_masks: bool = True) -> None:
    """Before any work: no output (the folder, a mask, an overlay, the summary) replaces an input (the model, its
    sidecar, the input folder or an image); the summary is a writable JSON file that is no other output.

    ``model`` None: a remote run (the client), whose model is on the server.
    """
    jobs = [image_job(in_dir, out_dir, relative.as_posix(), overlay, tiff_masks) for relative in relatives]
    inputs = [Place("the input folder", in_dir), *(Place("an input image", job.source) for job in jobs)]
    if model is not None:
        inputs += with_sidecar("the model", model)
    outputs = [Place("--out", out_dir), Place("--summary", summary)]
    outputs += [Place("the mask", job.mask) for job in jobs]
    outputs += [Place("the overlay", job.overlay) for job in jobs if job.overlay is not None]
    check_outputs_apart(outputs, inputs)
    check_output_dir(out_dir, "--out")
    check_output_file(summary, "--summary")
    target = summary.resolve()
    written = {job.mask.resolve(): "an output mask" for job in jobs}
    written.update({job.overlay.resolve(): "an output overlay" for job in jobs if job.overlay is not None})
    written[(out_dir / LOCK_NAME).resolve()] = "the output folder's lock file"
    if target in written:
        raise InputError(f"--summary {summary} is {written[target]} of this run; writing the summary would replace it",
                         "pass another path, e.g. the default OUT/summary.json")
    if is_image_path(summary):
        raise InputError(f"--summary {summary} has an image suffix; the summary is JSON",
                         "name it e.g. summary.json (an image name could be an input or a mask)")


@dataclass(frozen=True)
class FolderJob:
    """A checked, locked and planned folder run: the model, the folders and the plan of images."""

    model: Path
    in_dir: Path
    out_dir: Path
    plan: FolderPlan


@dataclass
class RunProgress:
    """What a run has done so far, kept by the caller so that an interrupted run still reports it."""

    records: list[ImageRecord]
    backend: str
    device: str


#: segments a job's planned images, appending a record per image reached to the progress it is given
FolderRunner = Callable[[FolderJob, ProgressReporter, RunProgress], None]


def infer_folder(
    model: str | os.PathLike[str] | None,
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: InferConfig = InferConfig(),
) -> InferSummary:
    """Segment the images of ``in_dir`` into masks mirrored under ``out_dir``; write the summary JSON.

    ``model=None`` picks ``default_model``. Every output location is checked before any work. Raises
    BatchFailure (after writing the summary) if any image failed or the summary cannot be written, and
    Interrupted (after writing the summary, which marks the images not reached as 'pending') on Ctrl-C or SIGTERM.
    """
    with planned_folder(model, in_dir, out_dir, config) as job:
        return run_folder_job(job, config, _segment_here(config))


@contextlib.contextmanager
def planned_folder(model: str | os.PathLike[str] | None, in_dir: str | os.PathLike[str],
                   out_dir: str | os.PathLike[str], config: InferConfig) -> Iterator[FolderJob]:
    """Check every location, lock ``out_dir``, clear temporaries a killed run left and plan the images.

    The same preparation for a run on this machine and one on a cluster; the lock is held for the block.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    single = single_image(in_dir)
    if single is None and not in_dir.is_dir():
        raise InputError(f"input folder not found: {in_dir}", "pass a folder of images, or one image file")
    model_path = Path(model) if model is not None else default_model(
        config.device, engine_unavailable=tensorrt_unavailable, backend=config.backend.backend)
    summary_path = summary_location(config.summary, out_dir)
    if single is not None:  # one image: its folder is the input folder, the image its only entry
        in_dir, relatives, unreadable = in_dir.parent, [single], []
    else:
        relatives, unreadable = scan_images(in_dir, config.recursive, out_dir)
    check_locations(model_path, in_dir, out_dir, summary_path, relatives, config.overlay)
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out_dir, config.wait):
        remove_stale_temps(out_dir)
        remove_stale_temps(summary_path.parent, recursive=False, target_name=summary_path.name)
        plan = plan_images(in_dir, out_dir, relatives, config.overwrite, config.overlay, config.level)  # after the lock: a run
        yield FolderJob(model_path, in_dir, out_dir,                                       # waited for is skipped
                        FolderPlan(plan.todo, (*unreadable, *plan.records)))


def run_folder_job(job: FolderJob, config: InferConfig, runner: FolderRunner) -> InferSummary:
    """Run ``runner`` over the job's plan, write the summary (also when interrupted), raise for failures or a stop.

    SIGTERM stops the run like Ctrl-C; the summary then marks the images not reached as 'pending'.
    """
    started = time.perf_counter()
    progress = RunProgress([], "", str(config.device))
    interrupted = None
    with signals_interrupt(signal.SIGTERM) as received:
        try:
            summary_path = summary_location(config.summary, job.out_dir)
            with ProgressReporter(len(job.plan.todo), config.progress, summary_path) as reporter:
                reporter.report_planned(job.plan.records)
                runner(job, reporter, progress)
        except KeyboardInterrupt:
            interrupted = received[-1] if received else "SIGINT"
        finished = list(progress.records)
        reached = {record.path for record in finished}
        pending = [ImageRecord(relative, "pending", output=image_job(job.in_dir, job.out_dir, relative, False).output)
                   for relative in job.plan.todo if relative not in reached]
        summary = make_summary(job.model, progress.backend, progress.device, job.in_dir, job.out_dir, config,
                               time.perf_counter() - started, [*job.plan.records, *finished, *pending], interrupted)
        return finish_run(summary)


def _segment_here(config: InferConfig) -> FolderRunner:
    """The runner of a run on this machine: one segmenter, the reader -> model -> writer pipeline."""

    def run(job: FolderJob, reporter: ProgressReporter, progress: RunProgress) -> None:
        with open_segmenter(job.model, config.device, config.segmenter, config.backend) as segmenter:
            progress.backend, progress.device = segmenter.backend.name, segmenter.backend.device
            pipeline = _Pipeline(segmenter, config, reporter, progress.records)
            pipeline.run([image_job(job.in_dir, job.out_dir, relative, config.overlay) for relative in job.plan.todo])

    return run


def make_summary(model_path: Path, backend: str, device: str, in_dir: Path, out_dir: Path, config: InferConfig,
                 seconds: float, records: list[ImageRecord], interrupted: str | None = None) -> InferSummary:
    """The summary of a folder run, records sorted by path."""
    summary_path = summary_location(config.summary, out_dir)
    return InferSummary(
        model=str(model_path), backend=backend, device=device, in_dir=str(in_dir), out_dir=str(out_dir),
        summary_path=str(summary_path), config=_config_dict(config), seconds=seconds,
        images=tuple(sorted(records, key=lambda r: r.path)), interrupted=interrupted,
    )


def finish_run(summary: InferSummary) -> InferSummary:
    """Write the summary JSON atomically, then raise what the run ended in: Interrupted (exit 130/143) when it was
    stopped, BatchFailure (exit 3, carrying the summary) when the summary could not be written or an image failed."""
    unsaved = None
    try:
        write_text_atomic(summary.summary_path, json.dumps(summary.to_dict(), indent=2) + "\n")
    except OSError as exc:
        unsaved = f"could not write the summary {summary.summary_path} ({exc.strerror or exc})"
    failed = summary.count("failed")
    if summary.interrupted:
        raise Interrupted(
            f"interrupted: {summary.done} of {len(summary.images)} images done; run the same command again to resume",
            None if unsaved is None else f"{unsaved}; free disk space before resuming",
            summary, summary.interrupted,
        )
    if unsaved is not None:
        counts = f"; {failed} of {len(summary.images)} images failed" if failed else ""
        raise BatchFailure(f"{unsaved}{counts}",
                           "free disk space (or pass --summary elsewhere) and run again; finished masks are kept "
                           "and skipped", summary)
    if failed:
        raise BatchFailure(f"{failed} of {len(summary.images)} images failed (listed in {summary.summary_path})",
                           "fix or remove those files and run again; finished masks are kept and skipped", summary)
    return summary


def _config_dict(config: InferConfig) -> dict[str, Any]:
    """The run's options as JSON-ready values."""
    values = asdict(config)
    values["summary"] = str(config.summary) if config.summary is not None else None
    return values


__all__ = ["FolderJob", "FolderPlan", "FolderRunner", "ImageJob", "ImageRecord", "InferConfig", "InferSummary",
           "ProgressReporter", "RunProgress", "default_model", "find_images", "finish_run", "image_job", "infer_folder",
           "make_summary", "plan_images", "planned_folder", "process_image", "run_folder_job", "scan_images",
           "summary_location"]
