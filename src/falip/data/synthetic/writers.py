"""Writers of synthetic scenes into the real dataset formats (read back by :mod:`falip.data`).

:func:`write_reclip_rec` writes a ReCLIP-style REC jsonl plus PNG images; :func:`write_classification`
the generic classification JSONL (plus mask PNGs); :func:`write_coco_instances` and
:func:`write_coco_panoptic` COCO's instances JSON and panoptic JSON + PNGs; :func:`write_cub_style`,
:func:`write_waterbirds_style` and :func:`write_imagenet_s_style` folders that :class:`~falip.data.cub.CUB`,
:class:`~falip.data.waterbirds.Waterbirds` and :class:`~falip.data.imagenet_s.ImageNetS` read. Images
are PNG (exact pixels), where the real datasets have JPEG; the readers take either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .scenes import CLASSES, RecExample, Scene

__all__ = [
    "mask_to_rle",
    "write_classification",
    "write_coco_instances",
    "write_coco_panoptic",
    "write_cub_style",
    "write_imagenet_s_style",
    "write_reclip_rec",
    "write_waterbirds_style",
]


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


def _class_folder(k: int, label: str) -> str:
    """CUB's folder name for class k (from 0): ``"007.red_square"``."""
    return f"{k + 1:03d}.{label.replace(' ', '_')}"


def write_cub_style(
    scenes: Sequence[Scene],
    root: str | os.PathLike,
    target: int = 0,
    train: Sequence[bool] | None = None,
    classes: Sequence[str] = CLASSES,
) -> Path:
    """Write ``scenes`` as a CUB-200-2011 folder: object ``target`` of each scene is its labelled object.

    ``classes.txt`` lists ``classes`` (``001.red_circle``, ...; the reader names them ``red circle``),
    each image goes to ``images/<class folder>/<class>_<i>.png`` with its target's class, box
    (``bounding_boxes.txt``, float xywh with the exclusive corner, so ``x + w`` is the xyxy ``x1``) and
    ``is_training_image`` (``train[i]``, default 0: all test). Other objects are distractors. Returns
    ``root``.
    """
    root = Path(root)
    index = {c: k for k, c in enumerate(classes)}
    lines: dict[str, list[str]] = {
        n: [] for n in ("images", "image_class_labels", "bounding_boxes", "train_test_split")
    }
    for i, sc in enumerate(scenes, start=1):
        o = sc.objects[target]
        k = index[o.label]
        rel = f"{_class_folder(k, o.label)}/{o.label.replace(' ', '_')}_{i:04d}.png"
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sc.image).save(root / "images" / rel)
        x0, y0, x1, y1 = o.box
        lines["images"].append(f"{i} {rel}")
        lines["image_class_labels"].append(f"{i} {k + 1}")
        lines["bounding_boxes"].append(f"{i} {float(x0)} {float(y0)} {float(x1 - x0)} {float(y1 - y0)}")
        lines["train_test_split"].append(f"{i} {int(bool(train[i - 1])) if train is not None else 0}")
    (root / "classes.txt").write_text("".join(f"{k + 1} {_class_folder(k, c)}\n" for k, c in enumerate(classes)))
    for name, rows in lines.items():
        (root / f"{name}.txt").write_text("".join(r + "\n" for r in rows))
    return root


def write_waterbirds_style(
    scenes: Sequence[Scene],
    y: Sequence[int],
    place: Sequence[int],
    root: str | os.PathLike,
    cub_root: str | os.PathLike,
    split: Sequence[int] | None = None,
    target: int = 0,
) -> Path:
    """Write ``scenes`` as a Waterbirds folder (``metadata.csv`` + images) and the CUB tables it needs.

    ``y[i]`` (0 or 1) is scene i's class and ``place[i]`` (0 or 1) its background kind, both as the
    caller drew them; ``split[i]`` is 0 train / 1 val / 2 test (default 2). The images go to
    ``root/<folder>/<name>.png`` and, with the target object's box, to ``cub_root`` (``images/``,
    ``images.txt``, ``bounding_boxes.txt``: what Waterbirds takes from CUB), so
    ``Waterbirds(root, cub_root, classes=[name of y 0, name of y 1])`` reads them back. Returns ``root``.
    """
    root, cub_root = Path(root), Path(cub_root)
    rows = ["img_id,img_filename,y,split,place,place_filename"]
    images, boxes = [], []
    for i, sc in enumerate(scenes, start=1):
        rel = f"{int(y[i - 1]) + 1:03d}.y{int(y[i - 1])}/scene_{i:04d}.png"
        for folder in (root, cub_root / "images"):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(sc.image).save(folder / rel)
        x0, y0, x1, y1 = sc.objects[target].box
        images.append(f"{i} {rel}")
        boxes.append(f"{i} {float(x0)} {float(y0)} {float(x1 - x0)} {float(y1 - y0)}")
        s = 2 if split is None else int(split[i - 1])
        rows.append(f"{i},{rel},{int(y[i - 1])},{s},{int(place[i - 1])},/synthetic/place{int(place[i - 1])}.png")
    (cub_root / "images.txt").write_text("".join(r + "\n" for r in images))
    (cub_root / "bounding_boxes.txt").write_text("".join(r + "\n" for r in boxes))
    (root / "metadata.csv").write_text("".join(r + "\n" for r in rows))
    return root


