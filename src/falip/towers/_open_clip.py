"""What open_clip's two adapters share: the model's own text tower and logit scale/bias.

open_clip's ``CLIP`` / ``CustomTextCLIP`` encode text the same way whatever their image tower is
(its own ViT or a timm trunk), so both adapters take the text side from this base.
"""

from __future__ import annotations

import torch

from ..core.tower import Tower

__all__ = ["OpenClipTower"]


class OpenClipTower(Tower):
    """A Tower over an open_clip model: text, logit scale and logit bias from the model itself."""

    library = "open_clip"

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.model.encode_text(tokens, normalize=normalize)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    @property
    def logit_bias(self) -> torch.Tensor | None:
        return getattr(self.model, "logit_bias", None)  # SigLIP-style models only
