"""Referring expression comprehension (REC): pick the box an expression refers to.

Built on :class:`falip.scoring.RegionScorer`; "subtract" post-processing (P) by a seeded caption bank.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.errors import FalipError
from ..core.regions import Regions
from ..defaults import REC_TEMPLATE, TIES
from ..prompts.registry import METHODS, parse_method, term_atoms
from ..runner import Skip, Unit
from ..scoring import RegionScorer
from .metrics import Summary, accuracy_summary, box_iou, summary_table
from .settings import RecSettings

__all__ = [
    "REC_TEMPLATE",
    "RecItem",
    "RecSettings",
    "RecTask",
    "evaluate_rec",
    "TIES",
    "pick_region",
    "sample_negatives",
    "rec_scores",
    "rec_predict",
    "rec_correct",
]


@dataclass
class RecItem:
    """One REC query: candidate ``boxes`` ``[K, 4]`` and ``gold`` boxes ``[G, 4]`` (xyxy, image px).

    ``key`` groups queries of the same image (scored together); ``id`` names the query (seeds its
    tie draw and its negative captions; default: its index in the list); ``info`` carries anything
    else (e.g. ``relational``, ``kind``).
    """

    image: Image.Image
    boxes: np.ndarray
    expression: str
    gold: np.ndarray
    key: Any = None
    info: dict = field(default_factory=dict)
    id: str | None = None


def _groups(items: Sequence[RecItem]) -> list[list[int]]:
    """Indices of items grouped by image (``key``, else the image object), in first-seen order."""
    groups: dict[Any, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.key if it.key is not None else id(it.image), []).append(i)
    return list(groups.values())


def rec_scores(
    scorer: RegionScorer,
    images: Sequence[Image.Image],
    regions: Sequence[Any],
    expressions: Sequence[Sequence[str]],
    method: str = "falip",
    template: str | Sequence[str] = REC_TEMPLATE,
    negatives: Sequence[str] | Sequence[Sequence[Sequence[str]]] | None = None,
) -> list[torch.Tensor]:
    """Per image, the scores ``[K_i, S_i]`` of its K candidate regions for its S expressions.

    All regions and expressions of an image are scored in one pass (each region encoded once).
    Expressions are lowercased. ``negatives`` turns on "subtract" (P): each region's score minus
    its mean score over negative captions, scored by the same method on the same image. Either one
    list of captions shared by every expression, or, per image, one list per expression (a caption
    may repeat: it then counts as often as it appears, as in FGVP's ``np.random.choice`` sample).
    The negatives always go through ``template`` ("a photo of ..."), also when the method rewrites
    the query (``cpt``), as in FGVP's ``main.py``.
    """
    if not negatives:
        texts = [[e.lower() for e in exprs] for exprs in expressions]
        return scorer.score_many(list(images), list(regions), texts, method=method, template=template)
    shared = all(isinstance(n, str) for n in negatives)
    per_image = [[list(negatives)] * len(exprs) for exprs in expressions] if shared else negatives
    if len(per_image) != len(images):
        raise FalipError(f"negatives: {len(per_image)} lists for {len(images)} images (one per image)")
    texts, tails, picks = [], [], []
    for exprs, negs in zip(expressions, per_image):
        if len(negs) != len(exprs):
            raise FalipError(f"negatives: {len(negs)} lists for {len(exprs)} expressions of an image")
        bank = list(dict.fromkeys(n.lower() for sample in negs for n in sample))
        where = {n: k for k, n in enumerate(bank)}
        texts.append([e.lower() for e in exprs] + bank)
        tails.append(len(bank))
        picks.append([torch.tensor([where[n.lower()] for n in sample], dtype=torch.long) for sample in negs])
    rewrites = any(METHODS[a].text is not None for term in parse_method(method) for a in term_atoms(term))
    extra = {"template_only": tails} if rewrites else {}
    out = scorer.score_many(list(images), list(regions), texts, method=method, template=template, **extra)
    result = []
    for s, n_neg, pick in zip(out, tails, picks):
        n_q = s.shape[1] - n_neg
        neg = s[:, n_q:]
        cols = [
            s[:, j] - (neg[:, idx].mean(dim=1) if len(idx) else torch.zeros(s.shape[0])) for j, idx in enumerate(pick)
        ]
        result.append(torch.stack(cols, dim=1) if cols else s[:, :0])
    return result


def pick_region(scores: torch.Tensor, key: str | None = None, seed: int = 0, ties: str = "first") -> int:
    """The highest-scoring region of ``scores`` ``[K]``; -1 when K is 0.

    Exact ties (the whole image scores every box the same) go to the first of the tied regions
    (``ties="first"``: ``np.argmax``, as ReCLIP's ``methods/baseline.py`` and the authors' fork
    predict), or (``ties="random"``, with a ``key``) to a draw seeded from ``(seed, key)``, so the
    choice does not depend on box order, batch order or the number of processes.
    """
    if ties not in TIES:
        raise FalipError(f"ties must be one of {TIES}, got {ties!r}")
    if scores.shape[0] == 0:
        return -1
    top = np.flatnonzero((scores == scores.max()).numpy())
    if len(top) == 1 or key is None or ties == "first":
        return int(top[0])
    draw = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))]).integers(len(top))
    return int(top[draw])


def sample_negatives(bank: Sequence[str], q: int, sentence_id: str, seed: int = 0) -> list[str]:
    """One sentence's Q negative captions for "subtract", drawn without replacement from ``bank``.

    ``bank`` is the split's list of every sentence (lowercased, file order, duplicates kept; also
    those of lines left out as malformed, which FGVP never reads apart; blank ones left out, as the
    scorer refuses empty texts), as FGVP's ``main.py`` builds its ``caption_bank`` before it opens
    any image; FGVP draws
    ``np.random.choice(caption_bank, 500, replace=False)`` for each sentence from numpy's global
    state. Here the draw is seeded per sentence from ``(seed, sentence_id)``, so it does not depend
    on the order the sentences run in. A bank of at most Q captions is used whole.
    """
    if q <= 0:
        return []
    if len(bank) <= q:
        return list(bank)
    rng = np.random.default_rng([int(seed), zlib.crc32(sentence_id.encode("utf-8"))])
    return [bank[i] for i in rng.choice(len(bank), size=q, replace=False)]


def rec_predict(
    scorer: RegionScorer,
    items: Sequence[RecItem],
    method: str = "falip",
    template: str | Sequence[str] = REC_TEMPLATE,
    images_per_call: int = 64,
    *,
    ties: str = "first",
    seed: int = 0,
    subtract_q: int = 0,
) -> tuple[np.ndarray, list[torch.Tensor]]:
    """Predicted box index per query ``[Q]`` and each query's scores ``[K]`` (before softmax).

    The path ``falip rec`` takes, on in-memory items: :func:`rec_scores` then :func:`pick_region`.
    Queries of one image share its box encodings; ``images_per_call`` images per scorer call.
    Exact ties (e.g. method ``none``, which scores every box the same) go by ``ties`` (``"first"``
    box, or a ``"random"`` draw seeded from ``(seed, item id)``). ``subtract_q`` > 0 turns on
    "subtract": each query gets its own Q negative captions (:func:`sample_negatives`) from the
    bank of every item's expression, and each box's score is minus its mean score over them.
    An item's id is its ``id``, else its index in ``items``.
    """
    if subtract_q < 0:
        raise FalipError(f"subtract_q must be >= 0, got {subtract_q}")
    ids = [it.id if it.id is not None else str(i) for i, it in enumerate(items)]
    bank = [it.expression.lower() for it in items]
    preds = np.full(len(items), -1, dtype=np.int64)
    scores: list[torch.Tensor | None] = [None] * len(items)
    groups = _groups(items)
    for lo in range(0, len(groups), images_per_call):
        chunk = groups[lo : lo + images_per_call]
        heads = [items[g[0]] for g in chunk]
        negatives = [[sample_negatives(bank, subtract_q, ids[i], seed) for i in g] for g in chunk]
        out = rec_scores(
            scorer,
            [h.image for h in heads],
            [h.boxes for h in heads],
            [[items[i].expression for i in g] for g in chunk],
            method,
            template,
            negatives if subtract_q else None,
        )
        for g, s in zip(chunk, out):
            for j, i in enumerate(g):
                scores[i] = s[:, j]
                preds[i] = pick_region(s[:, j], ids[i], seed, ties)
    return preds, scores  # type: ignore[return-value]


def rec_correct(items: Sequence[RecItem], preds: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Bool ``[Q]``: the predicted box overlaps a gold box with IoU > ``iou_threshold``."""
    out = np.zeros(len(items), dtype=bool)
    for i, (it, p) in enumerate(zip(items, preds)):
        if p >= 0 and len(it.gold):
            out[i] = bool((box_iou(it.boxes[p : p + 1], it.gold) > iou_threshold).any())
    return out


