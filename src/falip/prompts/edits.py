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

The authors' drawings (the code behind the paper's Table 1: ReCLIP's ``executor.py``
``tensorize_inputs`` and the FALIP authors' fork of it) are here too, drawn with PIL's
``ImageDraw`` exactly as that code draws them, so that the images are pixel-identical:
:func:`reclip_blur` (ReCLIP's ``blur``), :func:`reclip_shade` (ReCLIP's ``shade``, CPT),
:func:`reclip_crop` (ReCLIP's ``crop``), :func:`authors_circle` (the authors' ``circle`` branch
with ``blur = False``: the red ellipse alone, the paper's RedCircle) and :func:`authors_red_circle`
(that branch as released, ``blur = True``: blur outside and the red ellipse in one image). PIL's
rules apply to them, not the pixel-centre rule above: the box is first clipped to the image
(``max(left, 0), max(top, 0), min(right, W), min(bottom, H)``, ReCLIP's ``enlarge_boxes = 0``;
:func:`enlarge_box` for N > 0), ``rectangle``/``ellipse`` include their right and bottom edge,
and ``crop`` rounds float edges half to even (Python's ``round``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFilter

from ..core.errors import FalipError
from ..core.regions import Regions, check_boxes

__all__ = [
    "RED",
    "CPT_COLOR",
    "CPT_ALPHA",
    "region_mask",
    "outline_mask",
    "red_circle",
    "scale_box",
    "colored_box",
    "reverse_blur",
    "grayscale_outside",
    "crop",
    "cpt_shade",
    "cpt_text",
    "blur_circle",
    "pil_region_mask",
    "reclip_blur",
    "reclip_shade",
    "authors_red_circle",
    "authors_circle",
    "authors_circle_width",
    "reclip_crop",
    "enlarge_box",
    "enlarge_regions",
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


def scale_box(box: Box, factor: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``box`` (xyxy) with width and height times ``factor`` about its centre, clipped to ``size`` ``(W, H)``.

    The red circle's enlargement of Table 14 (:attr:`falip.prompts.registry.PromptParams.circle_scale`);
    a factor of 1 returns the box as it is (unclipped).
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not np.isfinite(factor) or factor <= 0:
        raise FalipError(f"the circle's scale must be a number > 0, got {factor!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if factor == 1.0:
        return (x0, y0, x1, y1)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * factor, (y1 - y0) / 2 * factor
    w, h = size
    return (max(0.0, cx - hw), max(0.0, cy - hh), min(float(w), cx + hw), min(float(h), cy + hh))


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
    """CPT's text for a shaded region: ``expression.lower() + " is in red color."``, nothing stripped.

    As ReCLIP's ``ClipExecutor.preprocess_text`` and FGVP's ``ClipExecutor.__call__`` build it
    (``caption.lower() + " is in red color."``): a sentence ending in "." gives "... left. is in
    red color.".
    """
    return expression.lower() + " is in red color."


def blur_circle(
    image: Image.Image, box: Box, std: float = 100.0, color: Sequence[int] = RED, thickness: float = 2.0
) -> Image.Image:
    """Blur and circle in one image: :func:`reverse_blur` (ellipse), then :func:`red_circle`.

    For the recipe's scales (blur on the original, circle at model input) use the scorer's
    ``blur&circle`` method, which applies the two at their own scales.
    """
    return red_circle(reverse_blur(image, box, std, "ellipse"), box, color, thickness)


# ------------------------------------------------------------------ the authors' drawings (PIL)
def enlarge_box(box: Box, pixels: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``box`` grown by ``pixels`` on each side, then clipped to the image of ``size`` (W, H).

    The executors' ``enlarge_boxes`` (the paper's Table 14: the box enlarged by N pixels per side):
    ``(max(x0 - N, 0), max(y0 - N, 0), min(x1 + N, W), min(y1 + N, H))``; pumpkin805/FALIP@583df71
    executor.py:157-162 (``circle``), 139-144 (``box``: FALIP's attention box), 187-192 (``crop``),
    allenai/reclip@3ed4f47 executor.py:56-61 (the same expression for every method). ``pixels = 0``
    is the clipping alone.
    """
    if isinstance(pixels, bool) or not isinstance(pixels, (int, float)) or not np.isfinite(pixels) or pixels < 0:
        raise FalipError(f"the box enlargement must be a number of pixels >= 0, got {pixels!r}")
    x0, y0, x1, y1 = _check_box(box)
    w, h = size
    n = float(pixels)
    return max(x0 - n, 0.0), max(y0 - n, 0.0), min(x1 + n, float(w)), min(y1 + n, float(h))


def _dilate(masks: np.ndarray, n: int) -> np.ndarray:
    """Binary masks ``[K, H, W]`` grown by ``n`` pixels in every direction (a (2n+1)-square), within the image."""
    out = masks.astype(bool)
    for axis in (1, 2):
        length = out.shape[axis]
        counts = np.cumsum(out, axis=axis, dtype=np.int64)
        zero = np.zeros_like(np.take(counts, [0], axis=axis))
        counts = np.concatenate([zero, counts], axis=axis)  # counts[i] = pixels before index i
        hi = np.minimum(np.arange(length) + n + 1, length)
        lo = np.maximum(np.arange(length) - n, 0)
        out = (np.take(counts, hi, axis=axis) - np.take(counts, lo, axis=axis)) > 0
    return out


def enlarge_regions(regions: Regions, pixels: float) -> Regions:
    """``regions`` (original frame) with every box grown by ``pixels`` per side, clipped (:func:`enlarge_box`).

    Masks (FALIP looks at them) grow by ``floor(pixels)`` pixels in every direction, so a mask's
    bounding box grows as a box does. ``pixels = 0`` returns ``regions`` itself.
    """
    enlarge_box((0, 0, 1, 1), pixels, (1, 1))  # validates the pixels
    if pixels == 0:
        return regions
    size = regions.image_size
    boxes = np.array([enlarge_box(b, pixels, size) for b in regions.boxes], dtype=np.float64).reshape(-1, 4)
    masks = None if regions.masks is None else _dilate(regions.masks, int(np.floor(pixels)))
    return Regions(boxes, masks, image_size=size, frame=regions.frame)


def _clipped(size: tuple[int, int], box: Box) -> tuple[float, float, float, float]:
    """``box`` clipped to the image as ReCLIP's executor clips it (``enlarge_boxes = 0``)."""
    return enlarge_box(box, 0, size)


def pil_region_mask(size: tuple[int, int], box: Box, shape: Shape = "box") -> Image.Image:
    """An ``L`` image of ``size`` (W, H): 255 where PIL draws the filled rectangle/ellipse of ``box``, else 0.

    The box is clipped to the image first (ReCLIP); PIL includes the right and bottom edge.
    """
    if shape not in ("box", "ellipse"):
        raise FalipError(f"shape must be 'box' or 'ellipse', got {shape!r}")
    x0, y0, x1, y1 = _clipped(size, box)
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    if shape == "box":
        draw.rectangle([(x0, y0), (x1, y1)], fill=255)
    else:
        draw.ellipse([(x0, y0), (x1, y1)], fill=255)
    return mask


def reclip_blur(image: Image.Image, box: Box, std: float = 100.0, shape: Shape = "box") -> Image.Image:
    """ReCLIP's ``blur``: the whole image Gaussian-blurred (PIL radius ``std``), the original pasted back in the box.

    The pasted region is :func:`pil_region_mask` (a PIL rectangle, right/bottom edge included; with
    ``shape="ellipse"`` the ellipse the authors' ``circle`` uses).
    """
    if std < 0:
        raise FalipError(f"std must be >= 0, got {std}")
    rgb = image.convert("RGB")
    mask = pil_region_mask(rgb.size, box, shape)
    out = rgb.filter(ImageFilter.GaussianBlur(std))
    out.paste(rgb, mask=mask)
    return out


def reclip_shade(image: Image.Image, box: Box, color: Sequence[int] = CPT_COLOR, alpha: int = CPT_ALPHA) -> Image.Image:
    """ReCLIP's ``shade`` (CPT): a PIL rectangle filled ``(*color, alpha)`` on an RGBA overlay, alpha-composited."""
    if not 0 <= int(alpha) <= 255:
        raise FalipError(f"alpha must be in [0, 255], got {alpha}")
    rgba = image.convert("RGBA")
    tint = tuple(int(c) for c in color[:3])
    overlay = Image.new("RGBA", rgba.size, tint + (0,))
    x0, y0, x1, y1 = _clipped(rgba.size, box)
    ImageDraw.Draw(overlay).rectangle(((x0, y0), (x1, y1)), fill=tint + (int(alpha),))
    return Image.alpha_composite(rgba, overlay).convert("RGB")


def reclip_crop(image: Image.Image, box: Box) -> Image.Image:
    """ReCLIP's ``crop``: ``image.crop`` of the box clipped to the image, PIL's rounding of float edges.

    PIL rounds each edge with Python's ``round`` (half to even), so an edge at ``k + 0.5`` lands on
    the even one of ``k``, ``k + 1``; falip's own :func:`crop` takes the pixels whose centres lie in
    the box instead, which differs by one pixel there. As allenai/reclip@3ed4f47 executor.py:56-62
    and pumpkin805/FALIP@583df71 executor.py:187-193 crop. A box whose clipped edges round to the same
    column (or row) gives ReCLIP an empty image, which CLIP cannot read: here it keeps the one pixel
    at the rounded edge (clipped to the image).
    """
    rgb = image.convert("RGB")
    x0, y0, x1, y1 = _clipped(rgb.size, box)
    left, top, right, bottom = (int(round(v)) for v in (x0, y0, x1, y1))
    w, h = rgb.size
    if right <= left:
        left = min(left, w - 1)
        right = left + 1
    if bottom <= top:
        top = min(top, h - 1)
        bottom = top + 1
    return rgb.crop((left, top, right, bottom))


def authors_circle_width(size: tuple[int, int]) -> int:
    """The authors' red-ellipse outline width on an image of ``size`` (W, H): ``int(max(W, H) / 200)``.

    3 px on a 640 x 480 COCO image; 0 below 200 px, where PIL draws no outline at all.
    """
    return int(max(size) / 200)


def _outline(image: Image.Image, box: Box, color: Sequence[int], width: int | None) -> Image.Image:
    w = authors_circle_width(image.size) if width is None else int(width)
    x0, y0, x1, y1 = _clipped(image.size, box)
    ImageDraw.Draw(image).ellipse([(x0, y0), (x1, y1)], outline=tuple(int(c) for c in color[:3]), width=w)
    return image


def authors_circle(image: Image.Image, box: Box, color: Sequence[int] = RED, width: int | None = None) -> Image.Image:
    """The paper's RedCircle as the FALIP authors draw it: a red PIL ellipse outline on the original, nothing else.

    The ``if not blur:`` branch of their executor's ``circle`` (pumpkin805/FALIP@583df71
    executor.py:165-168): ``ellipse`` of the clipped box, outline ``color``, ``width`` px (default
    :func:`authors_circle_width`, ``int(max(W, H) / 200)``). On an image under 200 px on both sides
    the width is 0 and PIL draws nothing: the image comes back unchanged.
    """
    return _outline(image.convert("RGB").copy(), box, color, width)


def authors_red_circle(
    image: Image.Image, box: Box, std: float = 100.0, color: Sequence[int] = RED, width: int | None = None
) -> Image.Image:
    """The FALIP authors' ``circle`` branch as released (``blur = True``): blur outside and a red ellipse in ONE image.

    pumpkin805/FALIP@583df71 executor.py:154 hard-codes ``blur = True``; lines 170-178 draw, on the
    original: an ``L`` mask with the PIL ellipse of the clipped box filled 255 AND outlined
    ``"red"`` (one pixel, which PIL turns into 76, the luma of red, in an ``L`` image: a ring where
    the original shows through at 76/255), Gaussian blur (radius ``std``) pasted under that mask,
    then a red ellipse outline of ``width`` px (default :func:`authors_circle_width`). Under 200 px
    the width is 0: no red outline, and the 76/255 ring is all that marks the ellipse's edge.
    """
    if std < 0:
        raise FalipError(f"std must be >= 0, got {std}")
    rgb = image.convert("RGB")
    x0, y0, x1, y1 = _clipped(rgb.size, box)
    mask = Image.new("L", rgb.size, 0)
    ring = ImageColor.getcolor("red", "L")  # the executor outlines its L mask with the colour name "red"
    ImageDraw.Draw(mask).ellipse([(x0, y0), (x1, y1)], fill=255, outline=ring)
    out = rgb.filter(ImageFilter.GaussianBlur(std))
    out.paste(rgb, mask=mask)
    return _outline(out, box, color, width)
