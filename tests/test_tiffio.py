"""Windowed TIFF reading and streaming label TIFF writing: the same labels as in memory, georeferencing carried
over, pyramid levels, and bad files failing alone with a clear error."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy import segmenter as segmenter_module
from fcn_deploy.errors import BatchFailure, InputError, MissingComponentError
from fcn_deploy.infer import InferConfig, infer_folder
from fcn_deploy.runtime import BackendChoice
from fcn_deploy.runtime.base import Backend
from fcn_deploy.segmenter import Segmenter, SegmenterConfig
from fcn_deploy.spec import ModelSpec, ShapeRange

SMALL_RANGE = ShapeRange((1, 32, 32), (1, 64, 64), (4, 128, 128))
GEO = [(33550, 12, 3, (0.5, 0.25, 0.0), True), (33922, 12, 6, (0.0, 0.0, 0.0, 500000.0, 4100000.0, 0.0), True),
       (34735, 3, 8, (1, 1, 0, 1, 3072, 0, 1, 32633), True)]  # GeoKeys: WGS 84 / UTM zone 33N


class PositionBackend(Backend):
    """Three classes whose logits depend on the pixel and on its place in the tile, so seams and blending show."""

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        _, _, height, width = batch.shape
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
        place = np.stack([rows / height, cols / width, (rows + cols) / (height + width)])
        return np.sin(batch * 7.0 + place[None] * 3.0).astype(np.float32)


@pytest.fixture
def tifffile():
    for name in ("zarr", "imagecodecs"):
        pytest.importorskip(name, reason="the tiff extra is not installed (pip install 'fcn-deploy[tiff]')")
    return pytest.importorskip("tifffile", reason="the tiff extra is not installed (pip install 'fcn-deploy[tiff]')")


def make_segmenter(config: SegmenterConfig) -> Segmenter:
    spec = ModelSpec(arch="fcn32s", num_classes=3, class_names=("a", "b", "c"), shape_range=SMALL_RANGE)
    return Segmenter(PositionBackend(spec), config)


@pytest.fixture
def standin(monkeypatch):
    """Every model path opens the position-dependent stand-in."""
    spec = ModelSpec(arch="fcn32s", num_classes=3, class_names=("a", "b", "c"), shape_range=SMALL_RANGE)
    monkeypatch.setattr(segmenter_module, "open_backend",
                        lambda path, device="auto", choice=BackendChoice(), threads=0: PositionBackend(spec))


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_tiled(tifffile, path: Path, image: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image, tile=(64, 64), photometric="rgb", **{"compression": "zlib", **options})
    return path


@pytest.mark.parametrize("config", [
    SegmenterConfig(tile=(64, 64), overlap=0.5),  # neighbours only: the label stitcher
    SegmenterConfig(tile=(128, 128), overlap=0.75, blend="gaussian"),  # wider overlaps: the band accumulator
    SegmenterConfig(),  # auto: default tiles fitted to the image
    SegmenterConfig(mode="whole"),
], ids=["stitcher", "accumulator", "auto", "whole"])
def test_windowed_labels_equal_the_in_memory_labels(tifffile, tmp_path, config):
    from fcn_deploy.tiffio import LabelTiffWriter, TiffWindows

    height, width = (120, 100) if config.mode == "whole" else (300, 420)
    image = noise(height, width)
    source = write_tiled(tifffile, tmp_path / "in.tif", image, compression="jpeg")
    segmenter = make_segmenter(config)
    with TiffWindows(source) as windows:
        expected = segmenter.segment(tifffile.imread(source))  # decoded whole, as a small image would be
        writer = LabelTiffWriter(tmp_path / "labels.tif", height, width, max(64, segmenter.plan((height, width))
                                                                            .tile_hw[0]))
        result = segmenter.segment_into(windows, writer)
        writer.close()
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert (result.mode, result.tiles, result.input_hw) == (expected.mode, expected.tiles, expected.input_hw)
    assert 0 <= result.seconds < 600 and result.labels.shape == (height, width)
    assert np.array_equal(labels, expected.labels)
    assert len(np.unique(labels)) == 3


def test_a_folder_run_writes_a_georeferenced_tiled_palette_bigtiff(tifffile, standin, tmp_path):
    image = noise(200, 260, seed=3)
    write_tiled(tifffile, tmp_path / "in" / "scene.tif", image, extratags=GEO)
    summary = infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out",
                           InferConfig(segmenter=SegmenterConfig(tile=(64, 64)), progress=False))
    assert summary.count("ok") == 1
    out = tmp_path / "out" / "scene.tif"
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert tif.is_bigtiff and page.is_tiled and page.photometric == tifffile.PHOTOMETRIC.PALETTE
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert {code: page.tags[code].value for code, *_ in GEO} == {code: value for code, _, _, value, _ in GEO}
        assert tuple(page.colormap[:, 1] // 257) == (128, 0, 0)  # VOC's class 1
        labels = page.asarray()
    expected = make_segmenter(SegmenterConfig(tile=(64, 64))).segment(image).labels
    assert np.array_equal(labels, expected)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scene.tif", "summary.json"]
    # done means done: a second run skips it
    again = infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out",
                         InferConfig(segmenter=SegmenterConfig(tile=(64, 64)), progress=False))
    assert again.count("skipped") == 1


def test_level_picks_a_pyramid_level_and_scales_the_pixel_size(tifffile, standin, tmp_path):
    image = noise(256, 192, seed=4)
    path = tmp_path / "in" / "pyramid.tif"
    path.parent.mkdir()
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(image, tile=(64, 64), photometric="rgb", subifds=1, extratags=GEO)
        tif.write(image[::2, ::2], tile=(64, 64), photometric="rgb", subfiletype=1)
    config = InferConfig(segmenter=SegmenterConfig(tile=(64, 64)), progress=False, level=1)
    assert infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out", config).count("ok") == 1
    with tifffile.TiffFile(tmp_path / "out" / "pyramid.tif") as tif:
        page = tif.pages.first
        assert page.shape == (128, 96)
        assert page.tags[33550].value == (1.0, 0.5, 0.0)
        labels = page.asarray()
    assert np.array_equal(labels, make_segmenter(SegmenterConfig(tile=(64, 64))).segment(image[::2, ::2]).labels)
    with pytest.raises(BatchFailure):
        infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out2",
                     InferConfig(progress=False, level=2))
    record = json.loads((tmp_path / "out2" / "summary.json").read_text())["images"][0]
    assert "--level 2 does not exist" in record["error"] and "2 pyramid level(s)" in record["error"]


def _tile_spans(tifffile, path: Path) -> list[tuple[int, int]]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        return list(zip(page.dataoffsets, page.databytecounts))


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_a_damaged_tile_fails_that_image_alone_with_a_clear_error(tifffile, standin, tmp_path, damage):
    good = write_tiled(tifffile, tmp_path / "in" / "good.tif", noise(150, 150, seed=1))
    bad = write_tiled(tifffile, tmp_path / "in" / "bad.tif", noise(150, 150, seed=2))
    data = bytearray(bad.read_bytes())
    offset, count = _tile_spans(tifffile, bad)[-1]
    if damage == "corrupt":
        data[offset : offset + count] = bytes(count)
    else:
        del data[offset + count // 2 :]
    bad.write_bytes(bytes(data))
    with pytest.raises(BatchFailure):
        infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out",
                     InferConfig(segmenter=SegmenterConfig(tile=(64, 64)), progress=False))
    records = {r["path"]: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())["images"]}
    assert records["good.tif"]["status"] == "ok" and good.exists()
    assert records["bad.tif"]["status"] == "failed"
    assert "are corrupt or truncated" in records["bad.tif"]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.tif", "summary.json"]  # no partial file


def test_an_undecodable_compression_names_the_extra(tifffile, tmp_path):
    from fcn_deploy.tiffio import TiffWindows

    path = write_tiled(tifffile, tmp_path / "odd.tif", noise(100, 100))
    with tifffile.TiffFile(path) as tif:
        where = tif.pages.first.tags["Compression"].valueoffset
    data = bytearray(path.read_bytes())
    data[where : where + 2] = (65000).to_bytes(2, "little")  # EER: a compression nothing here decodes
    path.write_bytes(bytes(data))
    with pytest.raises(MissingComponentError, match="cannot decode its EER_V0 compressed tiles") as info:
        TiffWindows(path)
    assert "fcn-deploy[tiff]" in info.value.hint


def test_a_pipe_named_like_a_tiff_fails_alone_without_blocking(tifffile, standin, tmp_path):
    write_tiled(tifffile, tmp_path / "in" / "good.tif", noise(100, 100))
    os.mkfifo(tmp_path / "in" / "pipe.tif")
    with pytest.raises(BatchFailure):
        infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out", InferConfig(progress=False))
    records = {r["path"]: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())["images"]}
    assert records["good.tif"]["status"] == "ok"
    assert "is a named pipe" in records["pipe.tif"]["error"]


# --- resuming a killed run ---------------------------------------------------------------------------------------

KILL_AFTER_ROWS = 512  # the child kills itself once its progress record holds this many label rows
KILLED_HEIGHT, KILLED_WIDTH = 1100, 150
RESUME_CONFIG = SegmenterConfig(tile=(64, 64), overlap=0.5)

CHILD = """
import json, os, signal, sys, threading
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_tiffio as t
from fcn_deploy import segmenter as segmenter_module
from fcn_deploy.infer import InferConfig, infer_folder

