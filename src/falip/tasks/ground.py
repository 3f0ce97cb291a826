"""Grounding from the image alone: the proposal each text names best, with REC's templates and tie rule.

:func:`ground` scores every proposal of one image against every text in one batched pass (FALIP or
any registered method), and picks per text the best proposal as ``falip rec`` picks a box
(:func:`falip.tasks.rec.pick_region`: exact ties go to the first proposal in the source's order,
or a seeded draw). The margin is the best score minus the runner-up's (None with one proposal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..core.errors import FalipError
from ..defaults import REC_TEMPLATE
from ..proposals.base import Proposals
from ..scoring import RegionScorer
from .rec import pick_region

__all__ = ["Grounding", "check_texts", "ground"]


@dataclass(frozen=True)
class Grounding:
    """One text's best proposal: ``index`` into the proposals, ``box`` xyxy image pixels, its
    ``score`` (the method's, as ``falip score`` prints it), ``margin`` over the runner-up, its
    ``mask`` (bool ``[H, W]``) when the source gave masks, and the source's own ``proposal_score``."""

    text: str
    index: int
    box: tuple[float, float, float, float]
    score: float
    margin: float | None
    mask: np.ndarray | None = None
    proposal_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``text``, ``box`` ``[x0, y0, x1, y1]``, ``score``, ``margin``, ``proposal`` (from 1),
        ``proposal_score``, and ``mask`` as COCO RLE when there is one."""
        out: dict[str, Any] = {
            "text": self.text,
            "box": [float(v) for v in self.box],
            "score": self.score,
            "margin": self.margin,
            "proposal": self.index + 1,
            "proposal_score": self.proposal_score,
        }
        if self.mask is not None:
            from ..data.coco import mask_to_coco_rle

            out["mask"] = mask_to_coco_rle(self.mask)
        return out


def check_texts(texts: Sequence[str], what: str = "text") -> list[str]:
    """``texts`` as a list; FalipError for none, or an empty or blank one (numbered from 1)."""
    out = list(texts)
    if not out:
        raise FalipError(f"give at least one {what}")
    for k, t in enumerate(out, start=1):
        if not isinstance(t, str) or not t.strip():
            raise FalipError(f"{what} {k} is empty: say what to look for")
    return out


def ground(
    scorer: RegionScorer,
    image: Image.Image,
    texts: Sequence[str],
    proposals: Proposals,
    method: str = "falip",
    template: str | Sequence[str] = REC_TEMPLATE,
    ties: str = "first",
    seed: int = 0,
) -> list[Grounding]:
    """The best proposal of ``image`` for each text (module docstring); FalipError when there is none."""
    texts = check_texts(texts)
    if len(proposals) == 0:
        raise FalipError(f"no proposals for this image (source {proposals.source or '?'}): nothing to ground")
    if tuple(proposals.image_size) != tuple(image.size):
        raise FalipError(
            f"the proposals are for a {proposals.image_size[0]}x{proposals.image_size[1]} px image, "
            f"this one is {image.size[0]}x{image.size[1]}"
        )
    scores = scorer.score(image, proposals.regions(), texts, method=method, template=template)  # [K, T]
    out = []
    for t, text in enumerate(texts):
        column = scores[:, t]
        best = pick_region(column, key=text, seed=seed, ties=ties)
        rest = np.delete(column.double().numpy(), best)
        margin = float(column[best]) - float(rest.max()) if rest.size else None
        out.append(
            Grounding(
                text=text,
                index=best,
                box=tuple(float(v) for v in proposals.boxes[best]),  # type: ignore[arg-type]
                score=float(column[best]),
                margin=margin,
                mask=None if proposals.masks is None else proposals.masks[best],
                proposal_score=None if proposals.scores is None else float(proposals.scores[best]),
            )
        )
    return out
