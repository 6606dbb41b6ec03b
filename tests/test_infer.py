"""Folder inference: mirrored masks, bad files reported without stopping the run, resume and overwrite."""

from __future__ import annotations

import errno
import json
import os
import signal
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_deploy import imageio
from fcn_deploy import segmenter as segmenter_module
from fcn_deploy.errors import BatchFailure, InputError, Interrupted
from fcn_deploy.infer import InferConfig, default_model, find_images, infer_folder
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.runtime.base import Backend
from fcn_deploy.spec import ModelSpec, ShapeRange

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


class GreenAboveRedBackend(Backend):
    """Class 1 where green exceeds red, else 0."""

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        mean, std = (np.array(v, np.float32)[:2, None, None] for v in (self.spec.mean, self.spec.std))
        return np.rint((batch[:, :2] * std + mean) * 255)  # red and green back in 0..255 as the two logits


@pytest.fixture
def standin(monkeypatch):
    """Every model path opens a two-class stand-in backend (small shape range, so big images are tiled)."""
    spec = ModelSpec(arch="fcn32s", num_classes=2, class_names=("background", "thing"),
                     shape_range=ShapeRange((1, 32, 32), (1, 64, 64), (4, 128, 128)))
    opened = []

    def open_backend(path, device="auto", choice=BackendChoice(), threads=0):
        opened.append((Path(path), device) if choice == BackendChoice() else (Path(path), device, choice))
        return GreenAboveRedBackend(spec)

    monkeypatch.setattr(segmenter_module, "open_backend", open_backend)
    return opened