tmp, record = Path(sys.argv[2]), Path(sys.argv[3])

plan = t.make_segmenter(t.RESUME_CONFIG).plan((t.KILLED_HEIGHT, t.KILLED_WIDTH))
# by the tile at this row, the labels above KILL_AFTER_ROWS have gone to the encoder: wait for its record
waiting_from = sum(y < t.KILL_AFTER_ROWS + 288 for y in plan.ys) * len(plan.xs)

def recorded_rows():
    return json.loads(record.read_text())["rows"] if record.exists() else 0

class Dying(t.NamedPositionBackend):
    def _infer(self, batch):
        if t.NamedPositionBackend.tiles >= waiting_from:
            for _ in range(12000):  # the encoder thread's record, at most two minutes
                if recorded_rows() >= t.KILL_AFTER_ROWS:
                    os.kill(os.getpid(), signal.SIGKILL)  # as a power cut or the OOM killer would
                threading.Event().wait(0.01)
        return super()._infer(batch)

segmenter_module.open_backend = lambda path, device="auto", choice=None, threads=0: Dying(t.SPEC, path)
infer_folder(tmp / "m.onnx", tmp / "in", tmp / "out", InferConfig(segmenter=t.RESUME_CONFIG, progress=False))
"""

SPEC = ModelSpec(arch="fcn32s", num_classes=3, class_names=("a", "b", "c"), shape_range=SMALL_RANGE)


class NamedPositionBackend(PositionBackend):
    """The position stand-in opened from a model file (so a resume can check the model), counting its tiles."""

    tiles = 0

    def __init__(self, spec: ModelSpec, path) -> None:
        super().__init__(spec)
        self.path = Path(path)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        NamedPositionBackend.tiles += batch.shape[0]
        return super()._infer(batch)


def kill_a_run_midway(tmp_path: Path) -> Path:
    """Run infer in a fresh process that SIGKILLs itself once KILL_AFTER_ROWS label rows are recorded; the record."""
    import subprocess
    import sys

    from fcn_deploy.tiffio import RECORD_NAME, resume_folder

    record = resume_folder(tmp_path / "out" / "scene.tif") / RECORD_NAME
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).parent), str(tmp_path), str(record)],
                           env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr[-2000:]
    return record


@pytest.mark.parametrize("change", [None, "model", "input"])
def test_a_killed_run_resumes_from_its_last_recorded_rows(tifffile, tmp_path, monkeypatch, change):
    image = noise(KILLED_HEIGHT, KILLED_WIDTH, seed=7)
    write_tiled(tifffile, tmp_path / "in" / "scene.tif", image)
    (tmp_path / "m.onnx").write_bytes(b"model one")
    record = kill_a_run_midway(tmp_path)
    rows = json.loads(record.read_text())["rows"]
    assert KILL_AFTER_ROWS <= rows < KILLED_HEIGHT and not (tmp_path / "out" / "scene.tif").exists()
    if change == "model":
        (tmp_path / "m.onnx").write_bytes(b"model two")
    elif change == "input":  # the same pixels, written again: a new file all the same
        write_tiled(tifffile, tmp_path / "in" / "scene.tif", image, compression="lzw")
    NamedPositionBackend.tiles = 0
    monkeypatch.setattr(segmenter_module, "open_backend",
                        lambda path, device="auto", choice=BackendChoice(), threads=0: NamedPositionBackend(SPEC, path))
    summary = infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out",
                           InferConfig(segmenter=RESUME_CONFIG, progress=False))
    assert summary.count("ok") == 1
    expected = make_segmenter(RESUME_CONFIG)
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "scene.tif"), expected.segment(image).labels)
    plan = expected.plan(image.shape[:2])
    if change is None:  # only the tile rows below the recorded rows, and the one row their seam needs, ran again
        from fcn_deploy.tiling import resumed_plan

        assert NamedPositionBackend.tiles == resumed_plan(plan, rows).count < plan.count * 0.6
    else:  # another model or another file: nothing of the killed run is reused
        assert NamedPositionBackend.tiles == plan.count
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scene.tif", "summary.json"]  # record gone


@pytest.mark.parametrize("tile,overlap", [((64, 64), 0.5), ((128, 128), 0.75), ((96, 64), 0.0)])
def test_a_resumed_plan_gives_the_uninterrupted_labels_below_its_row(tile, overlap):
    """In process, for the stitcher, the band accumulator and no overlap: replaying ``resumed_plan`` from any
    256-row boundary gives exactly the labels of a whole run there."""
    from fcn_deploy.tiling import resumed_plan

    image = noise(900, 130, seed=5)
    segmenter = make_segmenter(SegmenterConfig(tile=tile, overlap=overlap, batch=3))
    expected = segmenter.segment(image).labels
    plan = segmenter.plan(image.shape[:2])
    for row in (256, 512, 768):
        labels = np.zeros_like(expected)
        replay = resumed_plan(plan, row)
        segmenter.segment_into(image, labels, replay)
        assert np.array_equal(labels[row:], expected[row:]), row
        skipped = plan.count - replay.count
        assert skipped > 0 and skipped % plan.batch == 0  # every tile in the batch it had before


# --- overviews, OME pixel size, georeferencing, progress, decoding ahead ----------------------------------------


def test_overviews_are_nearest_neighbour_reduced_pages(tifffile, standin, tmp_path):
    image = noise(600, 520, seed=8)
    write_tiled(tifffile, tmp_path / "in" / "scene.tif", image, extratags=GEO)
    config = InferConfig(segmenter=SegmenterConfig(tile=(64, 64)), progress=False, overviews=True)
    assert infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out", config).count("ok") == 1
    labels = make_segmenter(SegmenterConfig(tile=(64, 64))).segment(image).labels
    with tifffile.TiffFile(tmp_path / "out" / "scene.tif") as tif:
        levels = tif.series[0].levels
        assert [level.shape for level in levels] == [(600, 520), (300, 260), (150, 130)]
        for factor, level in zip((1, 2, 4), levels):
            assert np.array_equal(level.asarray(), labels[::factor, ::factor])
        page = tif.pages.first
        assert page.tags[33550].value == GEO[0][3] and page.photometric == tifffile.PHOTOMETRIC.PALETTE
        assert levels[1].keyframe.photometric == tifffile.PHOTOMETRIC.PALETTE
        assert len(tif.pages) == 3 and tif.pages[1].subfiletype == 1  # in the main chain, where GDAL looks


def test_the_ome_physical_pixel_size_is_carried_over(tifffile, standin, tmp_path):
    image = noise(300, 200, seed=9)
    (tmp_path / "in").mkdir()
    metadata = {"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.5,
                "PhysicalSizeYUnit": "µm"}
    tifffile.imwrite(tmp_path / "in" / "slide.ome.tif", image, tile=(64, 64), photometric="rgb", ome=True,
                     metadata=metadata)
    config = InferConfig(segmenter=SegmenterConfig(tile=(64, 64)), progress=False, overviews=True)
    assert infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out", config).count("ok") == 1
    with tifffile.TiffFile(tmp_path / "out" / "slide.ome.tif") as tif:
        assert tif.is_ome and [level.shape for level in tif.series[0].levels] == [(300, 200), (150, 100)]
        assert len(tif.pages) == 1  # the overview in a SubIFD, as OME-TIFF pyramids keep them
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeY"]) == (0.25, 0.5)
        assert pixels["PhysicalSizeXUnit"] == "µm"
        labels = tif.asarray()
    assert np.array_equal(labels, make_segmenter(SegmenterConfig(tile=(64, 64))).segment(image).labels)


def test_the_georeferencing_round_trips(tifffile, standin, tmp_path):
    """The labels decode to the same GeoTIFF keys and transform as the input."""
    source = write_tiled(tifffile, tmp_path / "in" / "scene.tif", noise(200, 180), extratags=GEO)
    config = InferConfig(segmenter=SegmenterConfig(tile=(64, 64)), progress=False)
    assert infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out", config).count("ok") == 1
    with tifffile.TiffFile(source) as before, tifffile.TiffFile(tmp_path / "out" / "scene.tif") as after:
        assert after.geotiff_metadata == before.geotiff_metadata
        assert after.geotiff_metadata["ProjectedCSTypeGeoKey"].value == 32633


def test_gdal_reads_the_labels_their_georeferencing_palette_and_overviews(tifffile, standin, tmp_path):
    """What QGIS and gdalinfo see, through GDAL itself (rasterio's wheels carry it)."""
    rasterio = pytest.importorskip("rasterio", reason="rasterio is not installed (pip install 'fcn-deploy[dev]')")
    image = noise(600, 520, seed=4)
    source = write_tiled(tifffile, tmp_path / "in" / "scene.tif", image, compression="jpeg", extratags=GEO)
    config = InferConfig(segmenter=SegmenterConfig(tile=(64, 64)), progress=False, overviews=True)
    assert infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out", config).count("ok") == 1
    labels = make_segmenter(SegmenterConfig(tile=(64, 64))).segment(tifffile.imread(source)).labels  # as decoded
    with rasterio.open(source) as before, rasterio.open(tmp_path / "out" / "scene.tif") as after:
        assert after.crs == before.crs and after.crs.to_epsg() == 32633
        assert after.transform == before.transform and after.transform.a == 0.5
        assert (after.count, after.dtypes, after.shape) == (1, ("uint8",), (600, 520))
        assert after.colorinterp[0] == rasterio.enums.ColorInterp.palette
        assert after.colormap(1)[1] == (128, 0, 0, 255)  # VOC's class 1
        assert after.overviews(1) == [2, 4] and after.block_shapes[0][0] > 1  # tiled, with its reduced pages
        assert np.array_equal(after.read(1), labels)
        window = rasterio.windows.Window(col_off=100, row_off=250, width=130, height=70)
        assert np.array_equal(after.read(1, window=window), labels[250:320, 100:230])


def test_windows_are_decoded_on_their_own_thread(tifffile, standin, tmp_path, monkeypatch):
    from fcn_deploy.tiffio import TiffWindows

    readers = []
    original = TiffWindows.__getitem__

    def recording(self, key):
        readers.append(threading.current_thread().name)
        return original(self, key)

    monkeypatch.setattr(TiffWindows, "__getitem__", recording)
    write_tiled(tifffile, tmp_path / "in" / "scene.tif", noise(300, 200))
    config = InferConfig(segmenter=SegmenterConfig(tile=(64, 64)), progress=False)
    assert infer_folder(tmp_path / "m.onnx", tmp_path / "in", tmp_path / "out", config).count("ok") == 1
    assert readers[0] == threading.current_thread().name  # the first-window check when opening
    assert set(readers[1:]) == {"fcn-tiff-read"} and len(readers) > 10


def test_closing_prefetched_windows_does_not_wait_for_ever_on_a_stuck_read(monkeypatch):
    from fcn_deploy import tiffio

    monkeypatch.setattr(tiffio, "ABORT_WAIT_S", 0.2)
    release, reading = threading.Event(), threading.Event()

    class HungDisk:
        shape = (10, 10, 3)

        def __getitem__(self, key):
            reading.set()
            release.wait(60)
            return np.zeros((5, 5, 3), np.uint8)

    windows = tiffio.PrefetchedWindows(HungDisk(), [(slice(0, 5), slice(0, 5))], 1)
    try:
        assert reading.wait(10)
        closing = threading.Thread(target=windows.close, daemon=True)
        closing.start()
        closing.join(5)
        assert not closing.is_alive(), "close() waits for a read that never ends"
    finally:
        release.set()


def test_the_encoder_is_handed_one_band_copy_at_a_time(tifffile, tmp_path, monkeypatch):
    """The memory bound's label term: while the encoder compresses a band, the next is not copied nor queued."""
    from fcn_deploy import tiffio

    compressing, release = threading.Event(), threading.Event()
    real_spool_band = tiffio._spool_band

    def slow_disk(spool, band, width):
        compressing.set()
        release.wait(60)
        return real_spool_band(spool, band, width)

    monkeypatch.setattr(tiffio, "_spool_band", slow_disk)
    writer = tiffio.LabelTiffWriter(tmp_path / "labels.tif", 4 * tiffio.LABEL_TILE, 64, 4 * tiffio.LABEL_TILE)
    writer[0 : 4 * tiffio.LABEL_TILE, 0:64][:] = 1  # four bands complete at once, as a tile row completes them
    closing = threading.Thread(target=writer.close, daemon=True)
    try:
        closing.start()
        assert compressing.wait(10)
        time.sleep(0.3)  # time for a second copy to be queued, were it allowed
        assert closing.is_alive() and writer._bands.qsize() == 0
    finally:
        release.set()
        closing.join(30)
    assert np.array_equal(tifffile.imread(tmp_path / "labels.tif"), np.ones((4 * tiffio.LABEL_TILE, 64), np.uint8))


def test_prefetched_windows_keep_the_planned_order_and_pass_errors_on():
    from fcn_deploy.tiffio import PrefetchedWindows

    image = noise(10, 10)
    keys = [(slice(0, 5), slice(0, 5)), (slice(5, 10), slice(0, 5))]
    with PrefetchedWindows(image, keys, 1) as windows:
        assert np.array_equal(windows[0:5, 0:5], image[:5, :5])
        with pytest.raises(ValueError, match="was planned"):
            windows[0:5, 5:10]

    class Broken:
        shape = (10, 10, 3)

        def __getitem__(self, key):
            raise InputError("a corrupt tile")

    with PrefetchedWindows(Broken(), keys, 1) as windows, pytest.raises(InputError, match="a corrupt tile"):
        windows[0:5, 0:5]


def test_progress_counts_tile_rows_and_gives_an_eta(tifffile, standin, tmp_path):
    from fcn_deploy.infer import image_job, segment_windowed
    from fcn_deploy.progress import rows_status

    write_tiled(tifffile, tmp_path / "in" / "scene.tif", noise(700, 100))
    heard = []
    segmenter = make_segmenter(SegmenterConfig(tile=(64, 64), overlap=0.5))
    job = image_job(tmp_path / "in", tmp_path / "out", "scene.tif", False)
    record = segment_windowed(segmenter, job, InferConfig(progress=False), lambda done, total: heard.append(done))
    total = len(segmenter.plan((700, 100)).ys)
    assert record.status == "ok" and heard[0] == 0 and heard[-1] == total
    assert heard == sorted(heard) and len(heard) > 2  # one report per band of labels written
    assert rows_status(5, 20, 0, 50.0) == "tile row 5/20, ETA 2m30s"
    assert rows_status(15, 20, 10, 50.0) == "tile row 15/20, ETA 0m50s"  # a resumed run's rate counts from its start
    assert rows_status(20, 20, 0, 50.0) == "tile row 20/20"


def test_a_spilled_seam_gives_the_same_labels(tifffile, tmp_path, monkeypatch):
    """Windowed labels of a wide image keep the stitcher's strip in a file; forced here at a small size."""
    from fcn_deploy import tiling
    from fcn_deploy.tiffio import LabelTiffWriter, TiffWindows

    spilled, original = [], tiling.SpilledStrip
    monkeypatch.setattr(tiling, "SPILL_STRIP_BYTES", 0)
    monkeypatch.setattr(tiling, "SpilledStrip", lambda shape: spilled.append(shape) or original(shape))
    image = noise(300, 420, seed=11)
    source = write_tiled(tifffile, tmp_path / "in.tif", image)
    segmenter = make_segmenter(SegmenterConfig(tile=(128, 96), overlap=0.25))
    with TiffWindows(source) as windows:
        writer = LabelTiffWriter(tmp_path / "labels.tif", 300, 420, 128)
        segmenter.segment_into(windows, writer)
        writer.close()
    assert spilled and np.array_equal(tifffile.imread(tmp_path / "labels.tif"), segmenter.segment(image).labels)


def test_ctrl_c_keeps_the_recorded_rows_and_a_failure_does_not(tifffile, tmp_path):
    from fcn_deploy.infer import image_job, segment_windowed
    from fcn_deploy.tiffio import RECORD_NAME, resume_folder

    write_tiled(tifffile, tmp_path / "in" / "scene.tif", noise(KILLED_HEIGHT, KILLED_WIDTH, seed=7))
    (tmp_path / "m.onnx").write_bytes(b"model")
    job = image_job(tmp_path / "in", tmp_path / "out", "scene.tif", False)
    record = resume_folder(job.mask) / RECORD_NAME

    class Stopping(NamedPositionBackend):
        def __init__(self, spec, path, stop) -> None:
            super().__init__(spec, path)
            self.stop = stop

        def _infer(self, batch):
            if NamedPositionBackend.tiles >= 60:
                for _ in range(12000):  # wait for the encoder's first record, at most two minutes
                    if record.exists():
                        raise self.stop
                    threading.Event().wait(0.01)
            return super()._infer(batch)

    NamedPositionBackend.tiles = 0
    interrupted = Segmenter(Stopping(SPEC, tmp_path / "m.onnx", KeyboardInterrupt()), RESUME_CONFIG)
    with pytest.raises(KeyboardInterrupt):
        segment_windowed(interrupted, job, InferConfig(progress=False))
    assert json.loads(record.read_text())["rows"] >= 256 and not job.mask.exists()
    NamedPositionBackend.tiles = 0
    failing = Segmenter(Stopping(SPEC, tmp_path / "m.onnx", InputError("a bad tile")), RESUME_CONFIG)
    assert segment_windowed(failing, job, InferConfig(progress=False)).status == "failed"
    assert not resume_folder(job.mask).exists() and not job.mask.exists()


def test_a_record_that_does_not_fit_the_image_is_not_resumed(tmp_path):
    from fcn_deploy.tiffio import RECORD_NAME, RECORD_VERSION, SPOOL_NAME, load_resume_state, resume_folder

    folder = resume_folder(tmp_path / "scene.tif")
    folder.mkdir()
    (folder / SPOOL_NAME).write_bytes(bytes(100))
    identity = {"input": "same"}
    for rows, tiles, resumed in ((512, 4, 512), (512, 3, 0), (600, 6, 0), (256, 2, 256)):
        record = {"version": RECORD_VERSION, "identity": identity, "rows": rows, "tile_bytes": [10] * tiles}
        (folder / RECORD_NAME).write_text(json.dumps(record))
        assert load_resume_state(tmp_path / "scene.tif", identity, 520, 300).rows == resumed, (rows, tiles)
    assert load_resume_state(tmp_path / "scene.tif", {"input": "other"}, 520, 300).rows == 0
