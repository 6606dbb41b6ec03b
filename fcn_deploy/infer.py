"""Segment every image of a folder into VOC palette masks, resumably, with a summary of what happened.

A reader thread decodes the next images while the model runs, and a writer thread encodes and writes
finished masks, each through bounded queues. Every output is written to a temporary name and renamed, so an
interrupted run leaves no half-written file and the next run skips what is done. A bad image is reported
(stderr and summary) and the run goes on; if any image failed, BatchFailure is raised at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.devices import DEVICES, Device
from fcn_deploy.errors import (
    ArtifactError,
    BatchFailure,
    FcnDeployError,
    InputError,
    describe,
)
from fcn_deploy.fileio import write_text_atomic
from fcn_deploy.imageio import (
    DEFAULT_MAX_PIXELS,
    is_image_path,
    read_image,
    write_mask,
    write_overlay,
)
from fcn_deploy.progress import log, progress_bar
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.runtime.tensorrt_support import tensorrt_unavailable
from fcn_deploy.segmenter import (
    Segmenter,
    SegmenterConfig,
    SegmentResult,
    open_segmenter,
)
from fcn_deploy.workspace import default_model  # importable from here too

SUMMARY_NAME = "summary.json"
MASK_SUFFIX = ".png"
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

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}", f"use one of: {', '.join(DEVICES)}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise InputError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.prefetch < 1:
            raise InputError(f"prefetch must be positive, got {self.prefetch}")


@dataclass(frozen=True)
class ImageRecord:
    """What happened to one input image."""

    path: str  # relative to the input folder, '/'-separated
    status: str  # 'ok', 'skipped' (outputs exist) or 'failed'
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
                  "failed": self.count("failed"), "seconds": round(self.seconds, 3),
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
    excluded = exclude.resolve() if exclude is not None else None
    found: list[Path] = []
    for root, dirs, files in os.walk(in_dir):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if excluded is None or (root_path / d).resolve() != excluded)
        found.extend((root_path / name).relative_to(in_dir) for name in files if is_image_path(name))
        if not recursive:
            break
    return sorted(found, key=lambda p: p.as_posix())


def image_job(in_dir: Path, out_dir: Path, relative: str, overlay: bool) -> ImageJob:
    """Where the outputs of the image ``relative`` (to ``in_dir``) go under ``out_dir``."""
    mask_relative = Path(relative).with_suffix(MASK_SUFFIX).as_posix()
    overlay_path = out_dir / Path(relative).with_suffix(OVERLAY_SUFFIX) if overlay else None
    return ImageJob(relative, in_dir / relative, out_dir / mask_relative, mask_relative, overlay_path)


def plan_folder(in_dir: Path, out_dir: Path, config: InferConfig) -> FolderPlan:
    """List the images of ``in_dir`` (as ``config`` says) and plan them with ``plan_images``."""
    return plan_images(in_dir, out_dir, find_images(in_dir, config.recursive, out_dir), config.overwrite,
                       config.overlay)


def plan_images(in_dir: Path, out_dir: Path, relatives: Iterable[Path], overwrite: bool, overlay: bool) -> FolderPlan:
    """Fail images whose mask name another image already claims; skip those already done unless ``overwrite``."""
    todo: list[str] = []
    records: list[ImageRecord] = []
    claimed: dict[str, str] = {}
    for relative_path in relatives:
        relative = relative_path.as_posix()
        mask_relative = relative_path.with_suffix(MASK_SUFFIX).as_posix()
        key = mask_relative.lower()
        if key in claimed:
            records.append(ImageRecord(relative, "failed", error=(
                f"its mask {mask_relative} is also the mask of {claimed[key]}; rename one of them")))
            continue
        claimed[key] = relative
        if not overwrite and _done(image_job(in_dir, out_dir, relative, overlay)):
            records.append(ImageRecord(relative, "skipped", output=mask_relative))
        else:
            todo.append(relative)
    return FolderPlan(tuple(todo), tuple(records))


def _done(job: ImageJob) -> bool:
    """Every output of ``job`` already exists."""
    return job.mask.is_file() and (job.overlay is None or job.overlay.is_file())


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


def write_outputs(job: ImageJob, image: np.ndarray, result: SegmentResult, palette: Any) -> ImageRecord:
    """Write the mask (and overlay) atomically; the ok record, or a failed one when writing fails."""
    try:
        write_mask(job.mask, result.labels, palette)
        if job.overlay is not None:
            write_overlay(job.overlay, image, result.labels, palette)
    except (FcnDeployError, OSError, ValueError) as exc:
        job.mask.unlink(missing_ok=True)
        return failed_record(job, exc)
    return _ok_record(job, image, result)


def process_image(segmenter: Segmenter, job: ImageJob, max_pixels: int | None) -> ImageRecord:
    """Decode, segment and write one image; its status record. One bad image costs only itself."""
    try:
        image = decode_image(job, max_pixels)
    except InputError as exc:
        return failed_record(job, exc)
    result = segment_image(segmenter, job, image)
    if isinstance(result, ImageRecord):
        return result
    return write_outputs(job, image, result, segmenter.spec.palette)


# --- the pipeline ------------------------------------------------------------------------------


class ProgressReporter:
    """Progress bar (images/s) and error lines on stderr; silent when progress is off."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
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

    def advance(self, segmented: bool) -> None:
        """One image finished (segmented, or failed)."""
        self._segmented += int(segmented)
        if self._advance is not None:
            rate = self._segmented / max(time.perf_counter() - self._started, 1e-9)
            self._advance(status=f"{rate:.2f} images/s")

    def error(self, relative: str, message: str) -> None:
        """One error line for a failed image."""
        if self.enabled:
            log(f"error: {relative}: {message}")

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


