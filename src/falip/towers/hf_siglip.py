"""Hugging Face transformers' SigLIP: ``SiglipModel`` and ``SiglipVisionModel`` (attention-pooled).

The image tower has no [CLS] token: patch embeddings plus positions, encoder layers,
``post_layernorm`` on every token (:meth:`final_norm`), then the
``SiglipMultiheadAttentionPoolingHead``: a learned probe attends over all tokens through an
``nn.MultiheadAttention``, then ``x + mlp(layernorm(x))`` and the probe's row is the feature.
The text side is the model's own (``get_text_features``); SigLIP scores with a logit bias too.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import FalipError
from ..core.tower import PoolParts
from ._hf import HFVisionTower, features
from ._parts import split_packed

__all__ = ["HFSiglipTower"]

_CLASSES = ("SiglipModel", "SiglipVisionModel")


class HFSiglipTower(HFVisionTower):
    """A transformers SigLIP model seen as an attention-pooled ("map") tower."""

    _CLASSES = _CLASSES
    _FULL_MODEL = "SiglipModel"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        core = self.core
        head = getattr(core, "head", None)
        if not getattr(core, "use_head", True) or head is None:
            raise FalipError(
                f"{type(model).__name__} was built with vision_use_head=False: it has no attention-pooling head "
                "to pool features with"
            )
        mha = head.attention
        if not isinstance(mha, nn.MultiheadAttention) or not mha.batch_first:
            raise FalipError("the SigLIP pooling head's attention is not a batch-first nn.MultiheadAttention")
        if mha.bias_k is not None or mha.add_zero_attn or not mha._qkv_same_embed_dim:
            raise FalipError("the SigLIP pooling head uses nn.MultiheadAttention options falip does not support")

    # ----------------------------------------------------------------------------- geometry
    @property
    def num_prefix_tokens(self) -> int:
        return 0

    @property
    def output_dim(self) -> int:
        return self.width

    @property
    def pooling(self) -> str:
        return "map"

    # ------------------------------------------------------------------------------ forward
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.core.embeddings(images.to(self.dtype))

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.core.head(self.core.post_layernorm(tokens))

    def _finish(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head after its attention: ``x + mlp(layernorm(x))``, then the probe's row ``[B, P, C] -> [B, C]``."""
        head = self.core.head
        return (pooled + head.mlp(head.layernorm(pooled)))[:, 0]

    def pool_parts(self) -> PoolParts:
        head = self.core.head
        mha = head.attention
        c = mha.embed_dim
        w, b = mha.in_proj_weight, mha.in_proj_bias
        wq, wk, wv = split_packed(w, c)
        bq, bk, bv = split_packed(b, c)
        heads = int(mha.num_heads)
        return PoolParts(
            probe=head.probe[0],
            q_weight=wq,
            q_bias=bq,
            k_weight=wk,
            k_bias=bk,
            v_weight=wv,
            v_bias=bv,
            heads=heads,
            head_dim=c // heads,
            scale=float((c // heads) ** -0.5),
            out_weight=mha.out_proj.weight,
            out_bias=mha.out_proj.bias,
            finish=self._finish,
        )

    def run_pool(self, tokens: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        head = self.core.head
        mha = head.attention
        probe = head.probe.expand(tokens.shape[0], -1, -1)
        mask = None
        if attn_bias is not None:
            # nn.MultiheadAttention takes a per-sample mask as [B * heads, P, L], sample-major
            mask = attn_bias.to(tokens.dtype).repeat_interleave(mha.num_heads, dim=0)
        pooled = mha(probe, tokens, tokens, attn_mask=mask, need_weights=False)[0]
        return self._finish(pooled)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.to(self.dtype)
        if type(self.model).__name__ == "SiglipModel":
            return features(self.model.get_image_features(pixel_values=pixels), "pooler_output", "image_embeds")
        return features(self.model(pixel_values=pixels), "pooler_output")

    # --------------------------------------------------------------------------- text side
    @property
    def logit_scale(self) -> torch.Tensor:
        self._needs_text()
        return self.model.logit_scale.reshape(())

    @property
    def logit_bias(self) -> torch.Tensor | None:
        bias = getattr(self.model, "logit_bias", None)  # vision-only models have none
        return None if bias is None else bias.reshape(())
