"""A toy of each registry: a task, a dataset, a REC format and a scoring method (tests/cli/test_any_task.py).

Each is what a newcomer writes: one function or class, then one registry line (:func:`register_toys`).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from falip.runner import Unit

# ------------------------------------------------------------------------ a REC format: a JSON list


def write_toy_rec(reclip_file: Path, out: Path, images: Path | None = None) -> Path:
    """The sentences of a ReCLIP jsonl as a JSON list ``[{image, image_id, sentence, boxes, gold}]``."""
    from falip.data.reclip import iter_reclip_jsonl

    rows = [
        {
            "image": str(s.image_path),
            "image_id": str(s.image_id),
            "sentence": s.sentence,
            "boxes": s.boxes.tolist(),
            "gold": s.gold_boxes.tolist(),
        }
        for s in iter_reclip_jsonl(reclip_file, images)
    ]
    out.write_text(json.dumps(rows), encoding="utf-8")
    return out


def read_toy_rec(path: str, image_root: str | None = None, errors: str = "skip"):
    """The REC reader protocol of falip.data.registry: one sample per sentence."""
    for i, row in enumerate(json.loads(Path(path).read_text(encoding="utf-8"))):
        image = Path(row["image"]) if image_root is None else Path(image_root) / Path(row["image"]).name
        yield SimpleNamespace(
            id=f"{Path(path).name}:{i + 1}#0",
            image_path=image,
            image_id=row["image_id"],
            source=f"{path}:{i + 1}",
            sentence=row["sentence"],
            boxes=np.asarray(row["boxes"], dtype=np.float64),
            gold_boxes=np.asarray(row["gold"], dtype=np.float64).reshape(-1, 4),
            dropped=(),
        )


# ------------------------------------------------------------ a dataset: the first N regions of a file


def open_first_regions(root: str, first: int = 2) -> tuple[Any, list[str], dict]:
    """A JSONL region file cut to its first ``first`` items (a ``regions`` reader)."""
    from falip.data.classification import ClassificationFile

    ds = ClassificationFile(root, errors="skip", format="jsonl")
    items = list(ds)[:first]
    return items, ds.classes, {"first": first}


# ---------------------------------------------------------------- a scoring method: crop, scaled by 2


def crop_twice(scorer: Any, items: list) -> torch.Tensor:
    """The crop's features times 2: the same cosines as ``crop``."""
    return 2 * scorer._term_features(items, ("crop",))


# --------------------------------------------------- a task: does a region beat "nothing" for its label?


class VerifyTask:
    """Each labelled region is correct when its label's text outscores the text ``"nothing"`` on it."""

    name = "verify"

    def __init__(self, scorer: Any, model_info: dict, method: str, settings: dict) -> None:
        from falip.data.registry import open_dataset

        self.scorer, self.model_info, self.method, self.settings = scorer, model_info, method, settings
        self.items, self.classes, self.options = open_dataset(
            settings["dataset"], settings["root"], "regions", **settings
        )

    def config(self) -> dict:
        return {
            "task": "verify",
            "method": self.method,
            "other": self.settings["other"],
            **self.options,
            **self.model_info,
        }

    def units(self):
        for item in self.items:
            yield Unit(item.id, item, item.source)

    def load(self, unit: Unit):
        from falip.data.images import load_image

        image = load_image(unit.payload.image_path)
        return unit.payload, image, unit.payload.regions(image.size)

    def run(self, loaded: list) -> list[list[dict]]:
        images = [image for _, image, _ in loaded]
        regions = [r for _, _, r in loaded]
        texts = [[item.label, self.settings["other"]] for item, _, _ in loaded]
        scores = self.scorer.score_many(images, regions, texts, method=self.method)
        return [[{"id": item.id, "correct": bool(s[0, 0] > s[0, 1])}] for (item, _, _), s in zip(loaded, scores)]

    def summarize(self, records: list[dict], skipped: list[dict]) -> dict:
        from falip.tasks.metrics import accuracy_summary

        return accuracy_summary(records, skipped)

    def table(self, summary: dict) -> str:
        return f"verify: {summary['accuracy']:.1f}% of {summary['n']}"


def make_verify(scorer: Any, model_info: dict, method: str, settings: dict) -> VerifyTask:
    return VerifyTask(scorer, model_info, method, settings)


# ------------------------------------------------------------------------------ the registry lines


def register_toys() -> list[tuple[dict, str]]:
    """Register the four toys; returns ``(registry, name)`` pairs to remove them again."""
    from falip.data.registry import DATASETS, DatasetSpec, Setting, register_dataset
    from falip.prompts.registry import METHODS, register_features
    from falip.tasks import TASKS, TaskSpec, register_task

    register_dataset(DatasetSpec("toyrec", "rec", read_toy_rec, "a JSON list of sentences", root="file"))
    first = Setting("first", "int", 2, "items kept", minimum=1)
    register_dataset(DatasetSpec("first-regions", "regions", open_first_regions, "the first N", "file", (first,)))
    register_features("crop2", "the crop's features, twice")(crop_twice)
    settings = (Setting("dataset"), Setting("root"), Setting("other", default="nothing"))
    register_task(TaskSpec("verify", "verify", make_verify, dataset_kind="regions", settings=settings,
                           required=("dataset", "root")))  # fmt: skip
    return [(DATASETS, "toyrec"), (DATASETS, "first-regions"), (METHODS, "crop2"), (TASKS, "verify")]
