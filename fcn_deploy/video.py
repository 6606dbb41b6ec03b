"""Segment a video file frame by frame into an overlay or mask video, with each frame's class pixel counts.

``infer_video`` decodes the input with PyAV (the ``video`` extra), segments every frame with the same Segmenter
that segments images, and encodes the overlay (the palette blended over the frame) or the mask (the palette
colours alone, losslessly, so every pixel decodes back to its class) at the input's frame rate and size. Beside
the video, ``<name>.counts.jsonl`` holds one JSON line per frame: its class pixel counts, or its error.

Resumable: frames are encoded in chunks, each a small file written under a temporary name in the resume folder
``.<name>.resume/`` beside the output and recorded in its ``progress.json`` only once complete. A killed or
interrupted run leaves the finished chunks; the next run with the same input, model and options decodes the
frames those chunks hold without segmenting them again, segments the rest, and then joins the chunks (their
packets copied, not re-encoded) into the output under a temporary name, renamed when complete. A run whose
input, model or options differ starts over.

A frame that cannot be decoded or segmented fails alone: it is written unsegmented (the input frame in an
overlay video where there is one, void-coloured in a mask video), its JSON line carries the error, and the run
ends in BatchFailure (exit 3) after writing everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fcn_deploy.contract import with_sidecar
from fcn_deploy.deps import require
from fcn_deploy.devices import DEVICES, Device
from fcn_deploy.errors import (
    ArtifactError,
    BatchFailure,
    InputError,
    Interrupted,
    MissingComponentError,
    describe,
    printable,
)
from fcn_deploy.fileio import (
    Place,
    atomic_path,
    check_output_file,
    check_outputs_apart,
    folder_lock,
    remove_stale_temps,
    sha256_file,
    write_text_atomic,
)
from fcn_deploy.imageio import mask_palette, overlay
from fcn_deploy.interrupts import signals_interrupt
from fcn_deploy.palette import VOID_LABEL  # a failed frame of a mask video is drawn in the void colour
from fcn_deploy.progress import log, progress_bar, stderr_console
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.runtime.tensorrt_support import tensorrt_unavailable
from fcn_deploy.segmenter import Segmenter, SegmenterConfig, open_segmenter
from fcn_deploy.workspace import default_model

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mkv", ".mov", ".avi", ".webm")  # inputs recognised as videos
OUTPUT_SUFFIXES: tuple[str, ...] = (".mp4", ".mkv", ".mov", ".webm")  # containers the output is written in
VideoMode = Literal["overlay", "mask"]
VIDEO_MODES: tuple[str, ...] = ("overlay", "mask")
COUNTS_SUFFIX = ".counts.jsonl"
PROGRESS_NAME = "progress.json"
CHUNK_SUFFIX = ".mkv"  # chunks are Matroska, which holds every codec the outputs use
STATE_VERSION = 1
WRITE_QUEUE_FRAMES = 4  # segmented frames waiting for the writer thread
STOP_WAIT_S = 10.0  # how long a run that ends early waits for the writer thread before leaving it


@dataclass(frozen=True)
class VideoConfig:
    """Options of a video run; ``chunk_frames`` is how many frames a resumed run may have to segment again."""

    segmenter: SegmenterConfig = SegmenterConfig()
    device: Device = "auto"
    backend: BackendChoice = BackendChoice()
    mode: VideoMode = "overlay"
    overwrite: bool = False
    progress: bool = True
    wait: bool = False  # another run writes this output: wait for it (True) or refuse (False)
    chunk_frames: int = 120

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}", f"use one of: {', '.join(DEVICES)}")
        if self.mode not in VIDEO_MODES:
            raise InputError(f"unknown video mode {self.mode!r}", f"use one of: {', '.join(VIDEO_MODES)}")
        if self.chunk_frames < 1:
            raise InputError(f"chunk_frames must be positive, got {self.chunk_frames}")


@dataclass(frozen=True)
class VideoSummary:
    """What a video run did: frames segmented now, frames found done by an earlier run, failures, speed."""

    model: str
    backend: str
    device: str
    video: str
    output: str
    counts: str
    mode: str
    width: int
    height: int
    rate: str  # frames per second as a fraction, e.g. '30000/1001'
    frames: int  # frames in the output (every decoded or failed frame)
    segmented: int  # frames segmented by this run
    resumed: int  # frames an earlier, interrupted run had finished
    failed: int
    seconds: float
    skipped: bool = False  # the outputs existed: nothing was done

    @property
    def frames_per_second(self) -> float:
        """Frames segmented (decoded, segmented and encoded) per wall-clock second of this run."""
        return self.segmented / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Encoding:
    """The encoder of an output: lossy for overlays, lossless RGB for masks; never B-frames, so that packets come
    in frame order and chunks join by numbering their packets."""

    codec: str
    pixel_format: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VideoInfo:
    """The input's frame size and rate, and the frame count its header announces (0 when it does not)."""

    width: int
    height: int
    rate: Fraction
    expected_frames: int