class _Pipeline:
    """Reader thread -> segmentation on the calling thread -> writer thread, with bounded queues."""

    def __init__(self, segmenter: Segmenter, config: InferConfig, reporter: ProgressReporter) -> None:
        self.segmenter = segmenter
        self.config = config
        self.reporter = reporter
        self.records: list[ImageRecord] = []
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

    def _read(self, jobs: list[ImageJob], decoded: queue.Queue) -> None:
        """Decode images ahead of the model; a decoding error travels in place of the image."""
        for job in jobs:
            if self.stop.is_set():
                return
            try:
                item: Any = decode_image(job, self.config.max_pixels)
            except InputError as exc:
                item = exc
            if not _put(decoded, (job, item), self.stop):
                return
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
                job, image, result = item
                self._record(write_outputs(job, image, result, palette))
        except BaseException as exc:  # anything else stops the run; the main thread re-raises it
            self.fatal = exc
            self.stop.set()

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
            reader.join(timeout=5)
            writer.join(timeout=5)
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
            job, image = item
            if isinstance(image, BaseException):
                self._record(failed_record(job, image))
                continue
            result = segment_image(self.segmenter, job, image)
            if isinstance(result, ImageRecord):
                self._record(result)
                continue
            _put(finished, (job, image, result), self.stop)


def _ok_record(job: ImageJob, image: np.ndarray, result: SegmentResult) -> ImageRecord:
    """The record of a segmented image."""
    height, width = image.shape[:2]
    return ImageRecord(job.relative, "ok", height, width, result.mode, result.tiles,
                       round(result.seconds * 1000.0, 2), job.output)


# --- entry point -------------------------------------------------------------------------------


def check_folders(in_dir: Path, out_dir: Path) -> None:
    """The input folder exists and differs from the output folder (masks must not replace inputs)."""
    if not in_dir.is_dir():
        raise InputError(f"input folder not found: {in_dir}", "pass a folder of images")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} exists and is not a folder", "pass a folder for --out")
    if out_dir.resolve() == in_dir.resolve():
        raise InputError(f"the output folder is the input folder ({in_dir})",
                         "write masks elsewhere, e.g. --out masks")


def infer_folder(
    model: str | os.PathLike[str] | None,
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: InferConfig = InferConfig(),
) -> InferSummary:
    """Segment the images of ``in_dir`` into masks mirrored under ``out_dir``; write the summary JSON.

    ``model=None`` picks ``default_model``. Raises BatchFailure (after writing the summary) if any image failed.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    check_folders(in_dir, out_dir)
    model_path = Path(model) if model is not None else default_model(
        config.device, engine_unavailable=tensorrt_unavailable, backend=config.backend.backend)
    plan = plan_folder(in_dir, out_dir, config)
    started = time.perf_counter()
    with open_segmenter(model_path, config.device, config.segmenter, config.backend) as segmenter:
        with ProgressReporter(len(plan.todo), config.progress) as reporter:
            reporter.report_planned(plan.records)
            pipeline = _Pipeline(segmenter, config, reporter)
            pipeline.run([image_job(in_dir, out_dir, relative, config.overlay) for relative in plan.todo])
        backend = segmenter.backend
        summary = make_summary(model_path, backend.name, backend.device, in_dir, out_dir, config,
                               time.perf_counter() - started, [*plan.records, *pipeline.records])
    return finish_run(summary)


def make_summary(model_path: Path, backend: str, device: str, in_dir: Path, out_dir: Path, config: InferConfig,
                 seconds: float, records: list[ImageRecord]) -> InferSummary:
    """The summary of a folder run, records sorted by path."""
    summary_path = config.summary or out_dir / SUMMARY_NAME
    return InferSummary(
        model=str(model_path), backend=backend, device=device, in_dir=str(in_dir), out_dir=str(out_dir),
        summary_path=str(summary_path), config=_config_dict(config), seconds=seconds,
        images=tuple(sorted(records, key=lambda r: r.path)),
    )


def finish_run(summary: InferSummary) -> InferSummary:
    """Write the summary JSON atomically; raise BatchFailure (carrying the summary) if any image failed."""
    write_text_atomic(summary.summary_path, json.dumps(summary.to_dict(), indent=2) + "\n")
    failed = summary.count("failed")
    if failed:
        raise BatchFailure(f"{failed} of {len(summary.images)} images failed (listed in {summary.summary_path})",
                           "fix or remove those files and run again; finished masks are kept and skipped", summary)
    return summary


def _config_dict(config: InferConfig) -> dict[str, Any]:
    """The run's options as JSON-ready values."""
    values = asdict(config)
    values["summary"] = str(config.summary) if config.summary is not None else None
    return values


__all__ = ["FolderPlan", "ImageJob", "ImageRecord", "InferConfig", "InferSummary", "ProgressReporter", "default_model",
           "find_images", "finish_run", "image_job", "infer_folder", "make_summary", "plan_folder", "plan_images", "process_image"]
