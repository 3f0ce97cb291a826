"""Referring expression comprehension (REC): pick the box an expression refers to.

Built on :class:`falip.scoring.RegionScorer`; "subtract" post-processing (P) by a seeded caption bank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..scoring import RegionScorer
from .metrics import box_iou

__all__ = [
    "REC_TEMPLATE",
    "RecItem",
    "negative_captions",
    "rec_predict",
    "rec_correct",
]

REC_TEMPLATE = "a photo of {}"
"""FALIP's REC prompt (docs/method.md, "Scoring and tasks"); expressions are lowercased first."""


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


def _groups(items: Sequence[RecItem]) -> list[list[int]]:
    """Indices of items grouped by image (``key``, else the image object), in first-seen order."""
    groups: dict[Any, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.key if it.key is not None else id(it.image), []).append(i)
    return list(groups.values())


def negative_captions(items: Sequence[RecItem], count: int = 500, seed: int = 0) -> list[str]:
    """Up to ``count`` distinct expressions of the split, sampled with a seeded generator.

    The caption bank for "subtract" post-processing (docs/method.md, "Scoring and tasks"): RedCircle and FALIP
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
            out = [
                s[:, : s.shape[1] - len(negatives)] - s[:, s.shape[1] - len(negatives) :].mean(dim=1, keepdim=True)
                for s in out
            ]
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
