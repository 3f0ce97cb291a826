"""Biased multi-head attention and transformer blocks, read from a :class:`~falip.core.tower.BlockParts`.

The kernels see a block only through its record (norms, q/k/v weights, heads, q/k norms, cosine
logits, rotary embedding, head scale, inner norm, output projection, layer scales, MLP), so a new
library is a new tower adapter (:mod:`falip.towers`), never a change here.

* :func:`head_attention`: THE per-head computation (probabilities ``[B, heads, Lq, L]``, per-head
  outputs ``G_h`` ``[B, heads, Lq, C]``, the attention output), written out plainly; the reference
  forward, the head decomposition, the attention maps and the ablations all use it.
* :func:`attention`: the same output on the fast path (``scaled_dot_product_attention``), with
  query rows and shared keys/values (``kv_index``);
* :func:`cls_query_attention`: the [CLS] row alone without projecting the keys and values of every token
  (when keys enter the logits linearly, ``parts.keys_linear``);
* :func:`block_forward`, :func:`block_forward_shared_patches`: whole blocks;
* :func:`pool_attention`: an attention-pooling probe ("MAP") with a per-key bias (FALIP-MAP).

All tensors are batch-first: tokens ``[B, L, C]``; an additive bias ``[B, 1 or heads, Lq or 1, L]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .tower import BlockParts, PoolParts

__all__ = [
    "HeadAttention",
    "attention",
    "attention_logits",
    "block_forward",
    "block_forward_shared_patches",
    "cls_query_attention",
    "head_attention",
    "pool_attention",
    "pool_head_attention",
    "residual_tail",
]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, length, c = x.shape
    return x.reshape(b, length, heads, c // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, heads, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, heads * d)


def _qk(p: BlockParts, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head queries and keys ``[B, heads, L, d]`` after q/k norms, then rotation (whole sequence)."""
    if p.q_norm is not None:
        q = p.q_norm(q)
    if p.k_norm is not None:
        k = p.k_norm(k)
    if p.rope is not None:
        q, k = p.rope(q), p.rope(k)
    return q, k


def _project(
    p: BlockParts,
    x: torch.Tensor,
    query_rows: slice | None = None,
    kv_index: torch.Tensor | None = None,
    x_v: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``q [Bq, heads, Lq, d]``, ``k, v [Bq, heads, L, d]`` of normalised tokens ``x`` ``[Bkv, L, C]``.

    ``x_v``: tokens the values come from (default ``x``). With a rotary embedding the queries of
    the whole sequence are rotated before ``query_rows`` are taken (rotation depends on position).
    """
    rows = query_rows if p.rope is None else None
    n = p.heads * p.head_dim
    if p.qkv_weight is not None and x_v is None:  # packed weights: fewer, larger matrix products
        b = p.qkv_bias
        if rows is None:
            q, k, v = (_split_heads(t, p.heads) for t in F.linear(x, p.qkv_weight, b).split(n, dim=-1))
        else:
            kv = F.linear(x, p.qkv_weight[n:], None if b is None else b[n:])
            k, v = (_split_heads(t, p.heads) for t in kv.split(n, dim=-1))
            q = _split_heads(F.linear(x[:, rows], p.q_weight, p.q_bias), p.heads)
    else:
        xq = x if rows is None else x[:, rows]
        q = _split_heads(F.linear(xq, p.q_weight, p.q_bias), p.heads)
        k = _split_heads(F.linear(x, p.k_weight, p.k_bias), p.heads)
        v = _split_heads(F.linear(x if x_v is None else x_v, p.v_weight, p.v_bias), p.heads)
    q, k = _qk(p, q, k)
    if p.rope is not None and query_rows is not None:
        q = q[:, :, query_rows]
    if kv_index is not None:
        q, k, v = q[kv_index], k[kv_index], v[kv_index]
    return q, k, v


def attention_logits(p: BlockParts, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Pre-softmax logits ``[B, heads, Lq, L]`` of per-head queries and keys (after norms/rotation).

    Scaled cosine logits ``cos(q, k) * cosine_scale`` when the block has them, else ``q . k * scale``.
    """
    if p.cosine_scale is not None:
        return F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2) * p.cosine_scale
    return (q @ k.transpose(-1, -2)) * p.scale


