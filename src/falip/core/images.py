"""The one conversion every image goes through before the model: any PIL mode -> 8-bit RGB.

PIL's own ``convert("RGB")`` is right for most modes but wrong for three kinds of image, which
:func:`to_rgb` handles itself:

* **16-bit grayscale** (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``): PIL clips the values at 255,
  so a 16-bit photograph becomes almost pure white. Here the type's range is mapped onto 8 bits:
  ``round(v / 257)`` (65535 / 257 = 255 exactly, so 0 -> 0, 65535 -> 255, and an 8-bit value
  stored as ``v * 257``, the usual up-conversion, comes back unchanged).
* **32-bit integer** ``I``: read as 16-bit data (values clipped to 0..65535, then ``/ 257``).
  ``I`` has no range of its own; in practice it holds 16-bit samples, since Pillow opened 16-bit
  PNG, PGM and TIFF grayscale as ``I`` before it had ``I;16`` support, so the same file gives the
  same pixels whichever Pillow reads it. (PIL clips at 255 instead: white again.)
* **32-bit float** ``F``: no fixed range fits float images (0..1 in scikit-image and torchvision,
  0..255 in Pillow, physical units in depth or HDR data), and any fixed choice saturates or
  blackens the others. So the image's own finite range is stretched linearly onto 0..255 (the
  order of the values is kept, their absolute level is not). NaN and -inf pixels become 0, +inf
  255; a constant image keeps its value, clipped to 0..255.
* **Transparency** (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``, palette or grayscale
  or RGB images with a transparent colour in ``info["transparency"]``): composited on **white**
  (a transparent pixel is white, a half-transparent red one is ``(255, 128, 128)``). White, not
  black, because transparent areas of photos, logos and cut-outs are shown on white almost
  everywhere (browsers, documents, dataset viewers), and because black would read as a dark
  object to the model.

Everything else (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``) goes through
PIL's conversion. Pixel values are taken as stored: no ICC colour management, no EXIF rotation.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import FalipError

__all__ = ["to_rgb"]

_ALPHA_MODES = {"RGBA": "RGBA", "LA": "LA", "PA": "RGBA", "RGBa": "RGBA", "La": "LA"}


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` uint8 (straight alpha) -> ``[H, W, 3]`` uint8 on white, rounded to nearest."""
    rgb = rgba[..., :3].astype(np.uint32)
    a = rgba[..., 3:4].astype(np.uint32)
    return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")


def _float_to_8bit(values: np.ndarray) -> np.ndarray:
    """float ``[H, W]`` -> uint8: finite min..max stretched onto 0..255 (see the module docstring)."""
    v = values.astype(np.float64)
    finite = np.isfinite(v)
    out = np.zeros(v.shape, dtype=np.float64)
    if finite.any():
        lo, hi = float(v[finite].min()), float(v[finite].max())
        if hi > lo:
            out[finite] = (v[finite] - lo) * (255.0 / (hi - lo))
        else:
            out[finite] = min(max(lo, 0.0), 255.0)
    out[v == np.inf] = 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image -> a new 8-bit ``RGB`` image of the same size (see the module docstring).

    16-bit grayscale is scaled by its range (``/ 257``), ``I`` is read as 16-bit data, ``F`` is
    stretched from its own min..max, and anything with alpha or a transparent colour is composited
    on white. Raises :class:`FalipError` for a non-image or a mode PIL cannot convert.
    """
    if not isinstance(image, Image.Image):
        raise FalipError(f"expected a PIL image, got {type(image).__name__}")
    mode = image.mode
    if mode.startswith("I;16"):
        gray = np.asarray(image).astype(np.uint32)
        return _gray_to_rgb(((gray + 128) // 257).astype(np.uint8))
    if mode == "I":
        gray = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        return _gray_to_rgb(((gray + 128) // 257).astype(np.uint8))
    if mode == "F":
        return _gray_to_rgb(_float_to_8bit(np.asarray(image)))
    if mode in _ALPHA_MODES or "transparency" in image.info:
        if mode == "La":  # PIL converts La only to LA (un-premultiplying)
            image = image.convert("LA")
        rgba = np.asarray(image.convert("RGBA"))
        return Image.fromarray(_composite_on_white(rgba), "RGB")
    try:
        return image.convert("RGB")
    except ValueError as e:
        raise FalipError(f"cannot convert a {mode!r} image to RGB ({e})") from None
