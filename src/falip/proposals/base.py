"""Proposals (one image's proposed regions), opening a source by its spec, and the shared filters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..core.errors import FalipError
from ..core.regions import Regions, box_iou
from ..data.registry import resolve
from . import SOURCES, SourceSpec

__all__ = ["Proposals", "ProposalSource", "filter_proposals", "mask_boxes", "open_proposals", "visible_proposals"]


@dataclass(frozen=True)
class Proposals:
    """Proposed regions of one image: ``boxes`` ``[K, 4]`` xyxy float64 in the image's pixels.

    ``masks``: ``[K, H, W]`` bool at the image's size, or None (boxes only); ``scores``: ``[K]``
    float64 (the source's own confidence) or None; ``source``: where they came from, for messages;
    ``dropped``: what was left out and why (reason -> count).
    """

    boxes: np.ndarray
    image_size: tuple[int, int]
    masks: np.ndarray | None = None
    scores: np.ndarray | None = None
    source: str = ""
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, index: Any) -> Proposals:
        """The proposals at ``index`` (an index array or a boolean mask), in that order."""
        return replace(
            self,
            boxes=self.boxes[index],
            masks=None if self.masks is None else self.masks[index],
            scores=None if self.scores is None else self.scores[index],
        )

    def regions(self) -> Regions:
        """The proposals as one :class:`~falip.core.regions.Regions` of the image (masks when there are)."""
        return Regions(self.boxes, self.masks, image_size=self.image_size)

    def areas(self) -> np.ndarray:
        """Each proposal's area in pixels: its mask's pixels, or its box's area."""
        if self.masks is not None:
            return self.masks.sum(axis=(1, 2), dtype=np.float64)  # reshape(0, -1) fails on no proposals
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])


class ProposalSource(Protocol):
    """An opened source: ``propose(image, path) -> Proposals`` (``path``: the image's file, if any)."""

    name: str

    def propose(self, image: Image.Image, path: Path | None = None) -> Proposals: ...


