"""Proposals from a Hugging Face model through transformers' own pipelines (``hf:<hub id or folder>``).

A SAM-family model (``model_type`` sam, sam_hq, sam2, ...) runs ``pipeline("mask-generation")``:
masks with their predicted IoU as score. Any other model runs ``pipeline("object-detection")``:
its boxes, class-agnostic (the detector's labels are ignored), with their scores. The model loads
once, in this process (``in_workers = False``: the harness proposes in the main process). Pipeline
keywords (``points_per_batch``, ``pred_iou_thresh``, ``threshold``, ...) pass through
``pipeline_options`` (``--proposal-option KEY=VALUE`` on the command line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..core.errors import FalipError
from .base import Proposals, mask_boxes

__all__ = ["MASK_MODEL_TYPES", "HFProposals", "open_hf"]

MASK_MODEL_TYPES = ("sam", "sam_hq", "sam2", "sam2_video", "edgetam")


class HFProposals:
    """A transformers pipeline as a proposal source (module docstring)."""

    name = "hf"
    in_workers = False

    def __init__(self, model: str, device: str = "cpu", pipeline_options: dict[str, Any] | None = None) -> None:
        try:
            from transformers import AutoConfig, pipeline
        except ImportError:
            raise FalipError("hf: proposals need Hugging Face transformers: pip install 'falip[hf]'") from None
        from ..models.hf import hf_source

        path, kwargs = hf_source(model)
        config = AutoConfig.from_pretrained(path, **kwargs)
        self.task = "mask-generation" if config.model_type in MASK_MODEL_TYPES else "object-detection"
        self.model = model
        self.options = dict(pipeline_options or {})
        try:
            hub = {"local_files_only": True} if kwargs.get("local_files_only") else {}
            cache = {"cache_dir": kwargs["cache_dir"]} if kwargs.get("cache_dir") else None
            self.pipe = pipeline(self.task, model=path, device=device, model_kwargs=cache, **hub)
        except (OSError, ValueError) as e:
            raise FalipError(f"hf:{model}: transformers cannot build its {self.task} pipeline ({e})") from None
        # a pipeline drops keywords it does not know without a word: refuse them here instead
        taken: set[str] = set()
        for params in self.pipe._sanitize_parameters(**self.options):
            taken |= set(params)
        unknown = sorted(set(self.options) - taken)
        if unknown:
            raise FalipError(f"hf:{model}: its {self.task} pipeline takes no option {', '.join(unknown)}")

    def propose(self, image: Image.Image, path: Path | None = None) -> Proposals:
        w, h = image.size
        try:
            out = self.pipe(image.convert("RGB"), **self.options)
        except TypeError as e:  # an unknown pipeline keyword
            raise FalipError(
                f"hf:{self.model}: its {self.task} pipeline refused the options {self.options} ({e})"
            ) from None
        if self.task == "mask-generation":
            masks = np.stack([np.asarray(m, dtype=bool) for m in out["masks"]]) if len(out["masks"]) else None
            scores = np.asarray(out["scores"], dtype=np.float64).reshape(-1)
            if masks is None:
                return Proposals(np.zeros((0, 4)), (w, h), source=f"hf:{self.model}")
            empty = ~masks.reshape(len(masks), -1).any(axis=1)
            masks, scores = masks[~empty], scores[~empty]
            dropped = {"empty mask": int(empty.sum())} if empty.any() else {}
            return Proposals(mask_boxes(masks), (w, h), masks if len(masks) else None, scores, f"hf:{self.model}",
                             dropped)  # fmt: skip
        boxes, scores, dropped = [], [], 0
        for d in out:
            b = d["box"]
            x0, y0 = max(0.0, float(b["xmin"])), max(0.0, float(b["ymin"]))
            x1, y1 = min(float(w), float(b["xmax"])), min(float(h), float(b["ymax"]))
            if x1 <= x0 or y1 <= y0:
                dropped += 1
                continue
            boxes.append([x0, y0, x1, y1])
            scores.append(float(d["score"]))
        return Proposals(
            np.array(boxes, dtype=np.float64).reshape(-1, 4), (w, h), None,
            np.array(scores, dtype=np.float64) if scores else None, f"hf:{self.model}",
            {"empty box": dropped} if dropped else {},
        )  # fmt: skip


def open_hf(argument: str, device: str = "cpu", single: bool = False, **pipeline_options: Any) -> HFProposals:
    """The ``hf`` source: ``hf:<hub id or folder>``; other keywords go to the pipeline call."""
    if not argument:
        raise FalipError("an hf: proposal source needs a model: hf:<hub id or folder>, e.g. hf:facebook/sam-vit-base")
    return HFProposals(argument, device=device, pipeline_options=pipeline_options)
