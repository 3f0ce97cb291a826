"""Weight-free proposals: Felzenszwalb's segments grouped hierarchically, as selective search groups them.

Why this method: it needs no weights (grounding works offline on any image), it is the classic
region-proposal method of the R-CNN era (Uijlings et al., "Selective Search for Object
Recognition", IJCV 2013), and its one heavy step, the graph segmentation (Felzenszwalb and
Huttenlocher, IJCV 2004), is in scikit-image (``skimage.segmentation.felzenszwalb``), a package of
the field; the grouping is a few lines of numpy written here from the paper.

The steps, per segmentation scale (``scales``, Felzenszwalb's ``k``): segment the image (its longer
side brought to ``max_side`` px first, for speed); describe each segment by a colour histogram
(``bins`` per RGB channel, L1-normalised), its size and its box; merge greedily the most similar
pair of neighbouring segments (similarity = colour histogram intersection + size term ``1 -
(a + b) / image`` + fill term ``1 - (box(a u b) - a - b) / image``, the paper's colour, size and
fill measures) until one segment is left. Every segment, first and merged, is a proposal: its box
in the original image's pixels, and its mask (the union of its first segments) at the original
size. Proposals are ordered by the step at which they appear, counted back from the last merge of
each scale (the whole image first), interleaved across scales; duplicates (box IoU above 0.95) and
regions under ``min_fraction`` or over ``max_fraction`` of the image (the last merges: the
background, the whole image) are left out and counted.

It is deterministic: the same image gives the same proposals (ties between pairs go to the pair
of lower segment ids).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..core.errors import FalipError
from .base import Proposals, filter_proposals, mask_boxes

__all__ = ["AutoProposals", "open_auto", "selective_search"]


def _segments(rgb: np.ndarray, scale: float, sigma: float, min_size: int) -> np.ndarray:
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(rgb, scale=scale, sigma=sigma, min_size=min_size).astype(np.int64)


def selective_search(
    rgb: np.ndarray, scale: float = 100.0, sigma: float = 0.8, min_size: int = 20, bins: int = 25
) -> tuple[np.ndarray, list[list[int]], np.ndarray]:
    """One scale of the grouping on an image ``[H, W, 3]`` uint8 (module docstring).

    Returns the first segments' label map ``[H, W]`` (ids from 0), the members (first-segment ids)
    of every region in the order they appear (first segments, then one per merge), and each
    region's box ``[R, 4]`` xyxy (exclusive corner) in ``rgb``'s pixels.
    """
    labels = _segments(rgb, scale, sigma, min_size)
    n = int(labels.max()) + 1
    h, w = labels.shape
    flat = labels.ravel()
    size = np.bincount(flat, minlength=n).astype(np.float64)
    ys, xs = np.divmod(np.arange(h * w), w)
    box = np.stack(
        [
            np.full(n, w, dtype=np.float64),
            np.full(n, h, dtype=np.float64),
            np.zeros(n),
            np.zeros(n),
        ],
        axis=1,
    )
    np.minimum.at(box[:, 0], flat, xs)
    np.minimum.at(box[:, 1], flat, ys)
    np.maximum.at(box[:, 2], flat, xs + 1)
    np.maximum.at(box[:, 3], flat, ys + 1)
    q = np.minimum(rgb.reshape(-1, 3).astype(np.int64) * bins // 256, bins - 1)
    hist = np.zeros((n, 3 * bins))
    for c in range(3):
        np.add.at(hist, (flat, c * bins + q[:, c]), 1.0)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1)
    # neighbours: segments that touch horizontally or vertically
    pairs = np.concatenate(
        [
            np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
            np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1),
        ]
    )
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    image_area = float(h * w)
    hists = {i: hist[i] for i in range(n)}
    sizes = {i: size[i] for i in range(n)}
    boxes = {i: box[i] for i in range(n)}
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)

    def similarity(a: int, b: int) -> float:
        colour = float(np.minimum(hists[a], hists[b]).sum())
        size_term = 1.0 - (sizes[a] + sizes[b]) / image_area
        ba, bb = boxes[a], boxes[b]
        union = (max(ba[2], bb[2]) - min(ba[0], bb[0])) * (max(ba[3], bb[3]) - min(ba[1], bb[1]))
        fill = 1.0 - (union - sizes[a] - sizes[b]) / image_area
        return colour + size_term + fill

    sims = {(a, b): similarity(a, b) for a, b in pairs.tolist()}
    order: list[list[int]] = [members[i] for i in range(n)]
    out_boxes = [boxes[i] for i in range(n)]
    next_id = n
    while sims:
        a, b = max(sims, key=lambda k: (sims[k], -k[0], -k[1]))
        t = next_id
        next_id += 1
        sizes[t] = sizes[a] + sizes[b]
        hists[t] = (hists[a] * sizes[a] + hists[b] * sizes[b]) / sizes[t]
        boxes[t] = np.array(
            [min(boxes[a][0], boxes[b][0]), min(boxes[a][1], boxes[b][1]),
             max(boxes[a][2], boxes[b][2]), max(boxes[a][3], boxes[b][3])]
        )  # fmt: skip
        members[t] = members[a] + members[b]
        neighbours[t] = (neighbours[a] | neighbours[b]) - {a, b}
        for k in list(sims):
            if a in k or b in k:
                del sims[k]
        for c in neighbours[t]:
            neighbours[c] -= {a, b}
            neighbours[c].add(t)
            sims[(c, t)] = similarity(c, t)
        for gone in (a, b):
            del hists[gone], sizes[gone], boxes[gone], members[gone], neighbours[gone]
        order.append(members[t])
        out_boxes.append(boxes[t])
    return labels, order, np.array(out_boxes, dtype=np.float64).reshape(-1, 4)


class AutoProposals:
    """Selective search over Felzenszwalb segments at several scales (module docstring)."""

    name = "auto"

    def __init__(
        self,
        scales: tuple[float, ...] = (100.0, 300.0),
        sigma: float = 0.8,
        min_size: int = 20,
        max_side: int = 256,
        min_fraction: float = 0.002,
        max_fraction: float = 0.8,
        duplicate_iou: float = 0.95,
        masks: bool = True,
    ) -> None:
        if not scales or any(s <= 0 for s in scales):
            raise FalipError(f"auto proposals: scales must be positive numbers, got {scales}")
        if max_side < 16:
            raise FalipError(f"auto proposals: max_side must be >= 16 px, got {max_side}")
        self.scales, self.sigma, self.min_size = tuple(float(s) for s in scales), sigma, min_size
        self.max_side, self.min_fraction, self.max_fraction = max_side, min_fraction, max_fraction
        self.duplicate_iou, self.masks = duplicate_iou, masks

    def propose(self, image: Image.Image, path: Path | None = None) -> Proposals:
        w, h = image.size
        f = min(1.0, self.max_side / max(w, h))
        small = image.convert("RGB")
        if f < 1.0:
            small = small.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR)
        rgb = np.asarray(small)
        sw, sh = small.size
        per_scale = []
        for scale in self.scales:
            labels, members, boxes = selective_search(rgb, scale, self.sigma, self.min_size)
            rank = np.arange(len(members))[::-1]  # the last merge (the whole image) first
            per_scale.append((labels, [members[i] for i in rank], boxes[rank]))
        # interleave the scales: the k-th region of each scale, then the (k+1)-th, ...
        entries: list[tuple[int, list[int], np.ndarray]] = []
        longest = max(len(m) for _, m, _ in per_scale)
        for k in range(longest):
            for s, (_, members, boxes) in enumerate(per_scale):
                if k < len(members):
                    entries.append((s, members[k], boxes[k]))
        sx, sy = w / sw, h / sh
        boxes = np.array([[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for _, _, b in entries]).reshape(-1, 4)
        masks = None
        if self.masks:
            masks = np.zeros((len(entries), h, w), dtype=bool)
            # each scale's label map at the original size (nearest), then the union of a region's segments
            full = [
                np.asarray(Image.fromarray(lab.astype(np.int32)).resize((w, h), Image.Resampling.NEAREST))
                for lab, _, _ in per_scale
            ]
            for k, (s, mem, _) in enumerate(entries):
                masks[k] = np.isin(full[s], mem)
            own = mask_boxes(masks)  # each region's box is its mask's own pixel box
            boxes = np.where(np.isnan(own), boxes, own)  # (a mask emptied by the resize keeps its box)
        scores = -np.arange(len(entries), dtype=np.float64)  # the order above, as a score
        props = Proposals(boxes=boxes, image_size=(w, h), masks=masks, scores=scores, source="auto")
        props = filter_proposals(props, min_area=self.min_fraction * w * h)
        big = props.areas() > self.max_fraction * w * h
        if big.any():
            dropped = {**props.dropped, "over max area": int(big.sum())}
            props = Proposals(**{**props.select(np.flatnonzero(~big)).__dict__, "dropped": dropped})
        if self.duplicate_iou < 1:
            from ..core.regions import box_iou

            iou = box_iou(props.boxes, props.boxes)
            kept: list[int] = []
            for i in range(len(props)):
                if all(iou[i, j] <= self.duplicate_iou for j in kept):
                    kept.append(i)
            dropped = dict(props.dropped)
            if len(props) - len(kept):
                dropped["duplicate"] = dropped.get("duplicate", 0) + len(props) - len(kept)
            props = props.select(np.array(kept, dtype=np.int64))
            props = Proposals(props.boxes, props.image_size, props.masks, props.scores, "auto", dropped)
        return props


def open_auto(argument: str = "", single: bool = False, **options: Any) -> AutoProposals:
    """The ``auto`` source (``auto`` or ``auto:SCALES``, e.g. ``auto:100,300``); ``options``: the keywords
    of :class:`AutoProposals` (its defaults are the only ones), an unknown one refused."""
    try:
        import skimage  # noqa: F401
    except ImportError:
        raise FalipError(
            "auto proposals need scikit-image (Felzenszwalb's segmentation): pip install 'falip[proposals]'"
        ) from None
    known = [name for name in inspect.signature(AutoProposals).parameters if name != "scales"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise FalipError(f"proposals source 'auto' takes no option {', '.join(unknown)}; it takes {', '.join(known)}")
    if argument:
        try:
            options["scales"] = tuple(float(v) for v in argument.split(","))
        except ValueError:
            raise FalipError(f"auto:{argument}: the scales are comma-separated numbers, e.g. auto:100,300") from None
    return AutoProposals(**options)
