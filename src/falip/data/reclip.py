"""Reader of the ReCLIP-style REC jsonl (RefCOCO, RefCOCO+, RefCOCOg) and of COCO segmentations.

:func:`read_reclip_jsonl` returns one :class:`RecSample` per sentence; :func:`decode_segmentation`
turns a COCO polygon or RLE into a mask. Malformed input raises
:class:`~falip.core.errors.FalipError` naming the file and line (``"<file>:<line>: <what>"``).
Every box is validated by :func:`falip.core.regions.check_boxes` (NaN/inf, negative width or
height, empty) and named as written in the file, e.g.
``refcoco_testa.jsonl:12: anns[3].bbox (10, 20, 0, 5) is empty (zero width)``; boxes are
returned as xyxy pixels (float64). Images are not opened here; paths are resolved against a root.

ReCLIP jsonl (RefCOCO / RefCOCO+ / RefCOCOg as distributed by ReCLIP and reused by FALIP, FGVP and
Alpha-CLIP): one referred object per line, with ``file_name`` (COCO names carry a trailing
``_<n>``, e.g. ``COCO_train2014_000000581857_16.jpg``, which is dropped to get the image file),
``image_id`` (int or str), ``anns`` (every annotation of the image: ``id``, ``bbox`` COCO xywh
pixels, ``category_id``, ``segmentation`` polygon list or RLE), ``ann_id`` (the gold annotation id,
an int, a str or a list of them) and ``sentences`` (list of ``{"raw": ...}``); every sentence
becomes one :class:`RecSample`. Other keys of the line are kept in ``extra``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FalipError
from ..core.regions import Regions, check_boxes
from ._jsonl import lines as _lines
from ._jsonl import numbers as _numbers

__all__ = ["RecAnnotation", "RecSample", "coco_image_name", "decode_segmentation", "read_reclip_jsonl"]

_COCO_SUFFIX = re.compile(r"^(?P<stem>.+_\d{6,})_\d+(?P<ext>\.[A-Za-z0-9]+)$")


@dataclass(frozen=True)
class RecAnnotation:
    """One annotation of an image: ``box`` is xyxy pixels (converted from COCO xywh)."""

    id: int | str
    box: tuple[float, float, float, float]
    category_id: Any = None
    segmentation: Any = None


@dataclass(frozen=True)
class RecSample:
    """One REC query: a sentence, the image it refers to, every annotation (candidates) and the gold ids."""

    sentence: str
    image_path: Path
    image_id: int | str
    file_name: str
    anns: tuple[RecAnnotation, ...]
    gold_ids: tuple[int | str, ...]
    extra: dict = field(default_factory=dict, compare=False)
    source: str = field(default="", compare=False)  # "<file>:<line>" it was read from

    def regions(self, image_size: tuple[int, int]) -> Regions:
        """The candidate boxes as :class:`Regions` of the image of size ``(W, H)``.

        Checks them against the image: a box wholly outside it is an error naming ``source`` and
        the box as COCO xywh, as in the file.
        """
        xywh = self.boxes.copy()
        xywh[:, 2:] -= xywh[:, :2]
        try:
            return Regions(xywh, image_size=image_size, box_format="xywh")
        except FalipError as e:
            raise FalipError(f"{self.source}: {e}" if self.source else str(e)) from None

    @property
    def gold_indices(self) -> tuple[int, ...]:
        """Indices into ``anns`` of the gold annotations."""
        gold = {str(g) for g in self.gold_ids}
        return tuple(i for i, a in enumerate(self.anns) if str(a.id) in gold)

    @property
    def boxes(self) -> np.ndarray:
        """Candidate boxes ``[len(anns), 4]`` xyxy pixels, float64 (the dtype of :class:`Regions`)."""
        return np.asarray([a.box for a in self.anns], dtype=np.float64).reshape(-1, 4)


def coco_image_name(file_name: str) -> str:
    """Drop the trailing ``_<n>`` of a ReCLIP/COCO file name: ``X_000000581857_16.jpg`` -> ``X_000000581857.jpg``.

    Only names whose stem ends in ``_<6 or more digits>_<digits>`` are changed; others pass through.
    """
    m = _COCO_SUFFIX.match(file_name)
    return m.group("stem") + m.group("ext") if m else file_name


def read_reclip_jsonl(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[RecSample]:
    """Read a ReCLIP-style REC jsonl into one :class:`RecSample` per sentence.

    ``image_root`` (default: the jsonl's directory) is where the image files are; ``image_path`` is
    ``image_root / coco_image_name(file_name)``. Raises :class:`FalipError` naming file and line for
    a missing or mistyped key, a bbox that is not 4 numbers or that :func:`check_boxes` rejects
    (NaN/inf, negative width or height, empty), or an ``ann_id`` not among ``anns``.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    out: list[RecSample] = []
    for lineno, obj in _lines(path):
        where = f"{path}:{lineno}"
        for key in ("file_name", "image_id", "anns", "ann_id", "sentences"):
            if key not in obj:
                raise FalipError(f"{where}: missing key {key!r}")
        file_name = obj["file_name"]
        if not isinstance(file_name, str) or not file_name:
            raise FalipError(f"{where}: file_name must be a non-empty string, got {file_name!r}")
        image_id = obj["image_id"]
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise FalipError(f"{where}: image_id must be an int or a str, got {image_id!r}")
        if not isinstance(obj["anns"], list) or not obj["anns"]:
            raise FalipError(f"{where}: anns must be a non-empty list")
        raw_boxes = []
        for k, a in enumerate(obj["anns"]):
            if not isinstance(a, dict) or "id" not in a or "bbox" not in a:
                raise FalipError(f"{where}: anns[{k}] must be an object with 'id' and 'bbox'")
            if isinstance(a["id"], bool) or not isinstance(a["id"], (int, str)):
                raise FalipError(f"{where}: anns[{k}].id must be an int or a str, got {a['id']!r}")
            raw_boxes.append(_numbers(a["bbox"], 4, where, f"anns[{k}].bbox"))
        names = [f"{where}: anns[{k}].bbox" for k in range(len(raw_boxes))]
        boxes = check_boxes(raw_boxes, box_format="xywh", names=names)
        anns = tuple(
            RecAnnotation(a["id"], tuple(float(v) for v in box), a.get("category_id"), a.get("segmentation"))
            for a, box in zip(obj["anns"], boxes)
        )
        raw_gold = obj["ann_id"]
        gold = tuple(raw_gold) if isinstance(raw_gold, list) else (raw_gold,)
        if not gold or any(isinstance(g, bool) or not isinstance(g, (int, str)) for g in gold):
            raise FalipError(f"{where}: ann_id must be an int, a str or a non-empty list of them, got {raw_gold!r}")
        ids = {str(a.id) for a in anns}
        missing = [g for g in gold if str(g) not in ids]
        if missing:
            raise FalipError(f"{where}: ann_id {missing!r} not among the ids of anns")
        sents = obj["sentences"]
        if not isinstance(sents, list) or not sents:
            raise FalipError(f"{where}: sentences must be a non-empty list")
        extra = {k: v for k, v in obj.items() if k not in ("file_name", "image_id", "anns", "ann_id", "sentences")}
        image_path = root / coco_image_name(file_name)
        for k, sent in enumerate(sents):
            raw = sent.get("raw") if isinstance(sent, dict) else None
            if not isinstance(raw, str):
                raise FalipError(f"{where}: sentences[{k}] must be an object with a string 'raw'")
            out.append(RecSample(raw, image_path, image_id, file_name, anns, gold, extra, where))
    return out


def _rle_string_counts(s: str) -> list[int]:
    """Decode COCO's compressed RLE string (6-bit chunks offset by 48, deltas from the count two back)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise FalipError("compressed RLE counts end in the middle of a number")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """COCO segmentation -> bool mask ``[height, width]``; :class:`FalipError` if malformed.

    Accepts a polygon list ``[[x1, y1, x2, y2, ...], ...]`` (pixel coordinates, rasterised with PIL),
    uncompressed RLE ``{"size": [h, w], "counts": [ints]}`` or compressed RLE (``counts`` a string).
    RLE runs are column-major and start with background.
    """
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise FalipError("RLE segmentation needs 'counts' and 'size'")
        h, w = (int(v) for v in seg["size"])
        if (h, w) != (height, width):
            raise FalipError(f"RLE size (h, w) = {(h, w)} differs from the image's {(height, width)}")
        counts = seg["counts"]
        if isinstance(counts, (bytes, str)):
            counts = _rle_string_counts(counts.decode() if isinstance(counts, bytes) else counts)
        counts = [int(c) for c in counts]
        if sum(counts) != h * w:
            raise FalipError(f"RLE counts sum to {sum(counts)}, expected {h * w}")
        flat = np.zeros(h * w, dtype=bool)
        pos, val = 0, False
        for c in counts:
            if val:
                flat[pos : pos + c] = True
            pos += c
            val = not val
        return flat.reshape((w, h)).T
    if isinstance(seg, list):
        from PIL import Image, ImageDraw

        img = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(img)
        for poly in seg:
            pts = [float(v) for v in poly]
            if len(pts) >= 6:
                draw.polygon(list(zip(pts[0::2], pts[1::2])), fill=1)
        return np.asarray(img, dtype=bool)
    raise FalipError(f"unsupported segmentation of type {type(seg).__name__}")
