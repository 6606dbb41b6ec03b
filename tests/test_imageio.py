"""Image I/O: every Pillow mode to upright uint8 RGB, bad files as InputError naming them, atomic palette masks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_deploy.errors import InputError
from fcn_deploy.imageio import (
    decode_image,
    image_size,
    is_image_path,
    mask_palette,
    overlay,
    read_file_bytes,
    read_image,
    write_mask,
    write_overlay,
)
from fcn_deploy.palette import VOC_COLORMAP, VOC_PNG_PALETTE

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def gradient(height: int = 20, width: int = 30) -> np.ndarray:
    """A uint8 RGB image whose pixels differ along both axes."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 10 % 256, cols * 8 % 256, (rows + cols) % 256], axis=2).astype(np.uint8)


def save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


def test_rgb_png_round_trip(tmp_path):
    rgb = gradient()
    array = read_image(save(Image.fromarray(rgb), tmp_path / "a.png"))
    assert array.dtype == np.uint8 and np.array_equal(array, rgb)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = gradient()[..., 0]
    array = read_image(save(Image.fromarray(gray), tmp_path / "g.png"))
    assert array.shape == (20, 30, 3)
    assert all(np.array_equal(array[..., c], gray) for c in range(3))


def test_rgba_drops_alpha(tmp_path):
    rgba = np.dstack([gradient(), np.full((20, 30), 7, np.uint8)])
    array = read_image(save(Image.fromarray(rgba), tmp_path / "a.png"))
    assert np.array_equal(array, rgba[..., :3])


def test_palette_with_transparency(tmp_path):
    indices = (np.arange(20 * 30).reshape(20, 30) % 4).astype(np.uint8)
    image = Image.fromarray(indices)
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    image.info["transparency"] = 0
    array = read_image(save(image, tmp_path / "p.png", transparency=0))
    assert np.array_equal(array[indices == 1][0], [0, 255, 0])
    assert np.array_equal(array[indices == 3][0], [9, 9, 9])


def test_sixteen_bit_is_scaled_to_eight(tmp_path):
    values = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    array = read_image(save(Image.fromarray(values), tmp_path / "deep.png"))
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert np.array_equal(array[..., 0], np.round(values / 257).astype(np.uint8))


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.fromarray(gradient()).convert("CMYK")
    array = read_image(save(cmyk, tmp_path / "c.jpg", quality=95))
    assert array.shape == (20, 30, 3)
    assert np.abs(array.astype(int) - gradient().astype(int)).mean() < 12


def test_bilevel(tmp_path):
    bits = Image.fromarray((gradient()[..., 0] > 100).astype(np.uint8) * 255).convert("1")
    array = read_image(save(bits, tmp_path / "b.png"))
    assert set(np.unique(array)) <= {0, 255}


def test_exif_orientation_is_applied(tmp_path):
    rgb = gradient(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = save(Image.fromarray(rgb), tmp_path / "rot.jpg", exif=exif, quality=100, subsampling=0)
    array = read_image(path)
    assert array.shape == (30, 20, 3)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(array.astype(int) - expected.astype(int)).mean() < 4


@pytest.mark.parametrize("name,content", [
    ("empty.jpg", b""),
    ("text.png", b"this is not an image\n"),
    ("noise.jpg", bytes(range(256)) * 4),
])
def test_non_images_name_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=name):
        read_image(path)


@pytest.mark.parametrize("fmt,suffix", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated_files_name_the_file(tmp_path, fmt, suffix):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format=fmt)
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match=f"cut.{suffix}"):
        read_image(path)