def _finish_heads(p: BlockParts, out: torch.Tensor) -> torch.Tensor:
    """Per-head outputs ``[B, heads, Lq, d]`` -> the attention output ``[B, Lq, C]`` (inner norm, out proj)."""
    if p.head_scale is not None:
        out = out * p.head_scale
    out = _merge_heads(out)
    if p.inner_norm is not None:
        out = p.inner_norm(out)
    return F.linear(out, p.out_weight, p.out_bias)


@dataclass
class HeadAttention:
    """What :func:`head_attention` returns.

    ``probs`` ``[B, heads, Lq, L]`` (rows sum to 1); ``heads`` ``[B, heads, Lq, C]`` the per-head
    outputs ``G_h`` (attention-weighted values of head h, times its head scale, pushed through
    that head's slice of the output projection; None with an inner norm, which mixes the heads),
    so that ``heads.sum(1) + out_bias`` is ``output``; ``output`` ``[B, Lq, C]`` the attention
    output after the projection (before ``attn_norm`` and ``ls1``). ``tokens`` ``[B, heads, Lq, L, C]``
    (``per_token=True`` only): ``G_h`` split over the keys, ``a_{h,t} W_out,h (s_h v_{h,t})``, the
    term token t adds through head h (Gandelsman et al., 2024); ``tokens.sum(3)`` is ``heads``.
    """

    probs: torch.Tensor
    heads: torch.Tensor | None
    output: torch.Tensor
    tokens: torch.Tensor | None = None


def head_attention(
    p: BlockParts,
    h: torch.Tensor,
    bias: torch.Tensor | None = None,
    query_rows: slice | None = None,
    h_v: torch.Tensor | None = None,
    per_head: bool = True,
    per_token: bool = False,
) -> HeadAttention:
    """The block's attention written out: per-head probabilities and outputs (the one place).

    ``h``: normalised tokens ``[B, L, C]`` (queries and keys); ``h_v``: tokens the values come from
    (default ``h``; the q/k/v swaps of the ablations); ``bias``: additive ``[B, L, L]`` or
    ``[B, 1 or heads, L or 1, L]``, or None; ``query_rows``: the query rows kept (None: all);
    ``per_token``: also each key token's term ``tokens`` (memory ``B * heads * Lq * L * C``: keep
    ``Lq`` small).
    """
    q, k, v = _project(p, h, query_rows, None, h_v)
    logits = attention_logits(p, q, k)
    if bias is not None:
        bias = bias[:, None] if bias.ndim == 3 else bias
        if query_rows is not None and bias.shape[-2] > 1:
            bias = bias[:, :, query_rows]
        logits = logits + bias.to(logits.dtype)
    probs = logits.softmax(dim=-1)
    out = probs @ v  # [B, heads, Lq, d]
    output = _finish_heads(p, out)
    g = per_tok = None
    if (per_head or per_token) and p.inner_norm is None:
        scaled = out if p.head_scale is None else out * p.head_scale
        w_out = p.out_weight.view(p.out_weight.shape[0], p.heads, p.head_dim)
        g = torch.einsum("bhtd,chd->bhtc", scaled, w_out)
        if per_token:
            v_s = v if p.head_scale is None else v * p.head_scale
            v_out = torch.einsum("bhkd,chd->bhkc", v_s, w_out)  # each key's value through W_out,h
            per_tok = probs[..., None] * v_out[:, :, None]  # [B, heads, Lq, L, C]
    return HeadAttention(probs, g, output, per_tok)


