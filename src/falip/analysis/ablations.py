"""The paper's ablations that need their own forward pass (FALIP.md section 7; paper Fig. 7, Table 14).

Variants of FALIP's image tower, each given a name that :class:`AblationScorer` (and so the
evaluation tasks and ``falip sweep``) understands. "The chosen blocks" are the blocks FALIP biases
(``layers``: the model's preset, or the per-call override).

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
    clipped to the input (so at most the ellipse inscribed in the image, as the paper caps it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..core.attention import head_attention, residual_tail
from ..core.errors import FalipError
from ..core.mask import foveal_profile, full_mask, regions_to_roa, validate_alpha_sigma, validate_form
from ..core.tower import BlockParts, Tower, as_tower
from ..prompts import edits as vp
from ..prompts.registry import METHODS, parse_method
from ..scoring import RegionScorer

__all__ = [
    "VARIANTS",
    "AblationScorer",
    "feature_mask_forward",
    "mixed_attention",
    "scale_box",
    "swap_forward",
]

VARIANTS = ("feature-mask", "qk-prompt", "v-prompt")


def scale_box(box: Sequence[float], factor: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``box`` (xyxy) with width and height times ``factor`` about its centre, clipped to ``size`` ``(W, H)``."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
        raise FalipError(f"the circle's scale must be a number > 0, got {factor!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * factor, (y1 - y0) / 2 * factor
    w, h = size
    return (max(0.0, cx - hw), max(0.0, cy - hh), min(float(w), cx + hw), min(float(h), cy + hh))


def _cls_tower(model: Any, what: str) -> Tower:
    tower = as_tower(model)
    if tower.pooling != "cls":
        raise FalipError(
            f"the {what} ablation reads the [CLS] token's features, but this {tower.library} tower pools with an "
            "attention probe over all tokens (no [CLS] token)"
        )
    return tower


@torch.no_grad()
def feature_mask_forward(
    model: Any, images: torch.Tensor, roa: torch.Tensor, layers: Iterable[int] | None = None
) -> torch.Tensor:
    """Features ``[R, D]`` of the feature-mask ablation (Fig. 7a; module docstring).

    ``model``: a [CLS]-pooled Tower, FovealCLIP or a model a tower adapter wraps.
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


class AblationScorer(RegionScorer):
    """A :class:`~falip.RegionScorer` whose ``falip`` term is an ablation variant, or whose red circle is scaled.

    ``variant`` (one of :data:`VARIANTS`, or None) replaces the features of every plain
    ``falip`` term of a method (module docstring); ``prompt`` is the visual prompt of the swaps
    (an edit term, default ``"circle"``); ``circle_scale`` enlarges the red circle wherever the
    ``circle`` atom is drawn (in the swaps' prompt too). FALIP settings (alpha, sigma, layers,
    form) come from ``falip_options`` over the model's own. Everything else is the scorer's.
    """

    def __init__(
        self,
        *args: Any,
        variant: str | None = None,
        prompt: str = "circle",
        circle_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if variant is not None and variant not in VARIANTS:
            raise FalipError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
        terms = parse_method(prompt)
        if len(terms) != 1 or any(METHODS[a].kind != "edit" for a in terms[0]):
            raise FalipError(f"the swaps' prompt is one term of image edits (e.g. circle, blur&circle), got {prompt!r}")
        scale_box((0, 0, 1, 1), circle_scale, (1, 1))  # validates the factor
        self.variant = variant
        self.prompt_term = terms[0]
        self.circle_scale = float(circle_scale)

    @classmethod
    def from_scorer(
        cls,
        scorer: RegionScorer,
        variant: str | None = None,
        prompt: str = "circle",
        circle_scale: float = 1.0,
        falip_options: dict | None = None,
    ) -> AblationScorer:
        """An ablation scorer on ``scorer``'s model, settings and text caches."""
        out = cls(
            scorer.fclip,
            scorer.preprocess,
            scorer.tokenizer,
            params=scorer.params,
            template=scorer.template,
            batch_size=scorer.batch_size,
            falip_options=scorer.falip_options if falip_options is None else falip_options,
            variant=variant,
            prompt=prompt,
            circle_scale=circle_scale,
        )
        out._text_cache = scorer._text_cache
        out._matrix_cache = scorer._matrix_cache
        return out

    def settings(self) -> dict:
        """The FALIP settings in force: alpha, sigma, layers (0-based), form."""
        f, o = self.fclip, self.falip_options
        alpha, sigma = validate_alpha_sigma(o.get("alpha", f.alpha), o.get("sigma", f.sigma))
        layers = o.get("layers")
        layers = list(f.layers) if layers is None else list(f.tower.resolve_layers(layers))
        return {"alpha": alpha, "sigma": sigma, "layers": layers, "form": validate_form(o.get("form") or f.form)}

    # ---------------------------------------------------------------------------- hooks
    def _edited(self, it: Any, k: int, term: Sequence[str]):
        if self.circle_scale == 1.0 or "circle" not in term or any(a not in METHODS for a in term):
            return super()._edited(it, k, term)
        im = super()._edited(it, k, tuple(a for a in term if a != "circle"))  # the other edits, in order
        box = scale_box(it.regions_input.boxes[k], self.circle_scale, im.size)
        return vp.red_circle(im, box, self.params.circle_color, self.params.circle_thickness)

    def _term_features(self, items: list, term: tuple[str, ...]) -> torch.Tensor:
        if self.variant is None or term != ("falip",):
            return super()._term_features(items, term)
        pp = self.preprocess
        s = self.settings()
        tower = self.fclip.tower
        grid, patch = self.fclip.grid_size, self.fclip.patch_size
        pieces = []
        pairs = [(it, k) for it in items for k in range(len(it))]
        for lo in range(0, len(pairs), self.batch_size):
            chunk = pairs[lo : lo + self.batch_size]
            original = torch.stack([pp.to_tensor(self._resized(it)) for it, _ in chunk]).to(self.device, self.dtype)
            roa = torch.cat([regions_to_roa(it.regions_input.select([k]), grid, patch) for it, k in chunk])
            if self.variant == "feature-mask":
                pieces.append(feature_mask_forward(tower, original, roa, s["layers"]))
                continue
            prompted = torch.stack([pp.to_tensor(self._edited(it, k, self.prompt_term)) for it, k in chunk])
            prompted = prompted.to(self.device, self.dtype)
            mask = None
            if self.variant == "v-prompt" and s["alpha"] > 0:
                profile = foveal_profile(roa, s["alpha"], s["sigma"])
                mask = full_mask(profile, s["form"], tower.num_prefix_tokens).to(self.device, self.dtype)
            pieces.append(swap_forward(tower, prompted, original, self.variant, s["layers"], mask))
        return torch.cat(pieces) if pieces else torch.zeros(0, self.fclip.output_dim)
