"""The Fig. 7 ablations (feature-mask, qk-prompt, v-prompt): they live beside the scoring methods, in
:mod:`falip.prompts.ablations`; this module keeps the old import path working."""

from __future__ import annotations

from ..prompts.ablations import *  # noqa: F403  (the same names, from their new home)
from ..prompts.ablations import __all__  # noqa: F401