def attention(
    p: BlockParts,
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    query_rows: slice | None = None,
    kv_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-head self-attention of normalised tokens with an additive logit bias (fast path).

    Args:
        x: normalised tokens ``[Bkv, L, C]``.
        bias: additive logits ``[Bq, 1 or heads, Lq or 1, L]`` or None.
        query_rows: query rows to compute (None: all L).
        kv_index: ``[Bq]`` long; output item b is computed from ``x[kv_index[b]]`` (lets many
            regions share one image's tokens; only the bias differs). None: ``Bq == Bkv``.
    Returns:
        ``[Bq, Lq, C]``: the attention output after the output projection.
    """
    q, k, v = _project(p, x, query_rows, kv_index)
    bias = None if bias is None else bias.to(q.dtype)
    if p.cosine_scale is not None:
        logits = attention_logits(p, q, k)
        if bias is not None:
            logits = logits + bias
        out = logits.softmax(dim=-1) @ v
    else:
        if bias is not None and bias.shape[-2] != q.shape[-2]:
            bias = bias.expand(-1, -1, q.shape[-2], -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=p.scale)
    return _finish_heads(p, out)


def cls_query_attention(p: BlockParts, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Attention output of the [CLS] query (row 0) alone, ``[B, 1, C]``, without projecting every token.

    For one query row, ``q . (W_k x_t + b_k) = (W_k^T q) . x_t + const`` and
    ``sum_t a_t (W_v x_t + b_v) = W_v (sum_t a_t x_t) + b_v``, so the keys and values of the
    L tokens are never formed: the cost per image is O(L * C * heads) instead of O(L * C^2).
    The constant ``q . b_k`` is the same for every key and cancels in the softmax. Blocks whose
    keys do not enter linearly (q/k norm, cosine logits, rotation) take the general path.

    ``x``: normalised tokens ``[B, L, C]``; ``bias``: ``[B, 1, 1, L]`` or None.
    """
    if not p.keys_linear:
        return attention(p, x, bias=bias, query_rows=slice(0, 1))
    b, _, c = x.shape
    heads, hd = p.heads, p.head_dim
    q = F.linear(x[:, 0], p.q_weight, p.q_bias).view(b, heads, hd) * p.scale
    q_in_x = torch.einsum("bhd,hdc->bhc", q, p.k_weight.view(heads, hd, c))  # W_k^T q per head
    logits = torch.einsum("bhc,btc->bht", q_in_x, x)
    if bias is not None:
        logits = logits + bias[:, :, 0, :].to(logits.dtype)
    weights = logits.softmax(dim=-1)
    pooled = torch.einsum("bht,btc->bhc", weights, x)  # attention-weighted tokens per head
    out = torch.einsum("bhc,hdc->bhd", pooled, p.v_weight.view(heads, hd, c))
    if p.v_bias is not None:
        out = out + p.v_bias.view(heads, hd)  # weights sum to 1, so b_v passes through
    return _finish_heads(p, out[:, :, None])


def residual_tail(p: BlockParts, residual: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
    """The rest of a block after attention: optional attention norm and layer scale, residual, the MLP."""
    if p.attn_norm is not None:
        attn_out = p.attn_norm(attn_out)
    if p.ls1 is not None:
        attn_out = p.ls1(attn_out)
    y = residual + attn_out
    m = p.mlp(p.norm2(y))
    return y + (m if p.ls2 is None else p.ls2(m))


def attention_term(p: BlockParts, attn_out: torch.Tensor) -> torch.Tensor:
    """What the attention adds to the residual stream: ``ls1(attn_norm(attn_out))``."""
    if p.attn_norm is not None:
        attn_out = p.attn_norm(attn_out)
    return attn_out if p.ls1 is None else p.ls1(attn_out)


def block_forward(
    p: BlockParts,
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    query_rows: slice | None = None,
    kv_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """One pre-norm residual block (attention + MLP) with an additive attention bias.

    ``x``: tokens ``[Bkv, L, C]``; returns the updated tokens of ``query_rows`` ``[Bq, Lq, C]``
    (see :func:`attention` for ``bias`` and ``kv_index``).
    """
    h = p.norm1(x)
    if query_rows == slice(0, 1) and kv_index is None:
        a = cls_query_attention(p, h, bias)
    else:
        a = attention(p, h, bias=bias, query_rows=query_rows, kv_index=kv_index)
    residual = x if query_rows is None else x[:, query_rows]
    if kv_index is not None:
        residual = residual[kv_index]
    return residual_tail(p, residual, a)


def block_forward_shared_patches(
    p: BlockParts,
    cls: torch.Tensor,
    patches: torch.Tensor,
    kv_index: torch.Tensor,
    counts: Sequence[int],
    cls_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """A block whose input tokens after [CLS] are shared by all regions of an image, [CLS] per region.

    This is the block after the first biased one with form ``"cls"``: every region of image i
    enters with the same other tokens (patches, and registers if any) and its own [CLS]. Such a
    query's softmax then differs between regions only in the one [CLS] key column, so with the
    shared (other-keys-only) attention ``A`` and its log-normaliser ``lse``, the exact per-region
    output is ``(1 - w) A + w v_cls`` with ``w = sigmoid(q . k_cls * scale - lse)``. Pushed through
    the output projection head by head, the per-region work is O(P * heads * C) instead of
    O(P * C^2); only the MLP runs per region and token. A rotary embedding (EVA02) rotates the
    shared tokens once per image and leaves [CLS] unrotated, as the library does. Blocks with cosine
    logits or an inner norm take the per-region path.

    Args:
        cls: per-region [CLS] tokens ``[R, 1, C]``.
        patches: per-image tokens after [CLS] ``[N, P, C]``.
        kv_index: ``[R]`` image of each region (image-major: regions of image i are consecutive).
        counts: regions per image, on the host (``sum(counts) == R``), so that no step waits on
            the device to learn where an image's regions start.
        cls_bias: additive bias of the [CLS] query row ``[R, 1, 1, 1 + P]`` or None.
    Returns:
        the block's output tokens ``[R, 1 + P, C]``.
    """
    if p.cosine_scale is not None or p.inner_norm is not None:
        x = torch.cat([cls, patches[kv_index]], dim=1)
        bias = None
        if cls_bias is not None:
            bias = cls_bias.new_zeros(cls_bias.shape[0], 1, x.shape[1], x.shape[1])
            bias[:, :, 0:1] = cls_bias
        return block_forward(p, x, bias)

    r, n_p, c = cls.shape[0], patches.shape[1], cls.shape[2]
    heads, hd = p.heads, p.head_dim

    hp, hc = p.norm1(patches), p.norm1(cls)
    qp, kp, vp = _qkv(p, hp)  # [N, H, P, d]
    qc, kc, vc = _qkv(p, hc)  # [R, H, 1, d]
    if p.rope is None:
        qp, kp = _qk(p, qp, kp)
        qc, kc = _qk(p, qc, kc)
    else:
        # the rotation depends on position: rotate the shared tokens in place behind a stand-in for
        # [CLS] (a prefix token, which the rotation leaves as it is), so they are rotated once per
        # image; [CLS] itself gets its q/k norms only
        def behind_cls(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t.new_zeros(t.shape[0], t.shape[1], 1, t.shape[3]), t], dim=2)

        qp, kp = (t[:, :, 1:] for t in _qk(p, behind_cls(qp), behind_cls(kp)))
        qc = qc if p.q_norm is None else p.q_norm(qc)
        kc = kc if p.k_norm is None else p.k_norm(kc)

    # [CLS] query row, per region: keys are its own [CLS] and its image's other tokens
    keys = torch.cat([kc, kp[kv_index]], dim=2)
    values = torch.cat([vc, vp[kv_index]], dim=2)
    bias = None if cls_bias is None else cls_bias.to(qc.dtype)
    out_cls = F.scaled_dot_product_attention(qc, keys, values, attn_mask=bias, scale=p.scale)  # [R, H, 1, d]
    out_cls = _finish_heads(p, out_cls)

    # other query rows: shared part per image, then the [CLS] column per region
    logits_pp = (qp @ kp.transpose(-1, -2)) * p.scale  # [N, H, P, P]
    lse = torch.logsumexp(logits_pp, dim=-1)  # [N, H, P]
    shared = logits_pp.softmax(dim=-1) @ vp  # [N, H, P, d]
    cls_logit = torch.einsum("rhpd,rhd->rhp", qp[kv_index], kc[:, :, 0]) * p.scale
    w_cls = torch.sigmoid(cls_logit - lse[kv_index])  # [R, H, P]: softmax weight of the [CLS] key
    w_out = p.out_weight.view(c, heads, hd)  # the output projection's input columns, per head
    if p.head_scale is not None:
        shared = shared * p.head_scale
        vc = vc * p.head_scale
    per_head_shared = torch.einsum("nhpd,chd->nphc", shared, w_out)  # [N, P, H, C]
    per_head_cls = torch.einsum("rhd,chd->rhc", vc[:, :, 0], w_out)  # [R, H, C]
    base = per_head_shared.sum(dim=2)  # [N, P, C]: the attention output if the [CLS] key had weight 0
    delta = torch.empty(r, n_p, c, dtype=base.dtype, device=base.device)
    lo = 0
    for i, count in enumerate(counts):
        if count:
            wi = w_cls[lo : lo + count].permute(2, 0, 1)  # [P, Ri, H]
            mixed = torch.bmm(wi, per_head_shared[i])  # [P, Ri, C]: sum_h w * shared_h
            delta[lo : lo + count] = mixed.transpose(0, 1)
        lo += count
    delta = torch.einsum("rhp,rhc->rpc", w_cls, per_head_cls) - delta
    out_patches = base[kv_index] + delta
    if p.out_bias is not None:
        out_patches = out_patches + p.out_bias

    a = torch.cat([out_cls, out_patches], dim=1)
    return residual_tail(p, torch.cat([cls, patches[kv_index]], dim=1), a)


def _qkv(p: BlockParts, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-head q, k, v ``[B, heads, L, d]`` of normalised tokens (before q/k norms and rotation)."""
    if p.qkv_weight is not None:
        qkv = F.linear(h, p.qkv_weight, p.qkv_bias).split(p.heads * p.head_dim, dim=-1)
        return tuple(_split_heads(t, p.heads) for t in qkv)  # type: ignore[return-value]
    return tuple(_split_heads(F.linear(h, w, b), p.heads) for w, b in _qkv_weights(p))  # type: ignore[return-value]


def _qkv_weights(p: BlockParts) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
    return (p.q_weight, p.q_bias), (p.k_weight, p.k_bias), (p.v_weight, p.v_bias)


# ----------------------------------------------------------------------- attention pooling
def _pool_project(
    pp: PoolParts, tokens: torch.Tensor, kv_index: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probe queries ``[1, heads, P, d]`` and keys/values ``[B, heads, L, d]`` of final tokens ``[Bkv, L, C]``."""
    if pp.key_position is not None:
        tokens = tokens + pp.key_position.to(tokens.dtype)
    q = _split_heads(F.linear(pp.probe.to(tokens.dtype)[None], pp.q_weight, pp.q_bias), pp.heads)
    k = _split_heads(F.linear(tokens, pp.k_weight, pp.k_bias), pp.heads)
    v = _split_heads(F.linear(tokens, pp.v_weight, pp.v_bias), pp.heads)
    if pp.q_norm is not None:
        q = pp.q_norm(q)
    if pp.k_norm is not None:
        k = pp.k_norm(k)
    if kv_index is not None:
        k, v = k[kv_index], v[kv_index]
    return q, k, v


def pool_attention(
    pp: PoolParts,
    tokens: torch.Tensor,
    key_bias: torch.Tensor | None = None,
    kv_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Features ``[B, D]`` of an attention-pooling head with an additive bias on the probe's logits.

    ``tokens``: final tokens after the tower's final norm ``[Bkv, L, C]``; ``key_bias``: ``[B, L]``
    added to every probe's logits toward key t in every head (FALIP-MAP), or None; ``kv_index``
    ``[B]``: row b pools ``tokens[kv_index[b]]`` (many regions, one image's tokens). Keys and
    values are projected once per image.
    """
    q, k, v = _pool_project(pp, tokens)
    logits = (q @ k.transpose(-1, -2)) * pp.scale  # [Bkv, heads, P, L]
    if kv_index is not None:
        logits = logits[kv_index]
    if key_bias is not None:
        logits = logits + key_bias[:, None, None, :].to(logits.dtype)
    probs = logits.softmax(dim=-1)
    out = probs @ (v if kv_index is None else v[kv_index])
    out = F.linear(_merge_heads(out), pp.out_weight, pp.out_bias)  # [B, P, C]
    return pp.finish(out)


def pool_head_attention(
    pp: PoolParts, tokens: torch.Tensor, key_bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe's attention probabilities ``[B, heads, P, L]`` and the features ``[B, D]`` (written out)."""
    q, k, v = _pool_project(pp, tokens)
    logits = (q @ k.transpose(-1, -2)) * pp.scale
    if key_bias is not None:
        logits = logits + key_bias[:, None, None, :].to(logits.dtype)
    probs = logits.softmax(dim=-1)
    out = F.linear(_merge_heads(probs @ v), pp.out_weight, pp.out_bias)
    return probs, pp.finish(out)
