"""Open-vocabulary labels for proposals: every region a source proposes in each image, named among classes.

Alpha-CLIP's annotation pipeline with FALIP: a proposal source (:mod:`falip.proposals`) gives each
image's regions, and one batched pass per image scores all of them against the class texts. One
unit per image (proposing happens in the harness's loader workers, timed apart); one record per
proposal: ``id`` (``<image>#<k>``, k from 1), ``image``, ``box`` xyxy pixels, ``class`` and
``score`` (the softmax over the classes), ``topk`` (``[[class, probability], ...]``),
``proposal_score`` (the source's own), ``mask`` (COCO RLE) when the source gives masks. An image
without proposals is a counted skip. After the run, :meth:`LabelTask.write_outputs` writes
``labels.json`` (every record, in image order), ``labels_coco.json`` (COCO results: ``category_id``
is the class's index from 1, ``image_id`` the number in the file name or else its stem) and
``overlays/<image stem>.png`` (the regions coloured by class).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from ..core.errors import FalipError
from ..data.coco import mask_to_coco_rle
from ..defaults import CLS_TEMPLATE
from ..prompts.registry import parse_method
from ..runner import Skip, Unit
from ..scoring import RegionScorer
from .metrics import format_table

__all__ = [
    "IMAGE_SUFFIXES",
    "LabelSettings",
    "LabelTask",
    "RegionLabel",
    "find_images",
    "label_regions",
    "labels_from_scores",
    "read_classes",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def find_images(paths: Sequence[str | Path]) -> list[Path]:
    """Image files from files and folders (a folder: its images, recursively, sorted); FalipError when none."""
    out: list[Path] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FalipError(f"{p}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FalipError(f"{p}: no such image file or folder")
    if not out:
        raise FalipError("give at least one image file or folder")
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]  # type: ignore[func-returns-value]


def read_classes(value: str | Sequence[str]) -> list[str]:
    """Class names from ``"a,b,c"``, a file (one per line) or a list; FalipError for empty or repeated names."""
    if isinstance(value, str):
        path = Path(value)
        try:
            is_file = path.is_file()
        except OSError:  # a long list of names is no file name (ENAMETOOLONG)
            is_file = False
        if is_file:
            try:
                names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            except UnicodeDecodeError:
                raise FalipError(f"{path}: not UTF-8 text (one class name per line)") from None
            where = [f"{path}:{k}" for k in range(1, len(names) + 1)]
            pairs = [(n, w) for n, w in zip(names, where) if n]
            if not pairs:
                raise FalipError(f"{path}: holds no class name")
        else:
            names = [n.strip() for n in value.split(",")]
            pairs = [(n, f"class {k}") for k, n in enumerate(names, start=1)]
    else:
        pairs = [(str(n).strip(), f"class {k}") for k, n in enumerate(value, start=1)]
    seen: dict[str, str] = {}
    for name, where in pairs:
        if not name:
            raise FalipError(f"{where} is empty: class names are comma-separated, e.g. --classes cat,dog")
        if name.lower() in seen:
            raise FalipError(f"{where}: {name!r} repeats {seen[name.lower()]} (class names must differ)")
        seen[name.lower()] = where
    if len(pairs) < 2:
        raise FalipError("give at least two classes: a region is named among them")
    return [n for n, _ in pairs]


class RegionLabel(NamedTuple):
    """One proposal's label: its best class (``label``), that class's softmax probability over the
    classes (``score``) and the ``topk`` ``[(class, probability), ...]``, best first."""

    label: str
    score: float
    topk: list[tuple[str, float]]


def labels_from_scores(scores: Any, classes: Sequence[str], top_k: int = 5) -> list[RegionLabel]:
    """Per region, the softmax over the classes of ``scores`` (``[K, C]`` logits, a tensor or array;
    float64) and its best ``top_k`` (exact ties: the earlier class)."""
    logits = np.asarray(scores.double().numpy() if hasattr(scores, "double") else scores, dtype=np.float64)
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    k = min(top_k, len(classes))
    out = []
    for row in prob:
        order = np.lexsort((np.arange(row.shape[0]), -row))[:k]  # ties: the earlier class
        topk = [(classes[int(i)], float(row[i])) for i in order]
        out.append(RegionLabel(topk[0][0], topk[0][1], topk))
    return out


def label_regions(
    scorer: RegionScorer,
    image: Image.Image,
    proposals: Any,
    classes: Sequence[str],
    method: str = "falip",
    templates: str | Sequence[str] = (CLS_TEMPLATE,),
    top_k: int = 5,
) -> list[RegionLabel]:
    """Each proposal of ``image`` (a :class:`~falip.proposals.base.Proposals` or any regions
    ``scorer.score_many`` takes) named among ``classes``: one batched pass, then
    :func:`labels_from_scores`, exactly as ``falip label`` labels one image."""
    if top_k < 1:
        raise FalipError(f"top_k must be >= 1, got {top_k}")
    regions = proposals.regions() if hasattr(proposals, "regions") else proposals
    template = [templates] if isinstance(templates, str) else list(templates)
    scores = scorer.score_many([image], [regions], list(classes), method, template=template)[0]
    return labels_from_scores(scores, list(classes), top_k)


@dataclass(frozen=True)
class LabelSettings:
    """What defines a labelling run (``run.json``)."""

    images: tuple[str, ...]
    classes: tuple[str, ...]
    proposals: str = "auto"
    min_area: float = 0.0
    nms: float | None = None
    top: int | None = None
    method: str = "falip"
    templates: tuple[str, ...] = (CLS_TEMPLATE,)
    top_k: int = 5


class LabelTask:
    """Labels for every proposal of every image, for :func:`falip.runner.run` (module docstring)."""

    name = "label"

    def __init__(
        self, scorer: RegionScorer, settings: LabelSettings, source: Any, model_info: dict | None = None
    ) -> None:
        parse_method(settings.method)
        scorer.templates_of(list(settings.templates))
        if settings.top_k < 1:
            raise FalipError(f"top_k must be >= 1, got {settings.top_k}")
        self.scorer, self.settings, self.source = scorer, settings, source
        self.paths = find_images(settings.images)
        self.classes = list(settings.classes)
        self.model_info = dict(model_info or {})
        self.geometry = getattr(getattr(scorer, "preprocess", None), "geometry", None)
        root = self._common_root()
        # root is resolved: a relative folder (`falip label photos`) is named from it too
        self._names = {str(p): (p.resolve().relative_to(root).as_posix() if root else p.name) for p in self.paths}

    def _common_root(self) -> Path | None:
        parents = {p.resolve().parent for p in self.paths}
        if len(parents) == 1:
            return next(iter(parents))
        try:
            import os

            return Path(os.path.commonpath([str(p.resolve()) for p in self.paths]))
        except ValueError:
            return None

    def config(self) -> dict:
        s = self.settings
        return {
            "task": "label",
            "images": [str(p) for p in self.paths],
            "classes": self.classes,
            "proposals": s.proposals,
            "min_area": s.min_area,
            "nms": s.nms,
            "top": s.top,
            "method": s.method,
            "templates": list(s.templates),
            "top_k": s.top_k,
            **self.model_info,
        }

    def units(self) -> Iterator[Unit | Skip]:
        for p in self.paths:
            name = self._names[str(p)]
            yield Unit(name, {"path": str(p), "name": name}, str(p))

    def load(self, unit: Unit) -> tuple[dict, Image.Image, Any, float]:
        """The image and its proposals (filtered, visible at the model input); FalipError when there are none."""
        from ..data.images import load_image
        from ..proposals.base import filter_proposals, visible_proposals

        s = self.settings
        image = load_image(unit.payload["path"])
        t0 = time.perf_counter()
        raw = self.source.propose(image, Path(unit.payload["path"]))
        seconds = time.perf_counter() - t0
        props = filter_proposals(raw, min_area=s.min_area, nms=s.nms, top=s.top)
        props = visible_proposals(props, self.geometry)
        if len(props) == 0:
            dropped = ", ".join(f"{n} {r}" for r, n in sorted(props.dropped.items())) or "none"
            raise FalipError(f"no proposals from {s.proposals} (dropped: {dropped})")
        return unit.payload, image, props, seconds

    def run(self, loaded: list[tuple[dict, Image.Image, Any, float]]) -> list[list[Any]]:
        s = self.settings
        scores = self.scorer.score_many(
            [im for _, im, _, _ in loaded], [p.regions() for _, _, p, _ in loaded], self.classes, s.method,
            template=list(s.templates),
        )  # fmt: skip
        out: list[list[Any]] = []
        for (payload, _, props, seconds), sc in zip(loaded, scores):
            records: list[Any] = []
            for j, label in enumerate(labels_from_scores(sc, self.classes, s.top_k)):
                rec: dict[str, Any] = {
                    "id": f"{payload['name']}#{j + 1}",
                    "image": payload["name"],
                    "box": [float(v) for v in props.boxes[j]],
                    "class": label.label,
                    "score": label.score,
                    "topk": [list(pair) for pair in label.topk],
                    "proposal_score": None if props.scores is None else float(props.scores[j]),
                }
                if props.masks is not None:
                    rec["mask"] = mask_to_coco_rle(props.masks[j])
                if j == 0:  # per image, once
                    rec["proposal_s"] = seconds
                    rec["dropped"] = dict(props.dropped)
                records.append(rec)
            out.append(records)
        return out

    def summarize(self, records: list[dict], skipped: list[dict]) -> dict:
        per_class: dict[str, int] = {}
        for r in records:
            per_class[r["class"]] = per_class.get(r["class"], 0) + 1
        dropped: dict[str, int] = {}
        for r in records:
            for reason, n in r.get("dropped", {}).items():
                dropped[reason] = dropped.get(reason, 0) + n
        return {
            "n": len(records),
            "images": len({r["image"] for r in records}),
            "per_class": {c: per_class.get(c, 0) for c in self.classes},
            "proposal_s": sum(r.get("proposal_s", 0.0) for r in records),
            "dropped": dropped,
            "classes": self.classes,
        }

    def write_outputs(self, out_dir: Path, records: list[dict], summary: dict) -> None:
        """``labels.json``, ``labels_coco.json`` and ``overlays/`` (module docstring)."""
        from ..data.images import load_image
        from ..data.reclip import decode_segmentation
        from ..proposals.files import image_id_of
        from .overlay import draw_regions

        out_dir = Path(out_dir)
        labels = [
            {k: v for k, v in r.items() if k not in ("unit", "unit_size", "proposal_s", "dropped")} for r in records
        ]
        (out_dir / "labels.json").write_text(json.dumps(labels) + "\n", encoding="utf-8")
        index = {c: k for k, c in enumerate(self.classes)}
        coco = []
        for r in labels:
            iid = image_id_of(r["image"])
            d = {
                "image_id": int(iid) if iid.isdigit() else iid,
                "category_id": index[r["class"]] + 1,
                "bbox": [r["box"][0], r["box"][1], r["box"][2] - r["box"][0], r["box"][3] - r["box"][1]],
                "score": r["score"],
            }
            if "mask" in r:
                d["segmentation"] = r["mask"]
            coco.append(d)
        (out_dir / "labels_coco.json").write_text(json.dumps(coco) + "\n", encoding="utf-8")
        (out_dir / "labels_categories.json").write_text(
            json.dumps([{"id": k + 1, "name": c} for k, c in enumerate(self.classes)]) + "\n", encoding="utf-8"
        )
        by_image: dict[str, list[dict]] = {}
        for r in labels:
            by_image.setdefault(r["image"], []).append(r)
        paths = {self._names[str(p)]: p for p in self.paths}
        (out_dir / "overlays").mkdir(exist_ok=True)
        for name, rows in by_image.items():
            image = load_image(paths[name])
            masks = None
            if all("mask" in r for r in rows):
                masks = np.stack([decode_segmentation(r["mask"], image.height, image.width) for r in rows])
            picture = draw_regions(
                image, np.array([r["box"] for r in rows]), [f"{r['class']} {r['score']:.2f}" for r in rows],
                [index[r["class"]] for r in rows], masks,
            )  # fmt: skip
            picture.save(out_dir / "overlays" / (name.replace("/", "__").rsplit(".", 1)[0] + ".png"))

    def table(self, summary: dict) -> str:
        rows = [[c, str(n)] for c, n in summary["per_class"].items()]
        head = (
            f"labelled {summary['n']} proposals in {summary['images']} images ({self.settings.method}, "
            f"proposals {self.settings.proposals}: {summary['proposal_s']:.1f} s proposing)"
        )
        text = head + "\n" + format_table(["class", "proposals"], rows)
        if summary.get("skipped"):
            text += f"\n{summary['skipped']} images skipped (skipped.jsonl)"
        return text
