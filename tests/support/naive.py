"""An independent, naive FALIP implementation (loops, float64), written by hand for the tests.

The reference builds the paper's mask M cell by cell with math.exp, and runs the ViT by hand:
patch embedding as a matrix product, LayerNorm by its formula, attention head by head with an
explicit softmax, then the MLP. It shares nothing with falip but the model's weights.
Tolerance used with it: 1e-4 absolute on features (it runs in float64, falip in float32).
"""

from __future__ import annotations

import math

import torch


def naive_mask(box, grid, patch, alpha, sigma, form):
    """The paper's M [L, L] for one xyxy box, cell by cell."""
    (gh, gw), (ph, pw) = grid, patch
    x0, y0, x1, y1 = box
    cells = [
        (r, c)
        for r in range(gh)
        for c in range(gw)
        if c * pw < x1 and (c + 1) * pw > x0 and r * ph < y1 and (r + 1) * ph > y0
    ]
    r0, r1 = min(r for r, _ in cells), max(r for r, _ in cells)
    c0, c1 = min(c for _, c in cells), max(c for _, c in cells)
    hh, ww = r1 - r0 + 1, c1 - c0 + 1
    gauss = {}
    for i in range(hh):
        for j in range(ww):
            gauss[i, j] = math.exp(-((i - (hh - 1) / 2) ** 2 + (j - (ww - 1) / 2) ** 2) / (2 * sigma**2))
    lo, hi = min(gauss.values()), max(gauss.values())
    length = 1 + gh * gw
    m = torch.zeros(length, length, dtype=torch.float64)
    for r, c in cells:
        value = alpha * (gauss[r - r0, c - c0] - lo + 1e-6) / (hi - lo + 1e-6)
        t = 1 + r * gw + c
        if form == "cls":
            m[0, t] = value
        elif form == "all":
            m[:, t] = value
        else:
            m[t, t] = value
    return m


def _layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight.double() + ln.bias.double()


def naive_attention(block, h, bias=None):
    """open_clip's attention of normalised tokens ``h`` [L, C], head by head, in float64.

    ``bias``: additive logits [L, L] (every head) or [heads, L, L], or None. Returns
    ``(probs [heads, L, L], per_head [heads, L, C], output [L, C])``: ``per_head[h]`` is head h's
    weighted values through its columns of the output projection; ``output`` their sum plus the bias.
    """
    attn = block.attn
    heads, width_c = attn.num_heads, h.shape[1]
    hd = width_c // heads
    h = h.double()
    qkv = h @ attn.in_proj_weight.double().T + attn.in_proj_bias.double()
    q, k, vv = qkv[:, :width_c], qkv[:, width_c : 2 * width_c], qkv[:, 2 * width_c :]
    w_out = attn.out_proj.weight.double()
    probs = torch.zeros(heads, len(h), len(h), dtype=torch.float64)
    per_head = torch.zeros(heads, len(h), width_c, dtype=torch.float64)
    for head in range(heads):
        sl = slice(head * hd, (head + 1) * hd)
        logits = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
        if bias is not None:
            logits = logits + (bias[head] if bias.ndim == 3 else bias).double()
        weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
        probs[head] = weights / weights.sum(dim=1, keepdim=True)
        per_head[head] = (probs[head] @ vv[:, sl]) @ w_out[:, sl].T
    return probs, per_head, per_head.sum(0) + attn.out_proj.bias.double()


def naive_block(block, x, bias=None):
    """One open_clip residual block on tokens ``x`` [L, C] in float64 (``bias`` as :func:`naive_attention`)."""
    x = x.double()
    x = x + naive_attention(block, _layer_norm(x, block.ln_1), bias)[2]
    h2 = _layer_norm(x, block.ln_2)
    hidden = h2 @ block.mlp.c_fc.weight.double().T + block.mlp.c_fc.bias.double()
    hidden = block.mlp.gelu(hidden)
    return x + hidden @ block.mlp.c_proj.weight.double().T + block.mlp.c_proj.bias.double()


def naive_features(model, image, mask_by_block):
    """One image [3, H, W] through the ViT by hand; ``mask_by_block[i]`` is M for block i or None."""
    v = model.visual
    ph, pw = v.patch_size
    c_in, height, width = image.shape
    gh, gw = height // ph, width // pw
    img = image.double()
    patches = img.reshape(c_in, gh, ph, gw, pw).permute(1, 3, 0, 2, 4).reshape(gh * gw, -1)
    x = patches @ v.conv1.weight.double().reshape(v.conv1.weight.shape[0], -1).T
    x = torch.cat([v.class_embedding.double()[None], x]) + v.positional_embedding.double()
    x = _layer_norm(x, v.ln_pre)
    for i, block in enumerate(v.transformer.resblocks):
        x = naive_block(block, x, mask_by_block[i])
    cls = _layer_norm(x[0], v.ln_post)
    return cls @ v.proj.double()


def naive_region_feature(model, image, box, alpha, sigma, layers, form):
    v = model.visual
    m = naive_mask(box, v.grid_size, v.patch_size, alpha, sigma, form)
    n = len(v.transformer.resblocks)
    masks = [m if i in layers else None for i in range(n)]
    return naive_features(model, image, masks)
