"""Unleashing a visual prompt (Eq. 6; docs/method.md, "Per-head decomposition").

The [CLS] output of a ViT is a sum of terms (Eq. 5), among them each block's attention term
``MSA_l,cls = ls_1(sum_h G_h + b_out)``. Run the original image (``G_h``) and the prompted one
(``G'_h``: the image with a red circle, blurred, ..., or with FALIP's bias); "unleashing" the prompt
adds, for the last ``k`` blocks, the prompt's extra attention ``sum_h (G'_h - G_h)`` once more to the
prompted image's final [CLS], before ``ln_post`` and the projection::

    unleashed = proj(ln_post([X'_L]cls + sum_{l >= depth - k} (MSA'_l,cls - MSA_l,cls)))

The out-projection bias cancels in the difference and ``ls_1`` (LayerScale) is linear, so
``MSA'_l - MSA_l = ls_1(sum_h (G'_h - G_h))``: the paper's sum over heads, as it enters the residual
stream. On towers that normalise the attention output (``ln_attn``, open_clip's ``scale_attn``) or
the heads' concatenation (``ln_inner``) the attention term is no sum over heads; there the
difference of the block terms is used, the same quantity at the level of the block (documented,
not an error). The delta is added after the last block, as the paper does: the later blocks do
not see it.

Cost: one forward of the original images (once per image, not per region) and one of the
prompted images, in the blocks' own arithmetic (:mod:`falip.core.attention`); only the last ``k``
blocks compute their attention term separately, and the last block only its [CLS] row.

Attention-pooled towers are refused: their features come from a probe attending over every
token, not from a [CLS] residual stream, so Eq. 5-6 have no [CLS] term to add the delta to.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .attention import attention, attention_term, block_forward
from .defaults import ALPHA, FORM, SIGMA
from .errors import FalipError
from .mask import attention_bias, foveal_profile, regions_to_roa, token_bias, validate_alpha_sigma, validate_form
from .regions import Regions
from .tower import Tower, as_cls_tower, as_tower

__all__ = ["AttentionTerms", "attention_terms", "check_k", "project", "unleash_cls", "unleash_features"]


@dataclass
class AttentionTerms:
    """The [CLS] output and the last blocks' attention terms of B inputs (images or regions).

    ``cls`` ``[B, C]``: the final [CLS] token, before ``ln_post``. ``msa`` ``[k, B, C]``: the
    attention term each of ``blocks`` added to [CLS] (through ``ls_1``/``ln_attn``).
    """

    cls: torch.Tensor
    msa: torch.Tensor
    blocks: tuple[int, ...]


def check_k(k: object, depth: int) -> int:
    """``k`` as an int in ``1..depth`` (the number of last blocks unleashed); FalipError otherwise.

    None: the paper's 4, or every block of a shallower tower.
    """
    if k is None:
        return min(4, depth)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise FalipError(f"k (the number of last blocks to unleash) must be an integer, got {k!r}")
    k = int(k)
    if not 1 <= k <= depth:
        raise FalipError(f"k must be between 1 and the tower's {depth} blocks, got {k}")
    return k


def cls_tower(model: Any, what: str) -> Tower:
    """The tower of ``model``; FalipError for an attention-pooled one, which has no [CLS] stream."""
    return as_cls_tower(
        model,
        f"{what} splits the [CLS] token's residual stream (Eq. 5), but this {{library}} tower pools "
        "with an attention probe over all tokens: it has no [CLS] stream to split",
    )


@torch.no_grad()
def attention_terms(
    model: Any,
    images: torch.Tensor,
    regions: Sequence[Regions] | None = None,
    *,
    k: int | None = None,
    alpha: float = ALPHA,
    sigma: float = SIGMA,
    layers: Iterable[int] | None = None,
    form: str = FORM,
) -> AttentionTerms:
    """The final [CLS] and the [CLS] attention terms of the last ``k`` blocks.

    Args:
        model: a [CLS]-pooled :class:`~falip.core.tower.Tower` or a FovealCLIP (``falip.wrap(model)``
            makes a Tower of a library's model), in eval mode.
        images: ``[N, 3, H, W]`` preprocessed images.
        regions: None (each image once, no bias), or N :class:`Regions` in the model-input frame:
            one row per region (image-major), with FALIP's bias on it in ``layers``.
        k: how many last blocks to record (None: 4, or all of a shallower tower).
        alpha, sigma, layers, form: FALIP's bias (used only with regions; ``layers`` None = last 4).
    Returns:
        :class:`AttentionTerms` with ``B = N`` (no regions) or ``B = sum K_i``.
    """
    tower = cls_tower(model, "unleash")
    depth = tower.depth
    k = check_k(k, depth)
    x = tower.embed(images)
    bias = None
    biased: set[int] = set()
    if regions is not None:
        if len(regions) != images.shape[0]:
            raise FalipError(f"{len(regions)} region lists for {images.shape[0]} images")
        alpha, sigma = validate_alpha_sigma(alpha, sigma)
        validate_form(form)
        biased = set(tower.resolve_layers(layers))
        counts = [len(r) for r in regions]
        index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(images.device)
        x = x[index]
        if alpha > 0 and sum(counts):
            roa = torch.cat([regions_to_roa(r, tower.grid_size, tower.patch_size) for r in regions if len(r)])
            profile = foveal_profile(roa, alpha, sigma)
            per_token = token_bias(profile, tower.num_prefix_tokens).to(device=x.device, dtype=x.dtype)
            bias = attention_bias(per_token, form)  # [B, 1, L or 1, L]
    first = depth - k
    msa = []
    for i in range(depth):
        p = tower.parts(i)
        b = bias if i in biased else None
        if i < first:
            x = block_forward(p, x, b)
            continue
        rows = slice(0, 1) if i == depth - 1 else None  # the last block: only [CLS] is needed
        h = p.norm1(x)
        if b is not None and rows is not None and b.shape[-2] > 1:
            b = b[:, :, rows]
        term = attention_term(p, attention(p, h, bias=b, query_rows=rows))
        y = (x if rows is None else x[:, rows]) + term
        m = p.mlp(p.norm2(y))
        x = y + (m if p.ls2 is None else p.ls2(m))
        msa.append(term[:, 0])
    return AttentionTerms(cls=x[:, 0], msa=torch.stack(msa), blocks=tuple(range(first, depth)))


def unleash_cls(
    prompted: AttentionTerms, original: AttentionTerms, index: torch.Tensor | Sequence[int] | None = None
) -> torch.Tensor:
    """Eq. 6 on the [CLS] token: ``prompted.cls + sum_l (prompted.msa - original.msa[:, index])`` ``[R, C]``.

    ``index[r]`` is the row of ``original`` (its image) for prompted row r; None: row r itself.
    """
    if prompted.blocks != original.blocks:
        raise FalipError(f"prompted and original terms are of different blocks: {prompted.blocks} vs {original.blocks}")
    base = original.msa if index is None else original.msa[:, torch.as_tensor(index, device=original.msa.device)]
    if base.shape != prompted.msa.shape:
        raise FalipError(f"{base.shape[1]} original rows for {prompted.msa.shape[1]} prompted rows (pass index)")
    return prompted.cls + (prompted.msa - base).sum(0)


def project(model: Any, cls: torch.Tensor) -> torch.Tensor:
    """The image tower's head on [CLS] tokens ``[R, C]`` (e.g. ``ln_post`` then ``proj``) -> ``[R, D]``."""
    return as_tower(model).head(cls[:, None])


@torch.no_grad()
def unleash_features(
    model: Any,
    images: torch.Tensor,
    prompted: torch.Tensor,
    index: torch.Tensor | Sequence[int] | None = None,
    *,
    prompted_regions: Sequence[Regions] | None = None,
    k: int | None = None,
    alpha: float = ALPHA,
    sigma: float = SIGMA,
    layers: Iterable[int] | None = None,
    form: str = FORM,
) -> torch.Tensor:
    """Unleashed image features ``[R, D]`` of prompted inputs against their original images.

    Args:
        images: the original images ``[N, 3, H, W]`` (preprocessed), no bias.
        prompted: the prompted images ``[P, 3, H, W]`` (e.g. one red-circled image per region).
        index: ``[R]`` the original image of each prompted row (None: ``P == N``, row i of image i).
        prompted_regions: None, or P :class:`Regions` (model-input frame) for FALIP's bias on the
            prompted images; then the prompted rows are their regions, image-major (R = sum K_i).
        k: the last k blocks are unleashed (None: the paper's 4, or all of a shallower tower).
        alpha, sigma, layers, form: FALIP's bias when ``prompted_regions`` are given.
    """
    original = attention_terms(model, images, k=k)
    terms = attention_terms(model, prompted, prompted_regions, k=k, alpha=alpha, sigma=sigma, layers=layers, form=form)
    if index is None and terms.cls.shape[0] != images.shape[0]:
        raise FalipError(f"{terms.cls.shape[0]} prompted rows for {images.shape[0]} images: pass index")
    return project(model, unleash_cls(terms, original, index))
