"""Stanford Dogs as distributed: one item per annotated dog (its box), the breed as the class.

Format, checked against the dataset's README (``lists/*.mat`` hold "list and labels" of the train and
test images), TensorFlow Datasets' ``stanford_dogs`` builder and its test data (the annotation XML),
and public PyTorch loaders that read the lists with ``scipy.io.loadmat``:

* ``Images/<wnid>-<Breed_Name>/<wnid>_<n>.jpg``, e.g. ``Images/n02085620-Chihuahua/n02085620_2650.jpg``;
* ``Annotation/<wnid>-<Breed_Name>/<wnid>_<n>`` (no extension): PASCAL VOC XML with ``<size>`` and one
  or more ``<object>``, each with ``<name>`` (the breed) and ``<bndbox><xmin><ymin><xmax><ymax>``
  (pixels). Every object is one item (id ``"dogs:<wnid>-<Breed>/<wnid>_<n>#<k>"``, k from 0 in file
  order); the box is used as written, xyxy (VOC's 1-based corners are not shifted: one pixel);
* ``train_list.mat`` / ``test_list.mat`` / ``file_list.mat`` (every image: split ``"all"``, the 20,580
  images the FALIP paper's appendix evaluates) (``lists.tar``; looked up in ``lists/`` and in the root):
  MATLAB cell arrays ``file_list`` (image paths under ``Images/``), ``annotation_list`` (the same
  without ``.jpg``, under ``Annotation/``) and ``labels`` (N x 1, 1-based: loaders subtract 1). Read
  with scipy (``scipy.io.loadmat``; scipy is needed for this dataset only). The README calls
  ``file_list.mat`` "a list of all files" and only the train and test lists "list and labels": when
  ``file_list.mat`` has no ``labels`` (or no ``annotation_list``), split ``"all"`` takes them from
  ``train_list.mat`` + ``test_list.mat`` (12,000 + 8,580 = 20,580), in ``file_list``'s order when it
  has one (an entry in neither list is reported), else train then test.

Classes: the breed folders under ``Images/`` sorted by name (so by wnid), named by the breed part with
underscores as spaces (``n02085782-Japanese_spaniel`` -> ``Japanese spaniel``); a ``labels`` entry
must equal the 1-based position of its file's folder in that order (as TFDS and the loaders above
assume; a mismatch is reported, not guessed). Not verified here on the real files: that every label
agrees (the loaders only subtract 1), and the README's counts (120 breeds, 12,000 train, 8,580 test).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..core.errors import FalipError
from ._common import BadRecord, check_errors, one_box, reject, require
from .classification import ClassificationItem
from .records import Skipped

__all__ = ["DOGS_OBJECTS", "DOGS_SPLITS", "StanfordDogs", "breed_name", "read_split_list"]

DOGS_SPLITS = ("test", "train", "all")
DOGS_OBJECTS = ("all", "first")
_BREED_DIR = re.compile(r"^n\d+-.+$")


def breed_name(folder: str) -> str:
    """``n02085782-Japanese_spaniel`` -> ``Japanese spaniel`` (the part after the first ``-``, ``_`` -> space)."""
    return folder.split("-", 1)[-1].replace("_", " ").strip()


def _strings(values: np.ndarray, what: str) -> list[str]:
    out = []
    for k, v in enumerate(np.atleast_1d(values).ravel()):
        flat = np.asarray(v).ravel()
        if flat.size != 1 or not isinstance(flat[0], str):
            raise FalipError(f"{what}: entry {k + 1} is not a string (got {v!r})")
        out.append(str(flat[0]))
    return out


def _load_mat(path: Path) -> dict:
    """The variables of a MATLAB v5 file (``squeeze_me``); FalipError naming the file otherwise."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise FalipError(f"{path}: reading Stanford Dogs' lists needs scipy (pip install scipy)") from None
    if not path.is_file():
        raise FalipError(f"{path}: no such file")
    try:
        mat = loadmat(path, squeeze_me=True)
    except NotImplementedError:
        raise FalipError(f"{path}: a MATLAB v7.3 file; scipy reads v5 files (as distributed)") from None
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... for a file it cannot parse
        raise FalipError(f"{path}: not a MATLAB file scipy can read ({e})") from None
    return mat


