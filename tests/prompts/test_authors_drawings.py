"""The authors' image edits are pixel-identical to what their code draws.

Each expected image below is drawn independently, in the order the reference code runs its PIL
calls: ReCLIP ``executor.py`` ``Executor.tensorize_inputs`` (allenai/reclip @ 3ed4f47, lines 48-98:
the box clipped with ``enlarge_boxes = 0``, ``blur``: ``draw.rectangle`` fill 255 on an ``L`` mask,
``GaussianBlur(self.blur_std_dev)`` (100), ``blurred.paste(image_i, mask=mask)``; ``shade``: an RGBA
overlay ``(240, 0, 30, 0)``, ``draw.rectangle(..., fill=(240, 0, 30, 127))``, ``alpha_composite``), and
the FALIP authors' ``circle`` branch of their fork of that file (docs/method.md: ellipse mask,
the same blur, then a red ellipse outline of width ``int(max(W, H) / 200)``).
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


@pytest.mark.parametrize("size,box", CASES)
def test_authors_red_circle_is_their_image(size, box):
    im = _image(*size, seed=2)
    want = _their_blur(im, box, "ellipse")
    b = _clip(im.size, box)
    ImageDraw.Draw(want).ellipse([b[:2], b[2:]], outline=(255, 0, 0), width=int(max(im.size) / 200))
    got = vp.authors_red_circle(im, box)
    assert np.array_equal(np.asarray(got), np.asarray(want))
    assert vp.authors_circle_width(im.size) == int(max(size) / 200)


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
    for f in (vp.reclip_blur, vp.reclip_shade, vp.authors_red_circle):
        f(im, (5, 5, 40, 30))
    assert np.array_equal(before, np.asarray(im))
