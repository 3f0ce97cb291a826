"""CUB-200-2011 (Caltech-UCSD Birds) as distributed: the bird's box as the region, the species as the class.

Format, checked against the dataset's README (``CUB_200_2011/README``, as shipped in the archive and
reproduced in TensorFlow Datasets' test data) and public loaders (e.g. group-DRO's
``generate_waterbirds.py``, which reads ``images.txt`` and ``train_test_split.txt`` the same way);
every file is space-separated, one line per image or class, ids from 1:

* ``images.txt``: ``<image_id> <image_name>``, the path under ``images/``, e.g. ``1
  001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg``;
* ``classes.txt``: ``<class_id> <class_name>``, e.g. ``1 001.Black_footed_Albatross``;
* ``image_class_labels.txt``: ``<image_id> <class_id>``;
* ``bounding_boxes.txt``: ``<image_id> <x> <y> <width> <height>``, floats in pixels ("Each image
  contains a single bounding box label"), e.g. ``1 60.0 27.0 325.0 304.0``;
* ``train_test_split.txt``: ``<image_id> <is_training_image>``, 1 train, 0 test.

Class names for prompts drop the number and the dot and replace underscores:
``001.Black_footed_Albatross`` -> ``Black footed Albatross`` (:func:`class_name`). The box is used as
written (COCO-style xywh, converted to xyxy); the README does not say whether x, y are 0- or 1-based,
and at most one pixel is at stake. Not verified here: the real files' sizes (11,788 images, 200
classes, 5,994 train / 5,794 test, as the README and TFDS state).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ..core.errors import FalipError
from ._common import BadRecord, check_errors, one_box, reject, require, words_table
from .classification import ClassificationItem
from .records import Skipped

__all__ = ["CUB", "CUB_SPLITS", "CubBox", "class_name", "cub_boxes", "read_cub_classes"]

CUB_SPLITS = ("test", "train", "all")


def class_name(folder: str) -> str:
    """``001.Black_footed_Albatross`` -> ``Black footed Albatross`` (number prefix dropped, ``_`` -> space)."""
    return re.sub(r"^\d+\.", "", folder).replace("_", " ").strip()


def _require(root: Path, name: str) -> Path:
    return require(root, name, "the CUB_200_2011 folder")


def _id_table(path: Path, columns: int) -> tuple[dict[int, tuple[str, list[str]]], list[tuple[str, str]]]:
    """``{id: (source, other fields)}`` of a CUB table, and ``(source, reason)`` of lines with no usable id."""
    rows: dict[int, tuple[str, list[str]]] = {}
    bad: list[tuple[str, str]] = []
    for lineno, fields in words_table(path, columns):
        source = f"{path}:{lineno}"
        if isinstance(fields, FalipError):
            bad.append((source, str(fields)))
            continue
        try:
            key = int(fields[0])
        except ValueError:
            bad.append((source, f"the id must be an integer, got {fields[0]!r}"))
            continue
        if key in rows:
            bad.append((source, f"id {key} is already on line {rows[key][0].rsplit(':', 1)[1]}"))
            continue
        rows[key] = (source, fields[1:])
    return rows, bad


def read_cub_classes(root: str | os.PathLike) -> list[str]:
    """The class names of ``classes.txt``, index = class_id - 1, as :func:`class_name` writes them.

    Raises :class:`FalipError` naming the file and line for a malformed line, a repeated id, or ids
    that are not 1..N: every item needs the class list, so this is never skipped.
    """
    path = _require(Path(root), "classes.txt")
    rows, bad = _id_table(path, 2)
    if bad:
        raise FalipError(f"{bad[0][0]}: {bad[0][1]}")
    if sorted(rows) != list(range(1, len(rows) + 1)):
        raise FalipError(f"{path}: class ids must be 1..{len(rows)}, got {sorted(rows)[:3]}...{sorted(rows)[-3:]}")
    return [class_name(rows[k][1][0]) for k in range(1, len(rows) + 1)]


class CubBox(NamedTuple):
    """A CUB image's box xyxy pixels (None if its line is malformed), its source and what is wrong."""

    box: tuple[float, float, float, float] | None
    source: str
    reason: str | None = None


