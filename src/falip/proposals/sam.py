"""Proposals from segment-anything's automatic mask generator (``scripts/amg.py``), as it writes them.

amg.py (facebookresearch/segment-anything@00920ce ``scripts/amg.py``: ``write_masks_to_folder``,
``main``) writes, per input image, a folder ``<output>/<image stem>/`` holding ``0.png, 1.png, ...``
(one 0/255 mask each, the image's size) and ``metadata.csv`` (``id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,
point_input_y,predicted_iou,stability_score,crop_box_x0,...``); with ``--convert-to-rle``, one
``<output>/<image stem>.json`` list of records (``segmentation`` COCO RLE, ``area``, ``bbox`` xywh,
``predicted_iou``, ``point_coords``, ``stability_score``, ``crop_box``). A folder that itself holds
``metadata.csv`` (or a single ``.json``) is one image's masks. Each mask's box is its own pixels'
box (exact); its score is ``predicted_iou``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import FalipError
from ..data.classification import load_mask
from ..data.reclip import decode_segmentation
from .base import Proposals, mask_boxes

__all__ = ["SamProposals", "open_sam"]


class SamProposals:
    """segment-anything's output for one image or a folder of images (module docstring)."""

    name = "sam"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FalipError(f"{self.path}: no such segment-anything output (a folder, or a JSON of RLE records)")

    def _where(self, path: Path | None) -> Path | None:
        """The folder or JSON of this image's masks, or None when there is none."""
        if self.path.is_file() or (self.path / "metadata.csv").is_file():
            return self.path
        if path is None:
            raise FalipError(f"{self.path}: holds one folder per image; this image has no file name to find its own")
        for candidate in (self.path / Path(path).stem, self.path / f"{Path(path).stem}.json"):
            if (candidate / "metadata.csv").is_file() or candidate.is_file():
                return candidate
        return None

    def propose(self, image: Image.Image, path: Path | None = None) -> Proposals:
        w, h = image.size
        where = self._where(path)
        masks: list[np.ndarray] = []
        scores: list[float] = []
        if where is not None and where.is_file():
            try:
                records = json.loads(where.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise FalipError(f"{where}: not a JSON file ({e})") from None
            if not isinstance(records, list):
                raise FalipError(f"{where}: segment-anything's RLE output is a JSON list of records")
            for k, rec in enumerate(records, start=1):
                if not isinstance(rec, dict) or "segmentation" not in rec:
                    raise FalipError(f"{where}: record {k} has no segmentation")
                try:
                    masks.append(decode_segmentation(rec["segmentation"], h, w))
                except FalipError as e:
                    raise FalipError(f"{where}: record {k}: {e} (is it this image's output?)") from None
                scores.append(float(rec.get("predicted_iou", np.nan)))
        elif where is not None:
            meta = where / "metadata.csv"
            with open(meta, encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
            for line, row in enumerate(rows, start=2):
                if "id" not in row:
                    raise FalipError(f"{meta}:{line}: no id column (amg.py's header starts with id,area,bbox_x0,...)")
                png = where / f"{row['id']}.png"
                mask = load_mask(png)
                if mask.shape != (h, w):
                    raise FalipError(
                        f"{png}: the mask is {mask.shape[1]}x{mask.shape[0]} px, the image {w}x{h}: "
                        "masks must be of the image they were made for"
                    )
                masks.append(mask)
                try:
                    scores.append(float(row.get("predicted_iou") or "nan"))
                except ValueError:
                    raise FalipError(
                        f"{meta}:{line}: predicted_iou {row.get('predicted_iou')!r} is not a number"
                    ) from None
        empty = [k for k, m in enumerate(masks) if not m.any()]
        keep = [k for k in range(len(masks)) if k not in set(empty)]
        dropped = {"empty mask": len(empty)} if empty else {}
        masks = [masks[k] for k in keep]
        scores = [scores[k] for k in keep]
        arr = np.array(scores, dtype=np.float64)
        return Proposals(
            boxes=mask_boxes(np.stack(masks)) if masks else np.zeros((0, 4)),
            image_size=(w, h),
            masks=np.stack(masks) if masks else None,
            scores=None if not len(arr) or np.isnan(arr).all() else np.nan_to_num(arr, nan=-np.inf),
            source=str(where or self.path),
            dropped=dropped,
        )


def open_sam(argument: str, single: bool = False) -> SamProposals:
    """The ``sam`` source: ``sam:PATH`` or a folder (``single`` unused: one image's folder shows by its layout)."""
    if not argument:
        raise FalipError("the sam source needs a path: sam:FOLDER or sam:FILE.json")
    return SamProposals(argument)