@dataclass
class FrameCounts:
    """The frames of one run so far (kept by the caller, so that an interruption can still report them)."""

    done_before: int = 0
    segmented: int = 0
    failed: int = 0
    backend: str = ""
    device: str = ""


@dataclass
class _Chunk:
    """Frames being encoded into one chunk file, with their JSON lines."""

    first: int
    path: Path
    container: Any
    stream: Any
    lines: list[str] = field(default_factory=list)


# --- names and checks ------------------------------------------------------------------------------


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True for file names with a video suffix (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def counts_path_of(output: Path) -> Path:
    """The per-frame class counts beside an output video: ``seg.mp4`` -> ``seg.counts.jsonl``."""
    return output.with_name(output.stem + COUNTS_SUFFIX)


def resume_dir_of(output: Path) -> Path:
    """The folder holding the finished chunks of an unfinished run: ``seg.mp4`` -> ``.seg.mp4.resume``."""
    return output.with_name(f".{output.name}.resume")


def videos_in(folder: Path, recursive: bool) -> list[Path]:
    """Video files under ``folder`` (relative, sorted): a folder run segments images only and names these."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend((Path(root) / name).relative_to(folder) for name in files if is_video_path(name))
        if not recursive:
            break
    return sorted(found)


def encoding_for(output: Path, mode: str, height: int, width: int) -> Encoding:
    """The encoder of ``output``: H.264 (VP9 in .webm); masks lossless in RGB, overlays 4:2:0 where the size is
    even (4:4:4 otherwise: 4:2:0 halves both sides)."""
    webm = output.suffix.lower() == ".webm"
    if mode == "mask":
        if webm:
            return Encoding("libvpx-vp9", "gbrp", (("lossless", "1"),))
        return Encoding("libx264rgb", "rgb24", (("crf", "0"), ("preset", "veryfast"), ("bf", "0")))
    if webm:
        return Encoding("libvpx-vp9", "yuv420p")
    return Encoding("libx264", "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p",
                    (("crf", "18"), ("preset", "veryfast"), ("bf", "0")))  # crf 18: the palette's edges stay sharp


def _check_locations(model: Path, video: Path, output: Path) -> None:
    """Before any work: the input is a video file, the output a video name, and no output replaces an input."""
    if not video.is_file():
        what = "not found" if not video.exists() else "not a regular file"
        raise InputError(f"input video {video}: {what}", "pass a video file (.mp4, .mkv, .mov, .avi, .webm)")
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"--out {output} is not a video name; a video input is segmented into a video",
                         f"name the output video with one of {', '.join(OUTPUT_SUFFIXES)}, e.g. --out seg.mp4")
    counts, resume = counts_path_of(output), resume_dir_of(output)
    check_outputs_apart(
        [Place("--out", output), Place("the class counts", counts), Place("the resume folder", resume, whole=True)],
        [Place("the input video", video), *with_sidecar("the model", model)],
    )
    check_output_file(output, "--out")
    check_output_file(counts, "the class counts")


# --- decoding --------------------------------------------------------------------------------------


def _av() -> Any:
    """PyAV, or MissingComponentError naming the ``video`` extra."""
    return require("av")


@contextlib.contextmanager
def open_video(av: Any, video: Path) -> Iterator[tuple[Any, Any, VideoInfo]]:
    """The open container, its first video stream and what it announces; InputError for an unreadable file."""
    try:
        container = av.open(str(video), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{video}: cannot be read as a video ({exc})",
                         "check that the file is complete; ffmpeg -v error -i FILE -f null - shows what is wrong") from exc
    try:
        if not container.streams.video:
            raise InputError(f"{video}: holds no video stream", "pass a file with a video track")
        stream = container.streams.video[0]
        rate = stream.guessed_rate or stream.average_rate  # FFmpeg's own choice for a constant-rate output
        if not rate or stream.codec_context.width < 1 or stream.codec_context.height < 1:
            raise InputError(f"{video}: its video stream announces no frame size or frame rate",
                             "re-encode it, e.g. ffmpeg -i FILE -c:v libx264 fixed.mp4")
        yield container, stream, VideoInfo(stream.codec_context.width, stream.codec_context.height, Fraction(rate),
                                           _expected_frames(container, stream, Fraction(rate)))
    finally:
        container.close()


def _expected_frames(container: Any, stream: Any, rate: Fraction) -> int:
    """The frame count from the header, else from the duration (for progress only; 0 when neither is known)."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return int(round(stream.duration * stream.time_base * rate))
    if container.duration:
        return int(round(Fraction(container.duration, 1_000_000) * rate))
    return 0


def decoded_frames(av: Any, container: Any, stream: Any, info: VideoInfo,
                   skip: int = 0) -> Iterator[tuple[int, np.ndarray | None, InputError | None]]:
    """(index, H×W×3 uint8 RGB or None, error or None) for every frame in order; the first ``skip`` frames are
    counted but not converted (an earlier run finished them).

    A packet that cannot be decoded counts as one failed frame; a frame of another size than the stream's fails
    (the output keeps one size); data the demuxer cannot read ends the video with one failed frame saying so.
    """
    index = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            if index >= skip:
                yield index, None, InputError(f"the file ends in unreadable data after frame {index - 1} ({exc})")
            return
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            if index >= skip:
                yield index, None, InputError(f"cannot decode this frame ({exc})")
            index += 1
            continue
        for frame in frames:
            if index < skip:
                index += 1
                continue
            if (frame.width, frame.height) != (info.width, info.height):
                yield index, None, InputError(f"the frame is {frame.width}x{frame.height}, the video "
                                              f"{info.width}x{info.height}; frame sizes changing mid-stream "
                                              "are not supported")
            else:
                yield index, frame.to_ndarray(format="rgb24"), None
            index += 1


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], rate: Fraction | int = 25,
                codec: str = "libx264", pixel_format: str = "yuv420p", container_format: str | None = None) -> Path:
    """Encode H×W×3 uint8 RGB frames as a video at ``rate`` frames/s (e.g. a clip to try ``infer_video`` on);
    the container follows the suffix unless ``container_format`` names one."""
    av = _av()
    with av.open(str(path), "w", format=container_format) as container:
        stream = None
        for index, image in enumerate(frames):
            if stream is None:
                stream = container.add_stream(codec, rate=rate)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = pixel_format
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode() if stream is not None else ():
            container.mux(packet)
    return Path(path)


