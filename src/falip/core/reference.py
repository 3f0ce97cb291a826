"""The plain per-region FALIP forward, one block at a time, with hooks for analysis.

Each region's image runs through open_clip's own blocks with the paper's mask ``M`` (Eq. 4;
``docs/method.md``, "The foveal mask") passed as an additive ``attn_mask`` in the biased blocks: no
shared prefix, no folding, no [CLS]-only shortcut. It is the reference the fast plans of
:class:`~falip.core.model.FovealCLIP` are tested against, and what the analysis tools build on,
because it can record, for any block:

* the attention probabilities ``[R, heads, Lq, L]``;
* each head's output pushed through that head's slice of the output projection
  ``[R, heads, Lq, C]`` (``docs/method.md``, "Per-head decomposition", ``G_h``): ``sum_h G_h + out_proj.bias`` is the
  block's attention output (before ``ls_1``/``ln_attn``);
* the [CLS] residual stream: the [CLS] token entering every block and leaving the last
  (``[X_l]cls``), and each block's attention and MLP contributions to it, so that
  ``[X_L]cls = [X_0]cls + sum_l MSA_l,cls + sum_l MLP_l,cls`` (Eq. 5).

``Lq`` is 1 (the [CLS] query row, ``tokens="cls"``) or L (``tokens="all"``). Towers with an inner
attention norm (``ln_inner``) have no per-head decomposition; their ``head_outputs`` are absent.
The cost is one full forward per region: use it for analysis and tests, FovealCLIP for speed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .errors import FalipError
from .mask import foveal_profile, full_mask, regions_to_roa, validate_alpha_sigma, validate_form
from .regions import Regions

__all__ = ["ReferenceOutput", "attention_logits", "head_decomposition", "reference_forward"]


@dataclass
class ReferenceOutput:
    """What :func:`reference_forward` returns; R regions (or images, without regions).

    ``features`` ``[R, D]``: the image tower's output (after ``ln_post`` and ``proj``).
    ``cls_stream`` ``[depth + 1, R, C]``: the [CLS] token entering each block, then the output.
    ``msa_cls`` / ``mlp_cls`` ``[depth, R, C]``: each block's attention / MLP term added to [CLS].
    ``attention[l]`` ``[R, heads, Lq, L]`` and ``head_outputs[l]`` ``[R, heads, Lq, C]`` for
    the recorded blocks l; ``out_proj_bias[l]`` ``[C]``.
    """

    features: torch.Tensor
    cls_stream: torch.Tensor
    msa_cls: torch.Tensor
    mlp_cls: torch.Tensor
    attention: dict[int, torch.Tensor] = field(default_factory=dict)
    head_outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    out_proj_bias: dict[int, torch.Tensor] = field(default_factory=dict)


def attention_logits(attn: nn.Module, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Pre-softmax logits ``[B, heads, Lq, L]`` of per-head queries and keys ``[B, heads, L*, d]``.

    Scaled cosine logits when the module has ``logit_scale``, else ``ln_q(q) . ln_k(k) / sqrt(d)``
    (qk-norm when the module has it): open_clip's two attention variants.
    """
    logit_scale = getattr(attn, "logit_scale", None)
    if logit_scale is not None:
        scale = torch.clamp(logit_scale, max=attn.logit_scale_max).exp()
        return F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2) * scale
    ln_q, ln_k = getattr(attn, "ln_q", nn.Identity()), getattr(attn, "ln_k", nn.Identity())
    return ln_q(q) @ ln_k(k).transpose(-1, -2) / math.sqrt(q.shape[-1])


