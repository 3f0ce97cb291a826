"""Image-editing visual prompts: the baselines FALIP is compared with (docs/method.md, "Image-editing baselines").

Every function is pure: it takes a PIL image and one box ``(x0, y0, x1, y1)`` in that image's
pixels (floats, pixel edges, so a box ``(0, 0, W, H)`` is the whole image) and returns a new RGB
image; the input is never modified.

Pixel convention: pixel (row r, col c) covers ``[c, c+1) x [r, r+1)`` and belongs to a region
when its centre ``(c + 0.5, r + 0.5)`` does. "box" regions are the centres inside the half-open
box; "ellipse" regions are the centres inside the ellipse inscribed in the box. A box too small
to contain any pixel centre selects the one pixel under its centre, so a region is never empty.
Outlines (red circle, coloured box) are drawn inward from the region's edge, ``thickness``
pixels wide measured along the axes.

Scale: parameters are in the pixels of the image passed in. :mod:`falip.scoring` draws the
outlines (circle, box) after resizing to the model input, so their thickness is "at model-input
scale" as the RedCircle recipe has it, and applies blur, grayscale and shading to the original
image, as ReCLIP does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

from ..core.errors import FalipError
from ..core.regions import check_boxes

__all__ = [
    "RED",
    "CPT_COLOR",
    "CPT_ALPHA",
    "region_mask",
    "outline_mask",
    "red_circle",
    "colored_box",
    "reverse_blur",
    "grayscale_outside",
    "crop",
    "cpt_shade",
    "cpt_text",
    "blur_circle",
]

RED: tuple[int, int, int] = (255, 0, 0)
CPT_COLOR: tuple[int, int, int] = (240, 0, 30)
CPT_ALPHA: int = 127

Shape = Literal["box", "ellipse"]
Box = Sequence[float]


def _rgb(image: Image.Image) -> np.ndarray:
    """The image as a writable uint8 array [H, W, 3]."""
    return np.array(image.convert("RGB"), dtype=np.uint8, copy=True)


def _check_box(box: Box) -> tuple[float, float, float, float]:
    """One box through falip's box validator (finite, x1 > x0, y1 > y0); errors name it as given."""
    if isinstance(box, (str, bytes)) or len(box) != 4:
        raise FalipError(f"a box is 4 numbers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = check_boxes([box], names=["box"])[0]
    return float(x0), float(y0), float(x1), float(y1)


def _centres(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    w, h = size
    xs = np.arange(w, dtype=np.float64)[None, :] + 0.5
    ys = np.arange(h, dtype=np.float64)[:, None] + 0.5
    return xs, ys


def _ellipse_inside(
    xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, rx: float, ry: float, strict: bool = False
) -> np.ndarray:
    if rx <= 0 or ry <= 0:
        return np.zeros(np.broadcast_shapes(xs.shape, ys.shape), dtype=bool)
    with np.errstate(over="ignore"):  # a near-zero semi-axis gives inf, which compares fine
        q = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2
    return q < 1.0 if strict else q <= 1.0


def region_mask(size: tuple[int, int], box: Box, shape: Shape = "box") -> np.ndarray:
    """Boolean mask [H, W] of the pixels in ``box`` (``shape="box"``) or in its inscribed ellipse.

    ``size`` is the image's ``(W, H)`` as PIL gives it. Never empty when the box's centre lies in
    the image; all False for a box wholly outside the image.
    """
    x0, y0, x1, y1 = _check_box(box)
    w, h = size
    xs, ys = _centres(size)
    if shape == "box":
        mask = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    elif shape == "ellipse":
        mask = _ellipse_inside(xs, ys, (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)
    else:
        raise FalipError(f"shape must be 'box' or 'ellipse', got {shape!r}")
    if not mask.any():
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        c, r = int(np.floor(cx)), int(np.floor(cy))
        if 0 <= c < w and 0 <= r < h:
            mask[r, c] = True
    return mask


def outline_mask(size: tuple[int, int], box: Box, shape: Shape = "ellipse", thickness: float = 2.0) -> np.ndarray:
    """Boolean mask [H, W] of an outline ``thickness`` px wide, drawn inward from the region's edge.

    The ellipse outline is the inscribed ellipse minus the ellipse with both semi-axes shortened
    by ``thickness``; the box outline is the box minus the box shrunk by ``thickness`` per side.
    """
    if thickness <= 0:
        raise FalipError(f"thickness must be > 0, got {thickness}")
    x0, y0, x1, y1 = _check_box(box)
    outer = region_mask(size, box, shape)
    xs, ys = _centres(size)
    t = float(thickness)
    if shape == "ellipse":
        inner = _ellipse_inside(xs, ys, (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 - t, (y1 - y0) / 2 - t, strict=True)
    else:
        inner = (xs >= x0 + t) & (xs < x1 - t) & (ys >= y0 + t) & (ys < y1 - t)
    return outer & ~inner


def _paint(image: Image.Image, mask: np.ndarray, color: Sequence[int]) -> Image.Image:
    arr = _rgb(image)
    arr[mask] = np.asarray(color, dtype=np.uint8)[:3]
    return Image.fromarray(arr, "RGB")


def red_circle(image: Image.Image, box: Box, color: Sequence[int] = RED, thickness: float = 2.0) -> Image.Image:
    """RedCircle: the ellipse inscribed in ``box`` outlined in ``color``, ``thickness`` px wide.

    Pixels off the outline are unchanged. Scoring draws it at model-input scale.
    """
    return _paint(image, outline_mask(image.size, box, "ellipse", thickness), color)


def colored_box(image: Image.Image, box: Box, color: Sequence[int] = RED, thickness: float = 2.0) -> Image.Image:
    """Coloured box: the rectangle ``box`` outlined in ``color``, ``thickness`` px wide, inward."""
    return _paint(image, outline_mask(image.size, box, "box", thickness), color)


def reverse_blur(image: Image.Image, box: Box, std: float = 100.0, shape: Shape = "ellipse") -> Image.Image:
    """Reverse blur: Gaussian-blur the whole image (``std`` px), then restore the region's pixels.

    ``shape`` picks the region: the ellipse inscribed in the box (RedCircle's "Blur") or the box.
    PIL's ``GaussianBlur`` radius is the standard deviation; pixels in the region are exactly the
    original's.
    """
    if std < 0:
        raise FalipError(f"std must be >= 0, got {std}")
    arr = _rgb(image)
    blurred = np.array(Image.fromarray(arr, "RGB").filter(ImageFilter.GaussianBlur(radius=float(std))))
    mask = region_mask(image.size, box, shape)
    blurred[mask] = arr[mask]
    return Image.fromarray(blurred, "RGB")


def grayscale_outside(image: Image.Image, box: Box, shape: Shape = "box") -> Image.Image:
    """Grayscale outside the region: luma (PIL's ITU-R 601-2 ``L``) in all 3 channels outside."""
    arr = _rgb(image)
    gray = np.array(Image.fromarray(arr, "RGB").convert("L"))
    mask = region_mask(image.size, box, shape)
    out = np.repeat(gray[:, :, None], 3, axis=2)
    out[mask] = arr[mask]
    return Image.fromarray(out, "RGB")


def crop(image: Image.Image, box: Box) -> Image.Image:
    """The box alone: the pixels whose centres lie in ``box``, clipped to the image (at least 1x1).

    The result is exactly ``image``'s pixels over the region :func:`region_mask` selects.
    """
    mask = region_mask(image.size, box, "box")
    if not mask.any():
        raise FalipError(f"box {tuple(box)} lies wholly outside the image of size {image.size}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return image.convert("RGB").crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


def cpt_shade(image: Image.Image, box: Box, color: Sequence[int] = CPT_COLOR, alpha: int = CPT_ALPHA) -> Image.Image:
    """CPT shading: an RGBA overlay ``(*color, alpha)`` composited over the box.

    Inside the box each channel becomes ``(alpha * color + (255 - alpha) * pixel + 127) // 255``
    (the alpha blend rounded to nearest); outside is unchanged.
    """
    if not 0 <= int(alpha) <= 255:
        raise FalipError(f"alpha must be in [0, 255], got {alpha}")
    arr = _rgb(image)
    mask = region_mask(image.size, box, "box")
    a = int(alpha)
    c = np.asarray(color, dtype=np.int32)[:3]
    blend = (a * c + (255 - a) * arr[mask].astype(np.int32) + 127) // 255
    arr[mask] = blend.astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def cpt_text(expression: str) -> str:
    """CPT's text for a shaded region: ``"{expression} is in red color."`` (a trailing '.' dropped)."""
    return f"{expression.strip().rstrip('.')} is in red color."


def blur_circle(
    image: Image.Image, box: Box, std: float = 100.0, color: Sequence[int] = RED, thickness: float = 2.0
) -> Image.Image:
    """Blur and circle in one image: :func:`reverse_blur` (ellipse), then :func:`red_circle`.

    For the recipe's scales (blur on the original, circle at model input) use the scorer's
    ``blur&circle`` method, which applies the two at their own scales.
    """
    return red_circle(reverse_blur(image, box, std, "ellipse"), box, color, thickness)
