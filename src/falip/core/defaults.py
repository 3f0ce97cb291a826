"""The method's defaults and choices, in one place (torch-free; imported by the rest of ``core`` and by
:mod:`falip.defaults`, which adds the tasks' and the commands' own)."""

from __future__ import annotations

__all__ = ["ALPHA", "BLOCKS_NOTE", "FORM", "FORMS", "LAST_BLOCKS", "RESIZE_MODES", "SIGMA"]

ALPHA = 0.2
"""FALIP's alpha when neither the caller nor a model preset sets one."""

SIGMA = 100.0
"""The foveal profile's sigma, in patch tokens (100: a flat bias over the region)."""

LAST_BLOCKS = 4
"""``layers=None`` biases the last this many blocks (all of them on a shallower tower)."""

FORMS = ("cls", "all", "diag")
"""Mask forms (the paper's a/b/c): the [CLS] query row only, every query row, the diagonal too."""

FORM = "cls"
"""The default mask form."""

RESIZE_MODES = ("squash", "crop")
"""Preprocessing geometry: ``squash`` (the whole image to the input size) or ``crop`` (shorter side,
then a centre crop)."""

# the one sentence each output a person reads carries once (Python indices stay 0-based)
BLOCKS_NOTE = "blocks are numbered from 1 (block 1 is the first), as in the paper"
