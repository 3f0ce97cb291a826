"""The authors' image edits are pixel-identical to what their code draws.

Each expected image below is drawn independently, in the order the reference code runs its PIL
calls: ReCLIP ``executor.py`` ``Executor.tensorize_inputs`` (allenai/reclip @ 3ed4f47, lines 48-98:
the box clipped with ``enlarge_boxes = 0``, ``blur``: ``draw.rectangle`` fill 255 on an ``L`` mask,
``GaussianBlur(self.blur_std_dev)`` (100), ``blurred.paste(image_i, mask=mask)``; ``shade``: an RGBA
overlay ``(240, 0, 30, 0)``, ``draw.rectangle(..., fill=(240, 0, 30, 127))``, ``alpha_composite``), and
the FALIP authors' ``circle`` branch of their fork of that file (pumpkin805/FALIP @ 583df71
executor.py:153-178: ``blur = True`` hard-coded at line 154; the ``if not blur:`` branch, lines
165-168, draws ``ellipse(..., outline="red", width=int(max(W, H) / 200))`` on the image; the blurred
branch, lines 170-178, draws its ``L`` mask with ``ellipse(..., outline="red", fill=255)``, pastes
the original over the blur through it, then the same red outline), and both executors' ``crop``
(allenai/reclip @ 3ed4f47 executor.py:56-62, pumpkin805/FALIP @ 583df71 executor.py:187-193:
``image.crop`` of the clipped box).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from falip.prompts import edits as vp


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


# COCO-like: a 640x480 image (outline width 3), float xyxy boxes, one past the right/bottom edge
CASES = [
    ((640, 480), (100.5, 60.25, 300.75, 222.0)),
    ((640, 480), (500.0, 400.0, 700.0, 520.0)),
    ((480, 640), (0.0, 0.0, 479.9, 300.3)),
    ((97, 61), (10.0, 8.0, 31.0, 29.0)),  # under 200 px: width 0, no outline
]


def _clip(size, box):
    w, h = size
    return (max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h))


def _their_blur(image, box, shape):
    mask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(mask)
    b = _clip(image.size, box)
    (draw.rectangle if shape == "box" else draw.ellipse)([b[:2], b[2:]], fill=255)
    blurred = image.filter(ImageFilter.GaussianBlur(100))
    blurred.paste(image, mask=mask)
    return blurred


@pytest.mark.parametrize("size,box", CASES)
def test_reclip_blur_is_their_image(size, box):
    im = _image(*size)
    assert np.array_equal(np.asarray(vp.reclip_blur(im, box)), np.asarray(_their_blur(im, box, "box")))


@pytest.mark.parametrize("size,box", CASES)
def test_reclip_shade_is_their_image(size, box):
    im = _image(*size, seed=1)
    rgba = im.copy().convert("RGBA")
    overlay = Image.new("RGBA", rgba.size, (240, 0, 30, 0))
    b = _clip(im.size, box)
    ImageDraw.Draw(overlay).rectangle((tuple(b[:2]), tuple(b[2:])), fill=(240, 0, 30, 127))
    want = Image.alpha_composite(rgba, overlay).convert("RGB")
    assert np.array_equal(np.asarray(vp.reclip_shade(im, box)), np.asarray(want))


# every width the executor can give, from 0 (under 200 px) up, and boxes with .5 and clipped edges
CIRCLE_CASES = CASES + [
    ((199, 150), (20.5, 10.5, 120.25, 99.5)),  # width 0
    ((200, 120), (0.0, 0.0, 200.0, 120.0)),  # width 1, the whole image
    ((150, 160), (-5.0, 30.0, 80.5, 170.0)),  # width 0, clipped on two sides
    ((401, 300), (33.3, 44.4, 250.5, 200.5)),  # width 2
    ((1024, 700), (300.0, 200.0, 700.0, 650.0)),  # width 5
]


def _their_circle(image, box):
    """The ``blur = False`` branch, written from the executor: the outline drawn on a copy of the image."""
    out = image.copy()
    b = _clip(image.size, box)
    ImageDraw.Draw(out).ellipse([b[:2], b[2:]], outline="red", width=int(max(image.size) / 200))
    return out


def _their_circle_blur(image, box):
    """The ``blur = True`` branch: an L mask filled 255 and outlined "red", the blur under it, then the outline."""
    b = _clip(image.size, box)
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse([b[:2], b[2:]], outline="red", fill=255)
    blurred = image.filter(ImageFilter.GaussianBlur(100))
    blurred.paste(image, mask=mask)
    ImageDraw.Draw(blurred).ellipse([b[:2], b[2:]], outline="red", width=int(max(image.size) / 200))
    return blurred


@pytest.mark.parametrize("size,box", CIRCLE_CASES)
def test_authors_red_circle_is_their_image(size, box):
    """The blurred branch, pixel for pixel, at every size: under 200 px only its mask's 1-px ring marks the edge."""
    im = _image(*size, seed=2)
    got = vp.authors_red_circle(im, box)
    assert np.array_equal(np.asarray(got), np.asarray(_their_circle_blur(im, box)))
    assert vp.authors_circle_width(im.size) == int(max(size) / 200)


