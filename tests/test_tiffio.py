"""Windowed TIFF reading and streaming label TIFF writing: the same labels as in memory, georeferencing carried
over, pyramid levels, and bad files failing alone with a clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy import segmenter as segmenter_module
from fcn_deploy.errors import BatchFailure, MissingComponentError
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
    assert result.mode == expected.mode and result.tiles == expected.tiles
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