# ----------------------------------------------------------------------------- the harness task
_BOX_NOTE = re.compile(r"/(anns|detections)\[\d+\]$")  # skipped.jsonl ids of dropped boxes (not items)


class RecTask:
    """REC on ReCLIP-format splits, for :func:`falip.runner.run`.

    A unit is one image of one split with all its sentences. Each sentence is scored over its own
    line's candidates (the line's ``anns``, or the image's detections); lines of an image that
    share their candidates have them encoded once. One record per sentence: ``id``, ``split``,
    ``image``, ``sentence``, ``pred`` (candidate index), ``pred_box`` (xyxy), ``iou`` (best IoU
    with a gold box), ``correct`` (``iou > iou_threshold``), ``scores`` (per candidate, after
    subtract; ``scores[pred]`` is the winner's), ``whole_image`` (the image had no detections: its
    one candidate is the whole image), ``candidate_set`` (which of the image's distinct candidate
    lists the sentence was scored over), ``dropped`` (candidate boxes left out because they lie
    wholly outside the image) and,
    where the line has any, ``zero_area_gold`` (how many of its gold boxes have zero area: such a
    box is no candidate and matches no prediction, so the sentence counts as wrong unless another
    gold box matches; the summary counts these sentences, ``zero_area_gold``).

    A candidate box that cannot be scored (zero area in the file, wholly outside the image) is
    left out of its line's candidates: one entry in ``skipped.jsonl`` (id ``<line>/anns[k]`` or
    ``<detector file>:<image_id>/detections[j]``) or in the record's ``dropped``; the summary
    counts them (``dropped_boxes``, each box once), apart from the skipped sentences (``skipped``).

    With resize mode ``crop`` a candidate wholly outside the centre crop is not seen by the model: it
    stays in the candidate list (``pred`` indexes the same list whether the run crops or squashes)
    with ``null`` in ``scores``, so it cannot win; the record names each one in ``unseen`` (with
    ``unseen_candidates``, their count, and ``unseen_reason``, the first), and the summary counts
    them in ``dropped_boxes`` and on their own as ``unseen_boxes``.
    """

    name = "rec"

    def __init__(self, scorer: RegionScorer, settings: RecSettings, model_info: dict | None = None) -> None:
        self.scorer = scorer
        self.settings = settings
        self.model_info = dict(model_info or {})
        self._negatives: dict[str, list[list[str]]] = {}  # sentence id -> its negative captions
        self._split_names = split_names(settings.data)
        if settings.subtract_q < 0:
            raise FalipError(f"subtract_q must be >= 0, got {settings.subtract_q}")
        if settings.ties not in TIES:
            raise FalipError(f"ties must be one of {TIES}, got {settings.ties!r}")
        if isinstance(settings.seed, bool) or not isinstance(settings.seed, int) or settings.seed < 0:
            raise FalipError(f"the seed must be a whole number >= 0, got {settings.seed!r}")
        parse_method(settings.method)
        scorer.templates_of(settings.template)
        for path in settings.data:
            if not Path(path).is_file():
                raise FalipError(f"REC split file not found: {path}")
        if settings.detector_file is not None and not Path(settings.detector_file).is_file():
            raise FalipError(f"detector file not found: {settings.detector_file}")
        from ..data.registry import get_dataset

        get_dataset(settings.format, "rec")

    def config(self) -> dict:
        s = self.settings
        config = {k: v for k, v in asdict(s).items() if k != "format" or v != "reclip"}  # as before formats
        return {"task": "rec", **config, **self.model_info}

    def units(self) -> Iterator[Unit | Skip]:
        from ..data.reclip import image_key, read_detections
        from ..data.records import Skipped
        from ..data.registry import rec_reader

        s = self.settings
        dropped_dets: dict[str, list[str]] = {}
        detections = read_detections(s.detector_file, dropped=dropped_dets) if s.detector_file else None
        out: list[Unit | Skip] = []
        matched = 0
        noted: set[str] = set()
        for path in s.data:
            split = self._split_names[path]
            groups: dict[str, dict] = {}
            bank: list[str] = []
            for sample in rec_reader(s.format)(path, image_root=s.images, errors="skip"):
                if isinstance(sample, Skipped):
                    out.append(Skip(sample.id, sample.source, sample.reason))
                    # FGVP's bank holds every sentence of the file; a blank one says nothing (the scorer refuses it)
                    bank.extend(t.lower() for t in sample.texts if t.strip())
                    continue
                key = str(sample.image_path)
                line_id = sample.id.rsplit("#", 1)[0]
                group = groups.get(key)
                if group is None:
                    group = groups[key] = {
                        "split": split,
                        "image": key,
                        "image_id": str(sample.image_id),
                        "source": sample.source,
                        "sets": [],
                        "whole_image": False,
                        "queries": [],
                    }
                if detections is None:
                    candidates = sample.boxes.tolist()
                    for note in sample.dropped:
                        k = note.split("]", 1)[0] + "]"  # "anns[k]"
                        if f"{line_id}/{k}" not in noted:
                            noted.add(f"{line_id}/{k}")
                            out.append(
                                Skip(f"{line_id}/{k}", sample.source, f"{note}: dropped from the candidates; "
                                     f"the line's sentences are scored with its other {len(candidates)} boxes")
                            )  # fmt: skip
                else:
                    ikey = image_key(sample.image_id)
                    found = detections.get(ikey)
                    matched += found is not None
                    for j, note in enumerate(dropped_dets.get(ikey, [])):
                        note_id = f"{Path(s.detector_file).name}:{ikey}/detections[{j}]"  # type: ignore[arg-type]
                        if note_id not in noted:
                            noted.add(note_id)
                            out.append(Skip(note_id, str(s.detector_file), f"{note}: dropped from the proposals"))
                    candidates = found.tolist() if found is not None and len(found) else None
                    group["whole_image"] = candidates is None  # ReCLIP: no detections -> the whole image
                if candidates not in group["sets"]:
                    group["sets"].append(candidates)
                group["queries"].append(
                    {
                        "id": sample.id,
                        "sentence": sample.sentence,
                        "gold": sample.gold_boxes.tolist(),
                        "zero_area_gold": len(getattr(sample, "zero_area_gold", ())),
                        "set": group["sets"].index(candidates),
                        "source": sample.source,
                    }
                )
                bank.append(sample.sentence.lower())
            for group in groups.values():
                for q in group["queries"]:
                    self._negatives[q["id"]] = sample_negatives(bank, s.subtract_q, q["id"], s.seed)
                uid = f"{split}:{group['image_id']}:{Path(group['image']).name}"
                out.append(Unit(uid, group, group["source"], items=len(group["queries"])))
        if detections is not None and not matched and any(isinstance(u, Unit) for u in out):
            ids = sorted(detections)[:3]
            raise FalipError(
                f"detector file {s.detector_file}: none of its {len(detections)} image ids (e.g. "
                f"{', '.join(map(repr, ids)) or 'none'}) is an image_id of the split files; is it the file for "
                "these splits?"
            )
        yield from out

    def load(self, unit: Unit) -> tuple[dict, Image.Image, list[Regions], list[list[str]], list[dict]]:
        from ..data.images import load_image

        group = unit.payload
        image = load_image(group["image"])
        w, h = image.size
        regions, dropped, unseen = [], [], []
        geometry = getattr(getattr(self.scorer, "preprocess", None), "geometry", None)
        for boxes in group["sets"]:
            if boxes is None:  # an image without detections: the whole image is its one candidate
                boxes = [[0.0, 0.0, float(w), float(h)]]
            keep, notes = [], []
            for b in boxes:
                if b[0] >= w or b[1] >= h or b[2] <= 0 or b[3] <= 0:
                    xywh = [round(b[0], 2), round(b[1], 2), round(b[2] - b[0], 2), round(b[3] - b[1], 2)]
                    notes.append(f"candidate box {xywh} (x, y, w, h) lies wholly outside the {w}x{h} image")
                else:
                    keep.append(b)
            if not keep:
                raise FalipError(f"{group['source']}: {notes[0]}, and so does every other candidate")
            try:
                candidates = Regions(keep, image_size=image.size)
            except FalipError as err:
                raise FalipError(f"{group['source']}: {err}") from None
            visible, reasons = _visible(candidates, geometry)
            if not visible:
                raise FalipError(f"every candidate region is unseen by the model: {reasons[0]}")
            if len(visible) < len(candidates):  # candidates outside the centre crop (resize 'crop') cannot win
                notes_unseen = [f"{group['image']}: {r}" for r in reasons]
                unseen.append(
                    {"visible": visible, "count": len(candidates), "reason": reasons[0], "notes": notes_unseen}
                )
                candidates = candidates.select(visible)
            else:
                unseen.append({})
            regions.append(candidates)
            dropped.append(notes)
        return group, image, regions, dropped, unseen

    def run(
        self, loaded: list[tuple[dict, Image.Image, list[Regions], list[list[str]], list[dict]]]
    ) -> list[list[dict]]:
        s = self.settings
        out: list[list[dict]] = [[] for _ in loaded]
        calls: list[tuple[int, int, list[dict]]] = []  # (unit, candidate set, its queries)
        for u, (group, _, regions, _, _) in enumerate(loaded):
            for k in range(len(regions)):
                calls.append((u, k, [q for q in group["queries"] if q["set"] == k]))
        scores = rec_scores(
            self.scorer,
            [loaded[u][1] for u, _, _ in calls],
            [loaded[u][2][k] for u, k, _ in calls],
            [[q["sentence"] for q in qs] for _, _, qs in calls],
            s.method,
            s.template,
            [[self._negatives.get(q["id"], []) for q in qs] for _, _, qs in calls] if s.subtract_q else None,
        )
        results: dict[tuple[int, str], dict] = {}
        for (u, k, qs), sc in zip(calls, scores):
            group, _, regions, dropped, unseen = loaded[u]
            for j, q in enumerate(qs):
                col = sc[:, j]
                pick = pick_region(col, q["id"], s.seed, s.ties)
                box = regions[k].boxes[pick]
                pred = unseen[k]["visible"][pick] if unseen[k] else pick  # index among all kept candidates
                scored: list[float | None] = [float(v) for v in col]
                if unseen[k]:  # one entry per kept candidate, null where the model does not see it
                    scored = [None] * unseen[k]["count"]
                    for i, v in zip(unseen[k]["visible"], col):
                        scored[i] = float(v)
                gold = np.asarray(q["gold"], dtype=np.float64).reshape(-1, 4)
                iou = float(box_iou(box[None], gold).max()) if len(gold) else 0.0
                results[(u, q["id"])] = {
                    "id": q["id"],
                    "split": group["split"],
                    "image": group["image"],
                    "sentence": q["sentence"],
                    "pred": pred,
                    "pred_box": [float(v) for v in box],
                    "iou": iou,
                    "correct": iou > s.iou_threshold,
                    "scores": scored,
                    "whole_image": bool(group["whole_image"]),
                    "candidate_set": k,
                    "dropped": [f"{group['image']}: {n}" for n in dropped[k]],
                }
                if q.get("zero_area_gold"):  # kept and counted wrong unless another gold box matches, as ReCLIP
                    results[(u, q["id"])]["zero_area_gold"] = q["zero_area_gold"]
                if unseen[k]:
                    results[(u, q["id"])]["unseen_candidates"] = unseen[k]["count"] - len(unseen[k]["visible"])
                    results[(u, q["id"])]["unseen_reason"] = unseen[k]["reason"]
                    results[(u, q["id"])]["unseen"] = unseen[k]["notes"]
        for u, (group, _, _, _, _) in enumerate(loaded):
            out[u] = [results[(u, q["id"])] for q in group["queries"]]
        return out

    def summarize(self, records: list[dict], skipped: list[dict]) -> Summary:
        notes = [e for e in skipped if _BOX_NOTE.search(str(e.get("id", "")))]
        items = [e for e in skipped if not _BOX_NOTE.search(str(e.get("id", "")))]
        summary = accuracy_summary(records, items, by="split")
        dropped, unseen = _count_dropped(records)
        summary.extra["dropped_boxes"] = len(notes) + dropped + unseen
        summary.extra["unseen_boxes"] = unseen
        summary.extra["zero_area_gold"] = sum(1 for r in records if r.get("zero_area_gold"))
        summary.extra["images_without_detections"] = len(
            {(r["split"], r["image"]) for r in records if r.get("whole_image")}
        )
        s = self.settings
        summary.extra["protocol"] = {
            "boxes": "prop (detector file)" if s.detector_file else "gold (the annotations' boxes)",
            "ties": s.ties,
            "subtract_q": s.subtract_q,
            "seed": s.seed,
        }
        return summary

    def table(self, summary: Summary | dict) -> str:
        summary = summary.to_dict() if isinstance(summary, Summary) else summary
        text = summary_table(summary, "split", f"REC ({self.settings.method})")
        if summary.get("dropped_boxes"):
            text += f"\ncandidate boxes dropped (zero area or outside the image): {summary['dropped_boxes']}"
            if summary.get("unseen_boxes"):
                text += f" ({summary['unseen_boxes']} outside the centre crop of resize mode 'crop': null scores)"
        if summary.get("zero_area_gold"):
            text += (
                f"\nsentences whose gold box has zero area (kept and counted wrong, as ReCLIP): "
                f"{summary['zero_area_gold']}"
            )
        if summary.get("images_without_detections"):
            text += (
                f"\nimages with no detections (scored with the whole image as their one box): "
                f"{summary['images_without_detections']}"
            )
        return text


