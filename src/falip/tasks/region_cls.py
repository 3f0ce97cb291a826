"""Region-guided classification: name the object in each box among a list of classes."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.errors import FalipError
from ..core.regions import Regions
from ..defaults import CLS_TEMPLATE
from ..prompts.registry import parse_method
from ..runner import Skip, Unit
from ..scoring import RegionScorer
from .metrics import GROUP_MEAN, MEAN_PER_CLASS, WORST_GROUP, Summary, accuracy_summary, summary_table
from .settings import ClassifySettings

__all__ = [
    "CLS_TEMPLATE",
    "ClassifySettings",
    "ClassifyTask",
    "classify_regions",
    "evaluate_classification",
    "open_dataset",
]

log = logging.getLogger(__name__)


def classify_regions(
    scorer: RegionScorer,
    images: Sequence[Image.Image],
    boxes: Sequence[np.ndarray],
    classes: Sequence[str],
    method: str = "falip",
    template: str = CLS_TEMPLATE,
    images_per_call: int = 64,
) -> list[np.ndarray]:
    """Predicted class index per box: one ``[K_i]`` array per image (boxes xyxy in image px)."""
    preds: list[np.ndarray] = []
    for lo in range(0, len(images), images_per_call):
        out = scorer.score_many(
            list(images[lo : lo + images_per_call]),
            list(boxes[lo : lo + images_per_call]),
            list(classes),
            method=method,
            template=template,
        )
        preds.extend(s.argmax(dim=1).numpy() if s.shape[0] else np.zeros(0, dtype=np.int64) for s in out)
    return preds


# ----------------------------------------------------------------------------- the harness task
class ClassifyTask:
    """Region classification for :func:`falip.runner.run`.

    ``items`` is a re-iterable dataset (e.g. :class:`falip.data.cub.CUB`) of items (``id``,
    ``image_path``, ``source``, ``label`` name and/or ``label_index`` into ``classes``, optional
    ``group``, ``regions(image_size)``) or ``Skipped`` records. A unit is one
    image with all its items (e.g. every dog of a Stanford Dogs picture), scored in one pass. One
    record per item: ``id``, ``label``, ``pred``, ``topk``, ``correct``, ``correct<k>``, ``group``.
    """

    name = "classify"

    def __init__(
        self,
        scorer: RegionScorer,
        settings: ClassifySettings,
        items: Iterable[Any],
        classes: Sequence[str],
        model_info: dict | None = None,
    ) -> None:
        if not classes:
            raise FalipError("the class list is empty")
        if len(classes) == 1:
            log.warning(
                "the dataset has one class (%r): every region is given it, so accuracy is 100%% whatever the "
                "method; classification needs two classes or more",
                str(classes[0]),
            )
        if settings.top_k < 1:
            raise FalipError(f"top_k must be >= 1, got {settings.top_k}")
        parse_method(settings.method)
        scorer.templates_of(list(settings.templates))
        self.scorer = scorer
        self.settings = settings
        self.items = items
        self.classes = [str(c) for c in classes]
        self.model_info = dict(model_info or {})

    def config(self) -> dict:
        from .settings import run_config

        return run_config("classify", self.settings, classes=len(self.classes), **self.model_info)

    def units(self) -> Iterator[Unit | Skip]:
        from ..data.records import Skipped

        groups: dict[str, list[tuple[Any, int]]] = {}
        index = {name: i for i, name in enumerate(self.classes)}
        for item in self.items:
            if isinstance(item, Skipped):
                yield Skip(item.id, item.source, item.reason)
                continue
            label = item.label_index if getattr(item, "label_index", None) is not None else index.get(item.label)
            if label is None or not 0 <= label < len(self.classes):
                yield Skip(item.id, item.source, f"label {item.label!r} is not one of the {len(self.classes)} classes")
                continue
            groups.setdefault(str(item.image_path), []).append((item, int(label)))
        prefix = f"{self.settings.dataset}:"
        for image, items in groups.items():
            first = items[0][0]
            uid = first.id if str(first.id).startswith(prefix) else prefix + str(first.id)  # no "cub:cub:"
            yield Unit(uid, {"image": image, "items": items}, first.source, items=len(items))

    def load(self, unit: Unit) -> tuple[list[Any], Image.Image, list[Regions], list[Skip]]:
        """The unit's image, its items' regions (merged) and a Skip per item whose region is bad.

        A region the model cannot see (wholly outside the image, or outside the centre crop of
        resize mode ``crop``) skips that item only; the image's other items are scored.
        """
        from ..data.images import load_image

        image = load_image(unit.payload["image"])
        geometry = getattr(getattr(self.scorer, "preprocess", None), "geometry", None)
        items, regions, skips = [], [], []
        for item, label in unit.payload["items"]:
            try:
                region = item.regions(image.size)
                if geometry is not None:
                    region.to_input(geometry)  # raises for a region outside the centre crop
            except (FalipError, OSError) as err:
                reason = str(err) if isinstance(err, FalipError) else f"{type(err).__name__}: {err}"
                skips.append(Skip(item.id, item.source, reason))
                continue
            items.append((item, label))
            regions.append(region)
        return items, image, _merge(regions), skips

    def run(self, loaded: list[tuple[list[Any], Image.Image, list[Regions], list[Skip]]]) -> list[list[Any]]:
        s = self.settings
        images, regions, owners = [], [], []
        for u, (_, image, parts, _) in enumerate(loaded):
            for part in parts:
                images.append(image)
                regions.append(part)
                owners.append(u)
        scores = self.scorer.score_many(images, regions, self.classes, s.method, template=list(s.templates))
        per_unit: list[list[torch.Tensor]] = [[] for _ in loaded]
        for u, sc in zip(owners, scores):
            per_unit[u].append(sc)
        out: list[list[Any]] = []
        k = min(s.top_k, len(self.classes))
        for (items, _, _, skips), parts in zip(loaded, per_unit):
            records: list[Any] = list(skips)
            if not items:
                out.append(records)
                continue
            sc = torch.cat(parts)  # [items, classes]
            for (item, label), row in zip(items, sc):
                top = _top_k(row, k)
                records.append(
                    {
                        "id": item.id,
                        "label": label,
                        "label_name": self.classes[label],
                        "pred": top[0],
                        "pred_name": self.classes[top[0]],
                        "topk": top,
                        "correct": top[0] == label,
                        f"correct{k}": label in top,
                        "group": getattr(item, "group", None),
                    }
                )
            out.append(records)
        return out

    def summarize(self, records: list[dict], skipped: list[dict]) -> Summary:
        k = min(self.settings.top_k, len(self.classes))
        grouped = any(r.get("group") is not None for r in records)
        summary = accuracy_summary(
            records, skipped, by=("group",) if grouped else (), metrics=("correct", f"correct{k}")
        )
        groups = summary.groups.get("group")
        if grouped and groups:
            accs = [row["accuracy"] for row in groups.values()]
            summary.add(GROUP_MEAN, sum(accs) / len(accs))
            worst = min(groups, key=lambda g: groups[g]["accuracy"])
            summary.add(WORST_GROUP, groups[worst]["accuracy"])
            summary.extra["worst_group"] = worst
        per_class: dict[int, list[bool]] = {}
        for r in records:
            per_class.setdefault(int(r["label"]), []).append(bool(r["correct"]))
        if per_class:  # the mean over the classes present of each class's top-1 accuracy
            summary.add(MEAN_PER_CLASS, 100.0 * float(np.mean([np.mean(v) for v in per_class.values()])))
        return summary

    def table(self, summary: Summary | dict) -> str:
        s = summary if isinstance(summary, Summary) else Summary.from_dict(summary)
        text = summary_table(s, "group", f"region classification ({self.settings.dataset}, {self.settings.method})")
        if s.value(MEAN_PER_CLASS) is not None:
            text += f"\nmean per-class accuracy {s.value(MEAN_PER_CLASS):.1f}% ({len(self.classes)} classes)"
        if "worst_group" in s.extra:
            text += (
                f"\nmean over groups {s.value(GROUP_MEAN):.1f}%, worst group "
                f"{s.extra['worst_group']} {s.value(WORST_GROUP):.1f}%"
            )
        return text


def _top_k(row: torch.Tensor, k: int) -> list[int]:
    """Indices of the k best classes, best first; ties go to the lower index (stable, exact)."""
    order = np.lexsort((np.arange(row.shape[0]), -row.numpy().astype(np.float64)))
    return [int(i) for i in order[:k]]


def _merge(regions: list[Regions]) -> list[Regions]:
    """One image's single-region Regions, merged into as few as possible (all boxes, or all masks)."""
    if len(regions) > 1 and all(r.masks is None for r in regions):
        return [Regions(np.concatenate([r.boxes for r in regions]), image_size=regions[0].image_size)]
    if len(regions) > 1 and all(r.masks is not None for r in regions):
        boxes = np.concatenate([r.boxes for r in regions]) if all(r.has_boxes for r in regions) else None
        masks = np.concatenate([r.masks for r in regions])
        return [Regions(boxes, masks, image_size=regions[0].image_size)]
    return regions


