"""falip's defaults and choices, in one module that the library and the command line both import.

Torch-free and light (``falip --help`` reads it). The method's own (alpha, sigma, forms, resize modes)
live in :mod:`falip.core.defaults`, since ``core`` imports nothing else of falip; they are re-exported
here. Tests pin that each command's defaults and choices are these.
"""

from __future__ import annotations

from .core.defaults import ALPHA, BLOCKS_NOTE, FORM, FORMS, LAST_BLOCKS, RESIZE_MODES, SIGMA

__all__ = [
    "ALPHA",
    "BLOCKS_NOTE",
    "CLS_TEMPLATE",
    "FORM",
    "FORMS",
    "LAST_BLOCKS",
    "POINTCLOUD_METHODS",
    "POINTCLOUD_TEMPLATE",
    "PRECISIONS",
    "PROJECTIONS",
    "PROMPTS_HELP",
    "REC_TEMPLATE",
    "RESIZE_MODES",
    "SIGMA",
    "SWEEP_PARAMS",
    "TIES",
]

REC_TEMPLATE = "a photo of {}"
"""FALIP's REC prompt (docs/method.md, "Scoring and tasks"); expressions are lowercased first."""

CLS_TEMPLATE = "a photo of a {}."
"""The region-classification prompt (CLIP's ImageNet template)."""

POINTCLOUD_TEMPLATE = "point cloud depth map of a {}."
"""PointCLIP's prompt for a class of depth-map views."""

TIES = ("first", "random")
"""REC tie rules: the ``first`` box in annotation order (``np.argmax``, the authors' and ReCLIP's), or a
``random`` draw seeded per query."""

PRECISIONS = ("fp32", "fp16", "bf16")
"""The dtypes a model may run in."""

PROJECTIONS = ("v1", "v2")
"""Point-cloud projections: PointCLIP V1 (6 views) and V2 (10 views)."""

POINTCLOUD_METHODS = ("falip", "none")
"""How each point-cloud view is encoded: FALIP on the cloud's foreground, or plain CLIP."""

SWEEP_PARAMS = ("alpha", "sigma", "blocks", "form", "circle-scale", "enlarge")
"""What ``falip sweep`` and :func:`falip.analysis.sweeps.run_sweep` vary."""

PROMPTS_HELP = (
    "a prompts file: JSON {class: [sentence, ...]} (each class's sentences averaged), or PointCLIP V2's "
    "test-searched prompts (a best_param.py with best_prompt_weight['<dataset>_<backbone>_test_prompts'] = "
    "[one sentence per class, in class order], used verbatim, no template; V2 searched them on the test "
    "split: optimistic). Several lists in the file: the one of the dataset and model (e.g. modelnet40_vit_b16)"
)
"""The help of ``--prompts`` (one text for the command line and the task registry)."""