def read_split_list(path: str | os.PathLike) -> tuple[list[str], list[str], list[int]]:
    """A ``train_list.mat`` / ``test_list.mat``: ``file_list``, ``annotation_list`` and ``labels`` (1-based).

    Raises :class:`FalipError` naming the file when it is missing, not a MATLAB file scipy reads, or
    lacks a field, or the three lists differ in length.
    """
    path = Path(path)
    mat = _load_mat(path)
    missing = [k for k in ("file_list", "annotation_list", "labels") if k not in mat]
    if missing:
        raise FalipError(f"{path}: no {', '.join(missing)} in it (fields: {sorted(k for k in mat if k[0] != '_')})")
    files = _strings(mat["file_list"], f"{path}: file_list")
    annotations = _strings(mat["annotation_list"], f"{path}: annotation_list")
    raw = np.atleast_1d(np.asarray(mat["labels"])).ravel()
    if not np.issubdtype(raw.dtype, np.number) or not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
        raise FalipError(f"{path}: labels must be integers")
    labels = [int(v) for v in raw]
    if not len(files) == len(annotations) == len(labels):
        raise FalipError(
            f"{path}: file_list, annotation_list and labels differ in length "
            f"({len(files)}, {len(annotations)}, {len(labels)})"
        )
    return files, annotations, labels


def _objects(path: Path) -> list[tuple[float, float, float, float] | BadRecord]:
    """The boxes of every ``<object>`` of a VOC annotation file (xyxy), or what is wrong with each."""
    if not path.is_file():
        raise BadRecord("no such annotation file", str(path))
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise BadRecord(f"not valid XML ({e})", str(path)) from None
    objects = root.findall("object")
    if not objects:
        raise BadRecord("no <object> in it", str(path))
    out: list[tuple[float, float, float, float] | BadRecord] = []
    for k, obj in enumerate(objects):
        text = [obj.findtext(f"bndbox/{c}") for c in ("xmin", "ymin", "xmax", "ymax")]
        try:
            if any(t is None for t in text):
                raise FalipError("has no <bndbox> with xmin, ymin, xmax and ymax")
            try:
                raw = [float(t) for t in text]  # type: ignore[arg-type]
            except ValueError:
                raise FalipError(f"bndbox must be numbers, got {text}") from None
            out.append(one_box(raw, "bndbox"))
        except FalipError as e:
            out.append(BadRecord(f"object {k}: {e}", str(path)))
    return out