def write_image(path: Path, height: int = 40, width: int = 50, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def expected_labels(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return (rgb[..., 1] > rgb[..., 0]).astype(np.uint8)


@pytest.fixture
def mixed_folder(tmp_path):
    """Good images (one tiled, one nested) and every kind of bad file, all with image suffixes."""
    images = tmp_path / "images"
    write_image(images / "a.png")
    write_image(images / "b.JPG", seed=1)
    write_image(images / "wide.bmp", 60, 300, seed=2)  # beyond the stand-in's range: tiled
    write_image(images / "nested" / "c.png", seed=3)
    (images / "empty.jpg").write_bytes(b"")
    (images / "notes.png").write_text("not an image")
    good = (images / "a.png").read_bytes()
    (images / "truncated.png").write_bytes(good[: len(good) // 2])
    (images / "notes.txt").write_text("ignored: not an image suffix")
    write_image(images / "bomb.png", 150, 150, seed=4)  # over the max_pixels used below
    os.symlink(images / "gone.png", images / "dangling.png")  # unreadable: the target is missing
    return images


BAD = {"bomb.png", "dangling.png", "empty.jpg", "notes.png", "truncated.png"}
CONFIG = InferConfig(max_pixels=20_000, recursive=True)


def test_mixed_folder_reports_bad_files_and_keeps_going(standin, mixed_folder, tmp_path, capsys):
    out = tmp_path / "masks"
    with pytest.raises(BatchFailure, match="5 of 9 images failed") as info:
        infer_folder(tmp_path / "m.onnx", mixed_folder, out, CONFIG)
    assert info.value.exit_code == 3
    stderr = capsys.readouterr().err
    for name in BAD:
        assert f"error: {name}:" in stderr
    assert "exceeds the limit of 20000" in stderr
    summary = json.loads((out / "summary.json").read_text())
    records = {r["path"]: r for r in summary["images"]}
    assert summary["totals"] == {**summary["totals"], "images": 9, "segmented": 4, "failed": 5, "skipped": 0}
    assert {p for p, r in records.items() if r["status"] == "failed"} == BAD
    assert all(records[p]["error"] for p in BAD)
    assert records["wide.bmp"]["mode"] == "slide" and records["wide.bmp"]["tiles"] > 1
    assert records["a.png"]["mode"] == "whole" and records["a.png"]["height"] == 40
    assert records["nested/c.png"]["output"] == "nested/c.png"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert written == ["a.png", "b.png", "nested", "nested/c.png", "summary.json", "wide.png"]  # nothing partial
    for name, source in [("a.png", "a.png"), ("b.png", "b.JPG"), ("wide.png", "wide.bmp"), ("nested/c.png", "nested/c.png")]:
        with Image.open(out / name) as mask:
            assert mask.mode == "P"
            assert np.array_equal(np.asarray(mask), expected_labels(mixed_folder / source))


def test_pipes_sockets_and_devices_named_like_images_fail_alone(standin, tmp_path, special_files, capsys):
    """Reading a named pipe would wait for a writer for ever: only regular files are read, others fail alone."""
    images, out = tmp_path / "images", tmp_path / "masks"
    write_image(images / "a.png")
    special_files.pipe(images / "pipe.png")
    special_files.socket(images / "sock.jpg")
    os.symlink("/dev/zero", images / "zero.jpg")
    out.mkdir()
    write_image(out / "pipe.png")  # a mask from an earlier run: resuming looks at the input's size
    with pytest.raises(BatchFailure, match="3 of 4 images failed") as info:
        infer_folder(tmp_path / "m.onnx", images, out, InferConfig())
    assert info.value.exit_code == 3
    records = {r["path"]: r for r in json.loads((out / "summary.json").read_text())["images"]}
    assert records["a.png"]["status"] == "ok"
    stderr = capsys.readouterr().err
    for name, kind in {"pipe.png": "a named pipe", "sock.jpg": "a socket", "zero.jpg": "a character device"}.items():
        assert records[name]["status"] == "failed"
        error = records[name]["error"]
        assert error.startswith(f"is {kind}") and "only regular files are read" in error
        assert f"error: {name}: is {kind}" in stderr
    assert special_files.opened_pipes == []


def test_second_run_resumes_and_overwrite_redoes(standin, mixed_folder, tmp_path):
    out = tmp_path / "masks"
    with pytest.raises(BatchFailure):
        infer_folder(tmp_path / "m.onnx", mixed_folder, out, CONFIG)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    with pytest.raises(BatchFailure) as info:
        infer_folder(tmp_path / "m.onnx", mixed_folder, out, CONFIG)
    summary = info.value.summary
    assert summary.count("skipped") == 4 and summary.count("ok") == 0 and summary.count("failed") == 5
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before
    redo = InferConfig(max_pixels=20_000, recursive=True, overwrite=True)
    with pytest.raises(BatchFailure) as info:
        infer_folder(tmp_path / "m.onnx", mixed_folder, out, redo)
    assert info.value.summary.count("ok") == 4
    assert all(p.stat().st_mtime_ns >= before[p] for p in before)


def test_clean_folder_succeeds_non_recursively_with_overlays(standin, tmp_path):
    images = tmp_path / "in"
    write_image(images / "x.png")
    write_image(images / "sub" / "y.png")
    summary = infer_folder(tmp_path / "m.onnx", images, tmp_path / "out",
                           InferConfig(overlay=True, summary=tmp_path / "report.json", device="cpu"))
    assert [r.path for r in summary.images] == ["x.png"]
    assert (tmp_path / "out" / "x.png").is_file() and (tmp_path / "out" / "x.overlay.jpg").is_file()
    assert not (tmp_path / "out" / "sub").exists()
    assert json.loads((tmp_path / "report.json").read_text())["totals"]["segmented"] == 1
    assert standin == [(tmp_path / "m.onnx", "cpu")]


def test_the_backend_choice_reaches_the_runtime(standin, tmp_path):
    write_image(tmp_path / "in" / "a.png")
    choice = BackendChoice("openvino", "bf16")
    infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out", InferConfig(device="cpu", backend=choice, progress=False))
    assert standin == [(tmp_path / "m.onnx", "cpu", choice)]


def test_output_inside_input_is_not_walked(standin, tmp_path):
    images = tmp_path / "in"
    write_image(images / "x.png")
    infer_folder(tmp_path / "m.onnx", images, images / "masks", InferConfig(recursive=True))
    summary = infer_folder(tmp_path / "m.onnx", images, images / "masks", InferConfig(recursive=True))
    assert [r.path for r in summary.images] == ["x.png"]
    assert find_images(images, True, images / "masks") == [Path("x.png")]


def test_clashing_mask_names_fail_the_later_image(standin, tmp_path):
    images = tmp_path / "in"
    write_image(images / "x.jpg")
    write_image(images / "x.png")
    with pytest.raises(BatchFailure) as info:
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig())
    records = {r.path: r for r in info.value.summary.images}
    assert records["x.jpg"].status == "ok" and "also the mask of x.jpg" in records["x.png"].error


def test_interrupted_run_leaves_no_partial_file_and_resumes(standin, tmp_path, monkeypatch):
    images = tmp_path / "in"
    for index in range(4):
        write_image(images / f"{index}.png", seed=index)
    calls = {"n": 0}
    real_segment = segmenter_module.Segmenter.segment

    def interrupted(self, image):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_segment(self, image)

    monkeypatch.setattr(segmenter_module.Segmenter, "segment", interrupted)
    with pytest.raises(Interrupted, match="interrupted: 2 of 4 images done; run the same command again") as info:
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig())
    assert info.value.exit_code == 130
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == ["0.png", "1.png", "summary.json"]  # finished masks and the summary: no temporary files
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] == "SIGINT"
    assert {r["path"]: r["status"] for r in summary["images"]} == {"0.png": "ok", "1.png": "ok", "2.png": "pending",
                                                                   "3.png": "pending"}
    monkeypatch.setattr(segmenter_module.Segmenter, "segment", real_segment)
    summary = infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig())
    assert (summary.count("skipped"), summary.count("ok")) == (2, 2)