def test_directories_and_missing_files(tmp_path):
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(InputError, match="folder.png"):
        read_image(tmp_path / "folder.png")
    with pytest.raises(InputError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_only_regular_files_are_read(tmp_path, special_files):
    """A pipe, socket or device named like an image is refused by what it is, never opened to wait on."""
    regular = save(Image.fromarray(gradient()), tmp_path / "real.png")
    os.symlink(regular, tmp_path / "link.png")
    os.symlink("/dev/zero", tmp_path / "zero.jpg")  # reading it would never end
    pipe = special_files.pipe(tmp_path / "pipe.png")
    os.symlink(pipe, tmp_path / "pipe-link.png")
    special_files.socket(tmp_path / "sock.jpg")
    kinds = {"pipe.png": "a named pipe", "pipe-link.png": "a named pipe", "sock.jpg": "a socket",
             "zero.jpg": "a character device"}
    for name, kind in kinds.items():
        for read in (read_image, read_file_bytes):
            with pytest.raises(InputError, match=f"{name}: is {kind}.*only regular files are read") as info:
                read(tmp_path / name)
            assert info.value.hint
        assert image_size(tmp_path / name) is None
    assert special_files.opened_pipes == []
    assert read_image(tmp_path / "link.png").shape == (20, 30, 3)
    assert read_file_bytes(tmp_path / "link.png") == regular.read_bytes()
    with pytest.raises(InputError, match="is a directory"):
        read_file_bytes(tmp_path)


def test_pixel_limit(tmp_path, monkeypatch):
    path = save(Image.fromarray(gradient(100, 100)), tmp_path / "big.png")
    with pytest.raises(InputError, match="exceeds the limit of 5000") as info:
        read_image(path, max_pixels=5000)
    assert "--max-pixels" in info.value.hint
    # a limit above Pillow's own global one is honoured, and the global is left as it was
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert read_image(path, max_pixels=20_000).shape == (100, 100, 3)
    assert read_image(path, max_pixels=None).shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_image_suffixes():
    assert is_image_path("a/B.JPG") and is_image_path("x.tiff") and is_image_path("y.WebP")
    assert not is_image_path("notes.txt") and not is_image_path("mask.png.part")


def test_masks_are_voc_palette_pngs(tmp_path):
    labels = np.arange(20 * 30).reshape(20, 30).astype(np.uint8) % 22
    labels[0, 0] = 255
    path = write_mask(tmp_path / "sub" / "m.png", labels)
    with Image.open(path) as image:
        assert image.mode == "P" and image.format == "PNG"
        palette = image.getpalette()
        assert np.array_equal(np.asarray(image), labels)
    colors = [tuple(palette[i : i + 3]) for i in range(0, 768, 3)]
    assert colors[:21] == list(VOC_COLORMAP) and colors[255] == VOC_PNG_PALETTE[255]
    assert [p.name for p in path.parent.iterdir()] == ["m.png"]  # no temporary file left


def test_custom_palettes_are_padded_with_voc_colours():
    colors = mask_palette(((1, 2, 3), (4, 5, 6)))
    assert len(colors) == 256 and colors[:2] == ((1, 2, 3), (4, 5, 6)) and colors[2:] == VOC_PNG_PALETTE[2:]


def test_overlay_tints_foreground_only(tmp_path):
    image = np.full((600, 20, 3), 200, np.uint8)  # taller than one blending chunk
    labels = np.zeros((600, 20), np.uint8)
    labels[300:, :] = 15
    result = overlay(image, labels)
    assert np.array_equal(result[:300], image[:300])
    tint = (200 * 128 + np.array(VOC_COLORMAP[15]) * 128) >> 8  # half image, half class colour
    assert np.all(result[300:] == tint)
    path = write_overlay(tmp_path / "o.overlay.jpg", image, labels)
    with Image.open(path) as written:
        assert written.format == "JPEG" and written.size == (20, 600)


def test_bad_labels_are_rejected(tmp_path):
    with pytest.raises(InputError, match="H×W uint8"):
        write_mask(tmp_path / "m.png", np.zeros((4, 4), np.int64))
    assert not list(tmp_path.iterdir())


def test_a_symlink_loop_is_named_as_such(tmp_path):
    os.symlink(tmp_path / "b.png", tmp_path / "a.png")
    os.symlink(tmp_path / "a.png", tmp_path / "b.png")
    with pytest.raises(InputError, match="a loop of symbolic links") as info:
        read_image(tmp_path / "a.png")
    assert "corrupt" not in str(info.value) and info.value.hint


def test_mask_check_reads_the_png_header_and_end(tmp_path):
    from fcn_deploy.imageio import image_size, is_mask_of_size

    path = write_mask(tmp_path / "m.png", np.zeros((30, 40), np.uint8))
    assert is_mask_of_size(path, 30, 40) and not is_mask_of_size(path, 40, 30)
    data = path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:-6])
    assert not is_mask_of_size(tmp_path / "cut.png", 30, 40)
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "gray.png")
    assert not is_mask_of_size(tmp_path / "gray.png", 30, 40) and not is_mask_of_size(tmp_path / "none.png", 1, 1)
    assert image_size(path) == (30, 40) and image_size(tmp_path / "none.png") is None


def test_an_upright_image_is_not_copied_for_exif(tmp_path, monkeypatch):
    """exif_transpose returns a full copy even when there is nothing to turn: it runs only for turned images."""
    from PIL import ImageOps

    calls = []
    real = ImageOps.exif_transpose
    monkeypatch.setattr(ImageOps, "exif_transpose", lambda image, **kw: calls.append(1) or real(image, **kw))
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "upright.jpg")
    assert read_image(tmp_path / "upright.jpg").shape == (20, 30, 3) and calls == []
    exif = Image.Exif()
    exif[0x0112] = 6  # turned by 90 degrees
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "turned.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "turned.jpg").shape == (30, 20, 3) and calls == [1]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_the_image_as_pillow_does(fmt, orientation):
    """RGB images decoded into our own buffer are turned in numpy: exactly as Pillow's exif_transpose turns them."""
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(orientation).integers(0, 256, (37, 53, 3), np.uint8)).save(
        buffer, format=fmt, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))).convert("RGB"))
    array = decode_image(buffer.getvalue())
    assert array.flags.c_contiguous and array.dtype == np.uint8
    np.testing.assert_array_equal(array, expected)


def test_image_size_reads_the_header_without_decoding_the_pixels(tmp_path, monkeypatch):
    """Sizing runs before the pixel budget and on resume: a decode there would cost as much as the image."""
    from PIL import ImageFile

    from fcn_deploy.imageio import image_size

    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.jpg")

    def no_decoding(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert image_size(tmp_path / "a.png") == (30, 40)
    assert image_size(tmp_path / "a.jpg") == (30, 40)


_DECODE_PEAK = """
import sys
from pathlib import Path
from PIL import Image
from fcn_deploy.imageio import read_image

Image.init()  # the format plugins load before the peak is reset

def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":")) * 1024

Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from the current RSS
before = status("VmRSS")
pixels = read_image(sys.argv[1])
print((status("VmHWM") - before) / (pixels.shape[0] * pixels.shape[1]))
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="resets the peak RSS through /proc (Linux)")
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_decoding_peaks_near_four_bytes_a_pixel(tmp_path, suffix):
    """An RGB image is decoded into the array's own memory (Pillow keeps 4 bytes a pixel there), not into Pillow's
    image beside the array (7 bytes a pixel): measured in a fresh process on a 12-megapixel noise image."""
    import subprocess
    import sys

    path = tmp_path / f"noise{suffix}"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), np.uint8)).save(path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", _DECODE_PEAK, str(path)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) <= 5.0
