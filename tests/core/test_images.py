"""to_rgb: every PIL mode becomes the 8-bit RGB image a person would see (pixel values checked)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from falip.core.errors import FalipError
from falip.core.images import to_rgb

RAMP8 = np.arange(256, dtype=np.uint8).reshape(1, 256)


def _px(image: Image.Image) -> np.ndarray:
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == image.size
    return np.asarray(out).astype(int)


def _gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(values, dtype=int)[..., None], 3, axis=-1)


@pytest.mark.parametrize("mode, dtype", [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2"), ("I;16N", "=u2")])
def test_16bit_ramp_maps_to_the_8bit_ramp(mode, dtype):
    ramp16 = RAMP8.astype(np.uint32) * 257  # the usual 8 -> 16 bit up-conversion
    im = Image.frombytes(mode, (256, 1), ramp16.astype(dtype).tobytes())
    assert np.array_equal(_px(im), _gray(RAMP8))
    # PIL's own conversion clips at 255: every non-zero 16-bit pixel would be white
    assert (np.asarray(im.convert("RGB"))[0, 1:] == 255).all()


def test_16bit_values_round_to_nearest():
    vals = np.array([[0, 128, 129, 385, 386, 32767, 65407, 65535]], dtype=np.uint16)
    expected = np.rint(vals / 257.0)
    assert np.array_equal(_px(Image.fromarray(vals)), _gray(expected))
    assert Image.fromarray(vals).mode == "I;16"


def test_mode_I_is_read_as_16bit_and_clipped():
    vals = np.array([[-5, 0, 257 * 100, 65535, 70000]], dtype=np.int32)
    im = Image.fromarray(vals)
    assert im.mode == "I"
    assert np.array_equal(_px(im), _gray([[0, 0, 100, 255, 255]]))


def test_mode_F_stretches_its_own_range():
    vals = np.array([[0.25, 0.5, 0.75, 1.25]], dtype=np.float32)
    assert np.array_equal(_px(Image.fromarray(vals)), _gray([[0, 64, 128, 255]]))
    unit = np.linspace(0, 1, 256, dtype=np.float32).reshape(1, 256)
    assert np.abs(_px(Image.fromarray(unit)) - _gray(RAMP8)).max() <= 1
    special = np.array([[np.nan, -np.inf, np.inf, 2.0, 4.0]], dtype=np.float32)
    assert np.array_equal(_px(Image.fromarray(special)), _gray([[0, 0, 255, 0, 255]]))
    constant = np.full((2, 3), 42.0, dtype=np.float32)
    assert (_px(Image.fromarray(constant)) == 42).all()


def test_grayscale_and_bilevel():
    assert np.array_equal(_px(Image.fromarray(RAMP8)), _gray(RAMP8))
    bits = Image.fromarray(np.array([[0, 255, 0]], dtype=np.uint8)).convert("1")
    assert np.array_equal(_px(bits), _gray([[0, 255, 0]]))


def test_rgb_is_unchanged_and_a_new_image():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    out = to_rgb(im)
    assert out is not im and np.array_equal(np.asarray(out), rgb)


def test_rgba_composites_on_white():
    px = np.array([[[255, 0, 0, 128], [10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 64]]], dtype=np.uint8)
    out = _px(Image.fromarray(px, "RGBA"))
    assert np.abs(out[0, 0] - [255, 128, 128]).max() <= 1  # half-transparent red over white
    assert out[0, 1].tolist() == [10, 20, 30]  # opaque: as is
    assert out[0, 2].tolist() == [255, 255, 255]  # transparent: white, whatever its colour
    assert np.abs(out[0, 3] - [191, 191, 191]).max() <= 1


def test_premultiplied_alpha_modes():
    rgba = Image.fromarray(np.array([[[200, 100, 50, 128]]], dtype=np.uint8), "RGBA")
    expected = _px(rgba)
    assert np.abs(_px(rgba.convert("RGBa")) - expected).max() <= 2  # premultiplied round trip loses a bit
    la = Image.fromarray(np.array([[[0, 128], [100, 255], [100, 0]]], dtype=np.uint8), "LA")
    assert np.abs(_px(la) - _gray([[127, 100, 255]])).max() <= 1
    assert np.abs(_px(la.convert("La")) - _gray([[127, 100, 255]])).max() <= 2


def test_palette_colours_survive_with_and_without_transparency():
    palette = [255, 0, 0, 0, 128, 255, 7, 200, 9] + [0] * (256 * 3 - 9)
    idx = np.array([[0, 1, 2, 1]], dtype=np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette(palette)
    assert _px(im)[0].tolist() == [[255, 0, 0], [0, 128, 255], [7, 200, 9], [0, 128, 255]]
    im.info["transparency"] = 1  # index 1 fully transparent (PNG tRNS)
    assert _px(im)[0].tolist() == [[255, 0, 0], [255, 255, 255], [7, 200, 9], [255, 255, 255]]
    im.info["transparency"] = bytes([255, 0, 128])  # per-index alpha
    out = _px(im)[0]
    assert out[0].tolist() == [255, 0, 0] and out[1].tolist() == [255, 255, 255]
    assert np.abs(out[2] - [131, 227, 132]).max() <= 1
    pa = im.convert("PA")
    assert pa.mode == "PA" and np.abs(_px(pa) - out).max() <= 1


def test_rgb_and_gray_with_a_transparent_colour_key():
    rgb = Image.fromarray(np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8))
    rgb.info["transparency"] = (1, 2, 3)
    assert _px(rgb)[0].tolist() == [[255, 255, 255], [4, 5, 6]]
    gray = Image.fromarray(np.array([[7, 8]], dtype=np.uint8))
    gray.info["transparency"] = 7
    assert _px(gray)[0].tolist() == [[255, 255, 255], [8, 8, 8]]


def test_cmyk():
    px = np.array([[[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 255], [0, 0, 0, 0]]], dtype=np.uint8)
    out = _px(Image.fromarray(px, "CMYK"))
    assert out[0].tolist() == [[0, 255, 255], [255, 0, 255], [255, 255, 0], [0, 0, 0], [255, 255, 255]]


def test_other_colour_spaces_go_through_pil():
    rgb = Image.fromarray(np.array([[[250, 10, 10], [10, 250, 10], [10, 10, 250]]], dtype=np.uint8))
    for mode in ("YCbCr", "HSV", "RGBX"):
        assert np.abs(_px(rgb.convert(mode)) - np.asarray(rgb).astype(int)).max() <= 3, mode


def test_not_an_image():
    with pytest.raises(FalipError, match="expected a PIL image, got ndarray"):
        to_rgb(np.zeros((2, 2, 3), dtype=np.uint8))
