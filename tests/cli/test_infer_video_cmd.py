"""``fcn-deploy infer VIDEO --out OUT.mp4``: the issue's exact form, exit codes 0 / 1 / 2 / 3 / 130, options that
apply to folders only refused, and folders holding videos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fcn_deploy.cli import run
from fcn_deploy.segmenter import Segmenter

pytestmark = pytest.mark.runtime  # no PyTorch needed: runs in the runtime install too

FRAMES = 12


@pytest.fixture
def workspace(tmp_path, monkeypatch, make_tiny_fcn):
    """A working directory with export/fcn.onnx (a tiny FCN), the default model of ``infer``."""
    monkeypatch.chdir(tmp_path)
    make_tiny_fcn(tmp_path / "export" / "fcn.onnx")
    return tmp_path


def test_infer_demo_mp4_out_seg_mp4(av, make_video, workspace, capsys):
    make_video(workspace / "demo.mp4")
    assert run(["infer", "demo.mp4", "--out", "seg.mp4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("segmented 12 frames of demo.mp4 (0 done by an earlier run)")
    assert "overlay video seg.mp4 (96x64, 12 frames at 25 fps), class counts seg.counts.jsonl" in out
    with av.open("seg.mp4") as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.average_rate) == ("h264", 25)
        assert sum(1 for _ in container.decode(stream)) == FRAMES
    assert len(open("seg.counts.jsonl").read().splitlines()) == FRAMES
    assert run(["infer", "demo.mp4", "--out", "seg.mp4"]) == 0
    assert "exist: nothing to do (pass --overwrite" in capsys.readouterr().out


def test_model_then_video_in_mask_mode(av, make_video, workspace, make_tiny_fcn, capsys):
    make_video(workspace / "demo.mkv")
    model = make_tiny_fcn(workspace / "other.onnx", seed=3)
    assert run(["infer", str(model), "demo.mkv", "--out", "labels.webm", "--video-mode", "mask", "--device", "cpu",
                "--tile", "32x64"]) == 0
    assert "mask video labels.webm" in capsys.readouterr().out
    with av.open("labels.webm") as container:
        assert container.streams.video[0].codec_context.name == "vp9"


def test_a_missing_video_extra_names_it(workspace, av_missing, capsys):
    (workspace / "demo.mp4").write_bytes(b"any")
    assert run(["infer", "demo.mp4", "--out", "seg.mp4"]) == 2
    err = capsys.readouterr().err
    assert "error: the Python module 'av' is not available" in err
    assert "fix: pip install 'fcn-deploy[video]'" in err


def test_a_bad_frame_exits_3_with_its_error_line(make_video, damage_video, workspace, capsys):
    damage_video(make_video(workspace / "demo.avi", codec="mjpeg"), 7)
    assert run(["infer", "demo.avi", "--out", "seg.mp4"]) == 3
    err = capsys.readouterr().err
    assert "error: frame 7: cannot decode this frame" in err
    assert "error: 1 of 12 frames failed (their lines in seg.counts.jsonl carry the error" in err
    lines = [json.loads(line) for line in open("seg.counts.jsonl")]
    assert len(lines) == FRAMES and "error" in lines[7] and "counts" in lines[8]


def test_an_unreadable_video_exits_1(workspace, av, capsys):
    (workspace / "demo.mp4").write_bytes(b"\x00" * 1000)
    assert run(["infer", "demo.mp4", "--out", "seg.mp4"]) == 1
    assert "error: demo.mp4: cannot be read as a video" in capsys.readouterr().err


def test_ctrl_c_exits_130_and_the_next_run_resumes(make_video, workspace, monkeypatch, capsys):
    make_video(workspace / "demo.mp4", frames=130)  # the default chunk holds 120 frames
    real, calls = Segmenter.segment, []

    def segment(self, image):
        calls.append(1)
        if len(calls) == 125:
            raise KeyboardInterrupt
        return real(self, image)

    monkeypatch.setattr(Segmenter, "segment", segment)
    assert run(["infer", "demo.mp4", "--out", "seg.mp4"]) == 130
    assert "interrupted: 120 frames done and kept; run the same command again to resume" in capsys.readouterr().err
    assert run(["infer", "demo.mp4", "--out", "seg.mp4"]) == 0
    captured = capsys.readouterr()
    assert "resuming: 120 frames were done by an earlier run" in captured.err
    assert "segmented 10 frames of demo.mp4 (120 done by an earlier run)" in captured.out


@pytest.mark.parametrize("extra,named", [
    (["--overlay"], "--overlay"), (["--recursive"], "--recursive"), (["--summary", "s.json"], "--summary"),
    (["--ray", "local", "--workers", "2"], "--ray, --workers"), (["--level", "1"], "--level"),
    (["--max-pixels", "100"], "--max-pixels"),
])
def test_folder_options_are_refused_for_a_video(workspace, extra, named, capsys):
    (workspace / "demo.mp4").write_bytes(b"any")
    assert run(["infer", "demo.mp4", "--out", "seg.mp4", *extra]) == 1
    assert f"error: {named} apply to a folder of images, not to a video input" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["demo.mp4", "--out", "masks"], "--out masks is not a video name"),
    (["demo.mp4", "--out", "seg.mp4", "--video-mode", "labels"], "unknown video mode 'labels'"),
    (["demo.mp4", "--out", "demo.mp4"], "--out demo.mp4 is the input video"),
    (["frames", "--out", "masks", "--video-mode", "mask"], "--video-mode applies to a video input"),
    (["missing.mp4", "--out", "seg.mp4"], "input video missing.mp4: not found"),
])
def test_bad_video_usage_exits_1(make_video, workspace, args, message, capsys):
    make_video(workspace / "demo.mp4", frames=2)
    (workspace / "frames").mkdir()
    assert run(["infer", *args]) == 1
    assert message in capsys.readouterr().err


def test_a_folder_run_names_the_videos_it_leaves_out(make_video, workspace, capsys):
    (workspace / "shots").mkdir()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(workspace / "shots" / "still.png")
    make_video(workspace / "shots" / "clip.mp4", frames=2)
    assert run(["infer", "shots", "--out", "masks"]) == 0
    captured = capsys.readouterr()
    assert "note: a folder run segments images only; 1 video file in shots (e.g. clip.mp4) left out" in captured.err
    assert "segmented 1 images" in captured.out


def test_sigterm_exits_143_and_keeps_the_finished_chunks(make_video, workspace, monkeypatch, capsys, own_process):
    if own_process:  # the real signal was sent in a fresh pytest process, which passed
        return
    import os
    import signal

    make_video(workspace / "demo.mp4", frames=130)
    real, calls = Segmenter.segment, []

    def segment(self, image):
        calls.append(1)
        if len(calls) == 125:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, image)

    monkeypatch.setattr(Segmenter, "segment", segment)
    assert run(["infer", "demo.mp4", "--out", "seg.mp4"]) == 143
    assert "interrupted: 120 frames done and kept" in capsys.readouterr().err
    record = json.loads((workspace / ".seg.mp4.resume" / "progress.json").read_text())
    assert record["chunks"] == [{"first": 0, "frames": 120}]
