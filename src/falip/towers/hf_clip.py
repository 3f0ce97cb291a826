"""Hugging Face transformers' CLIP: ``CLIPModel``, ``CLIPVisionModel``, ``CLIPVisionModelWithProjection``.

The image tower is a pre-norm ViT: patch and [CLS] embeddings plus positions, then
``pre_layrnorm`` (part of :meth:`embed` here), encoder layers, ``post_layernorm`` on the [CLS]
token and ``visual_projection`` (absent in ``CLIPVisionModel``, whose features are the normed
[CLS] token). Text goes through the model's own text tower (``get_text_features``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import FalipError
from ..core.tower import Readout
from ._hf import HFVisionTower, features

__all__ = ["HFCLIPTower"]

_CLASSES = ("CLIPModel", "CLIPVisionModel", "CLIPVisionModelWithProjection")


class HFCLIPTower(HFVisionTower):
    """A transformers CLIP model seen as a [CLS]-pooled tower."""

    _CLASSES = _CLASSES
    _FULL_MODEL = "CLIPModel"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        core = self.core
        if getattr(core.embeddings, "class_embedding", None) is None:
            raise FalipError(f"{type(model).__name__}: the vision embeddings have no [CLS] token")

    # ----------------------------------------------------------------------------- geometry
    @property
    def num_prefix_tokens(self) -> int:
        return 1

    @property
    def _projection(self) -> nn.Module | None:
        return getattr(self.model, "visual_projection", None)

    @property
    def output_dim(self) -> int:
        proj = self._projection
        return int(proj.out_features) if proj is not None else self.width

    @property
    def pooling(self) -> str:
        return "cls"

    # ------------------------------------------------------------------------------ forward
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        core = self.core
        return core.pre_layrnorm(core.embeddings(images.to(self.dtype)))

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = self.core.post_layernorm(tokens[:, 0])
        proj = self._projection
        return pooled if proj is None else proj(pooled)

    def readout(self) -> Readout:
        proj = self._projection
        if proj is None:
            return Readout.of_layer_norm(self.core.post_layernorm, None)
        return Readout.of_layer_norm(self.core.post_layernorm, proj.weight.T, proj.bias)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.to(self.dtype)
        name = type(self.model).__name__
        if name == "CLIPModel":
            return features(self.model.get_image_features(pixel_values=pixels), "pooler_output", "image_embeds")
        if name == "CLIPVisionModelWithProjection":
            return features(self.model(pixel_values=pixels), "image_embeds")
        return features(self.model(pixel_values=pixels), "pooler_output")

    # --------------------------------------------------------------------------- text side
    @property
    def logit_scale(self) -> torch.Tensor:
        self._needs_text()
        return self.model.logit_scale
