"""Proposals from a file: a COCO results JSON, or a detector file as falip reads them for REC.

A COCO results file is a list of ``{"image_id", "bbox": [x, y, w, h], "score"?, "segmentation"?
(RLE)}`` (``category_id`` is ignored: proposals are class-agnostic). A detector file is
``{image_id: [[x, y, w, h(, score)], ...]}`` or ``[{"image_id", "box"}, ...]``
(:func:`falip.data.reclip.read_detections`). Entries are matched to an image by ``image_id``
against the number its file name carries (:func:`image_id_of`), or all taken for the one image a
command was given (``single=True``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import FalipError
from ..core.regions import check_boxes
from ..data.reclip import decode_segmentation, image_key, read_detections
from .base import Proposals

__all__ = ["FileProposals", "image_id_of", "open_file"]

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def image_id_of(path: str | Path) -> str:
    """The image id a file name carries, as :func:`~falip.data.reclip.image_key` compares ids.

    COCO's names: ``000000397133.jpg`` and ``COCO_val2014_000000397133.jpg`` are ``"397133"``; a
    stem that does not end in digits is its own id (``"dog"``).
    """
    stem = Path(path).stem
    m = _TRAILING_NUMBER.search(stem)
    return image_key(m.group(1) if m else stem)


class FileProposals:
    """A COCO results or detector file, read once (module docstring)."""

    name = "file"

    def __init__(self, path: str | Path, single: bool = False) -> None:
        self.path = Path(path)
        self.single = single
        try:
            data = json.loads(self.path.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise FalipError(f"{self.path}: no such proposals file") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FalipError(f"{self.path}: not a JSON file ({e})") from None
        self.entries: dict[str, list[tuple[str, dict]]] = {}
        if isinstance(data, list) and all(isinstance(d, dict) and "bbox" in d for d in data):
            for k, d in enumerate(data, start=1):
                if "image_id" not in d:
                    raise FalipError(f"{self.path}: entry {k} has no image_id")
                self.entries.setdefault(image_key(d["image_id"]), []).append((f"{self.path.name}: entry {k}", d))
        else:  # ReCLIP's detector file shapes (its own messages name the file and the entry)
            for key, boxes in read_detections(self.path).items():
                x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
                xywh = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
                rows = [(f"{self.path.name}: image {key} box {j}", {"bbox": b.tolist()}) for j, b in enumerate(xywh)]
                self.entries[key] = rows

    def propose(self, image: Image.Image, path: Path | None = None) -> Proposals:
        """This image's entries: by the id its file name carries, or all of them when ``single``."""
        if self.single:
            rows = [row for rows in self.entries.values() for row in rows]
        else:
            if path is None:
                raise FalipError(f"{self.path}: proposals are matched by image_id, and this image has no file name")
            rows = self.entries.get(image_id_of(path), [])
        w, h = image.size
        boxes, masks, scores, dropped = [], [], [], {}
        for where, d in rows:
            try:
                box = check_boxes([d["bbox"]], image_size=(w, h), box_format="xywh", names=[f"{where} bbox"])[0]
                seg = d.get("segmentation")
                mask = None if seg is None else decode_segmentation(seg, h, w)
                score = d.get("score")
                if score is not None and not isinstance(score, (int, float)):
                    raise FalipError(f"{where}: score must be a number, got {score!r}")
            except FalipError:
                dropped["unreadable or outside the image"] = dropped.get("unreadable or outside the image", 0) + 1
                continue
            boxes.append(box)
            masks.append(mask)
            scores.append(np.nan if score is None else float(score))
        have_masks = bool(masks) and all(m is not None for m in masks)
        return Proposals(
            boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
            image_size=(w, h),
            masks=np.stack(masks) if have_masks else None,  # type: ignore[arg-type]
            scores=None if not scores or all(np.isnan(scores)) else np.nan_to_num(np.array(scores), nan=-np.inf),
            source=str(self.path),
            dropped=dropped,
        )


def open_file(argument: str, single: bool = False) -> FileProposals:
    """The ``file`` source: ``file:PATH`` or a JSON path."""
    if not argument:
        raise FalipError("the file source needs a path: file:PATH")
    return FileProposals(argument, single=single)