def open_dataset(
    name: str,
    root: str,
    split: str = "test",
    cub_root: str | None = None,
    region: str = "mask",
    classnames: str | None = None,
    objects: str = "all",
) -> tuple[Iterable[Any], list[str], dict]:
    """A classification dataset by name: ``(items, classes, options)`` (:func:`falip.data.registry.open_dataset`)."""
    from ..data.registry import open_dataset as open_registered

    return open_registered(
        name, root, "regions", split=split, cub_root=cub_root, region=region, classnames=classnames, objects=objects
    )


def make_task(scorer: RegionScorer, model_info: dict, method: str, settings: dict[str, Any]) -> ClassifyTask:
    """The registry's classification task (:mod:`falip.tasks`); ``settings`` from :func:`~falip.tasks.task_settings`."""
    from ..data.registry import open_dataset as open_registered
    from . import build_settings

    items, classes, options = open_registered(settings["dataset"], str(settings["root"]), "regions", **settings)
    config = build_settings(ClassifySettings, settings, method=method, options=tuple(sorted(options.items())))
    return ClassifyTask(scorer, config, items, classes, model_info)


def evaluate_classification(
    scorer: RegionScorer,
    dataset: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    split: str = "test",
    method: str = "falip",
    templates: str | Sequence[str] = CLS_TEMPLATE,
    top_k: int = 5,
    cub_root: str | Path | None = None,
    region: str = "mask",
    classnames: str | Path | None = None,
    model_info: dict | None = None,
    **run_options: Any,
) -> tuple[dict, list[dict]]:
    """Deprecated: ``falip.tasks.evaluate("classify", scorer, out_dir, dataset=..., root=..., ...)`` (warns
    once; same run). ``split``, ``cub_root``, ``region``, ``classnames`` go to the datasets that take them."""
    from ..core.deprecation import warn_renamed
    from ..data.registry import get_dataset
    from . import evaluate

    warn_renamed(
        "falip.tasks.region_cls.evaluate_classification(...)",
        'falip.tasks.evaluate("classify", scorer, out_dir, dataset=..., root=..., ...)',
    )
    taken = {s.name for s in get_dataset(dataset, "regions").settings}
    own = {"split": split, "cub_root": cub_root, "region": region, "classnames": classnames}
    return evaluate(
        "classify", scorer, out_dir, method=method, model_info=model_info, run_options=run_options, dataset=dataset,
        root=root, template=templates, top_k=top_k, **{k: v for k, v in own.items() if k in taken},
    )  # fmt: skip


# ------------------------------------------------------------- samples for ``falip heads``
def classification_samples(dataset: str, root: str | os.PathLike, **settings: Any) -> Iterator[Any]:
    """The images of a classification dataset with their labelled regions: ``(image_path, [maker, ...], sources)``.

    Read through :func:`falip.data.registry.open_dataset` (any ``regions`` dataset; ``settings``: its
    reader's, e.g. ``split``, ``cub_root``, ``region``; others are ignored); each item's region is its
    box or mask as the task uses it. Items are grouped by image in first-seen order; unreadable
    records come as ``Skipped``.
    """
    from ..data.records import Skipped
    from ..data.registry import open_dataset

    items, _, _ = open_dataset(dataset, str(root), "regions", **settings)
    groups: dict[str, tuple[Path, list[Callable[[tuple[int, int]], Regions]], list[str]]] = {}
    for item in items:
        if isinstance(item, Skipped):
            yield item
            continue
        group = groups.setdefault(str(item.image_path), (Path(item.image_path), [], []))
        group[1].append(item.regions)
        group[2].append(item.source)
    yield from groups.values()
