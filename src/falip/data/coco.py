"""COCO's region files: instances JSON (boxes, polygons, RLE) and panoptic (PNG + JSON), as labelled regions.

Formats (checked against pycocotools' ``COCO`` / ``mask`` API and the COCO panoptic API's
``rgb2id``, cocodataset/panopticapi@7bb4655 ``panopticapi/utils.py:73-79``):

* **instances** (``instances_val2017.json``): ``images`` (``id``, ``file_name``, ``width``,
  ``height``), ``categories`` (``id``, ``name``; ids not contiguous), ``annotations`` (``id``,
  ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]`` pixels, ``iscrowd``, ``segmentation``:
  polygons ``[[x1, y1, x2, y2, ...], ...]`` or an RLE ``{"size": [h, w], "counts": str | list}``).
* **panoptic** (``panoptic_val2017.json`` + a folder of PNGs, by default the JSON's name without
  ``.json`` beside it, as COCO ships it): ``annotations`` one per image (``image_id``,
  ``file_name`` of the PNG, ``segments_info``: ``id``, ``category_id``, ``bbox``, ``iscrowd``);
  ``categories`` add ``isthing``. A pixel's segment id is ``R + 256 G + 256^2 B``.

Each non-crowd annotation (instances) or segment (panoptic) is one :class:`CocoRegion`: a region to
name among the categories, with its box and, when asked, its mask. Crowd annotations are left out,
as COCO's evaluation leaves them out ("ignore" regions), and counted. Class names are the
categories' names in the order of their ids; ``label_index`` indexes that list, and
:attr:`CocoDataset.category_ids` maps it back to COCO's ids (for results files).

What cannot be read is a :class:`~falip.data.records.Skipped` naming the file and the item
(``instances.json: annotation 17``) with ``errors="skip"``, or a :class:`FalipError` with
``errors="raise"``: an unknown category or image, a zero-area or malformed box, a polygon wholly
outside its image, an RLE of another size than its image. A file without ``categories``, with two
categories of one name, or that is not COCO JSON is an error for the whole file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import FalipError
from ..core.regions import Regions, check_boxes
from ._common import check_errors, reject, resolve
from .images import decode_file
from .reclip import decode_segmentation
from .records import Skipped

__all__ = [
    "CocoDataset",
    "CocoInstances",
    "CocoPanoptic",
    "CocoRegion",
    "Proposal",
    "mask_to_coco_rle",
    "read_coco_json",
    "read_coco_results",
]

RegionKind = Literal["box", "mask"]
REGION_KINDS: tuple[str, ...] = ("box", "mask")


@dataclass(frozen=True)
class CocoRegion:
    """One COCO region to name: its image, box (xyxy pixels), class, and how to get its mask.

    ``id`` is ``"<json name>:<annotation id>"`` (panoptic: ``"<json name>:<image id>/<segment id>"``);
    ``category_id`` is COCO's id, ``label_index`` its index in the dataset's classes. ``use_mask``
    picks the region the model is given (the box alone, or the mask with its box).
    """

    image_path: Path
    box: tuple[float, float, float, float]
    label: str
    label_index: int
    category_id: int
    image_id: int | str
    image_size: tuple[int, int]
    source: str = field(default="", compare=False)
    id: str = ""
    use_mask: bool = False
    segmentation: Any = field(default=None, compare=False, repr=False)
    panoptic_png: Path | None = None
    segment_id: int | None = None
    group: None = None

    def mask(self) -> np.ndarray:
        """The region's mask, bool ``[H, W]`` at the image's size (decoded now)."""
        if self.panoptic_png is not None:
            return _segment_ids(str(self.panoptic_png)) == self.segment_id
        w, h = self.image_size
        return decode_segmentation(self.segmentation, h, w)

    def regions(self, image_size: tuple[int, int], use_mask: bool | None = None) -> Regions:
        """The region in the decoded image of size ``(W, H)``: its box, with its mask when ``use_mask``.

        The decoded image must have the size the file names (COCO's ``width`` / ``height``); a
        mismatch, or a mask with no pixel, is a FalipError naming ``source``.
        """
        use = self.use_mask if use_mask is None else use_mask
        try:
            if tuple(image_size) != tuple(self.image_size):
                raise FalipError(
                    f"the image is {image_size[0]}x{image_size[1]} px, the annotation file says "
                    f"{self.image_size[0]}x{self.image_size[1]}"
                )
            if not use:
                return Regions([self.box], image_size=image_size)
            mask = self.mask()
            if not mask.any():
                raise FalipError("its mask has no pixel inside the image")
            return Regions([self.box], mask[None], image_size=image_size)
        except FalipError as e:
            raise FalipError(f"{self.source}: {e}") from None


@lru_cache(maxsize=2)
def _segment_ids(png: str) -> np.ndarray:
    """Segment ids ``R + 256 G + 256^2 B`` of a panoptic PNG, int64 ``[H, W]`` (the last two are cached)."""
    with decode_file(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def read_coco_json(path: str | os.PathLike, what: str = "COCO annotation file") -> dict:
    """A COCO JSON file as a dict with ``categories`` checked; FalipError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FalipError(f"{path}: no such {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FalipError(f"{path}: not UTF-8 text (a {what} is JSON)") from None
    except json.JSONDecodeError as e:
        raise FalipError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise FalipError(f"{path}: a {what} is a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            got = "missing" if key not in data else f"a {type(data[key]).__name__}, not a list"
            raise FalipError(f"{path}: `{key}` is {got} (a {what} has images, annotations and categories)")
    if not data["categories"]:
        raise FalipError(f"{path}: `categories` is empty: there is nothing to name the regions with")
    return data


class CocoDataset:
    """Common part of the two readers: categories, images, and the items (re-iterable).

    ``classes``: category names in the order of their ids; ``category_ids[k]``: COCO's id of class
    ``k``. ``counts``: what was left out, e.g. ``{"crowd": 3}`` (skips are yielded as items).
    """

    def __init__(self, path: str | os.PathLike, images: str | os.PathLike | None, region: str, errors: str) -> None:
        check_errors(errors)
        if region not in REGION_KINDS:
            raise FalipError(f"region must be one of {', '.join(REGION_KINDS)}, got {region!r}")
        self.path = Path(path)
        self.name = self.path.name
        self.region, self.errors = region, errors
        self.data = read_coco_json(self.path)
        self.images_dir = Path(images) if images is not None else self.path.parent
        if not self.images_dir.is_dir():
            raise FalipError(f"{self.images_dir}: no such image folder (the images of {self.name})")
        self.classes, self.category_ids = self._categories()
        self._index = {cid: k for k, cid in enumerate(self.category_ids)}
        self.images = self._images()
        self.counts: Counter[str] = Counter()

    def _categories(self) -> tuple[list[str], list[int]]:
        seen: dict[str, Any] = {}
        rows = []
        for k, cat in enumerate(self.data["categories"]):
            if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
                raise FalipError(f"{self.name}: category {k + 1} needs an integer id and a name, got {cat!r}")
            name = cat["name"].strip()
            if not name:
                raise FalipError(f"{self.name}: category id {cat['id']} has an empty name")
            if name in seen:
                raise FalipError(
                    f"{self.name}: categories {seen[name]} and {cat['id']} are both named {name!r}: "
                    "class names must be unique (their texts would be the same)"
                )
            if any(cat["id"] == cid for _, cid in rows):
                raise FalipError(f"{self.name}: two categories have the id {cat['id']}")
            seen[name] = cat["id"]
            rows.append((name, cat["id"]))
        rows.sort(key=lambda r: r[1])
        return [r[0] for r in rows], [r[1] for r in rows]

    def _images(self) -> dict[Any, dict]:
        out: dict[Any, dict] = {}
        for k, im in enumerate(self.data["images"]):
            ok = isinstance(im, dict) and "id" in im and isinstance(im.get("file_name"), str)
            if not ok:
                raise FalipError(f"{self.name}: image entry {k + 1} needs an id and a file_name, got {im!r}")
            out[im["id"]] = im
        return out

    def _image_size(self, im: dict) -> tuple[int, int] | None:
        w, h = im.get("width"), im.get("height")
        if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
            return (w, h)
        return None

    def __iter__(self) -> Iterator[CocoRegion | Skipped]:
        self.counts = Counter()
        yield from self._items()

    def _items(self) -> Iterator[CocoRegion | Skipped]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _item(self, raw: dict, item_id: str, source: str, image_id: Any, **extra: Any) -> CocoRegion | Skipped:
        """One region from an annotation or segment ``raw`` (its ``category_id``, ``bbox``)."""
        im = self.images.get(image_id)
        if im is None:
            return reject(self.errors, item_id, source, f"image_id {image_id!r} is not in the file's images")
        size = self._image_size(im)
        if size is None:
            return reject(self.errors, item_id, source, f"image {image_id!r} has no positive width and height")
        cid = raw.get("category_id")
        if cid not in self._index:
            return reject(self.errors, item_id, source, f"category_id {cid!r} is not in the file's categories")
        try:
            bbox = raw.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise FalipError(f"bbox must be [x, y, w, h], got {bbox!r}")
            xyxy = check_boxes([bbox], image_size=size, box_format="xywh", names=["its bbox"])[0]
        except FalipError as e:
            return reject(self.errors, item_id, source, e)
        k = self._index[cid]
        return CocoRegion(
            image_path=resolve(self.images_dir, im["file_name"]),
            box=tuple(float(v) for v in xyxy),  # type: ignore[arg-type]
            label=self.classes[k],
            label_index=k,
            category_id=int(cid),
            image_id=image_id,
            image_size=size,
            source=source,
            id=item_id,
            use_mask=self.region == "mask",
            **extra,
        )

    def options(self) -> dict[str, Any]:
        """What defines a run on this dataset (written to run.json)."""
        return {"region": self.region, "images": str(self.images_dir)}

    def image_sizes(self) -> dict[Any, tuple[int, int]]:
        """Image id -> ``(W, H)`` as the file gives them (images without a size are left out)."""
        return {iid: size for iid, im in self.images.items() if (size := self._image_size(im)) is not None}

    def image_path(self, image_id: Any) -> Path:
        """Where image ``image_id`` is read from."""
        return resolve(self.images_dir, self.images[image_id]["file_name"])


class CocoInstances(CocoDataset):
    """COCO instances JSON as regions (module docstring); ``images``: the image folder (default: the JSON's)."""

    def __init__(
        self,
        path: str | os.PathLike,
        images: str | os.PathLike | None = None,
        region: str = "box",
        errors: str = "skip",
    ) -> None:
        super().__init__(path, images, region, errors)

    def _items(self) -> Iterator[CocoRegion | Skipped]:
        for k, ann in enumerate(self.data["annotations"]):
            if not isinstance(ann, dict) or "id" not in ann:
                yield reject(
                    self.errors, f"{self.name}:#{k + 1}", f"{self.name}: annotation {k + 1}", "not an object with an id"
                )
                continue
            item_id, source = f"{self.name}:{ann['id']}", f"{self.name}: annotation {ann['id']}"
            if ann.get("iscrowd", 0):
                self.counts["crowd"] += 1
                continue
            item = self._item(ann, item_id, source, ann.get("image_id"), segmentation=ann.get("segmentation"))
            if isinstance(item, CocoRegion) and self.region == "mask":
                item = self._check_mask(item)
            yield item

    def ground_truth(self) -> dict:
        """The file as pycocotools' evaluation reads it, with ``area`` filled where missing (the box's w*h)."""
        anns = []
        for ann in self.data["annotations"]:
            if (
                isinstance(ann, dict)
                and "area" not in ann
                and isinstance(ann.get("bbox"), list)
                and len(ann["bbox"]) == 4
            ):
                ann = {**ann, "area": float(ann["bbox"][2]) * float(ann["bbox"][3])}
            anns.append(ann)
        return {**self.data, "annotations": anns}

    def _check_mask(self, item: CocoRegion) -> CocoRegion | Skipped:
        """A mask region whose segmentation cannot be drawn, or draws no pixel, is skipped here, not later."""
        if item.segmentation is None:
            return reject(self.errors, item.id, item.source, "it has no segmentation (use --region box)")
        try:
            if not item.mask().any():
                raise FalipError("its mask has no pixel in the image (a polygon wholly outside it, or an empty one)")
        except FalipError as e:
            return reject(self.errors, item.id, item.source, e)
        return item


class CocoPanoptic(CocoDataset):
    """COCO panoptic JSON + PNG folder as regions, things and stuff (module docstring).

    ``masks``: the PNG folder (default: the JSON's path without ``.json``); ``images``: the image
    folder (default: the JSON's folder).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        images: str | os.PathLike | None = None,
        masks: str | os.PathLike | None = None,
        region: str = "mask",
        errors: str = "skip",
    ) -> None:
        super().__init__(path, images, region, errors)
        self.masks_dir = Path(masks) if masks is not None else self.path.with_suffix("")
        if not self.masks_dir.is_dir():
            raise FalipError(f"{self.masks_dir}: no such folder of panoptic PNGs (the masks of {self.name})")
        self.isthing = {c["id"]: bool(c.get("isthing", 1)) for c in self.data["categories"]}

    def _items(self) -> Iterator[CocoRegion | Skipped]:
        for k, ann in enumerate(self.data["annotations"]):
            where = f"{self.name}: annotation {k + 1}"
            if not isinstance(ann, dict) or not isinstance(ann.get("file_name"), str):
                yield reject(self.errors, f"{self.name}:#{k + 1}", where, "needs image_id, file_name and segments_info")
                continue
            image_id, png = ann.get("image_id"), self.masks_dir / ann["file_name"]
            for seg in ann.get("segments_info") or []:
                sid = seg.get("id") if isinstance(seg, dict) else None
                item_id = f"{self.name}:{image_id}/{sid}"
                source = f"{self.name}: image {image_id} segment {sid}"
                if not isinstance(sid, int):
                    yield reject(self.errors, item_id, source, "a segment needs an integer id")
                    continue
                if seg.get("iscrowd", 0):
                    self.counts["crowd"] += 1
                    continue
                yield self._item(seg, item_id, source, image_id, panoptic_png=png, segment_id=sid)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "masks": str(self.masks_dir)}


@dataclass(frozen=True)
class Proposal:
    """One class-agnostic region from a COCO results file: ``box`` xyxy pixels, optional RLE ``segmentation``."""

    box: tuple[float, float, float, float]
    score: float | None
    segmentation: Any = field(default=None, compare=False, repr=False)
    source: str = ""


def read_coco_results(
    path: str | os.PathLike, images: dict[Any, tuple[int, int]], errors: str = "skip"
) -> tuple[dict[Any, list[Proposal]], list[Skipped]]:
    """A COCO results file (``[{"image_id", "bbox" xywh, "score"?, "segmentation"? RLE}, ...]``) by image.

    ``images``: the known image ids -> ``(W, H)``; entries of other images, malformed entries and
    boxes wholly outside their image are returned as :class:`Skipped` (``errors="skip"``), each
    named ``<file>: entry <k>`` (from 1). A file none of whose image ids is known is a FalipError
    (the wrong file, or ids of another split). ``category_id`` is ignored: proposals are
    class-agnostic.
    """
    check_errors(errors)
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise FalipError(f"{path}: no such proposals file (a COCO results JSON list)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FalipError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(data, list):
        raise FalipError(f"{path}: a COCO results file is a JSON list of {{image_id, bbox, score}} objects")
    out: dict[Any, list[Proposal]] = {}
    skipped: list[Skipped] = []
    matched = False
    for k, entry in enumerate(data, start=1):
        source = f"{name}: entry {k}"
        item_id = f"{name}#{k}"
        if not isinstance(entry, dict) or "image_id" not in entry or "bbox" not in entry:
            skipped.append(reject(errors, item_id, source, "needs image_id and bbox"))
            continue
        size = images.get(entry["image_id"])
        if size is None:
            skipped.append(
                reject(errors, item_id, source, f"image_id {entry['image_id']!r} is not an image of the set")
            )
            continue
        matched = True
        try:
            bbox = entry["bbox"]
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise FalipError(f"bbox must be [x, y, w, h], got {bbox!r}")
            xyxy = check_boxes([bbox], image_size=size, box_format="xywh", names=["its bbox"])[0]
            score = entry.get("score")
            if score is not None and not isinstance(score, (int, float)):
                raise FalipError(f"score must be a number, got {score!r}")
            seg = entry.get("segmentation")
            if seg is not None:
                decode_segmentation(seg, size[1], size[0])  # checked now, decoded again when scored
        except FalipError as e:
            skipped.append(reject(errors, item_id, source, e))
            continue
        box = tuple(float(v) for v in xyxy)
        out.setdefault(entry["image_id"], []).append(
            Proposal(box, None if score is None else float(score), seg, source)
        )  # type: ignore[arg-type]
    if data and not matched:
        raise FalipError(
            f"{path}: none of its {len(data)} entries names an image of the annotation file "
            "(image ids of another split?)"
        )
    return out, skipped


def mask_to_coco_rle(mask: np.ndarray) -> dict:
    """A bool mask ``[H, W]`` as COCO's compressed RLE, JSON-able: ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as mask_utils

    enc = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode("ascii")}
