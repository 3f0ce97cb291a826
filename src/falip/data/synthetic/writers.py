"""Writers of synthetic scenes into the real dataset formats (read back by :mod:`falip.data`).

:func:`write_reclip_rec` writes a ReCLIP-style REC jsonl plus PNG images; :func:`write_classification`
the generic classification JSONL (plus mask PNGs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .scenes import CLASSES, RecExample, Scene

__all__ = ["mask_to_rle", "write_classification", "write_reclip_rec"]


def mask_to_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a bool mask ``[H, W]``: column-major runs starting with zeros."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def write_reclip_rec(examples: Sequence[RecExample], root: str | os.PathLike, split: str = "synthetic_val") -> Path:
    """Write ``examples`` as ``<root>/<split>.jsonl`` (ReCLIP format) plus PNGs under ``<root>/images``.

    One line per query. ``file_name`` follows the COCO convention ``<image stem>_<ann_id>.png`` (the
    readers drop the trailing ``_<n>``); ``bbox`` is COCO xywh with the exclusive box corner, so
    ``x + w`` equals the xyxy ``x1``; ``category_id`` indexes :data:`CLASSES`; ``segmentation`` is
    uncompressed RLE; ``relational`` and ``kind`` are extra keys. Returns the jsonl path.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    path = root / f"{split}.jsonl"
    ann_id = 0
    with open(path, "w", encoding="utf-8") as fh:
        for i, ex in enumerate(examples):
            stem = f"synth_{split}_{i:012d}"
            Image.fromarray(ex.scene.image).save(root / "images" / f"{stem}.png")
            anns = []
            for k, o in enumerate(ex.scene.objects):
                x0, y0, x1, y1 = o.box
                anns.append(
                    {
                        "id": ann_id + k,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "category_id": CLASSES.index(o.label),
                        "segmentation": mask_to_rle(ex.scene.masks[k]),
                        "area": int(ex.scene.masks[k].sum()),
                    }
                )
            for q in ex.queries:
                gold = ann_id + q.target
                rec = {
                    "file_name": f"{stem}_{gold}.png",
                    "image_id": i,
                    "anns": anns,
                    "ann_id": gold,
                    "sentences": [{"raw": q.expression, "sent": q.expression}],
                    "relational": q.relational,
                    "kind": q.kind,
                }
                fh.write(json.dumps(rec) + "\n")
            ann_id += len(ex.scene.objects)
    return path


def write_classification(
    scenes: Sequence[Scene], root: str | os.PathLike, name: str = "synthetic_cls", with_masks: bool = True
) -> Path:
    """Write one item per object as generic classification JSONL ``<root>/<name>.jsonl``.

    Each line: ``{"image": "images/<name>_<i>.png", "box": [x0, y0, x1, y1] (pixels, exclusive
    corner), "mask": "masks/<name>_<i>_<k>.png" (0/255 PNG, if with_masks), "label": "red square"}``.
    Paths are relative to ``root``. Returns the jsonl path.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    if with_masks:
        (root / "masks").mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i, sc in enumerate(scenes):
            img_rel = f"images/{name}_{i:06d}.png"
            Image.fromarray(sc.image).save(root / img_rel)
            for k, o in enumerate(sc.objects):
                item: dict = {"image": img_rel, "box": list(o.box), "label": o.label}
                if with_masks:
                    m_rel = f"masks/{name}_{i:06d}_{k}.png"
                    Image.fromarray(sc.masks[k].astype(np.uint8) * 255).save(root / m_rel)
                    item["mask"] = m_rel
                fh.write(json.dumps(item) + "\n")
    return path
