"""Biased multi-head attention and transformer blocks for open_clip ViTs, in one place.

open_clip 3.x builds its ViT blocks either with ``nn.MultiheadAttention``
(``ResidualAttentionBlock``) or with its own ``Attention`` module (``CustomResidualAttentionBlock``,
and the development line's default). Both keep the packed ``in_proj_weight`` / ``in_proj_bias``
and an ``out_proj`` linear, so the math below reads those parameters directly and supports
either; the custom module's options (qk-norm, scaled-cosine logits, head scaling, inner norm)
are honoured. Supporting another attention module is a change to this file only.

All tensors are batch-first: tokens ``[B, L, C]``; an additive bias ``[B, 1 or heads, Lq, L]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_block(block: nn.Module, index: int) -> None:
    """Raise ValueError if ``block`` is not an open_clip residual attention block we can run."""
    attn = getattr(block, "attn", None)
    missing = [name for name in ("ln_1", "ln_2", "mlp") if not hasattr(block, name)]
    if attn is None or missing or not hasattr(attn, "in_proj_weight") or not hasattr(attn, "out_proj"):
        raise ValueError(
            f"visual block {index} ({type(block).__name__}) is not an open_clip residual attention block "
            "(needs ln_1, attn.in_proj_weight, attn.out_proj, ln_2, mlp)"
        )
    if isinstance(attn, nn.MultiheadAttention):
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
            raise ValueError(f"visual block {index}: unsupported nn.MultiheadAttention options")
        if not attn.batch_first:
            raise ValueError(f"visual block {index}: nn.MultiheadAttention must be batch_first")
    if hasattr(block, "ln_1_kv"):
        raise ValueError(f"visual block {index} is a cross-attention block; FALIP needs self-attention")


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, length, c = x.shape
    return x.reshape(b, length, heads, c // heads).transpose(1, 2)


def attention(
    attn: nn.Module,
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    query_rows: slice | None = None,
    kv_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-head self-attention of normalised tokens with an additive logit bias.

    Args:
        attn: ``nn.MultiheadAttention`` or open_clip ``Attention`` (packed in_proj, out_proj).
        x: normalised tokens ``[Bkv, L, C]``.
        bias: additive logits ``[Bq, 1 or heads, Lq or 1, L]`` or None.
        query_rows: query rows to compute (None: all L).
        kv_index: ``[Bq]`` long; output item b is computed from ``x[kv_index[b]]`` (lets many
            regions share one image's tokens; only the bias differs). None: ``Bq == Bkv``.
    Returns:
        ``[Bq, Lq, C]``: the attention output after the output projection.
    """
    heads = attn.num_heads
    c = x.shape[-1]
    w, b = attn.in_proj_weight, attn.in_proj_bias
    w_q, w_kv = w[:c], w[c:]
    b_q, b_kv = (None, None) if b is None else (b[:c], b[c:])
    xq = x if query_rows is None else x[:, query_rows]
    k, v = F.linear(x, w_kv, b_kv).chunk(2, dim=-1)
    q = F.linear(xq, w_q, b_q)
    q, k, v = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    if kv_index is not None:
        q, k, v = q[kv_index], k[kv_index], v[kv_index]

    ln_q = getattr(attn, "ln_q", None)
    ln_k = getattr(attn, "ln_k", None)
    if ln_q is not None:
        q, k = ln_q(q), ln_k(k)
    bias = None if bias is None else bias.to(q.dtype)
    logit_scale = getattr(attn, "logit_scale", None)
    if logit_scale is not None:  # scaled cosine attention (open_clip Attention option)
        scale = torch.clamp(logit_scale, max=attn.logit_scale_max).exp()
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2) * scale
        if bias is not None:
            logits = logits + bias
        out = logits.softmax(dim=-1) @ v
    else:
        if bias is not None and bias.shape[-2] != q.shape[-2]:
            bias = bias.expand(-1, -1, q.shape[-2], -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    head_scale = getattr(attn, "head_scale", None)
    if head_scale is not None:
        out = out * head_scale
    out = out.transpose(1, 2).reshape(out.shape[0], -1, c)
    ln_inner = getattr(attn, "ln_inner", None)
    if ln_inner is not None:
        out = ln_inner(out)
    return attn.out_proj(out)


def block_forward(
    block: nn.Module,
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    query_rows: slice | None = None,
    kv_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """One pre-norm residual block (attention + MLP) with an additive attention bias.

    ``x``: tokens ``[Bkv, L, C]``; returns the updated tokens of ``query_rows`` ``[Bq, Lq, C]``
    (see :func:`attention` for ``bias`` and ``kv_index``).
    """
    h = block.ln_1(x)
    a = attention(block.attn, h, bias=bias, query_rows=query_rows, kv_index=kv_index)
    ln_attn = getattr(block, "ln_attn", None)
    if ln_attn is not None:
        a = ln_attn(a)
    residual = x if query_rows is None else x[:, query_rows]
    if kv_index is not None:
        residual = residual[kv_index]
    y = residual + block.ls_1(a)
    return y + block.ls_2(block.mlp(block.ln_2(y)))
