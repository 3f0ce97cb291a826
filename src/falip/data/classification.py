"""Region classification items, and the generic JSONL / CSV format a user writes by hand.

:class:`ClassificationItem` is what every region-classification reader yields (this module's, and
:mod:`~falip.data.cub`, :mod:`~falip.data.dogs`, :mod:`~falip.data.waterbirds`,
:mod:`~falip.data.imagenet_s`): one region of one image and its class.

The generic format, one region to classify per line (several lines may share an image); paths are
relative to the file's directory (or a given ``root``) unless absolute:

* JSONL: ``{"image": path, "label": class name, "box": [x0, y0, x1, y1] (xyxy pixels), "mask": path
  to a mask image (nonzero = region)}``; ``box``, ``mask`` or both.
* CSV (UTF-8, a header line, RFC 4180 quoting): columns ``image,label`` plus ``x0,y0,x1,y1`` (xyxy
  pixels; all four or none), ``mask``, or both; a row may leave the box cells or the mask cell empty
  as long as it has one of them. Other columns are ignored. E.g.::

      image,label,x0,y0,x1,y1,mask
      imgs/0001.jpg,Black footed Albatross,10,20,110,220.5,
      imgs/0002.jpg,dog,,,,masks/0002.png

A malformed line raises :class:`~falip.core.errors.FalipError` naming the file and line (or yields a
:class:`~falip.data.records.Skipped` with ``errors="skip"``); every box is validated by
:func:`falip.core.regions.check_boxes` and named as written, e.g. ``items.jsonl:3: box (5, 0, 1, 1)
is inverted (x1 < x0); boxes are xyxy``. Mask files are opened only by :meth:`ClassificationItem.regions`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FalipError
from ..core.regions import Regions
from ._common import check_errors, csv_dicts, json_lines, numbers, one_box, reject, resolve
from .images import decode_file
from .records import Skipped

__all__ = [
    "ClassificationFile",
    "ClassificationItem",
    "iter_classification",
    "iter_classification_csv",
    "iter_classification_jsonl",
    "load_mask",
    "read_classification_jsonl",
]

_BOX_COLUMNS = ("x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class ClassificationItem:
    """One region to classify: ``box`` xyxy pixels and/or a mask file, and its class ``label``.

    ``id`` is stable and unique within the dataset (e.g. ``"items.jsonl:3"``, ``"cub:<path>"``);
    ``source`` is where it was read from (``"<file>:<line>"``). ``label_index`` is the index of
    ``label`` in the dataset's ``classes`` (None when the reader has no class list); ``group`` is a
    subgroup name (Waterbirds: ``"landbird/water"``), None elsewhere. ``box_source``: where the box
    was read when that is another file (CUB's ``bounding_boxes.txt:<line>``); errors about the box
    name it.
    """

    image_path: Path
    box: tuple[float, float, float, float] | None
    label: str
    mask_path: Path | None = None
    source: str = field(default="", compare=False)
    id: str = ""
    label_index: int | None = None
    group: str | None = None
    box_source: str = field(default="", compare=False)

    def regions(self, image_size: tuple[int, int], use_mask: bool | None = None) -> Regions:
        """This item's region in the image of size ``(W, H)``: its box, plus its mask if it has one.

        ``use_mask=False`` leaves the mask out (a mask-only item then gets the mask's bounding box);
        None is the item's default (the mask when there is one). The mask is read here, not before.
        Errors (a box wholly outside the image, a mask of another size, an empty mask) name ``source``.
        """
        if use_mask is None:
            use_mask = self._default_use_mask()
        try:
            box = self._box(image_size)
            mask = self._mask() if self.mask_path is not None and (use_mask or box is None) else None
            regions = Regions(
                None if box is None else [box], None if mask is None else mask[None], image_size=image_size
            )
            return regions if use_mask or mask is None else Regions(regions.boxes, image_size=image_size)
        except FalipError as e:
            where = self.box_source if self.box_source and self.mask_path is None else self.source
            raise FalipError(f"{where}: {e}" if where else str(e)) from None

    def _default_use_mask(self) -> bool:
        return True

    def _box(self, image_size: tuple[int, int]) -> tuple[float, float, float, float] | None:
        """The box in the image of ``image_size`` (a subclass may rescale it)."""
        return self.box

    def _mask(self) -> np.ndarray:
        """The region's mask, bool ``[H, W]`` (a subclass may decode its file differently)."""
        return load_mask(self.mask_path)  # type: ignore[arg-type]


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask image as bool ``[H, W]``: a pixel is in the region when any of its colour channels is nonzero.

    The one rule for every mask falip reads (the dataset readers and ``falip viz --mask``): values
    as stored, no colour conversion, so a pure-blue RGB pixel is in the region, and so is a
    palette pixel whose index is nonzero or a 16-bit pixel of any nonzero value. The alpha channel
    of an RGBA / LA image is ignored (an opaque black pixel is background). Raises
    :class:`FalipError` naming the file if it is missing, not an image, or truncated.
    """
    with decode_file(path) as im:
        bands = im.getbands()
        arr = np.asarray(im)
    if arr.ndim == 3:
        colour = [i for i, b in enumerate(bands) if b != "A"] or list(range(arr.shape[2]))
        return (arr[..., colour] != 0).any(axis=2)
    return arr != 0


def _label_index(label: str, index: dict[str, int] | None) -> int | None:
    if index is None:
        return None
    if label not in index:
        raise FalipError(f"label {label!r} is not in the class list")
    return index[label]


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FalipError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _jsonl_fields(obj: dict) -> tuple[Any, Any, tuple[float, ...] | None, Any, str]:
    """image, label, box as written (or None), mask (or None) of a JSONL object; what to say without either."""
    for key in ("image", "label"):
        if key not in obj:
            raise FalipError(f"missing key {key!r}")
    box = None if obj.get("box") is None else numbers(obj["box"], 4, "box")
    return obj["image"], obj["label"], box, obj.get("mask"), "needs a 'box' or a 'mask' (or both)"


def _csv_fields(row: dict) -> tuple[Any, Any, tuple[float, ...] | None, Any, str]:
    """As :func:`_jsonl_fields`, for a CSV row (empty cells are absent values)."""
    cells = [(row.get(c) or "").strip() for c in _BOX_COLUMNS]
    box = None
    if any(cells):
        try:
            box = tuple(float(c) for c in cells)
        except ValueError:
            raise FalipError(f"x0,y0,x1,y1 must be 4 numbers, got {','.join(cells)!r}") from None
    mask = (row.get("mask") or "").strip() or None
    return row.get("image"), row.get("label"), box, mask, "needs a box (x0,y0,x1,y1) or a mask (or both)"


def _class_index(classes: Sequence[str] | None) -> dict[str, int] | None:
    return None if classes is None else {c: i for i, c in enumerate(classes)}


def _items(
    path: str | os.PathLike,
    root: str | os.PathLike | None,
    errors: str,
    classes: Sequence[str] | None,
    records: Callable[[Path], Iterator[tuple[int, Any]]],
    fields: Callable[[Any], tuple],
) -> Iterator[ClassificationItem | Skipped]:
    """The items of ``records(path)`` (``(line, record | FalipError)``), each read by ``fields``."""
    check_errors(errors)
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    index = _class_index(classes)
    for lineno, record in records(path):
        item_id, source = f"{path.name}:{lineno}", f"{path}:{lineno}"
        try:
            if isinstance(record, FalipError):
                raise record
            image, label, box, mask, neither = fields(record)
            image, label = _text(image, "image"), _text(label, "label")
            box = None if box is None else one_box(box, "box")
            mask = None if mask is None else resolve(base, _text(mask, "mask"))
            if box is None and mask is None:
                raise FalipError(neither)
            yield ClassificationItem(
                resolve(base, image), box, label, mask, source, item_id, _label_index(label, index)
            )
        except FalipError as e:
            yield reject(errors, item_id, source, e)


def iter_classification_jsonl(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    errors: str = "raise",
    classes: Sequence[str] | None = None,
) -> Iterator[ClassificationItem | Skipped]:
    """Stream generic classification JSONL as :class:`ClassificationItem` (id ``"<file name>:<line>"``).

    Paths are resolved against ``root`` (default: the file's directory). With ``classes``, a label
    not among them is an error and ``label_index`` is its index. A malformed line (not JSON, a missing
    key, a box that is not 4 numbers or that :func:`check_boxes` rejects, a non-string label or path,
    neither box nor mask) raises :class:`FalipError` ``"<file>:<line>: <reason>"``, or yields a
    :class:`Skipped` with ``errors="skip"``.
    """
    return _items(path, root, errors, classes, json_lines, _jsonl_fields)


def iter_classification_csv(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    errors: str = "raise",
    classes: Sequence[str] | None = None,
) -> Iterator[ClassificationItem | Skipped]:
    """Stream generic classification CSV as :class:`ClassificationItem` (id ``"<file name>:<line>"``).

    As :func:`iter_classification_jsonl`; the header must name ``image`` and ``label`` and either all
    of ``x0,y0,x1,y1`` or ``mask``. A bad header, or bytes that are not UTF-8, raise for the file.
    """
    return _items(path, root, errors, classes, lambda p: csv_dicts(p, _check_header), _csv_fields)


def _check_header(header: list[str]) -> str | None:
    has_box = set(_BOX_COLUMNS) <= set(header)
    if "image" not in header or "label" not in header or not (has_box or "mask" in header):
        return "the header must name image, label and x0,y0,x1,y1 and/or mask"
    return None


def iter_classification(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    errors: str = "raise",
    classes: Sequence[str] | None = None,
    format: str | None = None,
) -> Iterator[ClassificationItem | Skipped]:
    """:func:`iter_classification_csv` or :func:`iter_classification_jsonl`: by ``format`` (``"csv"``
    or ``"jsonl"``) whatever the file's suffix; None: CSV for a ``.csv`` file, JSONL otherwise."""
    if format not in (None, "csv", "jsonl"):
        raise FalipError(f"a classification file is 'csv' or 'jsonl', not {format!r}")
    if format is None:
        format = "csv" if Path(path).suffix.lower() == ".csv" else "jsonl"
    reader = iter_classification_csv if format == "csv" else iter_classification_jsonl
    return reader(path, root, errors, classes)


def read_classification_jsonl(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[ClassificationItem]:
    """All items of :func:`iter_classification_jsonl` as a list; the first malformed line raises."""
    return list(iter_classification_jsonl(path, root))  # type: ignore[arg-type]


class ClassificationFile:
    """A generic classification JSONL or CSV file as a dataset: :attr:`classes` and the items.

    ``classes`` defaults to the file's distinct labels, sorted (one pass over the file, no image
    opened); given, a label not among them is an error (``errors`` says whether it raises). Iterating
    streams :func:`iter_classification` (``format``: ``"csv"``, ``"jsonl"``, or None: by suffix).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        root: str | os.PathLike | None = None,
        classes: Sequence[str] | None = None,
        errors: str = "raise",
        format: str | None = None,
    ) -> None:
        self.path, self.root, self.errors, self.format = Path(path), root, check_errors(errors), format
        self.first_skipped: Skipped | None = None  # the first line that could not be read, when classes is None
        if classes is None:
            labels = set()
            for it in iter_classification(self.path, root, "skip", format=format):
                if not isinstance(it, Skipped):
                    labels.add(it.label)
                elif self.first_skipped is None:
                    self.first_skipped = it
            classes = sorted(labels)
        self.classes: list[str] = list(classes)

    def __iter__(self) -> Iterator[ClassificationItem | Skipped]:
        return iter_classification(self.path, self.root, self.errors, self.classes, self.format)
