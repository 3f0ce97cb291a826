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

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import FalipError

__all__ = [
    "attention",
    "block_forward",
    "block_forward_shared_patches",
    "check_block",
    "cls_attention",
    "residual_tail",
]


def check_block(block: nn.Module, index: int) -> None:
    """Raise ValueError if ``block`` is not an open_clip residual attention block we can run."""
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


def _factorizable(attn: nn.Module) -> bool:
    """True when keys enter the logits linearly (no qk-norm, no cosine logits)."""
    return getattr(attn, "ln_k", None) is None or isinstance(attn.ln_k, nn.Identity)


def cls_attention(attn: nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Attention output of the [CLS] query alone, ``[B, 1, C]``, without projecting every token.

    For one query row, ``q . (W_k x_t + b_k) = (W_k^T q) . x_t + const`` and
    ``sum_t a_t (W_v x_t + b_v) = W_v (sum_t a_t x_t) + b_v``, so the keys and values of the
    L tokens are never formed: the cost per image is O(L * C * heads) instead of O(L * C^2).
    The constant ``q . b_k`` is the same for every key and cancels in the softmax.

    ``x``: normalised tokens ``[B, L, C]``; ``bias``: ``[B, 1, 1, L]`` or None.
    """
    if not _factorizable(attn) or getattr(attn, "logit_scale", None) is not None:
        return attention(attn, x, bias=bias, query_rows=slice(0, 1))
    b, length, c = x.shape
    heads = attn.num_heads
    hd = c // heads
    w, bias_in = attn.in_proj_weight, attn.in_proj_bias
    q = F.linear(x[:, 0], w[:c], None if bias_in is None else bias_in[:c]).view(b, heads, hd) * hd**-0.5
    q_in_x = torch.einsum("bhd,hdc->bhc", q, w[c : 2 * c].view(heads, hd, c))  # W_k^T q per head
    logits = torch.einsum("bhc,btc->bht", q_in_x, x)
    if bias is not None:
        logits = logits + bias[:, :, 0, :].to(logits.dtype)
    weights = logits.softmax(dim=-1)
    pooled = torch.einsum("bht,btc->bhc", weights, x)  # attention-weighted tokens per head
    out = torch.einsum("bhc,hdc->bhd", pooled, w[2 * c :].view(heads, hd, c))
    if bias_in is not None:
        out = out + bias_in[2 * c :].view(heads, hd)  # weights sum to 1, so b_v passes through
    head_scale = getattr(attn, "head_scale", None)
    if head_scale is not None:
        out = out * head_scale.view(1, heads, 1)
    out = out.reshape(b, 1, c)
    ln_inner = getattr(attn, "ln_inner", None)
    if ln_inner is not None:
        out = ln_inner(out)
    return attn.out_proj(out)


def residual_tail(block: nn.Module, residual: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
    """The rest of a block after attention: optional attention norm, residual, then the MLP."""
    ln_attn = getattr(block, "ln_attn", None)
    if ln_attn is not None:
        attn_out = ln_attn(attn_out)
    y = residual + block.ls_1(attn_out)
    return y + block.ls_2(block.mlp(block.ln_2(y)))


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
    if query_rows == slice(0, 1) and kv_index is None:
        a = cls_attention(block.attn, h, bias)
    else:
        a = attention(block.attn, h, bias=bias, query_rows=query_rows, kv_index=kv_index)
    residual = x if query_rows is None else x[:, query_rows]
    if kv_index is not None:
        residual = residual[kv_index]
    return residual_tail(block, residual, a)


def block_forward_shared_patches(
    block: nn.Module,
    cls: torch.Tensor,
    patches: torch.Tensor,
    kv_index: torch.Tensor,
    counts: Sequence[int],
    cls_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """A block whose input patch tokens are shared by all regions of an image, [CLS] per region.

    This is the block after the first biased one with form ``"cls"``: every region of image i
    enters with the same patch tokens and its own [CLS]. A patch query's softmax then differs
    between regions only in the one [CLS] key column, so with the shared (patch-keys-only)
    attention ``A`` and its log-normaliser ``lse``, the exact per-region output is
    ``(1 - w) A + w v_cls`` with ``w = sigmoid(q . k_cls / sqrt(d) - lse)``. Pushed through the
    output projection head by head, the per-region work is O(P * heads * C) instead of
    O(P * C^2); only the MLP runs per region and token.

    Args:
        cls: per-region [CLS] tokens ``[R, 1, C]``.
        patches: per-image patch tokens ``[N, P, C]``.
        kv_index: ``[R]`` image of each region (image-major: regions of image i are consecutive).
        counts: regions per image, on the host (``sum(counts) == R``), so that no step waits on
            the device to learn where an image's regions start.
        cls_bias: additive bias of the [CLS] query row ``[R, 1, 1, 1 + P]`` or None.
    Returns:
        the block's output tokens ``[R, 1 + P, C]``.
    """
    attn = block.attn
    if getattr(attn, "logit_scale", None) is not None or not isinstance(
        getattr(attn, "ln_inner", nn.Identity()), nn.Identity
    ):
        x = torch.cat([cls, patches[kv_index]], dim=1)
        bias = None
        if cls_bias is not None:
            bias = cls_bias.new_zeros(cls_bias.shape[0], 1, x.shape[1], x.shape[1])
            bias[:, :, 0:1] = cls_bias
        return block_forward(block, x, bias)

    r, p, c = cls.shape[0], patches.shape[1], cls.shape[2]
    heads = attn.num_heads
    hd = c // heads
    w_in, b_in = attn.in_proj_weight, attn.in_proj_bias
    ln_q = getattr(attn, "ln_q", nn.Identity())
    ln_k = getattr(attn, "ln_k", nn.Identity())
    head_scale = getattr(attn, "head_scale", None)

    hp = block.ln_1(patches)
    hc = block.ln_1(cls)
    qp, kp, vp = (_split_heads(t, heads) for t in F.linear(hp, w_in, b_in).chunk(3, dim=-1))  # [N, H, P, d]
    qc, kc, vc = (_split_heads(t, heads) for t in F.linear(hc, w_in, b_in).chunk(3, dim=-1))  # [R, H, 1, d]
    qp, kp, qc, kc = ln_q(qp), ln_k(kp), ln_q(qc), ln_k(kc)

    # [CLS] query row, per region: keys are its own [CLS] and its image's patches
    keys = torch.cat([kc, kp[kv_index]], dim=2)
    values = torch.cat([vc, vp[kv_index]], dim=2)
    bias = None if cls_bias is None else cls_bias.to(qc.dtype)
    out_cls = F.scaled_dot_product_attention(qc, keys, values, attn_mask=bias)  # [R, H, 1, d]
    if head_scale is not None:
        out_cls = out_cls * head_scale
    out_cls = attn.out_proj(out_cls.transpose(1, 2).reshape(r, 1, c))

    # patch query rows: shared part per image, then the [CLS] column per region
    scale = hd**-0.5
    logits_pp = (qp @ kp.transpose(-1, -2)) * scale  # [N, H, P, P]
    lse = torch.logsumexp(logits_pp, dim=-1)  # [N, H, P]
    shared = logits_pp.softmax(dim=-1) @ vp  # [N, H, P, d]
    cls_logit = torch.einsum("rhpd,rhd->rhp", qp[kv_index], kc[:, :, 0]) * scale
    w_cls = torch.sigmoid(cls_logit - lse[kv_index])  # [R, H, P]: softmax weight of the [CLS] key
    w_out = attn.out_proj.weight.view(c, heads, hd)  # out_proj's input columns, per head
    if head_scale is not None:
        shared = shared * head_scale
        vc = vc * head_scale
    per_head_shared = torch.einsum("nhpd,chd->nphc", shared, w_out)  # [N, P, H, C]
    per_head_cls = torch.einsum("rhd,chd->rhc", vc[:, :, 0], w_out)  # [R, H, C]
    base = per_head_shared.sum(dim=2)  # [N, P, C]: the attention output if the [CLS] key had weight 0
    delta = torch.empty(r, p, c, dtype=base.dtype, device=base.device)
    lo = 0
    for i, count in enumerate(counts):
        if count:
            wi = w_cls[lo : lo + count].permute(2, 0, 1)  # [P, Ri, H]
            mixed = torch.bmm(wi, per_head_shared[i])  # [P, Ri, C]: sum_h w * shared_h
            delta[lo : lo + count] = mixed.transpose(0, 1)
        lo += count
    delta = torch.einsum("rhp,rhc->rpc", w_cls, per_head_cls) - delta
    out_patches = base[kv_index] + delta + attn.out_proj.bias

    a = torch.cat([out_cls, out_patches], dim=1)
    return residual_tail(block, torch.cat([cls, patches[kv_index]], dim=1), a)