@pytest.mark.parametrize("size,box", CIRCLE_CASES)
def test_authors_circle_is_their_plain_branch(size, box):
    """The ``blur = False`` branch (the paper's RedCircle), pixel for pixel; under 200 px it draws nothing."""
    im = _image(*size, seed=3)
    got = np.asarray(vp.authors_circle(im, box))
    assert np.array_equal(got, np.asarray(_their_circle(im, box)))
    if max(size) < 200:
        assert np.array_equal(got, np.asarray(im))
    else:
        assert ((got == [255, 0, 0]).all(axis=2) & ~(np.asarray(im) == [255, 0, 0]).all(axis=2)).any()


def test_small_image_keeps_the_ring_of_the_blurred_mask():
    """Under 200 px the width is 0, yet the mask's "red" outline (76 in an L image) blends a 1-px ring.

    Checked by a loop over the pixels: on the ring each channel is the paste at 76/255, inside the
    original, outside the blur.
    """
    im = _image(120, 90, seed=4)
    box = (10.0, 12.0, 90.0, 70.0)
    got = np.asarray(vp.authors_red_circle(im, box)).astype(int)
    mask = np.asarray(_their_mask(im.size, box))
    orig = np.asarray(im).astype(int)
    blur = np.asarray(im.filter(ImageFilter.GaussianBlur(100))).astype(int)
    assert set(np.unique(mask)) == {0, 76, 255}
    ring = 0
    for r in range(im.size[1]):
        for c in range(im.size[0]):
            if mask[r, c] == 255:
                assert (got[r, c] == orig[r, c]).all()
            elif mask[r, c] == 0:
                assert (got[r, c] == blur[r, c]).all()
            else:
                ring += 1
                want = (orig[r, c] * 76 + blur[r, c] * (255 - 76)) / 255
                assert np.abs(got[r, c] - want).max() <= 1  # PIL's paste rounds
    assert ring > 100


def _their_mask(size, box):
    b = _clip(size, box)
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse([b[:2], b[2:]], outline="red", fill=255)
    return mask


def test_reclip_crop_is_their_crop_on_random_boxes():
    """``image.crop`` of the clipped box, as both executors call it, on 300 random boxes, a third with .5 edges.

    PIL rounds edges half to even; falip's pixel-centre :func:`crop` differs there by one pixel.
    """
    rng = np.random.default_rng(0)
    im = _image(97, 73, seed=5)
    differ = 0
    for i in range(300):
        x0, y0 = rng.uniform(-10, 80), rng.uniform(-10, 60)
        x1, y1 = x0 + rng.uniform(1.5, 60), y0 + rng.uniform(1.5, 50)
        if i % 3 == 0:
            x0, y0 = np.floor(x0) + 0.5, np.floor(y0) + 0.5
        box = (x0, y0, x1, y1)
        if min(x1, 97) <= max(x0, 0) or min(y1, 73) <= max(y0, 0):
            continue
        want = im.crop([max(x0, 0), max(y0, 0), min(x1, 97), min(y1, 73)])
        if 0 in want.size:
            continue
        got = vp.reclip_crop(im, box)
        assert got.size == want.size and np.array_equal(np.asarray(got), np.asarray(want)), box
        differ += vp.crop(im, box).size != got.size
    assert differ > 10


def test_enlarge_box_is_the_executors_enlarge_boxes():
    """pumpkin805/FALIP @ 583df71 executor.py:157-162: (max(l - N, 0), max(t - N, 0), min(r + N, W), min(b + N, H))."""
    assert vp.enlarge_box((10.5, 3.0, 50.0, 60.0), 10, (64, 64)) == (0.5, 0.0, 60.0, 64.0)
    assert vp.enlarge_box((10.5, 3.0, 50.0, 60.0), 0, (64, 64)) == (10.5, 3.0, 50.0, 60.0)
    with pytest.raises(vp.FalipError):
        vp.enlarge_box((0, 0, 5, 5), -1, (64, 64))


def test_circle_width_on_a_coco_image_is_3():
    """The authors' ``circle`` branch: ``int(max(W, H) / 200)`` is 3 px on a 640 x 480 COCO image; red pixels appear."""
    im = Image.new("RGB", (640, 480), (0, 90, 0))
    out = np.asarray(vp.authors_red_circle(im, (100, 100, 300, 260)))
    red = (out == [255, 0, 0]).all(axis=2)
    assert vp.authors_circle_width((640, 480)) == 3
    row = red[180]  # a horizontal line through the ellipse centre crosses the outline twice, 3 px each
    assert row.sum() == 6 and row[100:103].all() and row[298:301].all()


def test_pil_rectangle_includes_right_and_bottom_edge():
    """PIL's rectangle (the authors' masks) covers columns x0..x1 and rows y0..y1 inclusive: checked by loops."""
    m = np.asarray(vp.pil_region_mask((20, 16), (3, 2, 9, 6), "box")) > 0
    want = np.zeros((16, 20), dtype=bool)
    for r in range(16):
        for c in range(20):
            want[r, c] = 3 <= c <= 9 and 2 <= r <= 6
    assert np.array_equal(m, want)
    # falip's own pixel-centre box (the FGVP-style edits) stops one pixel short on each far edge
    assert vp.region_mask((20, 16), (3, 2, 9, 6)).sum() == 6 * 4


def test_inputs_untouched():
    im = _image(64, 48)
    before = np.asarray(im).copy()
    for f in (vp.reclip_blur, vp.reclip_shade, vp.authors_red_circle, vp.authors_circle, vp.reclip_crop):
        f(im, (5, 5, 40, 30))
    assert np.array_equal(before, np.asarray(im))