def _sniff_json(path: Path) -> str:
    """``"file"`` or ``"sam"`` for a JSON file, by its content (SAM's RLE records carry no image_id)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FalipError(f"{path}: not a JSON file ({e})") from None
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        if all("image_id" in d for d in data):
            return "file"
        if all("segmentation" in d for d in data):
            return "sam"
        raise FalipError(
            f"{path}: neither a COCO results file (entries with image_id and bbox) nor segment-anything's "
            "RLE records (entries with segmentation)"
        )
    if isinstance(data, (dict, list)):
        return "file"
    raise FalipError(f"{path}: a proposals JSON is a list of entries or a detector file {{image_id: boxes}}")


def open_proposals(spec: str | ProposalSource, **options: Any) -> ProposalSource:
    """The source ``spec`` names (module docstring), opened with ``options``; FalipError naming the choices."""
    if not isinstance(spec, str):
        return spec
    text = spec.strip()
    if not text:
        raise FalipError("the proposals source is empty: give auto, hf:<model>, a file or a folder")
    sources = SOURCES
    name, sep, argument = text.partition(":")
    if sep and name in sources and not Path(text).exists():
        return _open(sources[name], argument, options)
    if text in sources and not Path(text).exists():
        return _open(sources[text], "", options)
    path = Path(text)
    if path.is_dir():
        return _open(sources["sam"], text, options)
    if path.is_file():
        return _open(sources[_sniff_json(path)], text, options)
    choices = ", ".join(f"{n}" + ("" if n == "auto" else ":...") for n in sources)
    raise FalipError(
        f"unknown proposals source {text!r}: not a file or folder here, nor a source name "
        f"(one of {choices}; a path is read as a COCO results / detector file or a segment-anything output)"
    )


def _open(spec: SourceSpec, argument: str, options: dict[str, Any]) -> ProposalSource:
    try:
        opener = resolve(spec.open)
    except ImportError as e:
        need = f" (pip install '{spec.needs}')" if spec.needs else ""
        raise FalipError(f"proposals source {spec.name!r} needs a package that is not installed{need}: {e}") from None
    import inspect

    params = inspect.signature(opener).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            takes = [n for n in params if n not in ("argument", "single")]
            raise FalipError(
                f"proposals source {spec.name!r} takes no option {', '.join(unknown)}; "
                f"it takes {', '.join(takes) or 'none'}"
            )
    return opener(argument, **options)


def _mask_iou(masks: np.ndarray) -> np.ndarray:
    flat = masks.reshape(masks.shape[0], -1).astype(np.float64)
    inter = flat @ flat.T
    area = flat.sum(axis=1)
    union = area[:, None] + area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def filter_proposals(
    proposals: Proposals, min_area: float = 0.0, nms: float | None = None, top: int | None = None
) -> Proposals:
    """The options every command shares, in this order: drop regions under ``min_area`` pixels, drop
    duplicates (greedy non-maximum suppression: a region whose IoU with a better-scored kept one is
    above ``nms``; masks compared as masks, else boxes), keep the ``top`` best by score.

    Order: by score, best first (ties and unscored proposals keep the source's order). What was
    dropped adds to ``dropped`` (``"under min area"``, ``"duplicate"``, ``"beyond top"``).
    """
    if min_area < 0:
        raise FalipError(f"min area must be >= 0 pixels, got {min_area}")
    if nms is not None and not 0 < nms <= 1:
        raise FalipError(f"the duplicate IoU threshold must be in (0, 1], got {nms}")
    if top is not None and top < 1:
        raise FalipError(f"top must be >= 1, got {top}")
    dropped = dict(proposals.dropped)

    def count(reason: str, n: int) -> None:
        if n:
            dropped[reason] = dropped.get(reason, 0) + n

    p = proposals
    keep = p.areas() >= min_area
    count("under min area", int((~keep).sum()))
    p = p.select(np.flatnonzero(keep))
    scores = p.scores if p.scores is not None else np.zeros(len(p))
    order = np.lexsort((np.arange(len(p)), -scores))  # best first; ties: the source's order
    p = p.select(order)
    if nms is not None and len(p) > 1:
        iou = _mask_iou(p.masks) if p.masks is not None else box_iou(p.boxes, p.boxes)
        kept: list[int] = []
        for i in range(len(p)):
            if all(iou[i, j] <= nms for j in kept):
                kept.append(i)
        count("duplicate", len(p) - len(kept))
        p = p.select(np.array(kept, dtype=np.int64))
    if top is not None and len(p) > top:
        count("beyond top", len(p) - top)
        p = p.select(np.arange(top))
    return replace(p, dropped=dropped)


def visible_proposals(proposals: Proposals, resize: Any | None) -> Proposals:
    """The proposals the model can see through ``resize`` (a :class:`~falip.core.regions.Resize`;
    None: all): a box wholly outside the centre crop, or a mask that vanishes at the model's input
    resolution, is dropped and counted (``"not visible at the model input"``), not an error."""
    if resize is None or len(proposals) == 0:
        return proposals
    in_h, in_w = resize.input_size
    mapped = resize.map_boxes(proposals.boxes, proposals.image_size)
    ok = ~((mapped[:, 0] >= in_w) | (mapped[:, 1] >= in_h) | (mapped[:, 2] <= 0) | (mapped[:, 3] <= 0))
    if proposals.masks is not None:
        small = resize.map_masks(proposals.masks)
        ok &= small.reshape(len(small), -1).any(axis=1)
    if ok.all():
        return proposals
    dropped = dict(proposals.dropped)
    dropped["not visible at the model input"] = dropped.get("not visible at the model input", 0) + int((~ok).sum())
    return replace(proposals.select(np.flatnonzero(ok)), dropped=dropped)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Each mask's own pixel box ``[K, 4]`` xyxy float64 (exclusive corner); a mask with no pixel gets NaN."""
    out = np.full((len(masks), 4), np.nan)
    for k, m in enumerate(masks):
        cols, rows = np.flatnonzero(m.any(axis=0)), np.flatnonzero(m.any(axis=1))
        if cols.size:
            out[k] = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    return out