class StanfordDogs:
    """Stanford Dogs under ``root`` (holding ``Images/``, ``Annotation/`` and the lists) as region items.

    ``split``: ``"test"``, ``"train"`` or ``"all"`` (``file_list.mat``: every image). ``objects``:
    ``"all"`` (every annotated dog is an item) or ``"first"`` (only the first ``<object>`` of each
    annotation file: one region per image, as the FALIP paper counts images). :attr:`classes` are
    the 120 breed names (index = label - 1).
    Iterating streams one :class:`~falip.data.classification.ClassificationItem` per object of each
    listed image's annotation: ``id`` ``"dogs:<annotation path>#<k>"``, ``image_path``
    ``root/Images/<file>``, ``box`` xyxy pixels, ``label``/``label_index`` the breed, ``source`` the
    annotation file. A bad list entry, a missing or malformed annotation file (every object of it) or a
    malformed object raises :class:`FalipError` naming the file (and entry or object), or
    (``errors="skip"``) yields a :class:`Skipped` in place of each affected item.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "test", errors: str = "raise", objects: str = "all"
    ) -> None:
        if split not in DOGS_SPLITS:
            raise FalipError(f"Stanford Dogs split must be one of {DOGS_SPLITS}, got {split!r}")
        if objects not in DOGS_OBJECTS:
            raise FalipError(f"Stanford Dogs objects must be one of {DOGS_OBJECTS}, got {objects!r}")
        self.root, self.split, self.errors, self.objects = Path(root), split, check_errors(errors), objects
        images = require(self.root, "Images", "the Stanford Dogs folder (Images/, Annotation/, lists)")
        self.folders: list[str] = sorted(p.name for p in images.iterdir() if p.is_dir() and _BREED_DIR.match(p.name))
        if not self.folders:
            raise FalipError(f"{images}: no breed folders (<wnid>-<Breed>) in it")
        self.classes: list[str] = [breed_name(f) for f in self.folders]
        self.list_path: Path = self._list("file_list.mat" if split == "all" else f"{split}_list.mat")

    def _list(self, name: str) -> Path:
        """``lists/<name>`` or ``<name>`` in the root; FalipError when neither exists."""
        candidates = [self.root / "lists" / name, self.root / name]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise FalipError(f"{candidates[0]}: no such file (nor {candidates[1]}); it comes in lists.tar")
        return found[0]

    def _entries(self) -> list[tuple[str, str, int | None]]:
        """``(file, annotation, 1-based label or None)`` of every listed image, in the list's order.

        Split ``"all"`` with a ``file_list.mat`` that has no labels ("a list of all files"): the
        labels (and annotation paths) of ``train_list.mat`` + ``test_list.mat``; an entry of
        ``file_list`` in neither gets None (reported per entry).
        """
        if self.split != "all":
            return list(zip(*read_split_list(self.list_path)))
        mat = _load_mat(self.list_path)
        if all(k in mat for k in ("file_list", "annotation_list", "labels")):
            return list(zip(*read_split_list(self.list_path)))
        known: dict[str, tuple[str, str, int]] = {}
        for name in ("train_list.mat", "test_list.mat"):
            try:
                path = self._list(name)
            except FalipError as e:
                raise FalipError(
                    f'{self.list_path} has no labels (the dataset\'s README: "a list of all files"); they come '
                    f"from train_list.mat and test_list.mat, but {e}"
                ) from None
            for file, annotation, label in zip(*read_split_list(path)):
                known.setdefault(file.replace("\\", "/"), (file, annotation, label))
        if "file_list" not in mat:  # no order to follow: train, then test
            return list(known.values())
        files = _strings(mat["file_list"], f"{self.list_path}: file_list")
        return [known.get(f.replace("\\", "/"), (f, os.path.splitext(f)[0], None)) for f in files]

    def __iter__(self) -> Iterator[ClassificationItem | Skipped]:
        index = {f: i for i, f in enumerate(self.folders)}
        for k, (file, annotation, label) in enumerate(self._entries()):
            item_id = f"dogs:{annotation}"
            try:
                if label is None:
                    raise BadRecord(f"{file}: in neither train_list.mat nor test_list.mat, so it has no label")
                label_index = self._check_entry(index, file, annotation, label)
                objects = _objects(self.root / "Annotation" / annotation)
            except BadRecord as e:
                yield reject(self.errors, item_id, e.source or f"{self.list_path}: entry {k + 1}", e.reason)
                continue
            for j, box in enumerate(objects[:1] if self.objects == "first" else objects):
                if isinstance(box, BadRecord):
                    yield reject(self.errors, f"{item_id}#{j}", box.source, box.reason)
                    continue
                yield ClassificationItem(
                    self.root / "Images" / file,
                    box,
                    self.classes[label_index],
                    source=str(self.root / "Annotation" / annotation),
                    id=f"{item_id}#{j}",
                    label_index=label_index,
                )

    def _check_entry(self, index: dict[str, int], file: str, annotation: str, label: int) -> int:
        folder = file.replace("\\", "/").split("/")[0]
        if folder not in index:
            raise BadRecord(f"{file}: its folder {folder!r} is not among the breed folders of Images/")
        if os.path.splitext(file)[0] != annotation:
            raise BadRecord(f"file {file!r} and annotation {annotation!r} differ")
        if label != index[folder] + 1:
            raise BadRecord(
                f"label {label} disagrees with the folder {folder!r} (breed {index[folder] + 1} of the sorted folders)"
            )
        return index[folder]