def make_task(scorer: RegionScorer, model_info: dict, method: str, settings: dict[str, Any]) -> RecTask:
    """The REC task of the registry (:mod:`falip.tasks`): ``settings`` as :func:`falip.tasks.task_settings` gives."""
    from . import build_settings

    return RecTask(scorer, build_settings(RecSettings, settings, method=method), model_info)


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
    ties: str = "first",
    model_info: dict | None = None,
    **run_options: Any,
) -> tuple[dict, list[dict]]:
    """Deprecated: ``falip.tasks.evaluate("rec", scorer, out_dir, data=[...], ...)`` (warns once; same run)."""
    from ..core.deprecation import warn_renamed
    from . import evaluate

    warn_renamed("falip.tasks.rec.evaluate_rec(...)", 'falip.tasks.evaluate("rec", scorer, out_dir, data=[...], ...)')
    files = [data] if isinstance(data, (str, Path)) else list(data)
    return evaluate(
        "rec", scorer, out_dir, method=method, model_info=model_info, run_options=run_options, data=files,
        images=images, detector_file=detector_file, template=template, subtract_q=subtract_q, seed=seed, ties=ties,
    )  # fmt: skip


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


def _visible(regions: Regions, geometry: Any) -> tuple[list[int], list[str]]:
    """Indices of the regions the model sees through ``geometry`` (all but those outside the centre
    crop of resize mode ``crop``), and why each unseen one is not seen."""
    if geometry is None:
        return list(range(len(regions))), []
    try:
        regions.to_input(geometry)
        return list(range(len(regions))), []
    except FalipError:
        pass
    seen, reasons = [], []
    for k in range(len(regions)):
        try:
            regions.select([k]).to_input(geometry)
            seen.append(k)
        except FalipError as err:
            reasons.append(str(err).replace("box 0 ", f"candidate {k} ", 1))
    return seen, reasons


