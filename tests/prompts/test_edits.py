"""The image-editing visual prompts change exactly what they should."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from falip.prompts import edits as vp


def _noise(w: int = 48, h: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB")).astype(np.int32)


BOX = (10.0, 8.0, 31.0, 29.0)  # odd width and height: the centre row/col is a pixel centre


def test_region_mask_box_is_half_open_pixel_range():
    m = vp.region_mask((48, 40), (10, 8, 20, 12), "box")
    assert m.sum() == 10 * 4
    assert m[8:12, 10:20].all()


def test_region_mask_never_empty_for_tiny_box():
    m = vp.region_mask((48, 40), (5.2, 5.3, 5.4, 5.45), "ellipse")
    assert m.sum() == 1 and m[5, 5]


def test_region_mask_ellipse_inside_box():
    e = vp.region_mask((48, 40), BOX, "ellipse")
    b = vp.region_mask((48, 40), BOX, "box")
    assert e.sum() > 0 and not (e & ~b).any()


def test_inputs_not_modified():
    im = _noise()
    before = _arr(im).copy()
    for f in (
        vp.red_circle,
        vp.colored_box,
        vp.reverse_blur,
        vp.grayscale_outside,
        vp.cpt_shade,
        vp.crop,
        vp.blur_circle,
    ):
        f(im, BOX)
    assert (before == _arr(im)).all()


@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_reverse_blur_keeps_region_and_blurs_outside(shape):
    im = _noise()
    out = _arr(vp.reverse_blur(im, BOX, shape=shape))
    inside = vp.region_mask(im.size, BOX, shape)
    assert (out[inside] == _arr(im)[inside]).all()
    # std 100 on a 48 px image: outside is nearly a flat mean colour
    assert out[~inside].std(axis=0).max() < 3.0


def test_reverse_blur_small_std_changes_less():
    im = _noise()
    out = _arr(vp.reverse_blur(im, BOX, std=1.0))
    inside = vp.region_mask(im.size, BOX, "ellipse")
    assert (out[inside] == _arr(im)[inside]).all()
    assert out[~inside].std() > 10


@pytest.mark.parametrize("shape", ["box", "ellipse"])
def test_grayscale_outside(shape):
    im = _noise()
    out = _arr(vp.grayscale_outside(im, BOX, shape=shape))
    inside = vp.region_mask(im.size, BOX, shape)
    assert (out[inside] == _arr(im)[inside]).all()
    luma = np.asarray(im.convert("L")).astype(np.int32)
    for ch in range(3):
        assert (out[..., ch][~inside] == luma[~inside]).all()


def test_red_circle_only_changes_outline_with_exact_colour_and_thickness():
    im = Image.new("RGB", (48, 40), (0, 128, 0))
    out = _arr(vp.red_circle(im, BOX))
    red = (out == [255, 0, 0]).all(axis=2)
    changed = (out != _arr(im)).any(axis=2)
    assert (red == changed).all()  # every changed pixel is pure red, nothing else changes
    ring = vp.outline_mask(im.size, BOX, "ellipse", 2)
    assert (red == ring).all()
    assert not (red & ~vp.region_mask(im.size, BOX, "ellipse")).any()
    # thickness along the axes: 2 px at each of the 4 extremes of the ellipse
    cy, cx = 18, 20  # (8+29)/2 = 18.5 -> row 18; (10+31)/2 = 20.5 -> col 20
    row, col = red[cy], red[:, cx]
    assert row[10:12].all() and not row[12] and row[29:31].all() and not row[28]
    assert col[8:10].all() and not col[10] and col[27:29].all() and not col[26]
    assert row.sum() == 4 and col.sum() == 4


def test_red_circle_is_closed():
    """No gaps: the ring separates the ellipse's centre from the outside (4-connectivity)."""
    from scipy import ndimage

    im = Image.new("RGB", (64, 64), (0, 0, 0))
    for box in [(5, 5, 60, 30), (3.3, 7.7, 40.1, 61.9), (20, 2, 28, 62)]:
        red = (_arr(vp.red_circle(im, box)) == [255, 0, 0]).all(axis=2)
        labels, _ = ndimage.label(~red)
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        assert labels[cy, cx] != labels[0, 0]


def test_red_circle_custom_colour_and_thickness():
    im = Image.new("RGB", (48, 40), (0, 0, 0))
    out = _arr(vp.red_circle(im, BOX, color=(0, 0, 255), thickness=3))
    blue = (out == [0, 0, 255]).all(axis=2)
    assert blue[18, 10:13].all() and not blue[18, 13]


