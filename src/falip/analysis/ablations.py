"""The Fig. 7 ablations (feature-mask, qk-prompt, v-prompt): they live beside the scoring methods, in
:mod:`falip.prompts.ablations`; this module keeps the old import path working."""

from __future__ import annotations

from ..prompts.ablations import (
    VARIANTS,
    feature_mask_features,
    feature_mask_forward,
    mixed_attention,
    qk_prompt_features,
    scale_box,
    swap_forward,
    v_prompt_features,
)

__all__ = [
    "VARIANTS",
    "feature_mask_features",
    "qk_prompt_features",
    "v_prompt_features",
    "feature_mask_forward",
    "mixed_attention",
    "scale_box",
    "swap_forward",
]
