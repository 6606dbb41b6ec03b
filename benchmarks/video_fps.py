"""Frames/s of `fcn-deploy infer VIDEO --out OUT.mp4` against the Segmenter alone on the same frames.

    python benchmarks/video_fps.py [--model fcn.onnx] [--frames 30] [--size 320x480] [--rounds 2]

Without --model, a random-weight fcn32s is exported to ONNX in a temporary folder. The clip is a synthetic H.264
MP4 (moving colour bands) of the given size at 25 fps. `infer_video` runs the whole job (decode, segment, overlay,
encode, join the chunks, class counts; the model load and the input's hash included); the Segmenter loop segments
the same frames, decoded beforehand, with the model already open. The two alternate round by round; the ratio is
the median of per-round ratios: the share of the model's rate a video run keeps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from fcn_deploy.data.transforms import parse_size
from fcn_deploy.progress import log as say


def write_clip(path: Path, frames: int, height: int, width: int) -> Path:
    """An H.264 MP4 of moving colour bands, ``frames`` long at 25 fps."""
    from fcn_deploy.video import write_video

    rows, cols = np.mgrid[0:height, 0:width]
    bands = (np.stack([(cols + index * 8) % 256, (rows * 2) % 256, ((rows + cols + index) // 2) % 256], -1)
             for index in range(frames))
    return write_video(path, (band.astype(np.uint8) for band in bands), Fraction(25))


def segmenter_rate(model: Path, clip: Path) -> float:
    """Frames/s of the Segmenter alone on the clip's frames (decoded first; the model opened before timing)."""
    import av

    from fcn_deploy.segmenter import open_segmenter

    with av.open(str(clip)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with open_segmenter(model, "cpu") as segmenter:
        segmenter.segment(frames[0])  # the first inference sets the runtime up; a video run pays it once too
        started = time.perf_counter()
        for frame in frames:
            segmenter.segment(frame)
        return len(frames) / (time.perf_counter() - started)


def video_rate(model: Path, clip: Path, out: Path) -> float:
    """Frames/s of a whole `infer_video` run (overlay mode), everything included."""
    from fcn_deploy.video import VideoConfig, infer_video

    started = time.perf_counter()
    summary = infer_video(model, clip, out, VideoConfig(device="cpu", progress=False, overwrite=True))
    return summary.segmented / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", default="320x480", help="HEIGHTxWIDTH of the clip")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    height, width = parse_size(args.size, "--size")
    with tempfile.TemporaryDirectory(prefix="fcn-video-fps-") as work:
        folder = Path(work)
        if args.model is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from capi_overhead import random_model

            say("exporting a random-weight fcn32s")
            model = random_model(folder)
        else:
            model = args.model
        clip = write_clip(folder / "clip.mp4", args.frames, height, width)
        video, alone = [], []
        for round_number in range(args.rounds):
            video.append(video_rate(model, clip, folder / "seg.mp4"))
            alone.append(segmenter_rate(model, clip))
            say(f"round {round_number + 1}: infer_video {video[-1]:.2f} frames/s, Segmenter alone {alone[-1]:.2f}")
        ratio = statistics.median(v / a for v, a in zip(video, alone))
        print(f"| {height}×{width} | {args.frames} | {statistics.median(video):.2f} | {statistics.median(alone):.2f} "
              f"| {ratio:.0%} |")


if __name__ == "__main__":
    main()
