"""Generic region-classification JSONL: one region to classify a line, and its mask files.

``{"image": path, "box": [x0, y0, x1, y1] pixels, "mask": optional path to a mask image (nonzero =
region), "label": class name}``, paths relative to the file's directory (or a given root) unless
absolute. Malformed input raises :class:`~falip.core.errors.FalipError` naming the file and line;
every box is validated by :func:`falip.core.regions.check_boxes` and named as written, e.g.
``items.jsonl:3: box (5, 0, 1, 1) is inverted (x1 < x0); boxes are xyxy``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import FalipError
from ..core.regions import Regions, check_boxes
from ._jsonl import lines as _lines
from ._jsonl import numbers as _numbers
from ._jsonl import resolve as _resolve
from .images import decode_file

__all__ = ["ClassificationItem", "load_mask", "read_classification_jsonl"]


@dataclass(frozen=True)
class ClassificationItem:
    """One region to classify: ``box`` xyxy pixels, optional mask image path, class ``label``."""

    image_path: Path
    box: tuple[float, float, float, float]
    label: str
    mask_path: Path | None = None
    source: str = field(default="", compare=False)  # "<file>:<line>" it was read from

    def regions(self, image_size: tuple[int, int], use_mask: bool = True) -> Regions:
        """This item's region in the image of size ``(W, H)``: its box, plus its mask if it has one.

        Errors (a box wholly outside the image, a mask of another size, an empty mask) name
        ``source``.
        """
        masks = load_mask(self.mask_path)[None] if use_mask and self.mask_path is not None else None
        try:
            return Regions([self.box], masks, image_size=image_size)
        except FalipError as e:
            raise FalipError(f"{self.source}: {e}" if self.source else str(e)) from None


def read_classification_jsonl(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[ClassificationItem]:
    """Read generic classification JSONL into :class:`ClassificationItem` (paths resolved against ``root``).

    ``root`` defaults to the file's directory. Raises :class:`FalipError` naming file and line for a
    missing key, a box that is not 4 numbers or that :func:`check_boxes` rejects (NaN/inf,
    inverted, empty), or a non-string label or path. Mask files are not opened here.
    """
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    out: list[ClassificationItem] = []
    for lineno, obj in _lines(path):
        where = f"{path}:{lineno}"
        for key in ("image", "box", "label"):
            if key not in obj:
                raise FalipError(f"{where}: missing key {key!r}")
        if not isinstance(obj["image"], str) or not obj["image"]:
            raise FalipError(f"{where}: image must be a non-empty string path, got {obj['image']!r}")
        if not isinstance(obj["label"], str) or not obj["label"]:
            raise FalipError(f"{where}: label must be a non-empty string, got {obj['label']!r}")
        raw = _numbers(obj["box"], 4, where, "box")
        box = tuple(float(v) for v in check_boxes([raw], names=[f"{where}: box"])[0])
        mask = obj.get("mask")
        if mask is not None and (not isinstance(mask, str) or not mask):
            raise FalipError(f"{where}: mask must be a string path or absent, got {mask!r}")
        mask_path = _resolve(base, mask) if mask is not None else None
        out.append(ClassificationItem(_resolve(base, obj["image"]), box, obj["label"], mask_path, where))
    return out


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask image as bool ``[H, W]``: a pixel is in the region when its stored value is nonzero.

    The value is that of the first channel as stored (a palette image's index, a 16-bit image's
    16-bit value); no colour conversion. Raises :class:`FalipError` naming the file if it is
    missing, not an image, or truncated.
    """
    with decode_file(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr != 0
