"""Reading image files: every image falip opens goes through :func:`load_image`."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..core.errors import FalipError
from ..core.images import to_rgb

__all__ = ["load_image"]


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and convert an image file to 8-bit ``RGB`` (size ``(W, H)`` as stored).

    The pixels go through :func:`falip.core.images.to_rgb` (16-bit grayscale scaled by its range,
    palette and CMYK converted, transparency composited on white). The file is decoded here, so a
    truncated or corrupt file fails now, naming the file, not later inside the model. Of a
    multi-frame file (GIF, TIFF) the first frame is read.

    EXIF orientation is **not** applied: the image is returned as stored, because dataset boxes
    (COCO, CUB, ...) are given in stored pixels; rotating the image would move it away from them.

    Raises:
        FalipError: naming ``path``, for a missing file, a directory, a file that is not an image
            Pillow can identify, a truncated or corrupt image, or one too large to decode safely.
    """
    p = Path(path)
    if p.is_dir():
        raise FalipError(f"{p}: is a directory, not an image file")
    if not p.exists():
        raise FalipError(f"{p}: no such image file")
    try:
        with Image.open(p) as im:
            im.load()
            return to_rgb(im)
    except UnidentifiedImageError:
        raise FalipError(f"{p}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise FalipError(f"{p}: image too large to decode safely ({e})") from None
    except PermissionError:
        raise FalipError(f"{p}: permission denied") from None
    except FalipError as e:
        raise FalipError(f"{p}: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports damaged data as OSError ("image file is truncated"), SyntaxError
        # ("broken PNG file"), ValueError or EOFError, depending on the format.
        raise FalipError(f"{p}: truncated or corrupt image ({e})") from None
