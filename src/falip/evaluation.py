"""Small evaluation helpers shared by ``falip demo`` and the benchmarks: REC and region classification
on top of :class:`falip.scoring.RegionScorer`, box IoU and Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from .scoring import RegionScorer

__all__ = [
    "REC_TEMPLATE",
    "CLS_TEMPLATE",
    "RecItem",
    "box_iou",
    "wilson_interval",
    "negative_captions",
    "rec_predict",
    "rec_correct",
    "classify_regions",
]

REC_TEMPLATE = "a photo of {}"
"""FALIP's REC prompt (FALIP.md section 3); expressions are lowercased first."""
CLS_TEMPLATE = "a photo of a {}."
"""Region-classification prompt (FALIP.md section 4)."""


@dataclass
class RecItem:
    """One REC query: candidate ``boxes`` ``[K, 4]`` and ``gold`` boxes ``[G, 4]`` (xyxy, image px).

    ``key`` groups queries of the same image (scored together); ``info`` carries anything else
    (e.g. ``relational``, ``kind``).
    """

    image: Image.Image
    boxes: np.ndarray
    expression: str
    gold: np.ndarray
    key: Any = None
    info: dict = field(default_factory=dict)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of xyxy boxes ``a`` ``[N, 4]`` and ``b`` ``[M, 4]``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval ``(lo, hi)`` for a binomial proportion (95% for z = 1.96)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _groups(items: Sequence[RecItem]) -> list[list[int]]:
    """Indices of items grouped by image (``key``, else the image object), in first-seen order."""
    groups: dict[Any, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.key if it.key is not None else id(it.image), []).append(i)
    return list(groups.values())


def negative_captions(items: Sequence[RecItem], count: int = 500, seed: int = 0) -> list[str]:
    """Up to ``count`` distinct expressions of the split, sampled with a seeded generator.

    The caption bank for "subtract" post-processing (FALIP.md section 4, P): RedCircle and FALIP
    subtract from each box's score its mean score over Q = 500 captions of the whole split.
    """
    bank = sorted({it.expression.lower() for it in items})
    if len(bank) <= count:
        return bank
    pick = np.random.default_rng(seed).choice(len(bank), size=count, replace=False)
    return [bank[i] for i in sorted(pick)]


def rec_predict(
    scorer: RegionScorer,
    items: Sequence[RecItem],
    method: str = "falip",
    template: str = REC_TEMPLATE,
    images_per_call: int = 64,
    rng: np.random.Generator | None = None,
    negatives: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[torch.Tensor]]:
    """Predicted box index per query ``[Q]`` and each query's scores ``[K]`` (before softmax).

    Queries of one image share its box encodings; ``images_per_call`` images per scorer call.
    Expressions are lowercased and put in ``template``; the ``cpt`` atom rewrites them instead.
    Exact ties (e.g. method ``none``, which scores every box the same) go to the first box, or
    to a random one of the tied boxes when ``rng`` is given, so that box order cannot help.
    ``negatives`` (e.g. from :func:`negative_captions`) turns on "subtract": each box's score
    minus its mean score over those captions, scored by the same method.
    """
    negatives = [n.lower() for n in negatives] if negatives else []
    preds = np.full(len(items), -1, dtype=np.int64)
    scores: list[torch.Tensor | None] = [None] * len(items)
    groups = _groups(items)
    for lo in range(0, len(groups), images_per_call):
        chunk = groups[lo : lo + images_per_call]
        heads = [items[g[0]] for g in chunk]
        out = scorer.score_many(
            [h.image for h in heads],
            [h.boxes for h in heads],
            [[items[i].expression.lower() for i in g] + negatives for g in chunk],
            method=method,
            template=template,
        )
        if negatives:
            out = [s[:, : s.shape[1] - len(negatives)] - s[:, s.shape[1] - len(negatives) :].mean(dim=1, keepdim=True)
                   for s in out]
        for g, s in zip(chunk, out):
            for j, i in enumerate(g):
                scores[i] = s[:, j]
                preds[i] = _argmax(s[:, j], rng)
    return preds, scores  # type: ignore[return-value]


def _argmax(scores: torch.Tensor, rng: np.random.Generator | None) -> int:
    if scores.shape[0] == 0:
        return -1
    if rng is None:
        return int(scores.argmax())
    top = np.flatnonzero((scores == scores.max()).numpy())
    return int(top[rng.integers(len(top))]) if len(top) > 1 else int(top[0])


def rec_correct(items: Sequence[RecItem], preds: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Bool ``[Q]``: the predicted box overlaps a gold box with IoU > ``iou_threshold``."""
    out = np.zeros(len(items), dtype=bool)
    for i, (it, p) in enumerate(zip(items, preds)):
        if p >= 0 and len(it.gold):
            out[i] = bool((box_iou(it.boxes[p : p + 1], it.gold) > iou_threshold).any())
    return out


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
        out = scorer.score_many(list(images[lo : lo + images_per_call]), list(boxes[lo : lo + images_per_call]),
                                list(classes), method=method, template=template)
        preds.extend(s.argmax(dim=1).numpy() if s.shape[0] else np.zeros(0, dtype=np.int64) for s in out)
    return preds