def head_decomposition(
    attn: nn.Module, h: torch.Tensor, mask: torch.Tensor | None, query_rows: slice
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention probabilities ``[B, heads, Lq, L]`` and per-head outputs ``[B, heads, Lq, C]``.

    ``h``: the block's normalised input tokens ``[B, L, C]``; ``mask``: additive ``[B, L, L]``
    or None. Written out plainly (packed in_proj, optional qk-norm, scaled cosine logits, head
    scale), independent of falip's kernels. Per-head outputs are None with an inner norm.
    """
    b, length, c = h.shape
    heads = attn.num_heads
    hd = c // heads
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, length, heads, hd).transpose(1, 2) for t in (q, k, v))
    logits = attention_logits(attn, q, k)
    if mask is not None:
        logits = logits + mask[:, None].to(logits.dtype)
    probs = logits[:, :, query_rows].softmax(dim=-1)
    out = probs @ v  # [B, heads, Lq, hd]
    head_scale = getattr(attn, "head_scale", None)
    if head_scale is not None:
        out = out * head_scale
    if not isinstance(getattr(attn, "ln_inner", nn.Identity()), nn.Identity):
        return probs, None
    w_out = attn.out_proj.weight.view(c, heads, hd)
    return probs, torch.einsum("bhtd,chd->bhtc", out, w_out)


def _attention_output(block: nn.Module, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """open_clip's own attention module on normalised tokens ``[B, L, C]``, additive mask ``[B, L, L]``."""
    heads = block.attn.num_heads
    m = None if mask is None else mask.to(h.dtype).repeat_interleave(heads, dim=0)  # [B * heads, L, L]
    if isinstance(block.attn, nn.MultiheadAttention):
        return block.attn(h, h, h, need_weights=False, attn_mask=m)[0]
    return block.attn(h, attn_mask=m)


@torch.no_grad()
def reference_forward(
    model: nn.Module,
    images: torch.Tensor,
    regions: Sequence[Regions] | None = None,
    *,
    alpha: float = 0.2,
    sigma: float = 100.0,
    layers: Iterable[int] | None = None,
    form: str = "cls",
    record: Iterable[int] | str | None = None,
    tokens: str = "cls",
) -> ReferenceOutput:
    """Run every region through the whole ViT with its foveal mask, block by block.

    Args:
        model: an open_clip CLIP with a ViT tower (``model.visual``).
        images: ``[N, 3, H, W]`` preprocessed images.
        regions: N :class:`Regions` in the model-input frame, or None: each image once, no bias.
        alpha, sigma, form: the foveal mask (docs/method.md, "The foveal mask").
        layers: 0-based biased blocks (None: the last 4).
        record: blocks whose attention and per-head outputs to keep (``"all"``, or indices).
        tokens: ``"cls"`` records the [CLS] query row only, ``"all"`` every row.
    Returns:
        :class:`ReferenceOutput`, regions in image-major order.
    """
    visual = model.visual
    blocks = visual.transformer.resblocks
    depth = len(blocks)
    if tokens not in ("cls", "all"):
        raise FalipError(f"tokens must be 'cls' or 'all', got {tokens!r}")
    biased = set(range(max(0, depth - 4), depth)) if layers is None else {int(i) % depth for i in layers}
    recorded = set(range(depth)) if record == "all" else set() if record is None else {int(i) % depth for i in record}
    alpha, sigma = validate_alpha_sigma(alpha, sigma)
    validate_form(form)

    x = visual._embeds(images)
    mask = None
    if regions is not None:
        if len(regions) != images.shape[0]:
            raise FalipError(f"{len(regions)} region lists for {images.shape[0]} images")
        counts = [len(r) for r in regions]
        index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(images.device)
        x = x[index]
        if alpha > 0 and sum(counts):
            roa = torch.cat([regions_to_roa(r, visual.grid_size, visual.patch_size) for r in regions if len(r)])
            mask = full_mask(foveal_profile(roa, alpha, sigma), form).to(device=x.device, dtype=x.dtype)
    rows = slice(0, 1) if tokens == "cls" else slice(None)
    cls_stream, msa_cls, mlp_cls = [x[:, 0]], [], []
    out = ReferenceOutput(x.new_zeros(0), x, x, x)
    for i, block in enumerate(blocks):
        m = mask if i in biased else None
        h = block.ln_1(x)
        if i in recorded:
            probs, per_head = head_decomposition(block.attn, h, m, rows)
            out.attention[i] = probs
            if per_head is not None:
                out.head_outputs[i] = per_head
                out.out_proj_bias[i] = block.attn.out_proj.bias.detach().clone()
        heads = block.attn.num_heads
        x_next = block(x, attn_mask=None if m is None else m.repeat_interleave(heads, dim=0))  # open_clip's own
        msa = block.ls_1(getattr(block, "ln_attn", nn.Identity())(_attention_output(block, h, m)[:, 0]))
        msa_cls.append(msa)
        mlp_cls.append(x_next[:, 0] - x[:, 0] - msa)
        x = x_next
        cls_stream.append(x[:, 0])
    cls = visual.ln_post(x[:, 0])
    out.features = cls @ visual.proj if visual.proj is not None else cls
    out.cls_stream = torch.stack(cls_stream)
    out.msa_cls = torch.stack(msa_cls)
    out.mlp_cls = torch.stack(mlp_cls)
    return out
