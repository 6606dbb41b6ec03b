"""Video files segmented frame by frame (``fcn_deploy.video``): frames, rate and size kept, the segmenter's exact
labels in mask videos and the class counts, progress, resume after a kill or an interruption, bad frames."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.errors import BatchFailure, InputError, Interrupted
from fcn_deploy.imageio import mask_palette, overlay
from fcn_deploy.palette import VOC_CLASSES
from fcn_deploy.segmenter import Segmenter, open_segmenter
from fcn_deploy.video import VideoConfig, counts_path_of, infer_video, resume_dir_of

pytestmark = pytest.mark.runtime  # no PyTorch needed: runs in the runtime install too

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAMES, HEIGHT, WIDTH = 12, 64, 96
QUIET = VideoConfig(device="cpu", progress=False, chunk_frames=4)


def decoded(av, path: Path) -> tuple[list[np.ndarray], object]:
    """Every frame of a video as RGB arrays, and its video stream's (rate, width, height)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, (stream.average_rate, stream.codec_context.width, stream.codec_context.height)


def labels_of_mask(frame: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices of a mask frame, each pixel's colour looked up in the palette (-1: no class's colour)."""
    colors = np.asarray(mask_palette(), np.int64)[:num_classes]
    keys = (frame.astype(np.int64) << np.array([16, 8, 0])).sum(axis=-1)
    lookup = {int(key): index for index, key in enumerate((colors << np.array([16, 8, 0])).sum(axis=-1))}
    return np.vectorize(lambda key: lookup.get(int(key), -1))(keys)


def count_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def clip(make_video, tmp_path) -> Path:
    """A 12-frame 64×96 H.264 MP4 at 25 fps."""
    return make_video(tmp_path / "clip.mp4")


@pytest.fixture
def counted_segments(monkeypatch) -> list[int]:
    """Counts the frames the Segmenter segments (one entry per call)."""
    calls: list[int] = []
    real = Segmenter.segment

    def segment(self, image):
        calls.append(1)
        return real(self, image)

    monkeypatch.setattr(Segmenter, "segment", segment)
    return calls


def reference_labels(av, model: Path, video: Path) -> list[np.ndarray]:
    """The labels the image path gives each decoded frame of ``video`` (computed here, apart from the run)."""
    frames, _ = decoded(av, video)
    with open_segmenter(model, "cpu") as segmenter:
        return [segmenter.segment(frame).labels for frame in frames]


@pytest.mark.parametrize("suffix,rate", [(".mkv", Fraction(25)), (".mp4", Fraction(30000, 1001)), (".webm", Fraction(25))])
def test_mask_video_decodes_to_the_segmenters_labels_at_the_inputs_rate_and_size(av, make_video, tmp_path, tiny_fcn,
                                                                                  suffix, rate):
    video = make_video(tmp_path / "in.mkv", rate=rate)
    out = tmp_path / f"mask{suffix}"
    summary = infer_video(tiny_fcn, video, out, VideoConfig(device="cpu", progress=False, mode="mask", chunk_frames=5))
    expected = reference_labels(av, tiny_fcn, video)
    frames, (out_rate, width, height) = decoded(av, out)
    assert (len(frames), out_rate, width, height) == (FRAMES, rate, WIDTH, HEIGHT)
    assert (summary.frames, summary.segmented, summary.failed) == (FRAMES, FRAMES, 0)
    for frame, labels in zip(frames, expected):
        np.testing.assert_array_equal(labels_of_mask(frame, 21), labels)  # lossless: every pixel keeps its class
    names = VOC_CLASSES  # the tiny model's classes
    for line, labels in zip(count_lines(counts_path_of(out)), expected):
        counts = np.bincount(labels.ravel(), minlength=21)
        assert line["counts"] == {names[c]: int(n) for c, n in enumerate(counts) if n}
    assert not resume_dir_of(out).exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "in.mkv", out.name, counts_path_of(out).name])


def test_overlay_video_blends_the_segmenters_labels(av, clip, tmp_path, tiny_fcn):
    out = tmp_path / "seg.mp4"
    infer_video(tiny_fcn, clip, out, QUIET)
    inputs, _ = decoded(av, clip)
    frames, (rate, width, height) = decoded(av, out)
    assert (len(frames), rate, width, height) == (FRAMES, 25, WIDTH, HEIGHT)
    for frame, image, labels in zip(frames, inputs, reference_labels(av, tiny_fcn, clip)):
        error = np.abs(frame.astype(int) - overlay(image, labels, mask_palette()[:21])).mean()
        wrong = np.abs(frame.astype(int) - overlay(image, (labels + 1) % 21, mask_palette()[:21])).mean()
        assert error < 6 and wrong > 4 * error  # H.264 is lossy, but another blend is far further off
    for index, line in enumerate(count_lines(counts_path_of(out))):
        assert line["frame"] == index and line["seconds"] == pytest.approx(index / 25)
        assert sum(line["counts"].values()) == HEIGHT * WIDTH


def test_odd_frame_sizes_are_kept(av, make_video, tmp_path, tiny_fcn):
    video = make_video(tmp_path / "odd.mkv", frames=3, codec="ffv1", height=33, width=45)
    out = tmp_path / "odd.mp4"
    infer_video(tiny_fcn, video, out, QUIET)
    frames, (_, width, height) = decoded(av, out)
    assert (len(frames), width, height) == (3, 45, 33)


def test_progress_lines_give_frames_done_speed_and_time_left(av, clip, tmp_path, tiny_fcn, capsys):
    infer_video(tiny_fcn, clip, tmp_path / "seg.mp4", VideoConfig(device="cpu", chunk_frames=5))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("frames:")]
    assert [line.split(" done")[0] for line in lines] == ["frames: 5 of 12", "frames: 10 of 12", "frames: 12 of 12"]
    assert all("frames/s, about" in line and line.endswith(" s left") for line in lines)


# --- resume --------------------------------------------------------------------------------------------


KILLED_RUN = """
import sys, threading
import fcn_deploy.video as video
from fcn_deploy.segmenter import Segmenter
from fcn_deploy.video import VideoConfig, infer_video