# --- the resume record -----------------------------------------------------------------------------


def _identity(video: Path, model: Path, output: Path, config: VideoConfig, encoding: Encoding) -> dict[str, Any]:
    """What finished chunks depend on: the input's and the model's contents and every option that changes pixels."""
    stat = video.stat()
    identity = {
        "version": STATE_VERSION,
        "input": {"size": stat.st_size, "sha256": sha256_file(video)},
        "model": {"sha256": sha256_file(model)},
        "output": output.suffix.lower(),
        "mode": config.mode,
        "encoding": asdict(encoding),
        "segmenter": asdict(config.segmenter),
        "device": config.device,
        "backend": config.backend.label(),
    }
    return json.loads(json.dumps(identity))  # as the record holds it (tuples become lists)


def _load_chunks(resume: Path, identity: dict[str, Any]) -> list[dict[str, int]] | None:
    """The finished chunks recorded for this identity (in order, gap-free); None when there is no usable record."""
    try:
        state = json.loads((resume / PROGRESS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("identity") != identity:
        return None
    chunks, expected = [], 0
    for chunk in state.get("chunks", []):
        if chunk.get("first") != expected or not _chunk_files_exist(resume, expected):
            break
        chunks.append({"first": int(chunk["first"]), "frames": int(chunk["frames"])})
        expected += int(chunk["frames"])
    return chunks


def _chunk_name(first: int) -> str:
    return f"chunk-{first:010d}"


def _chunk_files_exist(resume: Path, first: int) -> bool:
    name = _chunk_name(first)
    return (resume / f"{name}{CHUNK_SUFFIX}").is_file() and (resume / f"{name}.jsonl").is_file()


def _save_chunks(resume: Path, identity: dict[str, Any], chunks: list[dict[str, int]]) -> None:
    write_text_atomic(resume / PROGRESS_NAME, json.dumps({"identity": identity, "chunks": chunks}, indent=1) + "\n")


def _start_over(resume: Path) -> None:
    """Remove every chunk and record of an earlier run (the lock file stays)."""
    for entry in resume.iterdir():
        if entry.name.startswith("chunk-") or entry.name == PROGRESS_NAME:
            entry.unlink()


# --- encoding ----------------------------------------------------------------------------------------


def _open_chunk(av: Any, resume: Path, first: int, info: VideoInfo, encoding: Encoding,
                stack: contextlib.ExitStack) -> _Chunk:
    """A chunk file opened for writing under a temporary name (renamed by ``_close_chunk`` once complete)."""
    temporary = stack.enter_context(atomic_path(resume / f"{_chunk_name(first)}{CHUNK_SUFFIX}"))
    container = av.open(str(temporary), "w", format="matroska")
    stack.callback(container.close)
    stream = container.add_stream(encoding.codec, rate=info.rate, options=dict(encoding.options))
    stream.width, stream.height, stream.pix_fmt = info.width, info.height, encoding.pixel_format
    return _Chunk(first, resume / f"{_chunk_name(first)}{CHUNK_SUFFIX}", container, stream)


def _encode(av: Any, chunk: _Chunk, rgb: np.ndarray, index: int) -> None:
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame.pts = index - chunk.first
    for packet in chunk.stream.encode(frame):
        chunk.container.mux(packet)


def _join_chunks(av: Any, resume: Path, chunks: list[dict[str, int]], output: Path, rate: Fraction) -> None:
    """Copy the chunks' packets, renumbered one frame each at ``rate``, into ``output`` (under a temporary name)."""
    time_base = Fraction(1) / rate
    with atomic_path(output) as temporary:
        with av.open(str(temporary), "w", format=_muxer(output)) as joined:
            target, index = None, 0
            for chunk in chunks:
                with av.open(str(resume / f"{_chunk_name(chunk['first'])}{CHUNK_SUFFIX}"), "r") as source:
                    stream = source.streams.video[0]
                    if target is None:
                        target = joined.add_stream_from_template(stream, rate=rate)
                        target.time_base = time_base  # whole ticks a frame: the rate reads back exactly
                    for packet in source.demux(stream):
                        if packet.size == 0:  # the demuxer's end marker
                            continue
                        packet.stream, packet.time_base = target, time_base
                        packet.pts = packet.dts = index
                        packet.duration = 1
                        joined.mux(packet)
                        index += 1


def _muxer(output: Path) -> str:
    """FFmpeg's muxer for an output suffix (the temporary name has none)."""
    return {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}[output.suffix.lower()]


def _check_encoder(av: Any, encoding: Encoding) -> None:
    """MissingComponentError when this PyAV build lacks the encoder (PyPI's wheels have them all)."""
    try:
        av.codec.Codec(encoding.codec, "w")
    except (av.FFmpegError, ValueError) as exc:
        raise MissingComponentError(
            f"this PyAV build has no {encoding.codec} encoder ({exc})",
            "pip install --force-reinstall 'fcn-deploy[video]' (PyAV's wheels include libx264 and libvpx)",
        ) from exc


# --- per frame ---------------------------------------------------------------------------------------


def _frame_line(index: int, rate: Fraction, labels: np.ndarray | None, names: tuple[str, ...],
                error: str | None = None) -> str:
    """One JSON line: the frame's index and time, and its class pixel counts (classes present) or its error."""
    line: dict[str, Any] = {"frame": index, "seconds": round(float(index / rate), 6)}
    if error is not None:
        line["error"] = error
    else:
        counts = np.bincount(np.asarray(labels).ravel(), minlength=len(names))
        line["counts"] = {names[label] if label < len(names) else str(label): int(count)
                          for label, count in enumerate(counts) if count}
    return json.dumps(line)


class _FrameDrawer:
    """Draws output frames from segmented ones: the overlay, or the mask colours; and what a failed frame shows."""

    def __init__(self, segmenter: Segmenter, mode: str, info: VideoInfo) -> None:
        self.mode = mode
        self.palette = segmenter.spec.palette
        self.colors = np.asarray(mask_palette(self.palette), np.uint8)
        self.names = segmenter.spec.class_names
        self.failed_frame = np.broadcast_to(self.colors[VOID_LABEL] if mode == "mask" else np.uint8(0),
                                            (info.height, info.width, 3))

    def draw(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The overlay of ``labels`` on ``image``, or the labels' mask colours."""
        return self.colors[labels] if self.mode == "mask" else overlay(image, labels, self.palette)

    def unsegmented(self, image: np.ndarray | None) -> np.ndarray:
        """What a failed frame shows: the input frame in an overlay video (where decoded), else the fill."""
        if self.mode == "overlay" and image is not None:
            return image
        return np.ascontiguousarray(self.failed_frame)


# --- progress -------------------------------------------------------------------------------------------


class _FrameProgress:
    """A bar (frames done of those announced, elapsed, ETA) on a terminal; elsewhere one line per chunk."""

    def __init__(self, enabled: bool, total: int, done: int, stack: contextlib.ExitStack) -> None:
        self.enabled = enabled
        self.total = total
        self.done = done
        self.started = time.perf_counter()
        self.segmented = 0
        self.terminal = enabled and stderr_console().is_terminal
        self._advance = None
        if self.terminal:
            self._advance = stack.enter_context(progress_bar(max(total, done), "segmenting frames"))
            self._advance(done)

    def frame(self, segmented: bool) -> None:
        self.done += 1
        self.segmented += int(segmented)
        if self._advance is not None:
            self._advance(status=f"{self.rate():.1f} frames/s")

    def rate(self) -> float:
        return self.segmented / max(time.perf_counter() - self.started, 1e-9)

    def chunk_done(self) -> None:
        """A plain progress line off a terminal: frames done, speed and the time left."""
        if not self.enabled or self.terminal:
            return
        rate = self.rate()
        left = max(self.total - self.done, 0)
        eta = f", about {left / rate:.0f} s left" if rate > 0 and self.total else ""
        of = f" of {self.total}" if self.total else ""
        log(f"frames: {self.done}{of} done, {rate:.1f} frames/s{eta}")

    def error(self, index: int, message: str) -> None:
        if self.enabled:
            log(f"error: frame {index}: {printable(message)}")


# --- entry point -------------------------------------------------------------------------------------


def infer_video(model: str | os.PathLike[str] | None, video: str | os.PathLike[str], output: str | os.PathLike[str],
                config: VideoConfig = VideoConfig()) -> VideoSummary:
    """Segment every frame of ``video`` into the overlay or mask video ``output`` plus its class counts.

    ``model=None`` picks ``default_model``. Outputs that exist are kept (``skipped``) unless ``overwrite``. Raises
    BatchFailure (exit 3, after writing both outputs) when any frame failed, Interrupted on Ctrl-C or SIGTERM
    (the finished chunks are kept for the next run), InputError for an unreadable file and MissingComponentError
    without PyAV.
    """
    started = time.perf_counter()
    video, output = Path(video), Path(output)
    model_path = Path(model) if model is not None else default_model(
        config.device, engine_unavailable=tensorrt_unavailable, backend=config.backend.backend)
    _check_locations(model_path, video, output)
    av = _av()
    counts, resume = counts_path_of(output), resume_dir_of(output)
    with open_video(av, video) as (_, _, info):
        pass  # the header alone: refuse an unreadable file before any other work
    if output.is_file() and counts.is_file() and not resume.exists() and not config.overwrite:
        frames = sum(1 for _ in counts.open(encoding="utf-8"))
        return VideoSummary(str(model_path), "", str(config.device), str(video), str(output), str(counts), config.mode,
                            info.width, info.height, str(info.rate), frames, 0, frames, 0,
                            time.perf_counter() - started, skipped=True)
    encoding = encoding_for(output, config.mode, info.height, info.width)
    _check_encoder(av, encoding)
    resume.mkdir(parents=True, exist_ok=True)
    counted = FrameCounts()
    with folder_lock(resume, config.wait):
        remove_stale_temps(resume)
        identity = _identity(video, model_path, output, config, encoding)
        chunks = None if config.overwrite else _load_chunks(resume, identity)
        if chunks is None:
            _start_over(resume)
            chunks = []
        counted.done_before = sum(chunk["frames"] for chunk in chunks)
        if counted.done_before and config.progress:
            log(f"resuming: {counted.done_before} frames were done by an earlier run")
        with signals_interrupt(signal.SIGTERM) as received:
            try:
                _segment_chunks(av, model_path, video, resume, identity, chunks, info, encoding, config, counted)
            except KeyboardInterrupt:
                raise Interrupted(
                    f"interrupted: {sum(chunk['frames'] for chunk in chunks)} frames done and kept; run the same "
                    "command again to resume", None, None, received[-1] if received else "SIGINT") from None
        frames = sum(chunk["frames"] for chunk in chunks)
        if frames == 0:
            shutil.rmtree(resume)
            raise InputError(f"{video}: no video frames could be decoded", "check that the file holds video frames")
        lines = [line for chunk in chunks
                 for line in (resume / f"{_chunk_name(chunk['first'])}.jsonl").read_text(encoding="utf-8").splitlines()]
        write_text_atomic(counts, "".join(f"{line}\n" for line in lines))
        _join_chunks(av, resume, chunks, output, info.rate)
        failed = sum("error" in json.loads(line) for line in lines)
        shutil.rmtree(resume)
    summary = VideoSummary(str(model_path), counted.backend, counted.device, str(video), str(output), str(counts),
                           config.mode, info.width, info.height, str(info.rate), frames, counted.segmented,
                           counted.done_before, failed, time.perf_counter() - started)
    if failed:
        raise BatchFailure(f"{failed} of {frames} frames failed (their lines in {counts} carry the error; the video "
                           "shows them unsegmented)", "check the input video; ffmpeg can re-encode a damaged one",
                           summary)
    return summary


def _segment_chunks(av: Any, model: Path, video: Path, resume: Path, identity: dict[str, Any],
                    chunks: list[dict[str, int]], info: VideoInfo, encoding: Encoding, config: VideoConfig,
                    counts: FrameCounts) -> None:
    """Segment the frames after the finished ``chunks`` here while a writer thread draws, encodes and closes chunks
    (appending each to ``chunks`` and to the record once its file is complete)."""
    skip = counts.done_before
    with contextlib.ExitStack() as outer, open_segmenter(model, config.device, config.segmenter,
                                                         config.backend) as segmenter:
        counts.backend, counts.device = segmenter.backend.name, segmenter.backend.device
        progress = _FrameProgress(config.progress, info.expected_frames, skip, outer)
        writer = _ChunkWriter(av, _FrameDrawer(segmenter, config.mode, info), resume, identity, chunks, info,
                              encoding, config.chunk_frames, progress, counts)
        with av.open(str(video), "r") as container, writer.running():
            for index, image, error in decoded_frames(av, container, container.streams.video[0], info, skip):
                labels = None
                if error is None:
                    labels, error = _segment_frame(segmenter, image)
                writer.put((index, image, labels, error))


def _segment_frame(segmenter: Segmenter, image: np.ndarray) -> tuple[np.ndarray | None, InputError | None]:
    """(labels, None), or (None, the reason) for a frame that cannot be segmented; a broken model propagates."""
    try:
        return segmenter.segment(image).labels, None
    except ArtifactError:
        raise
    except InputError as exc:
        return None, exc
    except MemoryError as exc:
        return None, InputError(f"not enough memory to segment it ({exc})")


_END, _DISCARD = object(), object()  # what the writer is told last: close the chunk it holds, or discard it


class _ChunkWriter:
    """The writer thread: draws each segmented frame, encodes it into the open chunk and closes full chunks, in
    frame order, while the model segments the next frames. Stopped early, it still writes the frames handed to
    it and discards only the chunk left unfinished."""

    def __init__(self, av: Any, drawer: _FrameDrawer, resume: Path, identity: dict[str, Any],
                 chunks: list[dict[str, int]], info: VideoInfo, encoding: Encoding, chunk_frames: int,
                 progress: _FrameProgress, counts: FrameCounts) -> None:
        self.av, self.drawer, self.resume, self.identity, self.chunks = av, drawer, resume, identity, chunks
        self.info, self.encoding, self.chunk_frames = info, encoding, chunk_frames
        self.progress, self.counts = progress, counts
        self.queue: queue.Queue = queue.Queue(WRITE_QUEUE_FRAMES)
        self.fatal: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fcn-video-write", daemon=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[_ChunkWriter]:
        """Run the thread for the block; at its end the last chunk is closed, or discarded if the block raised."""
        self.thread.start()
        try:
            yield self
        except BaseException:
            self._stop(_DISCARD)
            raise
        self._stop(_END)
        if self.fatal is not None:
            raise self.fatal

    def put(self, item: tuple[int, np.ndarray | None, np.ndarray | None, InputError | None]) -> None:
        """Hand one frame over; re-raise what stopped the thread, if something did."""
        while True:
            if self.fatal is not None:
                raise self.fatal
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _stop(self, last: object) -> None:
        """Tell the thread what comes last and wait for it: to the end when it closes the last chunk, at most
        ``STOP_WAIT_S`` when it discards it (a run ending early; a write stuck on a hung disk is left to its daemon
        thread, and the chunk it holds was never recorded)."""
        deadline = None if last is _END else time.monotonic() + STOP_WAIT_S
        while self.fatal is None and self.thread.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                self.queue.put(last, timeout=0.1)
                break
            except queue.Full:
                continue
        self.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        stack, chunk = contextlib.ExitStack(), None
        try:
            while (item := self.queue.get()) not in (_END, _DISCARD):
                index, image, labels, error = item
                if chunk is None:
                    chunk = _open_chunk(self.av, self.resume, index, self.info, self.encoding, stack)
                _encode(self.av, chunk, self._draw(chunk, index, image, labels, error), index)
                if index + 1 - chunk.first >= self.chunk_frames:
                    self._close(chunk, stack)
                    stack, chunk = contextlib.ExitStack(), None
            if item is _END and chunk is not None:
                self._close(chunk, stack)
                chunk = None
        except OSError as exc:  # a full disk, a read-only folder: the chunks finished so far are kept
            self.fatal = InputError(f"cannot write the video's chunks in {self.resume} ({exc.strerror or exc})",
                                    "free disk space or fix the folder's permissions, then run again to resume")
        except BaseException as exc:  # anything else stops the run too; the segmenting thread re-raises it
            self.fatal = exc
        finally:
            if chunk is not None:  # unfinished: its container closes and its temporary file goes
                discarded = _Discarded()
                with contextlib.suppress(_Discarded):
                    stack.__exit__(_Discarded, discarded, None)

    def _draw(self, chunk: _Chunk, index: int, image: np.ndarray | None, labels: np.ndarray | None,
              error: InputError | None) -> np.ndarray:
        """The output frame, its JSON line kept for the chunk; a failed frame is logged and drawn unsegmented."""
        segmented = labels is not None and image is not None
        message = None if segmented else describe(error) if error is not None else "no image"
        chunk.lines.append(_frame_line(index, self.info.rate, labels, self.drawer.names, message))
        self.counts.segmented += int(segmented)
        self.counts.failed += int(not segmented)
        if message is not None:
            self.progress.error(index, message)
        self.progress.frame(segmented)
        return self.drawer.draw(image, labels) if segmented else self.drawer.unsegmented(image)

    def _close(self, chunk: _Chunk, stack: contextlib.ExitStack) -> None:
        _close_chunk(chunk, stack, self.resume, self.identity, self.chunks)
        self.progress.chunk_done()


class _Discarded(Exception):
    """Thrown into an unfinished chunk's context, so that its temporary file is removed, not renamed."""


def _close_chunk(chunk: _Chunk, stack: contextlib.ExitStack, resume: Path, identity: dict[str, Any],
                 chunks: list[dict[str, int]]) -> None:
    """Flush the encoder, rename the chunk file into place, write its JSON lines, then record it as finished."""
    for packet in chunk.stream.encode():
        chunk.container.mux(packet)
    stack.close()  # closes the container, then renames it onto the chunk's name
    write_text_atomic(resume / f"{_chunk_name(chunk.first)}.jsonl", "".join(f"{line}\n" for line in chunk.lines))
    chunks.append({"first": chunk.first, "frames": len(chunk.lines)})
    _save_chunks(resume, identity, chunks)


__all__ = ["OUTPUT_SUFFIXES", "VIDEO_MODES", "VIDEO_SUFFIXES", "VideoConfig", "VideoSummary", "counts_path_of",
           "decoded_frames", "encoding_for", "infer_video", "is_video_path", "open_video", "resume_dir_of",
           "videos_in", "write_video"]