def test_unreadable_file(standin, tmp_path, monkeypatch):
    images = tmp_path / "in"
    write_image(images / "ok.png")
    write_image(images / "locked.png")
    real_open = imageio.open_regular_file  # every image file is opened there (a chmod cannot deny root)

    def guarded(path, *args, **kwargs):
        if Path(path).name == "locked.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(imageio, "open_regular_file", guarded)
    with pytest.raises(BatchFailure) as info:
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig())
    records = {r.path: r for r in info.value.summary.images}
    assert "permission denied" in records["locked.png"].error and records["ok.png"].status == "ok"


def test_bad_folders(standin, tmp_path):
    with pytest.raises(InputError, match="input folder not found"):
        infer_folder(tmp_path / "m.onnx", tmp_path / "nope", tmp_path / "out")
    (tmp_path / "in").mkdir()
    with pytest.raises(InputError, match="--out .* is the input folder"):
        infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "in")


def test_default_model(tmp_path):
    with pytest.raises(InputError, match="export/fcn.onnx does not exist") as info:
        default_model(workspace=tmp_path, engine_unavailable=lambda: None)
    assert "fcn-deploy export" in info.value.hint
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "fcn.onnx").write_bytes(b"")
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "fcn.fp16.engine").write_bytes(b"")
    assert default_model("cpu", workspace=tmp_path, engine_unavailable=lambda: None) == tmp_path / "export" / "fcn.onnx"
    assert default_model("auto", workspace=tmp_path, engine_unavailable=lambda: None).suffix == ".engine"
    assert default_model("auto", workspace=tmp_path, engine_unavailable=lambda: "no GPU").name == "fcn.onnx"


def test_default_model_for_an_onnx_backend_is_the_onnx_even_beside_engines(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "fcn.onnx").write_bytes(b"")
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "fcn.fp16.engine").write_bytes(b"")
    assert default_model(workspace=tmp_path, engine_unavailable=lambda: None).suffix == ".engine"
    assert default_model(workspace=tmp_path, engine_unavailable=lambda: None, backend="openvino") == (
        tmp_path / "export" / "fcn.onnx")


# --- output locations, interruption, durability (hardening) -----------------------------------------------


def two_images(tmp_path: Path) -> Path:
    images = tmp_path / "in"
    write_image(images / "a.png")
    write_image(images / "sub" / "b.png", seed=1)
    return images


def test_out_under_a_file_is_refused_before_the_model_opens(standin, tmp_path):
    images = two_images(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="file is a file, not a folder") as info:
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "file" / "masks")
    assert info.value.hint and standin == []


