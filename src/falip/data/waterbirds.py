"""Waterbirds (the group-DRO release, e.g. ``waterbird_complete95_forest2water2``): bird box, per-group labels.

Format, checked against the release's generator (``kohpangwei/group_DRO``,
``dataset_scripts/generate_waterbirds.py``) and its loader (``data/cub_dataset.py``):

* ``metadata.csv``, written by pandas with the header ``img_id,img_filename,y,split,place,place_filename``;
  ``img_id`` is CUB's image id, ``img_filename`` CUB's ``images.txt`` path (the image is at
  ``<root>/<img_filename>``), ``y`` 0 landbird / 1 waterbird, ``split`` 0 train / 1 val / 2 test,
  ``place`` 0 land / 1 water background, ``place_filename`` the Places image used (ignored here).
* Groups as the loader numbers them, ``y * 2 + place``: :data:`GROUPS` ``("landbird/land",
  "landbird/water", "waterbird/land", "waterbird/water")``; an item's ``group`` is the name.
* The bird's box is CUB's (``bounding_boxes.txt``), found by matching ``img_filename`` against CUB's
  ``images.txt`` (so the CUB-200-2011 folder is needed: ``cub_root``). The generator pastes the bird,
  cut out by its CUB segmentation, onto the Places image crop-resized to the *bird image's* size, so a
  Waterbirds image has its CUB image's size and the box applies as it is. Copies that were resized
  afterwards exist; so when the CUB image is present and its size differs from the Waterbirds
  image's, the box is scaled by the ratio of the sizes (:meth:`WaterbirdsItem.regions`). When the CUB
  image is absent (only the ``*.txt`` files), the sizes are assumed equal.

Classes are :data:`WATERBIRDS_CLASSES` ``("landbird", "waterbird")`` (``label_index`` = ``y``). Not
verified here on the real file: the row count (11,788, one per CUB image) and the 95% confounder
split, which the generator's code implies.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..core.errors import FalipError
from ._common import BadRecord, check_errors, csv_dicts, reject, require
from .classification import ClassificationItem
from .cub import cub_boxes
from .records import Skipped

__all__ = ["GROUPS", "PLACES", "WATERBIRDS_CLASSES", "WATERBIRDS_SPLITS", "Waterbirds", "WaterbirdsItem"]

WATERBIRDS_CLASSES = ("landbird", "waterbird")
PLACES = ("land", "water")
GROUPS = ("landbird/land", "landbird/water", "waterbird/land", "waterbird/water")
WATERBIRDS_SPLITS = {"train": 0, "val": 1, "test": 2, "all": None}
_COLUMNS = ("img_filename", "y", "split", "place")


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(W, H)`` from the file's header, or None if it cannot be read."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError):
        return None


@dataclass(frozen=True)
class WaterbirdsItem(ClassificationItem):
    """A Waterbirds image: ``place`` (0 land, 1 water), ``group`` its name, and the CUB original's path.

    The box is CUB's, in the CUB image's pixels; :meth:`regions` scales it when the image it is given
    has another size than the CUB image (read from the CUB file's header, when present).
    """

    place: int = 0
    cub_image_path: Path | None = None

    def _box(self, image_size: tuple[int, int]) -> tuple[float, float, float, float] | None:
        if self.box is None or self.cub_image_path is None:
            return self.box
        original = _image_size(self.cub_image_path)
        if original is None or tuple(original) == tuple(image_size):
            return self.box
        sx, sy = image_size[0] / original[0], image_size[1] / original[1]
        x0, y0, x1, y1 = self.box
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def _check_header(header: list[str]) -> str | None:
    missing = [c for c in _COLUMNS if c not in header]
    return f"no column {', '.join(missing)} in the header" if missing else None


def _flag(row: dict, column: str, allowed: int) -> int:
    value = (row.get(column) or "").strip()
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number not in range(allowed):
        raise BadRecord(f"{column} must be one of {', '.join(map(str, range(allowed)))}, got {value!r}")
    return int(number)


class Waterbirds:
    """Waterbirds under ``root`` (holding ``metadata.csv``), boxes from the CUB-200-2011 folder ``cub_root``.

    ``split``: ``"test"``, ``"val"``, ``"train"`` or ``"all"``. Iterating streams one
    :class:`WaterbirdsItem` per row of the split: ``id`` ``"waterbirds:<img_filename>"``,
    ``image_path`` ``root/<img_filename>``, ``box`` the bird's CUB box (xyxy pixels), ``label`` /
    ``label_index`` from ``y``, ``group`` (e.g. ``"waterbird/land"``), ``place``, ``source``
    ``"<root>/metadata.csv:<line>"``. A malformed row, an image not in CUB's ``images.txt`` or with a
    malformed box line raises :class:`FalipError` naming the file and line, or (``errors="skip"``)
    yields a :class:`Skipped` in its place. ``classes`` renames y = 0, 1 (for Waterbirds-style data
    of other classes); :attr:`groups` are then ``"<class>/land"`` ... in the order of :data:`GROUPS`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        cub_root: str | os.PathLike | None,
        split: str = "test",
        errors: str = "raise",
        classes: Sequence[str] = WATERBIRDS_CLASSES,
    ) -> None:
        if split not in WATERBIRDS_SPLITS:
            raise FalipError(f"Waterbirds split must be one of {tuple(WATERBIRDS_SPLITS)}, got {split!r}")
        self.root, self.split, self.errors = Path(root), split, check_errors(errors)
        self.metadata = require(self.root, "metadata.csv", "the Waterbirds folder")
        if cub_root is None:
            raise FalipError(
                "Waterbirds needs the CUB-200-2011 folder (cub_root) for the birds' boxes: "
                "images.txt and bounding_boxes.txt"
            )
        self.cub_root = Path(cub_root)
        for name in ("images.txt", "bounding_boxes.txt"):
            require(self.cub_root, name, "the CUB_200_2011 folder")
        if len(classes) != 2:
            raise FalipError(f"Waterbirds has two classes (y = 0, 1), got {list(classes)!r}")
        self.classes: list[str] = list(classes)
        self.groups: tuple[str, ...] = tuple(f"{c}/{p}" for c in self.classes for p in PLACES)

    def __iter__(self) -> Iterator[WaterbirdsItem | Skipped]:
        boxes = cub_boxes(self.cub_root)
        want = WATERBIRDS_SPLITS[self.split]
        for lineno, fields in csv_dicts(self.metadata, _check_header):
            source = f"{self.metadata}:{lineno}"
            name = "" if isinstance(fields, FalipError) else fields["img_filename"].strip()
            try:
                if isinstance(fields, FalipError):
                    raise BadRecord(str(fields))
                if not name:
                    raise BadRecord("img_filename is empty")
                if want is not None and _flag(fields, "split", 3) != want:
                    continue
                yield self._item(fields, name, source, boxes)
            except BadRecord as e:
                yield reject(self.errors, f"waterbirds:{name or lineno}", e.source or source, e.reason)

    def _item(self, fields: dict, name: str, source: str, boxes: dict) -> WaterbirdsItem:
        y, place = _flag(fields, "y", 2), _flag(fields, "place", 2)
        box = boxes.get(name.replace("\\", "/"))
        if box is None:
            raise BadRecord(f"img_filename {name!r} is not in {self.cub_root / 'images.txt'}")
        if box.box is None:
            raise BadRecord(box.reason or "no box", box.source)
        return WaterbirdsItem(
            self.root / name,
            box.box,
            self.classes[y],
            source=source,
            id=f"waterbirds:{name}",
            label_index=y,
            group=self.groups[2 * y + place],
            place=place,
            cub_image_path=self.cub_root / "images" / name,
        )
