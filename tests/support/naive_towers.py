"""Naive, hand-written transformer blocks and attention-pool heads read from a tower's records.

Independent of falip's kernels: every head is computed on its own with explicit loops over
batch items and heads, the logits as sums of products, an explicit softmax, and the record's
optional pieces applied in the documented order (:class:`falip.core.tower.BlockParts`,
:class:`falip.core.tower.PoolParts`). The rotary embedding is checked on its own
(:func:`naive_rotate`): the record's ``rope`` function is then trusted here.
"""

from __future__ import annotations

import torch


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = torch.einsum("...c,oc->...o", x, weight)
    return out if bias is None else out + bias


def _softmax_rows(logits: torch.Tensor) -> torch.Tensor:
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    e = torch.exp(shifted)
    return e / e.sum(dim=-1, keepdim=True)


def _per_head(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """``[B, L, heads * d]`` -> ``[B, heads, L, d]`` by explicit slicing."""
    return torch.stack([x[..., h * head_dim : (h + 1) * head_dim] for h in range(heads)], dim=1)


def naive_attention(p, queries: torch.Tensor, keys_in: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Heads of one attention (block or pool record ``p``), concatenated: ``[B, Lq, heads * d]``.

    ``queries`` ``[B, Lq, C]`` and ``keys_in`` ``[B, L, C]`` are the already-normalised inputs; ``bias``
    ``[B, Lq, L]`` is added to every head's logits.
    """
    q = _per_head(_linear(queries, p.q_weight, p.q_bias), p.heads, p.head_dim)
    k = _per_head(_linear(keys_in, p.k_weight, p.k_bias), p.heads, p.head_dim)
    v = _per_head(_linear(keys_in, p.v_weight, p.v_bias), p.heads, p.head_dim)
    rope = getattr(p, "rope", None)
    if p.q_norm is not None:
        q, k = p.q_norm(q), p.k_norm(k)
    if rope is not None:  # after the q/k norms, as EVA02 does
        q, k = rope(q), rope(k)
    batch, lq, length = q.shape[0], q.shape[2], k.shape[2]
    out = torch.zeros(batch, lq, p.heads * p.head_dim, dtype=q.dtype)
    for b in range(batch):
        for h in range(p.heads):
            logits = torch.zeros(lq, length, dtype=q.dtype)
            for i in range(lq):
                logits[i] = (q[b, h, i][None, :] * k[b, h]).sum(-1)
            cosine = getattr(p, "cosine_scale", None)
            if cosine is not None:
                qn = q[b, h] / q[b, h].norm(dim=-1, keepdim=True).clamp_min(1e-12)
                kn = k[b, h] / k[b, h].norm(dim=-1, keepdim=True).clamp_min(1e-12)
                logits = (qn @ kn.T) * cosine[h, 0, 0]
            else:
                logits = logits * p.scale
            if bias is not None:
                logits = logits + bias[b]
            head_out = _softmax_rows(logits) @ v[b, h]
            head_scale = getattr(p, "head_scale", None)
            if head_scale is not None:
                head_out = head_out * head_scale[h, 0, 0]
            out[b, :, h * p.head_dim : (h + 1) * p.head_dim] = head_out
    return out


def naive_block(p, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """One pre-norm block from its :class:`BlockParts` ``p`` on tokens ``[B, L, C]`` with bias ``[B, L, L]``."""
    h = p.norm1(x)
    attn = naive_attention(p, h, h, bias)
    if p.inner_norm is not None:
        attn = p.inner_norm(attn)
    attn = _linear(attn, p.out_weight, p.out_bias)
    if p.attn_norm is not None:
        attn = p.attn_norm(attn)
    if p.ls1 is not None:
        attn = p.ls1(attn)
    y = x + attn
    m = p.mlp(p.norm2(y))
    if p.ls2 is not None:
        m = p.ls2(m)
    return y + m


def naive_pool(pp, tokens: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Features ``[B, D]`` of an attention-pool head from its :class:`PoolParts` on final tokens ``[B, L, C]``
    (after the tower's final norm), with ``bias`` ``[B, P, L]`` on the probe's logits."""
    keys_in = tokens if pp.key_position is None else tokens + pp.key_position
    probe = pp.probe.unsqueeze(0).expand(tokens.shape[0], -1, -1)
    attn = naive_attention(pp, probe, keys_in, bias)
    return pp.finish(_linear(attn, pp.out_weight, pp.out_bias))


def naive_rotate(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, prefix: int, half: bool) -> torch.Tensor:
    """Rotary embedding by its definition: each channel pair of each patch token turned by its angle.

    ``sin``/``cos`` ``[N, d]`` (one value per channel, equal within a pair); pairs are channels
    ``(2j, 2j+1)`` (interleaved) or ``(j, j + d/2)`` (``half``); prefix tokens are left as they are.
    """
    out = x.clone()
    d = x.shape[-1]
    pairs = [(j, j + d // 2) for j in range(d // 2)] if half else [(2 * j, 2 * j + 1) for j in range(d // 2)]
    for n in range(x.shape[-2] - prefix):
        t = prefix + n
        for a, b in pairs:
            s, c = sin[n, a], cos[n, a]
            out[..., t, a] = x[..., t, a] * c - x[..., t, b] * s
            out[..., t, b] = x[..., t, b] * c + x[..., t, a] * s
    return out