def _count_dropped(records: Sequence[dict]) -> tuple[int, int]:
    """``(dropped, unseen)``: candidate boxes named in the records' ``dropped`` (outside the image) and
    unseen by the model (outside the centre crop), each box once: the sentences scored over the same
    candidate list of an image share its boxes. Records written before ``candidate_set`` existed
    are counted by distinct message."""
    per_set: dict[tuple, tuple[int, int]] = {}
    messages: set[str] = set()
    for r in records:
        if "candidate_set" in r:
            per_set[(r["split"], r["image"], r["candidate_set"])] = (
                len(r.get("dropped", [])),
                int(r.get("unseen_candidates", 0)),
            )
        else:
            messages.update(r.get("dropped", []))
    return len(messages) + sum(d for d, _ in per_set.values()), sum(u for _, u in per_set.values())


# ------------------------------------------------------------- samples for ``falip heads``
def rec_samples(
    data: Sequence[str | os.PathLike], images: str | os.PathLike | None = None, dataset: str = "reclip", **_: Any
) -> Iterator[Any]:
    """The images of ReCLIP-format REC splits with their gold boxes: ``(image_path, [maker, ...], sources)``.

    The region analysed per REC line is its gold box (the object the sentences refer to), once per
    line whatever the number of sentences, and once per image when several lines refer to the same
    box. Lines are grouped by image, in first-seen order; malformed lines are yielded as
    :class:`falip.data.records.Skipped`. A maker maps the image size ``(W, H)`` to the box's Regions.
    ``dataset``: the REC format (:func:`falip.data.registry.rec_reader`); other task settings are ignored.
    """
    from ..data.records import Skipped
    from ..data.registry import rec_reader

    read = rec_reader(dataset)

    groups: dict[str, tuple[Path, list[Callable[[tuple[int, int]], Regions]], list[str], set]] = {}
    for path in data:
        seen_lines: set[str] = set()
        for sample in read(path, images, errors="skip"):
            if isinstance(sample, Skipped):
                yield sample
                continue
            if sample.source in seen_lines:
                continue
            seen_lines.add(sample.source)
            key = str(sample.image_path)
            group = groups.setdefault(key, (sample.image_path, [], [], set()))
            for box in sample.gold_boxes:
                xyxy = tuple(float(v) for v in box)
                if xyxy in group[3]:
                    continue
                group[3].add(xyxy)
                group[1].append(lambda size, b=xyxy: Regions([b], image_size=size))
                group[2].append(sample.source)
    for path, makers, sources, _ in groups.values():
        yield path, makers, sources