def _box(rows: dict[int, tuple[str, list[str]]], key: int) -> CubBox:
    if key not in rows:
        return CubBox(None, "", f"image {key} has no line in bounding_boxes.txt")
    source, values = rows[key]
    try:
        raw = [float(v) for v in values[0].split()]
        if len(raw) != 4:
            raise ValueError
    except ValueError:
        return CubBox(None, source, f"x y width height must be 4 numbers, got {values[0]!r}")
    try:
        return CubBox(one_box(raw, "box", "xywh"), source)
    except FalipError as e:
        return CubBox(None, source, str(e))


def cub_boxes(root: str | os.PathLike) -> dict[str, CubBox]:
    """Every image's box by its ``images.txt`` path (``001.Black_footed_Albatross/....jpg``).

    For readers that refer to CUB's images by path (Waterbirds). A malformed line is a
    :class:`CubBox` with ``box`` None and the reason, for the caller to raise or skip.
    """
    root = Path(root)
    images, _ = _id_table(_require(root, "images.txt"), 2)
    boxes, _ = _id_table(_require(root, "bounding_boxes.txt"), 2)
    return {values[0]: _box(boxes, key) for key, (_, values) in images.items()}


class CUB:
    """CUB-200-2011 under ``root`` (the ``CUB_200_2011`` folder) as region-classification items.

    ``split``: ``"test"`` (``is_training_image`` 0), ``"train"`` (1) or ``"all"``. :attr:`classes` are
    the 200 names for prompts (index = class_id - 1). Iterating streams one
    :class:`~falip.data.classification.ClassificationItem` per image in ``images.txt`` order: ``id``
    ``"cub:<image_name>"``, ``image_path`` ``root/images/<image_name>``, ``box`` the bird's box (xyxy
    pixels), ``label``/``label_index`` its species, ``source`` ``"<root>/images.txt:<line>"``. A
    malformed or missing line for an image (in any of the tables) raises :class:`FalipError` naming
    that file and line, or (``errors="skip"``) yields a :class:`Skipped` with the image's id. Lines of
    images outside the split are not checked.
    """

    def __init__(self, root: str | os.PathLike, split: str = "test", errors: str = "raise") -> None:
        if split not in CUB_SPLITS:
            raise FalipError(f"CUB split must be one of {CUB_SPLITS}, got {split!r}")
        self.root, self.split, self.errors = Path(root), split, check_errors(errors)
        self.classes: list[str] = read_cub_classes(self.root)
        for name in ("images.txt", "image_class_labels.txt", "bounding_boxes.txt", "train_test_split.txt"):
            _require(self.root, name)

    def __iter__(self) -> Iterator[ClassificationItem | Skipped]:
        tables = {
            name: _id_table(self.root / name, 2)
            for name in ("images.txt", "image_class_labels.txt", "bounding_boxes.txt", "train_test_split.txt")
        }
        for _, bad in tables.values():
            for source, reason in bad:
                yield reject(self.errors, f"cub:{Path(source).name}", source, reason)
        images = tables["images.txt"][0]
        for key, (source, (name,)) in images.items():
            item_id = f"cub:{name}"
            try:
                if not self._in_split(tables["train_test_split.txt"][0], key):
                    continue
                label_index = self._label(tables["image_class_labels.txt"][0], key)
            except BadRecord as e:
                yield reject(self.errors, item_id, e.source or source, e.reason)
                continue
            box = _box(tables["bounding_boxes.txt"][0], key)
            if box.box is None:
                yield reject(self.errors, item_id, box.source or source, box.reason or "")
                continue
            yield ClassificationItem(
                self.root / "images" / name,
                box.box,
                self.classes[label_index],
                source=source,
                id=item_id,
                label_index=label_index,
                box_source=box.source or "",
            )

    def _in_split(self, rows: dict[int, tuple[str, list[str]]], key: int) -> bool:
        if key not in rows:
            raise BadRecord(f"image {key} has no line in train_test_split.txt")
        source, (value,) = rows[key]
        if value.strip() not in ("0", "1"):
            raise BadRecord(f"is_training_image must be 0 or 1, got {value!r}", source)
        return self.split == "all" or (value.strip() == "1") == (self.split == "train")

    def _label(self, rows: dict[int, tuple[str, list[str]]], key: int) -> int:
        if key not in rows:
            raise BadRecord(f"image {key} has no line in image_class_labels.txt")
        source, (value,) = rows[key]
        try:
            class_id = int(value)
        except ValueError:
            raise BadRecord(f"the class id must be an integer, got {value!r}", source) from None
        if not 1 <= class_id <= len(self.classes):
            raise BadRecord(f"class id {class_id} is not in classes.txt (1..{len(self.classes)})", source)
        return class_id - 1