@pytest.mark.parametrize("where", ["folder", "under_file"])
def test_bad_summary_location_is_refused_before_any_work(standin, tmp_path, where):
    images = two_images(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    summary = tmp_path / "folder" if where == "folder" else tmp_path / "file" / "s.json"
    with pytest.raises(InputError, match="--summary") as info:
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig(summary=summary))
    assert info.value.hint and standin == [] and not (tmp_path / "out" / "a.png").exists()


@pytest.mark.parametrize("victim", ["in/a.png", "out/a.png", "m.onnx"])
def test_summary_that_is_an_input_a_mask_or_the_model_is_refused(standin, tmp_path, victim):
    images = two_images(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"model")
    infer_folder(tmp_path / "m.onnx", images, tmp_path / "out")
    before = (tmp_path / victim).read_bytes()
    with pytest.raises(InputError, match="--summary .* (an input image|an output mask|the model)"):
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig(summary=tmp_path / victim))
    assert (tmp_path / victim).read_bytes() == before


def test_a_file_where_an_output_folder_must_be_fails_only_that_image(standin, tmp_path):
    images = two_images(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_text("in the way")
    with pytest.raises(BatchFailure, match="1 of 2 images failed") as info:
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig(recursive=True))
    records = {r.path: r for r in info.value.summary.images}
    assert records["a.png"].status == "ok"
    assert "is a file where a folder must be" in records["sub/b.png"].error
    assert (tmp_path / "out" / "summary.json").is_file()


def test_full_disk_fails_each_image_and_reports_the_summary(standin, tmp_path, monkeypatch):
    from fcn_deploy import infer as infer_module

    images = two_images(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(infer_module, "write_mask", no_space)
    monkeypatch.setattr(infer_module, "write_text_atomic", no_space)
    expected = r"could not write the summary .*summary.json \(No space left on device\); 2 of 2 images failed"
    with pytest.raises(BatchFailure, match=expected) as info:
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig(recursive=True))
    assert info.value.exit_code == 3 and "free disk space" in info.value.hint
    assert {r.error for r in info.value.summary.images} == {
        "cannot write its output (No space left on device) (fix: free disk space or fix the output folder's "
        "permissions, then run again)"}


def test_unreadable_subfolder_is_a_failed_entry(standin, tmp_path, monkeypatch):
    images = two_images(tmp_path)
    real_scandir = os.scandir

    def guarded(path="."):
        if Path(path).name == "sub":
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded)
    with pytest.raises(BatchFailure, match="1 of 2 images failed") as info:
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig(recursive=True))
    records = {r.path: r for r in info.value.summary.images}
    assert records["sub/"].status == "failed" and "cannot read this folder (Permission denied)" in records["sub/"].error


def test_sigterm_stops_after_the_image_in_flight_and_writes_the_summary(own_process, standin, tmp_path, monkeypatch):
    if own_process:
        return
    images = tmp_path / "in"
    for index in range(4):
        write_image(images / f"{index}.png", seed=index)
    real_segment = segmenter_module.Segmenter.segment
    calls = []

    def terminated(self, image):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_segment(self, image)

    monkeypatch.setattr(segmenter_module.Segmenter, "segment", terminated)
    with pytest.raises(Interrupted, match="interrupted: 1 of 4 images done") as info:
        infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", InferConfig())
    assert info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is gone after the run
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] == "SIGTERM" and summary["totals"]["pending"] == 3
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".part")]


def test_stale_temp_files_of_ours_are_removed_at_start(standin, tmp_path):
    images = two_images(tmp_path)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    ours = [out / ".a.png.k3j_x9q2.part", out / "sub" / ".b.png.abcdefgh.part", out / ".summary.json.12345678.part"]
    theirs = [out / ".notes.part", out / "draft.part"]
    for path in ours + theirs:
        path.write_bytes(b"left by a killed run")
    infer_folder(tmp_path / "m.onnx", images, out, InferConfig(recursive=True))
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)


