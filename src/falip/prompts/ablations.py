"""The paper's ablations that need their own forward pass (its Fig. 7 and Table 14).

Variants of FALIP's image tower, each a method atom of :mod:`falip.prompts.registry` (``--method
qk-prompt`` wherever a method is taken; ``falip sweep form`` puts them in place of ``falip``).
"The chosen blocks" are the blocks FALIP biases (``layers``: the model's preset, or the per-call
override).

``feature-mask`` (Fig. 7a)
    The image alone, no attention bias; at the input of each chosen block the patch tokens of
    the residual stream are multiplied by the region's binary ROA mask (1 on the region's patch
    cells as FALIP selects them, docs/method.md "The foveal mask"; 0 elsewhere; [CLS] kept):
    ``x[:, 1 + t] *= roa[t]``, then the block runs as usual.

``qk-prompt`` (Fig. 7b: q and k from the RedCircle image, v from the original)
    Two streams: the prompted image (e.g. the red circle, as the scorer draws it) and the
    original image, each running CLIP unchanged. The output is the prompted image's stream, in
    which each chosen block's attention takes its queries and keys from the prompted stream and
    its values from the original stream at that block:
    ``x' <- x' + out_proj(softmax(q(LN x') k(LN x')^T / sqrt(d)) v(LN x))``, then the MLP on x'.

``v-prompt`` (Fig. 7c: the reverse, with FALIP's bias)
    The same two streams, but the original image runs FALIP (its foveal mask ``M`` in the chosen
    blocks), and the prompted stream's attention in each chosen block takes its queries and keys
    from the original stream, with ``M`` added to their logits, and its values from the prompted
    stream: ``x' <- x' + out_proj(softmax(q(LN x) k(LN x)^T / sqrt(d) + M) v(LN x'))``, then the MLP.

In both swaps the residual stream that becomes the feature is the prompted image's: the paper
reads them as RedCircle with its v (7b) or its q and k (7c) replaced ("regardless of whether q, k
or v is replaced, the accuracy of the RedCircle decreases").

The three variants run on [CLS]-pooled towers (the features are the [CLS] token's); an
attention-pooled tower is refused with that reason.

``circle-scale`` (Table 14: enlarging the RedCircle)
    The red circle drawn on the box scaled by a factor about its centre, in model-input pixels,
    clipped to the input (so at most the ellipse inscribed in the image, as the paper caps it):
    :attr:`falip.prompts.registry.PromptParams.circle_scale`, used wherever ``circle`` is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from ..core.attention import head_attention, residual_tail
from ..core.errors import FalipError
from ..core.mask import foveal_profile, full_mask, regions_to_roa
from ..core.tower import BlockParts, Tower, as_cls_tower
from .edits import scale_box
from .registry import METHODS, parse_method

__all__ = [
    "VARIANTS",
    "feature_mask_features",
    "qk_prompt_features",
    "v_prompt_features",
    "feature_mask_forward",
    "mixed_attention",
    "scale_box",
    "swap_forward",
]

VARIANTS = ("feature-mask", "qk-prompt", "v-prompt")


def _cls_tower(model: Any, what: str) -> Tower:
    return as_cls_tower(
        model,
        f"the {what} ablation reads the [CLS] token's features, but this {{library}} tower pools with an "
        "attention probe over all tokens (no [CLS] token)",
    )


@torch.no_grad()
def feature_mask_forward(
    model: Any, images: torch.Tensor, roa: torch.Tensor, layers: Iterable[int] | None = None
) -> torch.Tensor:
    """Features ``[R, D]`` of the feature-mask ablation (Fig. 7a; module docstring).

    ``model``: a [CLS]-pooled Tower or FovealCLIP (``falip.wrap(model)`` makes a Tower of a library's model).
    ``images`` ``[R, 3, H, W]`` (one per region); ``roa`` ``[R, gh, gw]`` bool, the regions' cells;
    ``layers``: the chosen blocks (0-based; None: the last 4).
    """
    tower = _cls_tower(model, "feature-mask")
    chosen = set(tower.resolve_layers(layers))
    prefix = tower.num_prefix_tokens
    keep = F.pad(roa.flatten(1).to(images.dtype), (prefix, 0), value=1.0)[:, :, None].to(images.device)  # [R, L, 1]
    x = tower.embed(images)
    for i in range(tower.depth):
        if i in chosen:
            x = x * keep.to(x.dtype)
        x = tower.run_block(i, x)
    return tower.head(x)


def mixed_attention(
    parts: BlockParts, h_qk: torch.Tensor, h_v: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-head attention with queries and keys from ``h_qk`` and values from ``h_v`` ``[B, L, C]``.

    Normalised tokens in; ``parts``: the block (``tower.parts(i)``); ``bias``: additive logits
    ``[B, L, L]`` (or broadcastable) or None. The block's own attention maths (q/k norms, cosine
    logits, rotation, head scale, inner norm; :func:`falip.core.attention.head_attention`).
    Returns ``[B, L, C]`` after the output projection.
    """
    return head_attention(parts, h_qk, bias, h_v=h_v, per_head=False).output


@torch.no_grad()
def swap_forward(
    model: Any,
    prompted: torch.Tensor,
    original: torch.Tensor,
    swap: str,
    layers: Iterable[int] | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Features ``[R, D]`` of the q/k/v swaps of Fig. 7b/7c (module docstring); the prompted stream's [CLS].

    ``prompted``, ``original``: ``[R, 3, H, W]`` (one pair per region). ``swap``: ``"qk-prompt"``
    (7b: q, k from the prompted image, v from the original) or ``"v-prompt"`` (7c: q, k from the
    original with ``mask``, v from the prompted image). ``mask``: FALIP's additive ``M``
    ``[R, L, L]`` for ``"v-prompt"`` (None: no bias), applied in the chosen blocks both to the
    original stream's own forward and to the swapped logits.
    """
    if swap not in ("qk-prompt", "v-prompt"):
        raise FalipError(f"swap must be 'qk-prompt' or 'v-prompt', got {swap!r}")
    if prompted.shape != original.shape:
        raise FalipError(f"prompted {tuple(prompted.shape)} and original {tuple(original.shape)} images differ")
    tower = _cls_tower(model, swap)
    chosen = set(tower.resolve_layers(layers))
    m = None if swap == "qk-prompt" or mask is None else mask.to(device=prompted.device)
    xp, xo = tower.embed(prompted), tower.embed(original)
    for i in range(tower.depth):
        if i not in chosen:
            xp, xo = tower.run_block(i, xp), tower.run_block(i, xo)
            continue
        p = tower.parts(i)
        hp, ho = p.norm1(xp), p.norm1(xo)
        if swap == "qk-prompt":
            a = mixed_attention(p, hp, ho)
        else:
            a = mixed_attention(p, ho, hp, None if m is None else m.to(ho.dtype))
        xo = tower.run_block(i, xo, None if m is None else m.to(xo.dtype))
        xp = residual_tail(p, xp, a)
    return tower.head(xp)


def _swap_term(scorer: Any) -> tuple[str, ...]:
    """The atoms of ``scorer.params.swap_prompt``: one term of image edits."""
    prompt = scorer.params.swap_prompt
    terms = parse_method(prompt)
    if len(terms) != 1 or any(METHODS[a].kind != "edit" for a in terms[0]):
        raise FalipError(f"the swaps' prompt is one term of image edits (e.g. circle, blur&circle), got {prompt!r}")
    return terms[0]


def _ablation_features(scorer: Any, items: list, variant: str) -> torch.Tensor:
    """Features ``[sum K_i, D]`` of every region of every item under an ablation (module docstring).

    FALIP's settings (alpha, sigma, the chosen blocks, form) are the scorer's
    (:meth:`falip.RegionScorer.falip_settings`); the swaps' prompt is ``scorer.params.swap_prompt``,
    drawn as the scorer draws it (``circle_scale`` included).
    """
    if variant not in VARIANTS:
        raise FalipError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    pp, fclip = scorer.preprocess, scorer.fclip
    prompt_term = _swap_term(scorer) if variant != "feature-mask" else ()
    s = scorer.falip_settings()
    tower = fclip.tower
    grid, patch = fclip.grid_size, fclip.patch_size
    device, dtype = scorer.device, scorer.dtype
    pieces = []
    pairs = [(it, k) for it in items for k in range(len(it))]
    for lo in range(0, len(pairs), scorer.batch_size):
        chunk = pairs[lo : lo + scorer.batch_size]
        original = torch.stack([pp.to_tensor(scorer.resized(it)) for it, _ in chunk]).to(device, dtype)
        roa = torch.cat([regions_to_roa(it.regions_input.select([k]), grid, patch) for it, k in chunk])
        if variant == "feature-mask":
            pieces.append(feature_mask_forward(tower, original, roa, s["layers"]))
            continue
        prompted = torch.stack([pp.to_tensor(scorer.edited(it, k, prompt_term)) for it, k in chunk])
        prompted = prompted.to(device, dtype)
        mask = None
        if variant == "v-prompt" and s["alpha"] > 0:
            profile = foveal_profile(roa, s["alpha"], s["sigma"])
            mask = full_mask(profile, s["form"], tower.num_prefix_tokens).to(device, dtype)
        pieces.append(swap_forward(tower, prompted, original, variant, s["layers"], mask))
    return torch.cat(pieces) if pieces else torch.zeros(0, fclip.output_dim)


def feature_mask_features(scorer: Any, items: list) -> torch.Tensor:
    """The ``feature-mask`` method atom (Fig. 7a): :func:`feature_mask_forward` per region."""
    return _ablation_features(scorer, items, "feature-mask")


def qk_prompt_features(scorer: Any, items: list) -> torch.Tensor:
    """The ``qk-prompt`` method atom (Fig. 7b): :func:`swap_forward` per region."""
    return _ablation_features(scorer, items, "qk-prompt")


def v_prompt_features(scorer: Any, items: list) -> torch.Tensor:
    """The ``v-prompt`` method atom (Fig. 7c): :func:`swap_forward` with FALIP's mask per region."""
    return _ablation_features(scorer, items, "v-prompt")
