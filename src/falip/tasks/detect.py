"""Detection by region recognition: every region of a COCO image named among the vocabulary, scored by COCO AP.

RegionCLIP's "zero-shot inference with ground-truth boxes" protocol, generalised: the regions are
the annotation file's own boxes (or masks), or class-agnostic proposals from a COCO results file;
each region's scores over the vocabulary (the file's category names through the template) give a
softmax, and its ``detections_per_region`` best classes become detections with that probability as
their score. pycocotools' ``COCOeval`` then gives AP (IoU .50:.95), AP50, AP75 and AP for small,
medium and large objects, for boxes and, when every region has a mask, for masks (``segm``).

Files the run writes beside the harness's: ``detections.json`` (COCO results format, the file
``COCOeval`` read). One record per region: ``id``, ``image_id``, ``box`` (xywh pixels),
``classes`` (COCO category ids, best first), ``scores`` (their probabilities), and with the
annotation file's regions also ``label`` (index of the true class), ``pred``, ``correct``,
``correct<k>``. An image's detections are at most COCO's 100 per image: ``COCOeval`` keeps the
best-scored ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.errors import FalipError
from ..core.regions import Regions
from ..data.coco import mask_to_coco_rle
from ..prompts.registry import parse_method
from ..runner import Skip, Unit
from ..scoring import RegionScorer
from .metrics import format_table
from .settings import DetectSettings

__all__ = ["AP_KEYS", "DetectSettings", "DetectTask", "coco_ap", "make_task"]

log = logging.getLogger(__name__)

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
"""The first six numbers of ``COCOeval.stats``, in its order (percent in summaries)."""


def coco_ap(ground_truth: dict, detections: list[dict], kind: str, image_ids: Sequence[Any]) -> dict[str, float]:
    """pycocotools' AP of ``detections`` on ``image_ids`` of ``ground_truth`` (a COCO dict): ``AP_KEYS`` -> percent.

    ``kind``: ``"bbox"`` or ``"segm"``. A value COCOeval cannot compute (no object of that size)
    is None. COCOeval's own printout is swallowed.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        if not detections:
            return dict.fromkeys(AP_KEYS, 0.0)
        dt = gt.loadRes([dict(d) for d in detections])  # loadRes adds keys in place
        ev = COCOeval(gt, dt, kind)
        ev.params.imgIds = sorted(set(image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (None if v < 0 else 100.0 * float(v)) for k, v in zip(AP_KEYS, ev.stats[:6])}


class DetectTask:
    """COCO detection by region recognition for :func:`falip.runner.run` (module docstring).

    ``dataset``: a :class:`falip.data.coco.CocoInstances`; one unit per image.
    """

    name = "detect"

    def __init__(
        self, scorer: RegionScorer, settings: DetectSettings, dataset: Any, model_info: dict | None = None
    ) -> None:
        if not hasattr(dataset, "ground_truth"):
            raise FalipError(
                f"{settings.source}: detection needs a COCO instances file (the annotations are its ground truth)"
            )
        if settings.detections_per_region < 1:
            raise FalipError(f"detections_per_region must be >= 1, got {settings.detections_per_region}")
        parse_method(settings.method)
        scorer.templates_of(list(settings.templates))
        self.scorer, self.settings, self.dataset = scorer, settings, dataset
        self.classes = list(dataset.classes)
        self.category_ids = list(dataset.category_ids)
        self.model_info = dict(model_info or {})
        self._proposals: dict[Any, list[Any]] | None = None
        self._proposal_skips: list[Any] = []
        self._source: Any = None
        if settings.proposals is not None:
            if _is_coco_results(settings.proposals):  # matched by the annotation file's own image ids
                from ..data.coco import read_coco_results

                self._proposals, self._proposal_skips = read_coco_results(settings.proposals, dataset.image_sizes())
            else:  # any proposal source (auto, a segment-anything folder, hf:...), matched by file name
                from ..proposals import open_proposals

                self._source = open_proposals(settings.proposals)

    def config(self) -> dict:
        from .settings import run_config

        return run_config("detect", self.settings, vocabulary=self.classes, **self.model_info)

    def units(self) -> Iterator[Unit | Skip]:
        from ..data.records import Skipped

        if self._source is not None:
            for image_id in self.dataset.image_sizes():
                payload = {"image_id": image_id, "image": str(self.dataset.image_path(image_id)), "source": True}
                yield Unit(f"image:{image_id}", payload, payload["image"])
            return
        if self._proposals is None:
            groups: dict[Any, list[Any]] = {}
            for item in self.dataset:
                if isinstance(item, Skipped):
                    yield Skip(item.id, item.source, item.reason)
                    continue
                groups.setdefault(item.image_id, []).append(item)
            for image_id, items in groups.items():
                payload = {"image_id": image_id, "image": str(items[0].image_path), "items": items}
                yield Unit(f"image:{image_id}", payload, items[0].source, items=len(items))
            return
        for s in self._proposal_skips:
            yield Skip(s.id, s.source, s.reason)
        for image_id in self.dataset.image_sizes():
            props = self._proposals.get(image_id)
            if not props:
                yield Skip(f"image:{image_id}", f"{Path(self.settings.proposals).name}", "no proposals for this image")
                continue
            payload = {"image_id": image_id, "image": str(self.dataset.image_path(image_id)), "proposals": props}
            yield Unit(f"image:{image_id}", payload, props[0].source, items=len(props))

    def load(self, unit: Unit) -> tuple[dict, Image.Image, Regions | None, list[dict], list[Skip]]:
        """The image, its regions (merged), one entry per region (id, box, mask RLE) and a Skip per bad one."""
        from ..data.images import load_image

        p = unit.payload
        image = load_image(p["image"])
        geometry = getattr(getattr(self.scorer, "preprocess", None), "geometry", None)
        entries, boxes, masks, skips = [], [], [], []
        if p.get("source"):
            from ..proposals.base import visible_proposals

            props = visible_proposals(self._source.propose(image, Path(p["image"])), geometry)
            if len(props) == 0:
                raise FalipError(f"no proposals for this image from {self.settings.proposals}")
            for k in range(len(props)):
                x0, y0, x1, y1 = (float(v) for v in props.boxes[k])
                entry: dict[str, Any] = {"id": f"{p['image_id']}/{k + 1}", "box": [x0, y0, x1 - x0, y1 - y0]}
                if props.masks is not None:
                    entry["segmentation"] = mask_to_coco_rle(props.masks[k])
                entries.append(entry)
            return p, image, props.regions(), entries, skips
        sources = p.get("items") or p["proposals"]
        for k, src in enumerate(sources):
            is_gt = "items" in p
            item_id = src.id if is_gt else f"{p['image_id']}/{k + 1}"
            try:
                if is_gt:
                    region = src.regions(image.size)
                else:
                    mask = None
                    if src.segmentation is not None:
                        from ..data.reclip import decode_segmentation

                        mask = decode_segmentation(src.segmentation, image.size[1], image.size[0])[None]
                    region = Regions([src.box], mask, image_size=image.size)
                if geometry is not None:
                    region.to_input(geometry)  # a region outside the centre crop is a skip
            except (FalipError, OSError) as err:
                reason = str(err) if isinstance(err, FalipError) else f"{type(err).__name__}: {err}"
                skips.append(Skip(item_id, src.source, reason))
                continue
            x0, y0, x1, y1 = (float(v) for v in region.boxes[0])
            entry = {"id": item_id, "box": [x0, y0, x1 - x0, y1 - y0]}
            if is_gt:
                entry["label"] = src.label_index
            if region.masks is not None:
                entry["segmentation"] = mask_to_coco_rle(region.masks[0])
                masks.append(region.masks[0])
            boxes.append(region.boxes[0])
            entries.append(entry)
        if not entries:
            return p, image, None, entries, skips
        merged = Regions(np.stack(boxes), np.stack(masks) if len(masks) == len(boxes) else None, image_size=image.size)
        return p, image, merged, entries, skips

    def run(self, loaded: list[tuple[dict, Image.Image, Regions | None, list[dict], list[Skip]]]) -> list[list[Any]]:
        s = self.settings
        todo = [(u, image, regions) for u, (_, image, regions, _, _) in enumerate(loaded) if regions is not None]
        scores: dict[int, torch.Tensor] = {}
        if todo:
            out = self.scorer.score_many(
                [t[1] for t in todo], [t[2] for t in todo], self.classes, s.method, template=list(s.templates)
            )
            scores = {t[0]: sc for t, sc in zip(todo, out)}
        k = min(s.detections_per_region, len(self.classes))
        results: list[list[Any]] = []
        for u, (payload, _, _, entries, skips) in enumerate(loaded):
            records: list[Any] = list(skips)
            if u in scores:
                logits = scores[u].double().numpy()
                prob = np.exp(logits - logits.max(axis=1, keepdims=True))
                prob /= prob.sum(axis=1, keepdims=True)
                for entry, row in zip(entries, prob):
                    order = np.lexsort((np.arange(row.shape[0]), -row))[:k]  # ties: the lower class index
                    rec = {"id": entry["id"], "image_id": payload["image_id"], "box": entry["box"]}
                    rec["classes"] = [self.category_ids[int(i)] for i in order]
                    rec["scores"] = [float(row[i]) for i in order]
                    if "segmentation" in entry:
                        rec["segmentation"] = entry["segmentation"]
                    if "label" in entry:
                        rec["label"] = entry["label"]
                        rec["pred"] = int(order[0])
                        rec["correct"] = bool(order[0] == entry["label"])
                        rec[f"correct{k}"] = bool(entry["label"] in order)
                    records.append(rec)
            results.append(records)
        return results

    def detections(self, records: list[dict]) -> list[dict]:
        """The records as a COCO results list (``detections_per_region`` entries per region), in record order."""
        out = []
        for r in records:
            for cid, score in zip(r["classes"], r["scores"]):
                d = {"image_id": r["image_id"], "category_id": cid, "bbox": r["box"], "score": score}
                if "segmentation" in r:
                    d["segmentation"] = r["segmentation"]
                out.append(d)
        return out

    def summarize(self, records: list[dict], skipped: list[dict]) -> dict:
        dets = self.detections(records)
        image_ids = sorted({r["image_id"] for r in records}, key=str)
        gt = self.dataset.ground_truth()
        summary: dict[str, Any] = {"n": len(records), "images": len(image_ids)}
        summary.update(coco_ap(gt, dets, "bbox", image_ids) if records else dict.fromkeys(AP_KEYS))
        if records and all("segmentation" in r for r in records):
            summary["segm"] = coco_ap(gt, dets, "segm", image_ids)
        labelled = [r for r in records if "label" in r]
        if labelled:
            k = min(self.settings.detections_per_region, len(self.classes))
            summary["accuracy"] = 100.0 * sum(r["correct"] for r in labelled) / len(labelled)
            summary[f"correct{k}_accuracy"] = 100.0 * sum(r[f"correct{k}"] for r in labelled) / len(labelled)
            per_class: dict[int, list[bool]] = {}
            for r in labelled:
                per_class.setdefault(r["label"], []).append(r["correct"])
            summary["mean_per_class_accuracy"] = 100.0 * float(np.mean([np.mean(v) for v in per_class.values()]))
        summary["vocabulary"] = self.classes
        summary["templates"] = list(self.settings.templates)
        summary["region"] = self.settings.region if self.settings.proposals is None else "proposals"
        return summary

    def write_outputs(self, out_dir: Path, records: list[dict], summary: dict) -> None:
        """``detections.json``: what ``COCOeval`` was given (COCO results format)."""
        (Path(out_dir) / "detections.json").write_text(json.dumps(self.detections(records)) + "\n", encoding="utf-8")

    def table(self, summary: dict) -> str:
        rows = [["bbox", *(_cell(summary.get(k)) for k in AP_KEYS)]]
        if "segm" in summary:
            rows.append(["segm", *(_cell(summary["segm"].get(k)) for k in AP_KEYS)])
        text = format_table(["", *AP_KEYS], rows)
        head = f"COCO detection by region recognition ({self.settings.method}, {summary.get('region')})"
        lines = [head, text, f"{summary['n']} regions in {summary.get('images', 0)} images"]
        if summary.get("accuracy") is not None:
            lines[-1] += (
                f"; region top-1 {summary['accuracy']:.1f}%, mean per class {summary['mean_per_class_accuracy']:.1f}%"
            )
        if summary.get("skipped"):
            lines[-1] += f"; {summary['skipped']} skipped (skipped.jsonl)"
        return "\n".join(lines)


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _is_coco_results(spec: str) -> bool:
    """Whether ``spec`` is a COCO results file (a JSON list of entries with image_id and bbox)."""
    path = Path(spec)
    if not (path.is_file() and path.suffix.lower() == ".json"):
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return True  # read_coco_results names the file and what is wrong
    return isinstance(data, list) and all(isinstance(d, dict) and "image_id" in d and "bbox" in d for d in data)


def make_task(scorer: RegionScorer, model_info: dict, method: str, settings: dict[str, Any]) -> DetectTask:
    """The registry's detection task (:mod:`falip.tasks`); ``settings`` from :func:`~falip.tasks.task_settings`."""
    from ..data.registry import open_dataset as open_registered
    from . import build_settings

    dataset, _, options = open_registered(settings["dataset"], str(settings["root"]), "regions", **settings)
    images, region = str(options.get("images", "")), str(options.get("region", "box"))
    config = build_settings(DetectSettings, settings, method=method, images=images, region=region)
    return DetectTask(scorer, config, dataset, model_info)