def test_resume_redoes_a_truncated_or_foreign_mask(standin, tmp_path):
    images = tmp_path / "in"
    for name in ("ok.png", "cut.png", "other.png", "fake.png"):
        write_image(images / name)
    out = tmp_path / "out"
    infer_folder(tmp_path / "m.onnx", images, out)
    cut = (out / "cut.png").read_bytes()
    (out / "cut.png").write_bytes(cut[: len(cut) // 2])
    write_image(out / "other.png", 20, 20)  # an RGB PNG of another size
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(out / "fake.png")  # grayscale, right size
    summary = infer_folder(tmp_path / "m.onnx", images, out)
    statuses = {r.path: r.status for r in summary.images}
    assert statuses == {"ok.png": "skipped", "cut.png": "ok", "other.png": "ok", "fake.png": "ok"}
    with Image.open(out / "cut.png") as mask:
        assert mask.mode == "P" and mask.size == (50, 40)


@pytest.mark.parametrize("link", ["folder", "mask"])
def test_links_out_of_the_output_folder_are_refused(standin, tmp_path, link):
    images = two_images(tmp_path)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    if link == "folder":
        os.symlink(elsewhere, out / "sub")
        victim = "sub/b.png"
    else:
        os.symlink(elsewhere / "a.png", out / "a.png")
        victim = "a.png"
    with pytest.raises(BatchFailure, match="1 of 2 images failed") as info:
        infer_folder(tmp_path / "m.onnx", images, out, InferConfig(recursive=True, overwrite=True))
    records = {r.path: r for r in info.value.summary.images}
    assert "outside the output folder" in records[victim].error
    assert list(elsewhere.iterdir()) == []


def test_a_second_run_into_the_same_folder_refuses_or_waits(standin, tmp_path):
    import threading

    from fcn_deploy.fileio import folder_lock

    images = two_images(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out):
        with pytest.raises(InputError, match=f"another fcn-deploy run \\(pid {os.getpid()}\\) is writing into") as info:
            infer_folder(tmp_path / "m.onnx", images, out)
        assert "--wait" in info.value.hint and not (out / "a.png").exists()
        holder_done = threading.Event()
        result = {}
        waiter = threading.Thread(target=lambda: result.update(
            summary=infer_folder(tmp_path / "m.onnx", images, out, InferConfig(wait=True, progress=False))))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and not (out / "a.png").exists()  # it waits for the holder
        holder_done.set()
    waiter.join(30)
    assert result["summary"].count("ok") == 1 and not (out / ".fcn-deploy.lock").exists()


@pytest.mark.parametrize("budget, overlay", [(1, False), (1, True), (3 * 40 * 50, False)])
def test_images_in_flight_stay_within_the_pixel_budget(standin, tmp_path, monkeypatch, budget, overlay):
    """A folder of large images holds one of them at a time, not one per pipeline stage (and queue slot)."""
    from fcn_deploy import infer as infer_module

    images = tmp_path / "in"
    for index in range(6):
        write_image(images / f"{index}.png", seed=index)
    events: list[str] = []
    decoded: list[weakref.ref] = []
    decode, write = infer_module.decode_image, infer_module.write_outputs

    def logged_decode(job, max_pixels):
        if budget == 1:  # the images before are gone, not merely out of the pipeline's queues
            assert all(ref() is None for ref in decoded), "an earlier image is still referenced"
        events.append("decode")
        image = decode(job, max_pixels)
        decoded.append(weakref.ref(image))
        return image

    def logged_write(job, image, result, palette):
        assert (image is not None) == overlay  # the image travels to the writer only for an overlay
        record = write(job, image, result, palette)
        events.append("write")
        return record

    monkeypatch.setattr(infer_module, "decode_image", logged_decode)
    monkeypatch.setattr(infer_module, "write_outputs", logged_write)
    released = []
    monkeypatch.setattr(GreenAboveRedBackend, "_release_working_memory", lambda self: released.append(1))
    config = InferConfig(device="cpu", progress=False, overlay=overlay, prefetch=4, inflight_pixels=budget)
    summary = infer_folder(tmp_path / "m.onnx", images, tmp_path / "out", config)
    assert summary.count("ok") == 6
    # an image that ran alone hands the runtime's working memory back before the next one is decoded
    assert len(released) == (6 if budget == 1 else 0)
    in_flight, most = 0, 0
    for event in events:
        in_flight += 1 if event == "decode" else -1
        most = max(most, in_flight)
    assert most <= max(1, budget // (40 * 50))  # prefetch alone would allow up to 4 + 1 + 4 + 1
    if budget == 1:  # each image larger than the budget: decoded only after the previous one was written
        assert events == ["decode", "write"] * 6


def test_a_pixel_budget_admits_what_fits_and_one_oversized_image_alone():
    import threading

    from fcn_deploy.infer import PixelBudget

    budget, stop = PixelBudget(100), threading.Event()
    assert budget.acquire(60, stop) and budget.acquire(40, stop)
    admitted = threading.Event()
    waiter = threading.Thread(target=lambda: budget.acquire(500, stop) and admitted.set())
    waiter.start()
    assert not admitted.wait(0.3)  # 500 waits until nothing is in flight
    budget.release(60)
    assert not admitted.wait(0.3)
    budget.release(40)
    assert admitted.wait(5)
    waiter.join()
    assert budget.in_flight == 500
    stop.set()
    assert budget.acquire(1, stop) is False  # a stopping run does not wait


def test_inflight_pixels_must_be_positive():
    with pytest.raises(InputError, match="inflight_pixels must be positive"):
        InferConfig(inflight_pixels=0)


@pytest.mark.parametrize("budget, releases", [(1, 1), (40 * 50, 0)])
def test_the_per_image_step_hands_memory_back_after_a_large_image(standin, tmp_path, monkeypatch, budget, releases):
    """Ray's workers run one image at a time: a large one leaves the runtime's working memory free for the next."""
    from fcn_deploy.infer import image_job, process_image
    from fcn_deploy.segmenter import open_segmenter

    write_image(tmp_path / "in" / "a.png")
    released = []
    monkeypatch.setattr(GreenAboveRedBackend, "_release_working_memory", lambda self: released.append(1))
    config = InferConfig(device="cpu", inflight_pixels=budget)
    with open_segmenter(tmp_path / "m.onnx", "cpu") as segmenter:
        record = process_image(segmenter, image_job(tmp_path / "in", tmp_path / "out", "a.png", False), config)
    assert record.status == "ok" and len(released) == releases


def test_an_unexpected_error_in_the_reader_stops_the_run_instead_of_hanging_it(standin, tmp_path, monkeypatch):
    import threading

    from fcn_deploy import infer as infer_module

    write_image(tmp_path / "in" / "a.png")
    write_image(tmp_path / "in" / "b.png", seed=1)

    def broken_decode(job, max_pixels):
        raise RuntimeError("a bug in the reader")

    monkeypatch.setattr(infer_module, "decode_image", broken_decode)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out", InferConfig(device="cpu", progress=False))
        except BaseException as exc:  # the test checks which
            outcome.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "the run hung after its reader thread failed"
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError) and "a bug in the reader" in str(outcome[0])


def test_a_run_of_png_masks_names_a_tiff_inputs_mask_png_and_finds_it_done(tmp_path: Path) -> None:
    """The client writes the server's PNG for every image: a TIFF input's mask is NAME.png there, and a finished
    one is skipped on the next run (infer itself writes NAME.tif for TIFF inputs)."""
    from PIL import Image

    from fcn_deploy.imageio import write_mask
    from fcn_deploy.infer import image_job, plan_images

    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(in_dir / "a.tif")
    assert image_job(in_dir, out_dir, "a.tif", False).mask == out_dir / "a.tif"
    assert image_job(in_dir, out_dir, "a.tif", False, tiff_masks=False).mask == out_dir / "a.png"
    out_dir.mkdir()
    write_mask(out_dir / "a.png", np.zeros((12, 10), np.uint8))
    plan = plan_images(in_dir, out_dir, [Path("a.tif")], overwrite=False, overlay=False, tiff_masks=False)
    assert plan.todo == () and [(r.status, r.output) for r in plan.records] == [("skipped", "a.png")]
