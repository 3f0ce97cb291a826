"""Reading image files: every image falip opens goes through :func:`load_image` (or :func:`decode_file`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import FalipError
from ..core.images import to_rgb

__all__ = ["EXIF_TRANSPOSE_ENV", "MAX_PIXELS_ENV", "decode_file", "exif_transpose_default", "load_image"]

MAX_PIXELS_ENV = "FALIP_MAX_IMAGE_PIXELS"
"""Environment setting: Pillow's pixel limit (``Image.MAX_IMAGE_PIXELS``) for every file falip
decodes; N pixels, or 0 for no limit. Unset: Pillow's default (about 89 million pixels; a file over
twice that is refused as a possible decompression bomb)."""
_PIL_DEFAULT_LIMIT = Image.MAX_IMAGE_PIXELS

EXIF_TRANSPOSE_ENV = "FALIP_EXIF_TRANSPOSE"
"""Environment setting: ``1`` makes :func:`load_image` turn photos upright by their EXIF orientation
tag (``--exif-transpose`` sets it, so worker processes see it too). Unset or ``0``: stored pixels."""


def exif_transpose_default() -> bool:
    """Whether :data:`EXIF_TRANSPOSE_ENV` asks for upright images."""
    text = os.environ.get(EXIF_TRANSPOSE_ENV, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise FalipError(f"{EXIF_TRANSPOSE_ENV}={text!r}: must be 1 (upright by the EXIF tag) or 0 (as stored)")


def _apply_pixel_limit() -> None:
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        Image.MAX_IMAGE_PIXELS = _PIL_DEFAULT_LIMIT
        return
    try:
        value = int(text)
    except ValueError:
        raise FalipError(f"{MAX_PIXELS_ENV}={text!r}: must be a whole number of pixels (0: no limit)") from None
    if value < 0:
        raise FalipError(f"{MAX_PIXELS_ENV}={text!r}: must be >= 0 (0: no limit)")
    Image.MAX_IMAGE_PIXELS = value or None


def _decode_error(p: Path, e: BaseException) -> FalipError:
    if isinstance(e, UnidentifiedImageError):
        return FalipError(f"{p}: not an image file Pillow can read")
    if isinstance(e, Image.DecompressionBombError):
        return FalipError(
            f"{p}: image too large to decode safely ({e}); if you trust the file, raise the limit with the "
            f"environment setting {MAX_PIXELS_ENV}=N (N pixels; 0: no limit)"
        )
    if isinstance(e, PermissionError):
        return FalipError(f"{p}: permission denied")
    # Pillow reports damaged data as OSError ("image file is truncated"), SyntaxError ("broken
    # PNG file"), ValueError or EOFError, depending on the format.
    return FalipError(f"{p}: truncated or corrupt image ({e})")


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@contextmanager
def decode_file(path: str | os.PathLike) -> Iterator[Image.Image]:
    """Open and fully decode an image file, in its stored mode; closed when the block ends.

    Raises:
        FalipError: naming ``path``, for a missing file, a directory, a file that is not an image
            Pillow can identify, a truncated or corrupt image, or one too large to decode safely.
    """
    p = Path(path)
    if p.is_dir():
        raise FalipError(f"{p}: is a directory, not an image file")
    if not p.exists():
        raise FalipError(f"{p}: no such image file")
    _apply_pixel_limit()
    try:
        im = Image.open(p)
    except _DECODE_ERRORS as e:
        raise _decode_error(p, e) from None
    try:
        try:
            im.load()
        except _DECODE_ERRORS as e:
            raise _decode_error(p, e) from None
        yield im
    finally:
        im.close()


def load_image(path: str | os.PathLike, exif_transpose: bool | None = None) -> Image.Image:
    """Open, fully decode and convert an image file to 8-bit ``RGB`` (size ``(W, H)`` as stored).

    The pixels go through :func:`falip.core.images.to_rgb` (16-bit grayscale scaled by the 16-bit
    type's range, 0..65535 -> 0..255, so 12-bit data, 0..4095, comes out dark: stretch it to 16 bits
    first, e.g. ``Image.fromarray((np.asarray(im) * 16).astype(np.uint16))``,
    palette and CMYK converted, transparency composited on white). The file is decoded here, so a
    truncated or corrupt file fails now, naming the file, not later inside the model. Of a
    multi-frame file (GIF, TIFF) the first frame is read.

    EXIF orientation is **not** applied by default: the image is returned as stored (as COCO's
    and the other datasets' boxes are given, in stored pixels; rotating the image would move it away
    from them). ``exif_transpose=True`` (None: the :data:`EXIF_TRANSPOSE_ENV` setting, off unless
    set) turns a photo upright by its orientation tag (``PIL.ImageOps.exif_transpose``), as a phone
    or a viewer shows it; boxes then refer to the upright image, whose size may be ``(H, W)``.

    Raises:
        FalipError: naming ``path``, as :func:`decode_file`, or for a mode that cannot become RGB.
    """
    upright = exif_transpose_default() if exif_transpose is None else bool(exif_transpose)
    with decode_file(path) as im:
        try:
            return to_rgb(ImageOps.exif_transpose(im) if upright else im)
        except FalipError as e:
            raise FalipError(f"{Path(path)}: {e}") from None