def write_imagenet_s_style(
    scenes: Sequence[Scene], root: str | os.PathLike, target: int = 0, classes: Sequence[str] = CLASSES
) -> Path:
    """Write ``scenes`` as an ImageNet-S folder: ``validation/<class>/`` images, ``validation-segmentation/`` masks.

    Class folders are the ``classes`` with underscores (``red_square``), one for every class as the
    release has; class ids are their sorted ranks from 1. Each scene is filed under its ``target``
    object's class; its mask is an RGB PNG holding every object's class id as ``R + 256 * G`` (0
    background), so the reader's region is the target's pixels (and any same-class object's).
    Returns ``root``.
    """
    root = Path(root)
    folders = sorted(c.replace(" ", "_") for c in classes)
    ids = {f.replace("_", " "): k + 1 for k, f in enumerate(folders)}
    for f in folders:
        (root / "validation" / f).mkdir(parents=True, exist_ok=True)
        (root / "validation-segmentation" / f).mkdir(parents=True, exist_ok=True)
    for i, sc in enumerate(scenes):
        folder = sc.objects[target].label.replace(" ", "_")
        class_map = np.zeros(sc.image.shape[:2], dtype=np.int64)
        for o, m in zip(sc.objects, sc.masks):
            class_map[m] = ids[o.label]
        rgb = np.stack([class_map % 256, class_map // 256, np.zeros_like(class_map)], axis=-1).astype(np.uint8)
        Image.fromarray(sc.image).save(root / "validation" / folder / f"synthetic_val_{i:08d}.png")
        Image.fromarray(rgb).save(root / "validation-segmentation" / folder / f"synthetic_val_{i:08d}.png")
    return root


def _coco_categories(with_isthing: bool = False) -> list[dict]:
    """COCO categories for :data:`CLASSES`, with ids 1, 3, 5, ... (not contiguous, as COCO's are)."""
    cats = [{"id": 2 * k + 1, "name": name, "supercategory": name.split()[-1]} for k, name in enumerate(CLASSES)]
    if with_isthing:
        for c in cats:
            c["isthing"] = 1
    return cats


def write_coco_instances(
    scenes: Sequence[Scene], root: str | os.PathLike, name: str = "instances_synthetic", rle: str = "polygon"
) -> Path:
    """Write ``scenes`` as COCO instances ``<root>/annotations/<name>.json`` plus PNGs under ``<root>/<name>/``.

    One annotation per object: ``bbox`` COCO xywh (exclusive corner), ``area`` its mask's pixels,
    ``iscrowd`` 0, ``segmentation`` the mask as ``rle="compressed"`` (pycocotools' string counts),
    ``"uncompressed"`` (list counts) or ``"polygon"`` (the object's box outline as a 4-point
    polygon: its box exactly, not its shape).
    Category ids are 1, 3, 5, ... in :data:`CLASSES` order. Returns the JSON path.
    """
    from pycocotools import mask as mask_utils

    root = Path(root)
    images_dir = root / name
    images_dir.mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    cats = _coco_categories()
    images, anns = [], []
    for i, sc in enumerate(scenes):
        h, w = sc.image.shape[:2]
        file_name = f"{i + 1:012d}.png"
        Image.fromarray(sc.image).save(images_dir / file_name)
        images.append({"id": i + 1, "file_name": file_name, "width": int(w), "height": int(h)})
        for k, o in enumerate(sc.objects):
            x0, y0, x1, y1 = o.box
            m = sc.masks[k]
            if rle == "polygon":
                seg: object = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            elif rle == "uncompressed":
                seg = mask_to_rle(m)
            else:
                enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                seg = {"size": enc["size"], "counts": enc["counts"].decode("ascii")}
            anns.append({
                "id": len(anns) + 1, "image_id": i + 1, "category_id": cats[CLASSES.index(o.label)]["id"],
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(m.sum()), "iscrowd": 0, "segmentation": seg,
            })  # fmt: skip
    path = root / "annotations" / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}), encoding="utf-8")
    return path


def write_coco_panoptic(scenes: Sequence[Scene], root: str | os.PathLike, name: str = "panoptic_synthetic") -> Path:
    """Write ``scenes`` as COCO panoptic: ``<root>/annotations/<name>.json``, PNGs in ``<root>/annotations/<name>/``.

    Images go to ``<root>/<name>/``. Each object is a thing segment (``isthing`` 1) with id
    ``k + 1`` encoded as ``R + 256 G + 256^2 B`` in the PNG; a later object's pixels win where
    objects overlap, as they are drawn; the background is id 0 (unlabelled). ``bbox`` is the
    segment's own pixels' box (xywh). Returns the JSON path.
    """
    root = Path(root)
    images_dir, png_dir = root / name, root / "annotations" / name
    images_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    cats = _coco_categories(with_isthing=True)
    images, anns = [], []
    for i, sc in enumerate(scenes):
        h, w = sc.image.shape[:2]
        file_name = f"{i + 1:012d}.png"
        Image.fromarray(sc.image).save(images_dir / file_name)
        ids = np.zeros((h, w), dtype=np.int64)
        for k in range(len(sc.objects)):
            ids[sc.masks[k]] = k + 1
        segments = []
        for k, o in enumerate(sc.objects):
            ys, xs = np.nonzero(ids == k + 1)
            if not len(xs):
                continue  # wholly covered by later objects
            x0, y0 = int(xs.min()), int(ys.min())
            segments.append({
                "id": k + 1, "category_id": cats[CLASSES.index(o.label)]["id"], "iscrowd": 0,
                "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0], "area": int(len(xs)),
            })  # fmt: skip
        rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(png_dir / file_name)
        images.append({"id": i + 1, "file_name": file_name, "width": int(w), "height": int(h)})
        anns.append({"image_id": i + 1, "file_name": file_name, "segments_info": segments})
    path = root / "annotations" / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}), encoding="utf-8")
    return path
