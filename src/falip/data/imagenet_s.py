"""ImageNet-S (ImageNetS919, also S300 / S50) as released: the class's mask (or its box) as the region.

Format, checked against the dataset's repository (``LUSSeg/ImageNet-S``: README "Q&A",
``datapreparation_val.py``, ``data/categories/ImageNetS_categories_im919.txt``) and mmsegmentation's
ImageNet-S loader (``mmseg/datasets/imagenets.py``):

* images ``<root>/validation/<wnid>/<name>.JPEG``, masks ``<root>/validation-segmentation/<wnid>/<name>.png``
  (``train-semi`` / ``train-semi-segmentation`` have the same layout); the preparation script makes a
  folder for every category, so the image folders list all the classes;
* the mask is an RGB PNG holding a class id per pixel as **R + 256 * G** (README: "you can get the
  class id by R+G*256"; mmseg converts the same way); 0 is "other" (not one of the classes) and 1000
  is "ignore". A single-channel PNG (palette index, 8 or 16-bit gray) is read as the id itself;
* class id k (from 1) is the k-th wnid **in sorted order**: the README says the ImageNet-S class id
  "is obtained by sorting the imagenet tag id", the categories file was re-issued sorted, and the
  repository's class-name list was re-ordered to sorted-wnid order in 2023 (mmsegmentation's
  ``CLASSES919`` still follows the first, unsorted release of that file). Here the class ids are the
  ranks of the sorted image folder names (or of a given ``categories`` file's wnids, sorted);
* masks have the image's size (mmseg's evaluation resizes predictions to the mask, not the reverse); a
  mask of another size is an error (:class:`~falip.core.regions.Regions` says so), not resized.

The region of an image is the pixels of its folder's class (``mask == class_id``); with
``region="box"`` their bounding box. Readable names do not come with the release (the folders are
WordNet ids): pass ``classnames``, a file of ``"<wnid> <name>[, synonyms]"`` lines (ImageNet's
``LOC_synset_mapping.txt`` or ``synset_words.txt``: the name is the text up to the first comma) or
of one name per line in class-id order. Without it, folder names that are not wnids are used as names
(underscores as spaces, as the synthetic writer makes them); wnid folders are an error asking for the
file. Not verified here on the real files: the pixel values beyond the README's statement, and the
counts (919 classes, 12,419 validation images).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import FalipError
from ._common import check_errors, reject, require, text_lines
from .classification import ClassificationItem
from .images import decode_file
from .records import Skipped

log = logging.getLogger(__name__)

__all__ = [
    "IMAGENET_S_REGIONS",
    "IMAGENET_S_SPLITS",
    "IGNORE_ID",
    "ImageNetS",
    "ImageNetSItem",
    "decode_class_mask",
    "read_classnames",
]

IMAGENET_S_SPLITS = ("validation", "train-semi")
IMAGENET_S_REGIONS = ("mask", "box")
IGNORE_ID = 1000
_WNID = re.compile(r"^n\d{8}$")
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def decode_class_mask(path: str | os.PathLike) -> np.ndarray:
    """An ImageNet-S mask file -> class ids ``[H, W]`` int32: ``R + 256 * G`` of an RGB(A) PNG.

    A single-channel image (palette, 8 or 16-bit gray) gives its stored values. Raises
    :class:`FalipError` naming the file if it is missing, not an image, or truncated.
    """
    with decode_file(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        if arr.shape[2] >= 3:
            return arr[..., 0].astype(np.int32) + 256 * arr[..., 1].astype(np.int32)
        arr = arr[..., 0]
    return arr.astype(np.int32)


@dataclass(frozen=True)
class ImageNetSItem(ClassificationItem):
    """An ImageNet-S image: ``class_id`` is the value of its class's pixels in ``mask_path`` (from 1).

    ``region`` is ``"mask"`` (the region is the class's pixels) or ``"box"`` (their bounding box); the
    mask file is read by :meth:`regions` / :meth:`load_mask`, never before.
    """

    class_id: int = 0
    region: str = "mask"

    def load_mask(self) -> np.ndarray:
        """The pixels of this image's class, bool ``[H, W]``; FalipError naming the file if there are none."""
        ids = decode_class_mask(self.mask_path)  # type: ignore[arg-type]
        mask = ids == self.class_id
        if not mask.any():
            present = sorted(int(v) for v in np.unique(ids) if v not in (0, IGNORE_ID))
            raise FalipError(
                f"{self.mask_path}: no pixel of class {self.class_id} ({self.label}) in the mask; "
                f"it holds {present or 'no class'}"
            )
        return mask

    def _default_use_mask(self) -> bool:
        return self.region == "mask"

    def _mask(self) -> np.ndarray:
        return self.load_mask()


def read_classnames(path: str | os.PathLike, wnids: list[str]) -> list[str]:
    """Names for ``wnids`` from ``path``: ``"<wnid> <name>[, ...]"`` lines, or one name per line in order.

    Raises :class:`FalipError` naming the file when a wnid has no line, or when plain names do not
    number one per class.
    """
    path = Path(path)
    lines = []
    for lineno, line in text_lines(path, "class names file"):
        if isinstance(line, FalipError):
            raise FalipError(f"{path}:{lineno}: {line}")
        lines.append(line.strip())
    first = [line.split(maxsplit=1) for line in lines]
    if lines and all(len(f) == 2 and _WNID.match(f[0]) for f in first):
        by_wnid = {w: rest.split(",")[0].strip() for w, rest in first}
        missing = [w for w in wnids if w not in by_wnid]
        if missing:
            raise FalipError(f"{path}: no line for {len(missing)} of the {len(wnids)} classes, e.g. {missing[:3]}")
        return [by_wnid[w] for w in wnids]
    if len(lines) != len(wnids):
        raise FalipError(
            f"{path}: {len(lines)} names for {len(wnids)} classes; give one name per class in class-id "
            "order (sorted wnids), or '<wnid> <name>' lines"
        )
    return lines


class ImageNetS:
    """ImageNet-S under ``root`` (e.g. ``ImageNetS919``) as region-classification items.

    ``split``: ``"validation"`` or ``"train-semi"`` (the splits with masks). ``categories``: a file of
    wnids (e.g. the repository's ``ImageNetS_categories_im919.txt``) fixing the class ids when the
    image folders are incomplete; default: the folders. ``classnames``: see the module. ``region``:
    ``"mask"`` or ``"box"``. :attr:`wnids` and :attr:`classes` are in class-id order (index =
    class_id - 1). Iterating streams one :class:`ImageNetSItem` per image (folders and files in
    sorted order): ``id`` ``"imagenet-s:<wnid>/<file>"``, ``image_path``, ``mask_path``, ``box`` None,
    ``label`` / ``label_index`` / ``class_id`` its folder's class, ``source`` the mask path. An image
    without a mask, or a folder that is not a class, raises :class:`FalipError` or (``errors="skip"``)
    yields a :class:`Skipped`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "validation",
        classnames: str | os.PathLike | None = None,
        categories: str | os.PathLike | None = None,
        region: str = "mask",
        errors: str = "raise",
    ) -> None:
        if split not in IMAGENET_S_SPLITS:
            raise FalipError(f"ImageNet-S split must be one of {IMAGENET_S_SPLITS}, got {split!r}")
        if region not in IMAGENET_S_REGIONS:
            raise FalipError(f"ImageNet-S region must be one of {IMAGENET_S_REGIONS}, got {region!r}")
        self.root, self.split, self.region, self.errors = Path(root), split, region, check_errors(errors)
        folder = "an ImageNet-S folder (e.g. ImageNetS919)"
        self.images_dir = require(self.root, split, folder)
        self.masks_dir = require(self.root, f"{split}-segmentation", folder)
        if categories is not None:
            self.wnids: list[str] = sorted(self._categories(Path(categories)))
        else:
            self.wnids = sorted(p.name for p in self.images_dir.iterdir() if p.is_dir())
            empty = [w for w in self.wnids if not any(_is_image(p) for p in (self.images_dir / w).iterdir())]
            if empty:  # still a class (a distractor in the prompts), which is rarely what was meant
                log.warning(
                    "%s: %d class folder(s) hold no image (%s); each is still a class that every region "
                    "can be given; remove the folder if it is not one",
                    self.images_dir,
                    len(empty),
                    ", ".join(empty[:3]) + (", ..." if len(empty) > 3 else ""),
                )
        if not self.wnids:
            raise FalipError(f"{self.images_dir}: no class folders in it")
        if classnames is not None:
            self.classes: list[str] = read_classnames(classnames, self.wnids)
        elif any(_WNID.match(w) for w in self.wnids):
            raise FalipError(
                f"{self.images_dir}: the class folders are WordNet ids ({self.wnids[0]}, ...); give the class "
                "names: a file of '<wnid> <name>' lines (ImageNet's LOC_synset_mapping.txt or synset_words.txt) "
                "or one name per line in sorted-wnid order"
            )
        else:
            self.classes = [w.replace("_", " ") for w in self.wnids]

    @staticmethod
    def _categories(path: Path) -> list[str]:
        out = []
        for lineno, line in text_lines(path, "categories file"):
            if isinstance(line, FalipError) or not _WNID.match(line.strip()):
                raise FalipError(f"{path}:{lineno}: expected one wnid (n########) a line, got {line!s:.40}")
            out.append(line.strip())
        return out

    def __iter__(self) -> Iterator[ImageNetSItem | Skipped]:
        index = {w: i for i, w in enumerate(self.wnids)}
        for folder in sorted(p for p in self.images_dir.iterdir() if p.is_dir()):
            if folder.name not in index:
                yield reject(
                    self.errors, f"imagenet-s:{folder.name}", str(folder), "the folder is not one of the classes"
                )
                continue
            k = index[folder.name]
            for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
                item_id = f"imagenet-s:{folder.name}/{image.name}"
                mask = self.masks_dir / folder.name / (image.stem + ".png")
                if not mask.is_file():
                    yield reject(self.errors, item_id, str(mask), "no such mask file")
                    continue
                yield ImageNetSItem(
                    image,
                    None,
                    self.classes[k],
                    mask,
                    source=str(mask),
                    id=item_id,
                    label_index=k,
                    class_id=k + 1,
                    region=self.region,
                )


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in _IMAGE_SUFFIXES
