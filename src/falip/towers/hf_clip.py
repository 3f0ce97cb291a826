"""Hugging Face transformers' CLIP: ``CLIPModel``, ``CLIPVisionModel``, ``CLIPVisionModelWithProjection``.

The image tower is a pre-norm ViT: patch and [CLS] embeddings plus positions, then
``pre_layrnorm`` (part of :meth:`embed` here), encoder layers, ``post_layernorm`` on the [CLS]
token and ``visual_projection`` (absent in ``CLIPVisionModel``, whose features are the normed
[CLS] token). Text goes through the model's own text tower (``get_text_features``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import FalipError
from ..core.tower import BlockParts, Readout, Tower
from ._hf import (
    check_attention_impl,
    encoder_block_parts,
    features,
    is_transformers_model,
    run_encoder_layer,
    vision_core,
)

__all__ = ["HFCLIPTower"]

_CLASSES = ("CLIPModel", "CLIPVisionModel", "CLIPVisionModelWithProjection")


class HFCLIPTower(Tower):
    """A transformers CLIP model seen as a [CLS]-pooled tower."""

    library = "transformers"

    @classmethod
    def accepts(cls, model: nn.Module) -> bool:
        """True for transformers' CLIPModel / CLIPVisionModel(WithProjection) (checked without importing it)."""
        return is_transformers_model(model, _CLASSES)

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        core = vision_core(model)
        check_attention_impl(core.config)
        if getattr(core.embeddings, "class_embedding", None) is None:
            raise FalipError(f"{type(model).__name__}: the vision embeddings have no [CLS] token")

    # ----------------------------------------------------------------------------- geometry
    @property
    def core(self) -> nn.Module:
        return vision_core(self.model)

    @property
    def depth(self) -> int:
        return len(self.core.encoder.layers)

    @property
    def patch_size(self) -> tuple[int, int]:
        p = int(self.core.embeddings.patch_size)
        return p, p

    @property
    def image_size(self) -> tuple[int, int]:
        s = int(self.core.embeddings.image_size)
        return s, s

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.image_size[0] // self.patch_size[0]
        return g, g

    @property
    def num_prefix_tokens(self) -> int:
        return 1

    @property
    def width(self) -> int:
        return int(self.core.config.hidden_size)

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

    @property
    def dtype(self) -> torch.dtype:
        return self.core.embeddings.patch_embedding.weight.dtype

    # ------------------------------------------------------------------------------ forward
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        core = self.core
        return core.pre_layrnorm(core.embeddings(images.to(self.dtype)))

    def parts(self, index: int) -> BlockParts:
        return encoder_block_parts(self.core.encoder.layers[index])

    def run_block(self, index: int, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        return run_encoder_layer(self.core.encoder.layers[index], x, attn_bias)

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.core.post_layernorm(tokens)

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
    def _needs_text(self) -> None:
        if not hasattr(self.model, "get_text_features"):
            raise FalipError(
                f"{type(self.model).__name__} is a vision-only model: it has no text tower to score texts with "
                "(load the full CLIPModel)"
            )

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        self._needs_text()
        out = features(self.model.get_text_features(input_ids=tokens.to(self.device)), "pooler_output", "text_embeds")
        return F.normalize(out, dim=-1) if normalize else out

    @property
    def logit_scale(self) -> torch.Tensor:
        self._needs_text()
        return self.model.logit_scale