def test_colored_box_outline():
    im = Image.new("RGB", (48, 40), (10, 20, 30))
    box = (10, 8, 30, 28)
    out = _arr(vp.colored_box(im, box))
    red = (out == [255, 0, 0]).all(axis=2)
    changed = (out != _arr(im)).any(axis=2)
    assert (red == changed).all()
    expect = np.zeros((40, 48), bool)
    expect[8:28, 10:30] = True
    expect[10:26, 12:28] = False
    assert (red == expect).all()


def test_crop_equals_box_content():
    im = _noise()
    assert (_arr(vp.crop(im, (10, 8, 30, 28))) == _arr(im)[8:28, 10:30]).all()
    # fractional box: the pixels whose centres lie inside
    assert (_arr(vp.crop(im, (9.6, 7.4, 30.4, 28.6))) == _arr(im)[7:29, 10:30]).all()
    # clipped to the image
    assert (_arr(vp.crop(im, (-5, -5, 5, 5))) == _arr(im)[0:5, 0:5]).all()
    with pytest.raises(ValueError):
        vp.crop(im, (100, 100, 120, 120))


def test_cpt_shade_exact_blend():
    im = Image.new("RGB", (20, 20), (100, 50, 200))
    out = _arr(vp.cpt_shade(im, (5, 5, 15, 15)))
    expect = [(127 * c + 128 * p + 127) // 255 for c, p in zip((240, 0, 30), (100, 50, 200))]
    assert expect == [170, 25, 115]
    assert (out[5:15, 5:15] == expect).all()
    outside = ~vp.region_mask(im.size, (5, 5, 15, 15))
    assert (out[outside] == [100, 50, 200]).all()


def test_cpt_text():
    """ReCLIP executor.py ClipExecutor.preprocess_text (``text.lower()+" is in red color."``) and FGVP
    fgvp-reclip/executor.py:374: lowercased, nothing stripped."""
    assert vp.cpt_text("the red square") == "the red square is in red color."
    assert vp.cpt_text("A cat.") == "a cat. is in red color."
    assert vp.cpt_text(" Man on left ") == " man on left  is in red color."


def test_blur_circle_combines_both():
    im = _noise()
    out = _arr(vp.blur_circle(im, BOX))
    ring = vp.outline_mask(im.size, BOX, "ellipse", 2)
    inner = vp.region_mask(im.size, BOX, "ellipse") & ~ring
    assert (out[ring] == [255, 0, 0]).all()
    assert (out[inner] == _arr(im)[inner]).all()


def test_bad_boxes():
    im = _noise()
    with pytest.raises(ValueError):
        vp.red_circle(im, (10, 10, 5, 20))
    with pytest.raises(ValueError):
        vp.reverse_blur(im, (1, 2, 3))
    with pytest.raises(ValueError):
        vp.red_circle(im, BOX, thickness=0)


@settings(max_examples=40, deadline=None)
@given(x0=st.floats(-10, 50), y0=st.floats(-10, 45), w=st.floats(0.01, 40), h=st.floats(0.01, 40))
def test_edits_confined_property(x0, y0, w, h):
    im = _noise(seed=3)
    box = (x0, y0, x0 + w, y0 + h)
    a = _arr(im)
    ell = vp.region_mask(im.size, box, "ellipse")
    bx = vp.region_mask(im.size, box, "box")
    assert not (ell & ~bx).any()
    circ = (_arr(vp.red_circle(im, box)) != a).any(axis=2)
    assert not (circ & ~ell).any()
    boxed = (_arr(vp.colored_box(im, box)) != a).any(axis=2)
    assert not (boxed & ~bx).any()
    shaded = (_arr(vp.cpt_shade(im, box)) != a).any(axis=2)
    assert not (shaded & ~bx).any()
    blurred = _arr(vp.reverse_blur(im, box, std=2.0))
    assert (blurred[ell] == a[ell]).all()


def test_boxes_use_falips_validator_with_clear_messages():
    im = _noise()
    with pytest.raises(vp.FalipError, match=r"box \(10, 10, 5, 20\) is inverted \(x1 < x0\)"):
        vp.red_circle(im, (10, 10, 5, 20))
    with pytest.raises(vp.FalipError, match=r"box \(10, 10, 10, 20\) is empty \(zero width\)"):
        vp.reverse_blur(im, (10, 10, 10, 20))
    with pytest.raises(vp.FalipError, match="NaN"):
        vp.crop(im, (float("nan"), 0, 5, 5))
