"""Generic region-classification JSONL: one region to classify a line.

``{"image": path, "box": [x0, y0, x1, y1] pixels, "mask": optional path to a PNG (nonzero = region),
"label": class name}``, paths relative to the file's directory unless absolute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._jsonl import lines as _lines, numbers as _numbers, resolve as _resolve


@dataclass(frozen=True)
class ClassificationItem:
    """One region to classify: ``box`` xyxy pixels, optional mask PNG path, class ``label``."""

    image_path: Path
    box: tuple[float, float, float, float]
    label: str
    mask_path: Path | None = None


def read_classification_jsonl(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[ClassificationItem]:
    """Read generic classification JSONL into :class:`ClassificationItem` (paths resolved against ``root``).

    ``root`` defaults to the file's directory. Raises ``ValueError`` naming file and line for a
    missing key, a box that is not 4 finite numbers with ``x1 > x0`` and ``y1 > y0``, or a
    non-string label/path.
    """
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    out: list[ClassificationItem] = []
    for lineno, obj in _lines(path):
        where = f"{path}:{lineno}"
        for key in ("image", "box", "label"):
            if key not in obj:
                raise ValueError(f"{where}: missing key {key!r}")
        if not isinstance(obj["image"], str) or not obj["image"]:
            raise ValueError(f"{where}: image must be a non-empty string path")
        if not isinstance(obj["label"], str) or not obj["label"]:
            raise ValueError(f"{where}: label must be a non-empty string")
        box = _numbers(obj["box"], 4, where, "box")
        if not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"{where}: box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {obj['box']!r}")
        mask = obj.get("mask")
        if mask is not None and (not isinstance(mask, str) or not mask):
            raise ValueError(f"{where}: mask must be a string path or absent")
        out.append(ClassificationItem(_resolve(base, obj["image"]), box, obj["label"],
                                      _resolve(base, mask) if mask is not None else None))
    return out


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask PNG as bool ``[H, W]`` (any nonzero pixel of the first channel is in the region)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr != 0


