"""Referring expression comprehension (REC): pick the box an expression refers to.

Built on :class:`falip.scoring.RegionScorer`; "subtract" post-processing (P) by a seeded caption bank.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.errors import FalipError
from ..core.regions import Regions
from ..prompts.registry import parse_method
from ..runner import Skip, Unit
from ..scoring import RegionScorer
from .metrics import accuracy_summary, box_iou, summary_table

__all__ = [
    "REC_TEMPLATE",
    "RecItem",
    "RecSettings",
    "RecTask",
    "evaluate_rec",
    "pick_region",
    "rec_scores",
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


def rec_scores(
    scorer: RegionScorer,
    images: Sequence[Image.Image],
    regions: Sequence[Any],
    expressions: Sequence[Sequence[str]],
    method: str = "falip",
    template: str | Sequence[str] = REC_TEMPLATE,
    negatives: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """Per image, the scores ``[K_i, S_i]`` of its K candidate regions for its S expressions.

    All regions and expressions of an image are scored in one pass (each region encoded once).
    Expressions are lowercased. ``negatives`` turns on "subtract" (P): each region's score minus
    its mean score over those captions, scored by the same method.
    """
    negatives = [n.lower() for n in negatives] if negatives else []
    texts = [[e.lower() for e in exprs] + negatives for exprs in expressions]
    out = scorer.score_many(list(images), list(regions), texts, method=method, template=template)
    if not negatives:
        return out
    q = len(negatives)
    return [s[:, : s.shape[1] - q] - s[:, s.shape[1] - q :].mean(dim=1, keepdim=True) for s in out]


def pick_region(scores: torch.Tensor, key: str | None = None, seed: int = 0) -> int:
    """The highest-scoring region of ``scores`` ``[K]``; -1 when K is 0.

    Exact ties (the whole image scores every box the same) are broken by a draw seeded from
    ``(seed, key)``, so the choice does not depend on box order, batch order or the number of
    processes; ``key=None`` takes the first of the tied regions.
    """
    if scores.shape[0] == 0:
        return -1
    top = np.flatnonzero((scores == scores.max()).numpy())
    if len(top) == 1 or key is None:
        return int(top[0])
    draw = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))]).integers(len(top))
    return int(top[draw])


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
    preds = np.full(len(items), -1, dtype=np.int64)
    scores: list[torch.Tensor | None] = [None] * len(items)
    groups = _groups(items)
    for lo in range(0, len(groups), images_per_call):
        chunk = groups[lo : lo + images_per_call]
        heads = [items[g[0]] for g in chunk]
        out = rec_scores(
            scorer,
            [h.image for h in heads],
            [h.boxes for h in heads],
            [[items[i].expression for i in g] for g in chunk],
            method,
            template,
            negatives,
        )
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


# ----------------------------------------------------------------------------- the harness task
@dataclass(frozen=True)
class RecSettings:
    """What defines a REC run (written to ``run.json``; a resumed run must match it).

    ``data``: ReCLIP-format split files; ``images``: the image root (default: each file's folder);
    ``detector_file``: proposals ("prop" setting) instead of the annotations' boxes ("gold");
    ``subtract_q``: Q negative captions for "subtract" (0: off), sampled from each split's
    caption bank with ``seed``, which also seeds the tie-break.
    """

    data: tuple[str, ...]
    images: str | None = None
    detector_file: str | None = None
    method: str = "falip"
    template: str | tuple[str, ...] = REC_TEMPLATE
    subtract_q: int = 0
    seed: int = 0
    iou_threshold: float = 0.5


class RecTask:
    """REC on ReCLIP-format splits, for :func:`falip.runner.run`.

    A unit is one image of one split with all its sentences; its candidate regions are encoded
    once for all of them. One record per sentence: ``id``, ``split``, ``image``, ``sentence``,
    ``pred`` (candidate index), ``pred_box`` (xyxy), ``iou`` (best IoU with a gold box),
    ``correct`` (``iou > iou_threshold``), ``scores`` (per candidate, after subtract).
    """

    name = "rec"

    def __init__(self, scorer: RegionScorer, settings: RecSettings, model: dict | None = None) -> None:
        self.scorer = scorer
        self.settings = settings
        self.model = dict(model or {})
        self._negatives: dict[str, list[str]] = {}
        if settings.subtract_q < 0:
            raise FalipError(f"subtract_q must be >= 0, got {settings.subtract_q}")
        parse_method(settings.method)
        scorer.templates_of(settings.template)
        for path in settings.data:
            if not Path(path).is_file():
                raise FalipError(f"REC split file not found: {path}")
        if settings.detector_file is not None and not Path(settings.detector_file).is_file():
            raise FalipError(f"detector file not found: {settings.detector_file}")
        self._split_names = split_names(settings.data)

    def config(self) -> dict:
        s = self.settings
        return {"task": "rec", **{k: v for k, v in asdict(s).items()}, **self.model}

    def units(self) -> Iterator[Unit | Skip]:
        from ..data.reclip import iter_reclip_jsonl, read_detections
        from ..data.records import Skipped

        s = self.settings
        detections = read_detections(s.detector_file) if s.detector_file else None
        for path in s.data:
            split = self._split_names[path]
            groups: dict[str, dict] = {}
            bank: set[str] = set()
            for sample in iter_reclip_jsonl(path, image_root=s.images, errors="skip"):
                if isinstance(sample, Skipped):
                    yield Skip(sample.id, sample.source, sample.reason)
                    continue
                key = str(sample.image_path)
                group = groups.get(key)
                if group is None:
                    found = sample.candidates(detections)  # [0, 4]: no detections for this image
                    candidates = found.tolist() if len(found) else None
                    group = groups[key] = {
                        "split": split,
                        "image": key,
                        "image_id": str(sample.image_id),
                        "source": sample.source,
                        "candidates": candidates,
                        "queries": [],
                    }
                group["queries"].append(
                    {"id": sample.id, "sentence": sample.sentence, "gold": sample.gold_boxes.tolist()}
                )
                bank.add(sample.sentence.lower())
            self._negatives[split] = _sample_bank(bank, s.subtract_q, s.seed)
            for group in groups.values():
                uid = f"{split}:{group['image_id']}:{Path(group['image']).name}"
                yield Unit(uid, group, group["source"], items=len(group["queries"]))

    def load(self, unit: Unit) -> tuple[dict, Image.Image, Regions]:
        from ..data.images import load_image

        group = unit.payload
        image = load_image(group["image"])
        boxes = group["candidates"]
        if boxes is None:  # an image without detections: the whole image is its one candidate
            boxes = [[0.0, 0.0, float(image.size[0]), float(image.size[1])]]
        try:
            regions = Regions(boxes, image_size=image.size)
        except FalipError as err:
            raise FalipError(f"{group['source']}: {err}") from None
        visible, reason = _visible(regions, getattr(getattr(self.scorer, "preprocess", None), "geometry", None))
        if not visible:
            raise FalipError(f"every candidate region is unseen by the model: {reason}")
        if len(visible) < len(regions):  # candidates outside the centre crop (resize 'crop') cannot win
            group = {**group, "visible": visible, "unseen": reason}
            regions = regions.select(visible)
        return group, image, regions

    def run(self, loaded: list[tuple[dict, Image.Image, Regions]]) -> list[list[dict]]:
        s = self.settings
        out: list[list[dict]] = [[] for _ in loaded]
        by_split: dict[str, list[int]] = {}
        for i, (group, _, _) in enumerate(loaded):
            by_split.setdefault(group["split"], []).append(i)
        for split, idx in by_split.items():
            scores = rec_scores(
                self.scorer,
                [loaded[i][1] for i in idx],
                [loaded[i][2] for i in idx],
                [[q["sentence"] for q in loaded[i][0]["queries"]] for i in idx],
                s.method,
                s.template,
                self._negatives.get(split),
            )
            for i, sc in zip(idx, scores):
                group, _, regions = loaded[i]
                for j, q in enumerate(group["queries"]):
                    col = sc[:, j]
                    pick = pick_region(col, q["id"], s.seed)
                    box = regions.boxes[pick]
                    pred = group["visible"][pick] if "visible" in group else pick  # index among all candidates
                    gold = np.asarray(q["gold"], dtype=np.float64).reshape(-1, 4)
                    iou = float(box_iou(box[None], gold).max()) if len(gold) else 0.0
                    out[i].append(
                        {
                            "id": q["id"],
                            "split": split,
                            "image": group["image"],
                            "sentence": q["sentence"],
                            "pred": pred,
                            "pred_box": [float(v) for v in box],
                            "iou": iou,
                            "correct": iou > s.iou_threshold,
                            "scores": [float(v) for v in col],
                            **(
                                {
                                    "unseen_candidates": len(group["candidates"]) - len(group["visible"]),
                                    "unseen_reason": group["unseen"],
                                }
                                if "visible" in group
                                else {}
                            ),
                        }  # fmt: skip
                    )
        return out

    def summarize(self, records: list[dict], skipped: list[dict]) -> dict:
        return accuracy_summary(records, skipped, by="split")

    def table(self, summary: dict) -> str:
        return summary_table(summary, "split", f"REC ({self.settings.method})")


def split_names(paths: Sequence[str]) -> dict[str, str]:
    """The row name of each split file: its file name, or ``folder/name`` where two files share a name
    (``refcoco/testA.jsonl`` and ``refcoco+/testA.jsonl`` are two rows, not one)."""
    names = [Path(p).name for p in paths]
    out = {}
    for path, name in zip(paths, names):
        if names.count(name) == 1:
            out[path] = name
        else:
            parts = Path(path).resolve().parts
            out[path] = "/".join(parts[-2:]) if len(parts) > 1 else name
    if len(set(out.values())) < len(set(paths)):
        raise FalipError("two split files have the same name and folder name; give each split its own name")
    return out


def _visible(regions: Regions, geometry: Any) -> tuple[list[int], str]:
    """Indices of the regions the model sees through ``geometry`` (all but those outside the centre
    crop of resize mode ``crop``), and why the first unseen one is not seen."""
    if geometry is None:
        return list(range(len(regions))), ""
    try:
        regions.to_input(geometry)
        return list(range(len(regions))), ""
    except FalipError:
        pass
    seen, reason = [], ""
    for k in range(len(regions)):
        try:
            regions.select([k]).to_input(geometry)
            seen.append(k)
        except FalipError as err:
            reason = reason or str(err).replace("box 0 ", f"candidate {k} ", 1)
    return seen, reason


def _sample_bank(bank: set[str], q: int, seed: int) -> list[str]:
    """``q`` captions of a split's bank (sorted first, so the draw does not depend on file order)."""
    if q <= 0:
        return []
    ordered = sorted(bank)
    if len(ordered) <= q:
        return ordered
    pick = np.random.default_rng(seed).choice(len(ordered), size=q, replace=False)
    return [ordered[i] for i in sorted(pick)]


def evaluate_rec(
    scorer: RegionScorer,
    data: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    images: str | Path | None = None,
    detector_file: str | Path | None = None,
    method: str = "falip",
    template: str | Sequence[str] = REC_TEMPLATE,
    subtract_q: int = 0,
    seed: int = 0,
    model: dict | None = None,
    **run_options: Any,
) -> tuple[dict, list[dict]]:
    """REC on ReCLIP-format split file(s), like ``falip rec``: ``(summary, per-sentence records)``.

    ``run_options`` go to :func:`falip.runner.run` (``resume``, ``limit``, ``workers``,
    ``batch_units``, ``progress``); results are written to ``out_dir`` as the command does.
    """
    from ..runner import read_results, run

    files = (data,) if isinstance(data, (str, Path)) else tuple(data)
    settings = RecSettings(
        data=tuple(str(f) for f in files),
        images=None if images is None else str(images),
        detector_file=None if detector_file is None else str(detector_file),
        method=method,
        template=template if isinstance(template, str) else tuple(template),
        subtract_q=subtract_q,
        seed=seed,
    )
    summary = run(RecTask(scorer, settings, model), out_dir, **run_options)
    records, _ = read_results(out_dir)
    return summary, records
