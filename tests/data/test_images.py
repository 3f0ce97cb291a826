"""load_image on real files: every mode arrives as the right 8-bit RGB, and bad files name the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from falip.core.errors import FalipError
from falip.data.images import load_image


def _rgb(path) -> np.ndarray:
    im = load_image(path)
    assert im.mode == "RGB"
    return np.asarray(im).astype(int)


def test_16bit_png(tmp_path):
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16).reshape(4, 64)
    Image.fromarray(ramp).save(tmp_path / "depth.png")
    with Image.open(tmp_path / "depth.png") as im:
        assert im.mode in ("I;16", "I")  # what the PNG decoder gives, depending on Pillow's version
    out = _rgb(tmp_path / "depth.png")
    assert np.array_equal(out[..., 0], np.arange(256).reshape(4, 64))
    assert (out[..., 0] == out[..., 2]).all()


def test_palette_png_with_transparency(tmp_path):
    im = Image.fromarray(np.array([[0, 1], [2, 0]], dtype=np.uint8), "P")
    im.putpalette([12, 34, 56, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    im.save(tmp_path / "pal.png", transparency=bytes([0, 255, 128]))
    with Image.open(tmp_path / "pal.png") as back:
        assert back.mode == "P" and "transparency" in back.info
    out = _rgb(tmp_path / "pal.png")
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [255, 255, 255]  # index 0: transparent
    assert out[0, 1].tolist() == [255, 0, 0]  # opaque red
    assert np.abs(out[1, 0] - [127, 127, 255]).max() <= 1  # half-transparent blue on white


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((16, 16, 4), dtype=np.uint8)
    cmyk[:, :8, 0] = 255  # left half pure cyan, right half no ink (white)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "print.jpg", quality=100)
    with Image.open(tmp_path / "print.jpg") as back:
        assert back.mode == "CMYK"
    out = _rgb(tmp_path / "print.jpg")
    assert np.abs(out[4, 2] - [0, 255, 255]).max() <= 3
    assert np.abs(out[4, 13] - [255, 255, 255]).max() <= 3


def test_rgba_png(tmp_path):
    px = np.array([[[255, 0, 0, 128], [0, 0, 0, 0], [0, 200, 0, 255]]], dtype=np.uint8)
    Image.fromarray(px, "RGBA").save(tmp_path / "cut.png")
    out = _rgb(tmp_path / "cut.png")
    assert np.abs(out[0, 0] - [255, 128, 128]).max() <= 1
    assert out[0, 1].tolist() == [255, 255, 255] and out[0, 2].tolist() == [0, 200, 0]


def test_grayscale_jpeg_and_rgb_png(tmp_path):
    Image.fromarray(np.full((8, 8), 90, dtype=np.uint8)).save(tmp_path / "g.jpg", quality=100)
    assert np.abs(_rgb(tmp_path / "g.jpg") - 90).max() <= 1
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert np.array_equal(_rgb(tmp_path / "c.png"), rgb)


def test_exif_orientation_is_not_applied(tmp_path):
    px = np.zeros((10, 30, 3), dtype=np.uint8)  # stored 30 wide, 10 high
    px[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(px).save(tmp_path / "phone.jpg", quality=100, exif=exif)
    im = load_image(tmp_path / "phone.jpg")
    assert im.size == (30, 10)
    assert np.asarray(im)[5, 2].min() > 240 and np.asarray(im)[5, 25].max() < 15


def _png_bytes(tmp_path) -> bytes:
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full.png")
    return (tmp_path / "full.png").read_bytes()


def test_truncated_png(tmp_path):
    data = _png_bytes(tmp_path)
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(FalipError, match="cut.png: truncated or corrupt image"):
        load_image(tmp_path / "cut.png")


def test_truncated_jpeg(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(FalipError, match="cut.jpg: truncated or corrupt image"):
        load_image(tmp_path / "cut.jpg")


def test_corrupt_png_data(tmp_path):
    data = bytearray(_png_bytes(tmp_path))
    start = data.index(b"IDAT") + 20
    data[start : start + 40] = bytes(40)  # damage the compressed pixels (the chunk's CRC no longer matches)
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(FalipError, match="bad.png: truncated or corrupt image"):
        load_image(tmp_path / "bad.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels\n")
    with pytest.raises(FalipError, match="notes.jpg: not an image file Pillow can read"):
        load_image(tmp_path / "notes.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(FalipError, match="empty.png: not an image file"):
        load_image(tmp_path / "empty.png")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FalipError, match="nope.png: no such image file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(FalipError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(FalipError) as e:
        load_image(str(tmp_path / "nope.png"))  # str paths too
    assert str(tmp_path / "nope.png") in str(e.value)