real_segment, real_encode, calls, sixth_frame_encoded = Segmenter.segment, video._encode, [], threading.Event()

def encode(av, chunk, rgb, index):
    real_encode(av, chunk, rgb, index)
    if index == 5:  # chunk 0 (frames 0-3) is finished and recorded; chunk 1 is half encoded
        sixth_frame_encoded.set()

def segment(self, image):
    calls.append(1)
    if len(calls) == 7:
        sixth_frame_encoded.wait()
        print("blocked", flush=True)
        threading.Event().wait()
    return real_segment(self, image)

Segmenter.segment, video._encode = segment, encode
infer_video(sys.argv[1], sys.argv[2], sys.argv[3], VideoConfig(device="cpu", progress=False, chunk_frames=4))
"""


def test_a_killed_run_resumes_where_its_finished_chunks_end(av, clip, tmp_path, tiny_fcn, counted_segments):
    out = tmp_path / "seg.mp4"
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tiny_fcn), str(clip), str(out)],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "blocked\n", child.stderr.read()
    finally:
        child.kill()
        child.wait(timeout=60)
    resume = resume_dir_of(out)
    record = json.loads((resume / "progress.json").read_text())
    assert record["chunks"] == [{"first": 0, "frames": 4}]
    assert any(name.endswith(".part") for name in map(str, resume.iterdir()))  # the half-encoded chunk
    assert not out.exists() and not counts_path_of(out).exists()

    summary = infer_video(tiny_fcn, clip, out, QUIET)
    assert (summary.resumed, summary.segmented, len(counted_segments)) == (4, 8, 8)
    reference = tmp_path / "reference.mp4"
    infer_video(tiny_fcn, clip, reference, QUIET)
    assert counts_path_of(out).read_text() == counts_path_of(reference).read_text()
    assert len(decoded(av, out)[0]) == FRAMES and not resume.exists()


def test_the_output_appears_only_complete_and_a_failed_join_resumes_without_segmenting(
        av, clip, tmp_path, tiny_fcn, counted_segments, monkeypatch):
    import fcn_deploy.video as video_module

    real_join = video_module._join_chunks

    def join_then_fail(av_module, resume, chunks, output, rate):  # the last chunk's file vanishes mid-join
        real_join(av_module, resume, [*chunks, {"first": 99, "frames": 1}], output, rate)

    out = tmp_path / "seg.mp4"
    with monkeypatch.context() as patch:
        patch.setattr(video_module, "_join_chunks", join_then_fail)
        with pytest.raises(FileNotFoundError):  # the vanished chunk, as PyAV reports it
            infer_video(tiny_fcn, clip, out, QUIET)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(counted_segments) == FRAMES
    summary = infer_video(tiny_fcn, clip, out, QUIET)
    assert (summary.resumed, summary.segmented, len(counted_segments)) == (FRAMES, 0, FRAMES)
    assert len(decoded(av, out)[0]) == FRAMES


def test_a_write_error_stops_the_run_cleanly_and_the_next_run_resumes(av, clip, tmp_path, tiny_fcn, monkeypatch):
    import errno

    import fcn_deploy.video as video_module

    real_encode = video_module._encode

    def encode(av_module, chunk, rgb, index):
        if index == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_encode(av_module, chunk, rgb, index)

    out = tmp_path / "seg.mp4"
    with monkeypatch.context() as patch:
        patch.setattr(video_module, "_encode", encode)
        with pytest.raises(InputError, match=r"cannot write the video's chunks .* \(No space left on device\)"):
            infer_video(tiny_fcn, clip, out, QUIET)
    assert not out.exists()  # the unfinished chunk is gone, neither kept under a temporary name nor its own
    assert sorted(p.name for p in resume_dir_of(out).iterdir()) == [
        "chunk-0000000000.jsonl", "chunk-0000000000.mkv", "progress.json"]
    summary = infer_video(tiny_fcn, clip, out, QUIET)
    assert (summary.resumed, summary.segmented) == (4, 8)


def test_ctrl_c_while_a_write_hangs_ends_the_run_within_the_bound(av, clip, tmp_path, tiny_fcn, monkeypatch):
    import fcn_deploy.video as video_module

    release, stuck = threading.Event(), threading.Event()
    real_encode = video_module._encode

    def encode(av_module, chunk, rgb, index):
        if index == 2:  # a hung disk: this write does not come back
            stuck.set()
            release.wait(60)
        real_encode(av_module, chunk, rgb, index)

    def segment(self, image):
        if stuck.is_set():
            raise KeyboardInterrupt
        return real_segment(self, image)

    real_segment = Segmenter.segment
    monkeypatch.setattr(video_module, "_encode", encode)
    monkeypatch.setattr(video_module, "STOP_WAIT_S", 0.3)
    monkeypatch.setattr(Segmenter, "segment", segment)
    ended: list[BaseException] = []

    def run() -> None:
        try:
            infer_video(tiny_fcn, clip, tmp_path / "seg.mp4", QUIET)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            ended.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    try:
        runner.start()
        runner.join(60)
        assert not runner.is_alive(), "the run waits for a write that never ends"
        assert len(ended) == 1 and isinstance(ended[0], Interrupted), ended
    finally:
        release.set()


def interrupt_at(monkeypatch, frame_number: int) -> None:
    """Ctrl-C arrives while the Segmenter segments the ``frame_number``-th frame of the run."""
    real, calls = Segmenter.segment, []

    def segment(self, image):
        calls.append(1)
        if len(calls) == frame_number:
            raise KeyboardInterrupt
        return real(self, image)

    monkeypatch.setattr(Segmenter, "segment", segment)


def test_an_interrupted_run_keeps_its_chunks_and_a_changed_model_starts_over(av, clip, tmp_path, tiny_fcn,
                                                                             make_tiny_fcn, monkeypatch):
    out = tmp_path / "seg.mp4"
    with monkeypatch.context() as patch:
        interrupt_at(patch, 10)
        with pytest.raises(Interrupted, match="interrupted: 8 frames done and kept") as stopped:
            infer_video(tiny_fcn, clip, out, QUIET)
    assert stopped.value.exit_code == 130 and not out.exists()
    other_model = make_tiny_fcn(tmp_path / "other" / "tiny.onnx", seed=1)
    summary = infer_video(other_model, clip, out, QUIET)
    assert (summary.resumed, summary.segmented) == (0, FRAMES)  # chunks of another model are not reused
    reference = tmp_path / "reference.mp4"
    infer_video(other_model, clip, reference, QUIET)
    assert counts_path_of(out).read_text() == counts_path_of(reference).read_text()


def test_existing_outputs_are_skipped_unless_overwrite(av, clip, tmp_path, tiny_fcn, counted_segments):
    out = tmp_path / "seg.mp4"
    infer_video(tiny_fcn, clip, out, QUIET)
    assert infer_video(tiny_fcn, clip, out, QUIET).skipped and len(counted_segments) == FRAMES
    again = infer_video(tiny_fcn, clip, out, VideoConfig(device="cpu", progress=False, overwrite=True))
    assert not again.skipped and again.segmented == FRAMES and len(counted_segments) == 2 * FRAMES


# --- bad input -------------------------------------------------------------------------------------------


def test_a_frame_that_cannot_be_decoded_fails_alone(av, make_video, damage_video, tmp_path, tiny_fcn, capsys):
    video = make_video(tmp_path / "damaged.avi", codec="mjpeg")
    damage_video(video, 5)
    out = tmp_path / "seg.mp4"
    with pytest.raises(BatchFailure, match="1 of 12 frames failed") as failure:
        infer_video(tiny_fcn, video, out, VideoConfig(device="cpu", chunk_frames=4))
    assert failure.value.exit_code == 3 and failure.value.summary.segmented == 11
    lines = count_lines(counts_path_of(out))
    assert [index for index, line in enumerate(lines) if "error" in line] == [5]
    assert "cannot decode this frame" in lines[5]["error"] and all("counts" in lines[i] for i in (4, 6))
    assert "error: frame 5: cannot decode this frame" in capsys.readouterr().err
    frames, _ = decoded(av, out)
    assert len(frames) == FRAMES and not frames[5].any()  # no input frame to show: black


def test_a_frame_the_segmenter_rejects_fails_alone_and_shows_the_input(av, clip, tmp_path, tiny_fcn, monkeypatch):
    real, calls = Segmenter.segment, []

    def segment(self, image):
        calls.append(1)
        if len(calls) == 3:
            raise InputError("no memory for this one")
        return real(self, image)

    monkeypatch.setattr(Segmenter, "segment", segment)
    out = tmp_path / "mask.mkv"
    with pytest.raises(BatchFailure, match="1 of 12 frames failed"):
        infer_video(tiny_fcn, clip, out, VideoConfig(device="cpu", progress=False, mode="mask"))
    frames, _ = decoded(av, out)
    void = np.asarray(mask_palette()[255], np.uint8)
    assert len(frames) == FRAMES and np.all(frames[2] == void) and not np.all(frames[3] == void)
    assert count_lines(counts_path_of(out))[2]["error"] == "no memory for this one"


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100])
def test_an_unreadable_file_is_an_input_error_and_writes_nothing(av, tmp_path, tiny_fcn, content):
    video = tmp_path / "broken.mp4"
    video.write_bytes(content)
    with pytest.raises(InputError, match="cannot be read as a video"):
        infer_video(tiny_fcn, video, tmp_path / "seg.mp4", QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]


def test_a_file_cut_short_keeps_the_frames_before_the_cut(av, make_video, tmp_path, tiny_fcn):
    video = make_video(tmp_path / "cut.mkv", frames=24, codec="mjpeg", container_format="matroska")
    video.write_bytes(video.read_bytes()[: video.stat().st_size * 2 // 3])
    out = tmp_path / "seg.mkv"
    try:
        summary = infer_video(tiny_fcn, video, out, QUIET)
    except BatchFailure as failure:  # the demuxer may report the cut as unreadable data: one failed frame
        summary = failure.summary
        assert "unreadable data" in count_lines(counts_path_of(out))[-1]["error"]
    assert 8 <= summary.frames < 24 and len(decoded(av, out)[0]) == summary.frames


def test_outputs_never_replace_the_input(av, clip, tiny_fcn):
    with pytest.raises(InputError, match="is the input video"):
        infer_video(tiny_fcn, clip, clip, QUIET)


def test_the_output_must_be_named_as_a_video(av, clip, tmp_path, tiny_fcn):
    with pytest.raises(InputError, match="not a video name"):
        infer_video(tiny_fcn, clip, tmp_path / "masks", QUIET)

