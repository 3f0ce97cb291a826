"""open_clip's CLIP / CustomTextCLIP with its own ``VisionTransformer`` image tower ([CLS] pooled).

open_clip 3.x builds the ViT's blocks either with ``nn.MultiheadAttention``
(``ResidualAttentionBlock``) or with its own ``Attention`` module (``CustomResidualAttentionBlock``):
both keep the packed ``in_proj_weight`` / ``in_proj_bias`` and an ``out_proj`` linear, which are
split here once per :meth:`OpenClipViTTower.parts` call. The custom module's options (qk-norm,
scaled-cosine logits, head scale, inner norm) and the block's (attention norm, layer scale) are
read into the record; what FALIP cannot run is refused with the reason: another image tower, an
attention pooler or a pooling other than the [CLS] token, a cross-attention block.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core.errors import FalipError
from ..core.tower import BlockParts, Readout
from ._open_clip import OpenClipTower
from ._parts import optional_module, split_packed

__all__ = ["OpenClipViTTower"]


def _check_block(block: nn.Module, index: int) -> None:
    attn = getattr(block, "attn", None)
    missing = [name for name in ("ln_1", "ln_2", "mlp") if not hasattr(block, name)]
    if attn is None or missing or not hasattr(attn, "in_proj_weight") or not hasattr(attn, "out_proj"):
        raise FalipError(
            f"visual block {index} ({type(block).__name__}) is not an open_clip residual attention block "
            "(needs ln_1, attn.in_proj_weight, attn.out_proj, ln_2, mlp)"
        )
    if isinstance(attn, nn.MultiheadAttention):
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
            raise FalipError(f"visual block {index}: unsupported nn.MultiheadAttention options")
        if not attn.batch_first:
            raise FalipError(f"visual block {index}: nn.MultiheadAttention must be batch_first")
    if hasattr(block, "ln_1_kv"):
        raise FalipError(f"visual block {index} is a cross-attention block; FALIP needs self-attention")


class OpenClipViTTower(OpenClipTower):
    """An open_clip model whose ``.visual`` is open_clip's ``VisionTransformer`` pooling [CLS]."""

    library = "open_clip"

    @classmethod
    def accepts(cls, model: Any) -> bool:
        """An open_clip model with an image tower that is not a timm one (those have their own adapter)."""
        if not type(model).__module__.startswith("open_clip"):
            return False
        visual = getattr(model, "visual", None)
        return visual is not None and type(visual).__name__ != "TimmModel"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        visual = getattr(model, "visual", None)
        if visual is None:
            raise FalipError(f"{type(model).__name__} has no .visual image tower; pass an open_clip CLIP model")
        name = type(visual).__name__
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        if blocks is None or not hasattr(visual, "conv1") or not hasattr(visual, "positional_embedding"):
            raise FalipError(
                f"the image tower is a {name}, not an open_clip VisionTransformer: FALIP biases ViT "
                "attention over patch tokens, so it needs a ViT image tower"
            )
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            pooler = "an attention pooler" if getattr(visual, "attn_pool", None) is not None else repr(visual.pool_type)
            raise FalipError(
                f"the {name} pools with {pooler}, so it has no [CLS] token to pool from; "
                "FALIP biases the [CLS] query and needs pool_type='tok'"
            )
        for i, block in enumerate(blocks):
            _check_block(block, i)
        self._blocks = blocks

    # -------------------------------------------------------------------------- geometry
    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def depth(self) -> int:
        return len(self._blocks)

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.visual.grid_size)  # type: ignore[return-value]

    @property
    def patch_size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.visual.patch_size)  # type: ignore[return-value]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.visual.image_size)  # type: ignore[return-value]

    @property
    def num_prefix_tokens(self) -> int:
        return 1

    @property
    def width(self) -> int:
        return int(self.visual.conv1.weight.shape[0])

    @property
    def output_dim(self) -> int:
        proj = self.visual.proj
        return int(proj.shape[1]) if proj is not None else self.width

    @property
    def pooling(self) -> str:
        return "cls"

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    # --------------------------------------------------------------------------- forward
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual._embeds(images)

    def parts(self, index: int) -> BlockParts:
        block = self._blocks[index]
        attn = block.attn
        c = attn.in_proj_weight.shape[1]
        heads = attn.num_heads
        w, b = attn.in_proj_weight, attn.in_proj_bias
        wq, wk, wv = split_packed(w, c)
        bq, bk, bv = split_packed(b, c)
        cosine = None
        if getattr(attn, "logit_scale", None) is not None:
            cosine = torch.clamp(attn.logit_scale, max=attn.logit_scale_max).exp()
        return BlockParts(
            norm1=block.ln_1,
            q_weight=wq,
            q_bias=bq,
            k_weight=wk,
            k_bias=bk,
            v_weight=wv,
            v_bias=bv,
            heads=heads,
            head_dim=c // heads,
            scale=1.0 / math.sqrt(c // heads),
            out_weight=attn.out_proj.weight,
            out_bias=attn.out_proj.bias,
            norm2=block.ln_2,
            mlp=block.mlp,
            q_norm=optional_module(getattr(attn, "ln_q", None)),
            k_norm=optional_module(getattr(attn, "ln_k", None)),
            cosine_scale=cosine,
            head_scale=getattr(attn, "head_scale", None),
            inner_norm=optional_module(getattr(attn, "ln_inner", None)),
            attn_norm=optional_module(getattr(block, "ln_attn", None)),
            ls1=optional_module(getattr(block, "ls_1", None)),
            ls2=optional_module(getattr(block, "ls_2", None)),
            qkv_weight=w,
            qkv_bias=b,
        )

    def run_block(self, index: int, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        block = self._blocks[index]
        if attn_bias is None:
            return block(x)
        heads = block.attn.num_heads
        return block(x, attn_mask=attn_bias.to(x.dtype).repeat_interleave(heads, dim=0))  # [B * heads, L, L]

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.visual.ln_post(tokens)

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = self.visual.ln_post(tokens[:, 0])
        return cls @ self.visual.proj if self.visual.proj is not None else cls

    def readout(self) -> Readout:
        return Readout.of_layer_norm(self.visual.ln_post, self.visual.proj)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)
