"""Where regions come from when the user has none: proposal sources, one registry shared by every command.

A source turns an image into :class:`Proposals` (boxes, optional masks and scores, in the image's
own pixels). The registered sources:

``file``
    A COCO results JSON (``[{"image_id", "bbox" xywh, "score"?, "segmentation"? RLE}, ...]``) or a
    detector file falip reads for REC (``{image_id: [[x, y, w, h], ...]}``); entries are matched to
    an image by ``image_id`` (compared with the number in the image's file name, as COCO's names
    carry it: ``000000397133.jpg`` and ``COCO_val2014_000000397133.jpg`` are image 397133), or, for
    a single image, taken whole.
``sam``
    segment-anything's ``scripts/amg.py`` output: a folder per image (``<stem>/0.png, 1.png, ...``
    with ``metadata.csv``), or ``<stem>.json`` of RLE records (``--convert-to-rle``); a folder that
    itself holds ``metadata.csv`` is one image's masks, taken whole.
``hf``
    a Hugging Face model through transformers' own pipelines (``hf:<hub id or folder>``):
    ``mask-generation`` for SAM models, ``object-detection`` (labels ignored) for detectors.
``auto``
    weight-free proposals: Felzenszwalb's segments grouped hierarchically as selective search does
    (:mod:`falip.proposals.auto`), so that grounding works offline on any image.

A source is named on the command line as ``--proposals SPEC``: ``auto``, ``hf:<model>``,
``<source>:<argument>`` for any registered source, or a path (a folder is ``sam``; a JSON file is
``file`` or ``sam`` by its content). :func:`filter_proposals` applies the options every command
shares (minimum area, duplicate removal by IoU, the top N by score) and counts what it drops.

Adding a source (also from a plugin)::

    register_source(SourceSpec("mine", "mypkg.props:open_mine", "my proposals (a folder)"))

where ``open_mine(argument, **options) -> source`` and ``source.propose(image, path) ->
Proposals``. This package imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..core.errors import FalipError
from ..core.regions import Regions, box_iou
from ..data.registry import resolve

__all__ = [
    "Proposals",
    "ProposalSource",
    "SourceSpec",
    "SOURCES",
    "register_source",
    "open_proposals",
    "filter_proposals",
]


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
            return self.masks.reshape(len(self), -1).sum(axis=1).astype(np.float64)
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])


class ProposalSource(Protocol):
    """An opened source: ``propose(image, path) -> Proposals`` (``path``: the image's file, if any)."""

    name: str

    def propose(self, image: Image.Image, path: Path | None = None) -> Proposals: ...


@dataclass(frozen=True)
class SourceSpec:
    """One proposal source: ``open(argument, **options) -> ProposalSource`` (or ``"module:function"``)."""

    name: str
    open: str | Callable[..., ProposalSource]
    description: str
    needs: str = ""  # the extra it needs, named in messages (e.g. "falip[proposals]")


SOURCES: dict[str, SourceSpec] = {}


def register_source(spec: SourceSpec) -> SourceSpec:
    """Add (or replace) a proposal source in :data:`SOURCES`."""
    if not spec.name or any(c.isspace() or c in ",:/" for c in spec.name):
        raise FalipError(f"proposal source names may not be empty or hold spaces, ',', ':' or '/': {spec.name!r}")
    SOURCES[spec.name] = spec
    return spec


def _sources() -> dict[str, SourceSpec]:
    return SOURCES


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
    sources = _sources()
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


register_source(SourceSpec("file", "falip.proposals.files:open_file", "a COCO results or detector JSON file"))
register_source(SourceSpec("sam", "falip.proposals.sam:open_sam", "segment-anything amg.py output (folder or JSON)"))
register_source(SourceSpec("hf", "falip.proposals.hf:open_hf", "hf:<model>: transformers' mask-generation / "
                           "object-detection pipelines", needs="falip[hf]"))  # fmt: skip
register_source(SourceSpec("auto", "falip.proposals.auto:open_auto", "weight-free: Felzenszwalb segments grouped "
                           "as in selective search", needs="falip[proposals]"))  # fmt: skip
