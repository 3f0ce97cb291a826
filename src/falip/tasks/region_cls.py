"""Region-guided classification: name the object in each box among a list of classes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..scoring import RegionScorer

__all__ = ["CLS_TEMPLATE", "classify_regions"]

CLS_TEMPLATE = "a photo of a {}."
"""Region-classification prompt (docs/method.md, "Scoring and tasks")."""


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
