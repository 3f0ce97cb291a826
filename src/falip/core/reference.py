"""The plain per-region FALIP forward, one block at a time, with hooks for analysis.

Each region's image runs through the tower's own blocks (:meth:`Tower.run_block`, the library's
code) with the paper's mask ``M`` (Eq. 4; ``docs/method.md``, "The foveal mask") passed as an
additive attention bias in the biased blocks: no shared prefix, no folding, no [CLS]-only shortcut.
It is the reference the fast plans of :class:`~falip.core.model.FovealCLIP` are tested against,
and what the analysis tools build on, because it can record, for any block:

* the attention probabilities ``[R, heads, Lq, L]``;
* each head's output pushed through that head's slice of the output projection
  ``[R, heads, Lq, C]`` (``docs/method.md``, "Per-head decomposition", ``G_h``): ``sum_h G_h + b_out``
  is the block's attention output (before the layer scale / attention norm);
* on a [CLS] tower, the [CLS] residual stream: the [CLS] token entering every block and leaving
  the last (``[X_l]cls``), and each block's attention and MLP contributions to it, so that
  ``[X_L]cls = [X_0]cls + sum_l MSA_l,cls + sum_l MLP_l,cls`` (Eq. 5).

Both come from :func:`falip.core.attention.head_attention`, the one per-head computation.
``Lq`` is 1 (the [CLS] query row, ``tokens="cls"``) or L (``tokens="all"``). Blocks with an inner
attention norm have no per-head decomposition; their ``head_outputs`` are absent.

Attention-pooled towers (FALIP-MAP): the blocks in ``layers`` get ``M`` with form ``"all"`` (or
``"diag"``), then the library's own pooling head (:meth:`Tower.run_pool`) with the profile added to
the probe's logits over the patch keys; ``pool_attention`` records the probe's probabilities
``[R, heads, P, L]``. There is no [CLS] stream (``cls_stream``, ``msa_cls``, ``mlp_cls`` are None).
The cost is one full forward per region: use it for analysis and tests, FovealCLIP for speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .attention import attention_term, head_attention, pool_head_attention
from .defaults import ALPHA, FORM, SIGMA
from .errors import FalipError
from .mask import foveal_profile, full_mask, regions_to_roa, token_bias, validate_alpha_sigma, validate_form
from .regions import Regions
from .tower import Tower, as_tower, resolve_layers

__all__ = ["ReferenceOutput", "reference_forward"]


@dataclass
class ReferenceOutput:
    """What :func:`reference_forward` returns; R regions (or images, without regions).

    ``features`` ``[R, D]``: the image tower's output (the library's own head).
    ``cls_stream`` ``[depth + 1, R, C]``: the [CLS] token entering each block, then the output.
    ``msa_cls`` / ``mlp_cls`` ``[depth, R, C]``: each block's attention / MLP term added to [CLS].
    ``attention[l]`` ``[R, heads, Lq, L]`` and ``head_outputs[l]`` ``[R, heads, Lq, C]`` for
    the recorded blocks l; ``out_proj_bias[l]`` ``[C]`` (zeros when the block has none);
    ``token_outputs[l]`` ``[R, heads, Lq, L, C]`` (``per_token=True``): ``head_outputs[l]`` split
    over the key tokens (:class:`~falip.core.attention.HeadAttention` ``tokens``).
    ``pool_attention`` ``[R, heads, P, L]``: the pooling probe's attention (attention-pooled
    towers; None on [CLS] towers, whose three stream fields are None on attention-pooled ones).
    """

    features: torch.Tensor
    cls_stream: torch.Tensor | None
    msa_cls: torch.Tensor | None
    mlp_cls: torch.Tensor | None
    attention: dict[int, torch.Tensor] = field(default_factory=dict)
    head_outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    out_proj_bias: dict[int, torch.Tensor] = field(default_factory=dict)
    token_outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    pool_attention: torch.Tensor | None = None


@torch.no_grad()
def reference_forward(
    model: Any,
    images: torch.Tensor,
    regions: Sequence[Regions] | None = None,
    *,
    alpha: float = ALPHA,
    sigma: float = SIGMA,
    layers: Iterable[int] | None = None,
    form: str = FORM,
    record: Iterable[int] | str | None = None,
    tokens: str = "cls",
    per_token: bool = False,
) -> ReferenceOutput:
    """Run every region through the whole tower with its foveal mask, block by block.

    Args:
        model: a :class:`~falip.core.tower.Tower` or a :class:`~falip.FovealCLIP` (``falip.wrap(model)``
            makes a Tower of a library's model).
        images: ``[N, 3, H, W]`` preprocessed images.
        regions: N :class:`Regions` in the model-input frame, or None: each image once, no bias.
        alpha, sigma, form: the foveal mask (docs/method.md, "The foveal mask").
        layers: 0-based biased blocks (None: the last 4; on an attention-pooled tower, none: the
            pooling probe only). Out of range is an error naming the depth.
        record: blocks whose attention and per-head outputs to keep (``"all"``, or indices).
        tokens: ``"cls"`` records the [CLS] query row only, ``"all"`` every row.
        per_token: also record each key token's per-head term (``token_outputs``).
    Returns:
        :class:`ReferenceOutput`, regions in image-major order.
    """
    tower: Tower = as_tower(model)
    depth = tower.depth
    pooled = tower.pooling == "map"
    if tokens not in ("cls", "all"):
        raise FalipError(f"tokens must be 'cls' or 'all', got {tokens!r}")
    if pooled and tokens == "cls" and record is not None:
        raise FalipError(
            "an attention-pooled tower has no [CLS] query row to record: pass tokens='all', "
            "or read the pooling probe's attention (pool_attention)"
        )
    biased = set(tower.resolve_biased(layers))
    if record == "all":
        recorded = set(range(depth))
    else:
        recorded = set() if record is None else set(resolve_layers(record, depth, allow_empty=True, name="record"))
    alpha, sigma = validate_alpha_sigma(alpha, sigma)
    validate_form(form)
    if pooled and biased and form == "cls":
        raise FalipError(
            "an attention-pooled tower has no [CLS] query row to bias in its blocks: use form='all' "
            "or bias the pooling probe only (layers=None)"
        )
    prefix = tower.num_prefix_tokens

    x = tower.embed(images)
    mask = key_bias = None
    if regions is not None:
        if len(regions) != images.shape[0]:
            raise FalipError(f"{len(regions)} region lists for {images.shape[0]} images")
        counts = [len(r) for r in regions]
        index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(images.device)
        x = x[index]
        if alpha > 0 and sum(counts):
            roa = torch.cat([regions_to_roa(r, tower.grid_size, tower.patch_size) for r in regions if len(r)])
            profile = foveal_profile(roa, alpha, sigma)
            mask = full_mask(profile, form, prefix).to(device=x.device, dtype=x.dtype)
            key_bias = token_bias(profile, prefix).to(device=x.device, dtype=x.dtype)
    rows = slice(0, 1) if tokens == "cls" else None
    cls_stream, msa_cls, mlp_cls = [x[:, 0]], [], []
    out = ReferenceOutput(x.new_zeros(0), None, None, None)
    for i in range(depth):
        m = mask if i in biased else None
        need_terms = not pooled
        if i in recorded or need_terms:
            p = tower.parts(i)
            h = p.norm1(x)
            keep = i in recorded
            ha = head_attention(p, h, m, rows if keep else slice(0, 1), per_head=keep, per_token=keep and per_token)
            if i in recorded:
                out.attention[i] = ha.probs
                if ha.heads is not None:
                    out.head_outputs[i] = ha.heads
                    bias = p.out_bias if p.out_bias is not None else x.new_zeros(x.shape[-1])
                    out.out_proj_bias[i] = bias.detach().clone()
                if ha.tokens is not None:
                    out.token_outputs[i] = ha.tokens
        x_next = tower.run_block(i, x, m)  # the library's own block
        if need_terms:
            msa = attention_term(p, ha.output[:, 0])
            msa_cls.append(msa)
            mlp_cls.append(x_next[:, 0] - x[:, 0] - msa)
            cls_stream.append(x_next[:, 0])
        x = x_next
    if pooled:
        final = tower.final_norm(x)
        probs, _ = pool_head_attention(tower.pool_parts(), final, key_bias)
        out.pool_attention = probs
        bias_rows = None
        if key_bias is not None:
            p_count = probs.shape[2]
            bias_rows = key_bias[:, None, :].expand(-1, p_count, -1)
        out.features = tower.run_pool(final, bias_rows)  # the library's own pooling head
        return out
    out.features = tower.head(x)
    out.cls_stream = torch.stack(cls_stream)
    out.msa_cls = torch.stack(msa_cls)
    out.mlp_cls = torch.stack(mlp_cls)
    return out
