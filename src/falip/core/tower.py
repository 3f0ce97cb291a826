"""The tower interface: the only description of a vision tower that FALIP's method sees.

A :class:`Tower` wraps one library's CLIP-like model (open_clip, timm through open_clip, Hugging Face
transformers; adapters live in :mod:`falip.towers`) and exposes the pieces the foveal forward needs,
independent of that library's module names:

* geometry: ``depth``, ``grid_size``, ``patch_size``, ``image_size``, ``num_prefix_tokens``
  (tokens before the patches: 1 for a [CLS] tower, 0 for SigLIP), ``width`` (C), ``output_dim`` (D);
* ``embed(images)``: the tokens entering the first block ``[N, L, C]`` (patch embedding, prefix
  tokens, positions and any pre-norm);
* ``parts(i)``: block ``i``'s pieces as one :class:`BlockParts` record (norms, q/k/v weights and
  biases split once, heads, q/k norms, cosine-attention scale, head scale, inner norm, output
  projection, layer scales, MLP, rotary embedding), read by the kernels of :mod:`falip.core.attention`;
* ``run_block(i, x, attn_bias)``: the library's own block with an additive attention bias (the
  reference the kernels are tested against);
* pooling: ``pooling`` is ``"cls"`` (the [CLS] token, then ``head``) or ``"map"`` (an attention-pooling
  probe over every token, :class:`PoolParts`); ``head`` maps the final tokens to features;
* the text side and the logit scale/bias of the model, so tasks never reach into the model;
* :meth:`Tower.resolve_layers`: THE layer resolver (0-based indices; negative counts from the end).

Block indices in Python are 0-based; everything a person reads numbers them 1-based
(:func:`block_label`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import layer_indices
from .defaults import LAST_BLOCKS
from .errors import FalipError

__all__ = [
    "BlockParts",
    "PoolParts",
    "Readout",
    "Tower",
    "as_cls_tower",
    "as_tower",
    "block_label",
    "layer_indices",
    "resolve_layer",
    "resolve_layers",
]

TensorFn = Callable[[torch.Tensor], torch.Tensor]

POOLINGS = ("cls", "map")


@dataclass(frozen=True)
class BlockParts:
    """One pre-norm transformer block, as the kernels read it.

    The block computes ``y = x + ls1(attn_norm(out(attn(norm1(x)))))`` then
    ``y + ls2(mlp(norm2(y)))``, with per-head attention

    ``softmax(logits(q_norm(rope(q)), k_norm(rope(k))) + bias) @ v`` (times ``head_scale``),

    heads concatenated, ``inner_norm`` applied, then the output projection. ``logits`` are
    ``q . k * scale``, or with ``cosine_scale`` set ``cos(q, k) * cosine_scale`` (per head).

    Weights follow ``F.linear``: ``q_weight`` ``[heads * head_dim, C]``, ``out_weight``
    ``[C, heads * head_dim]``. Optional pieces are None when the block does not have them.
    ``rope`` rotates per-head queries/keys of the whole sequence ``[B, heads, L, head_dim]``
    (prefix tokens untouched), after ``q_norm``/``k_norm`` (as EVA02 does).
    """

    norm1: TensorFn
    q_weight: torch.Tensor
    q_bias: torch.Tensor | None
    k_weight: torch.Tensor
    k_bias: torch.Tensor | None
    v_weight: torch.Tensor
    v_bias: torch.Tensor | None
    heads: int
    head_dim: int
    scale: float
    out_weight: torch.Tensor
    out_bias: torch.Tensor | None
    norm2: TensorFn
    mlp: TensorFn
    q_norm: TensorFn | None = None
    k_norm: TensorFn | None = None
    cosine_scale: torch.Tensor | None = None  # [heads, 1, 1], already exp'd and clamped
    head_scale: torch.Tensor | None = None  # [heads, 1, 1]
    inner_norm: TensorFn | None = None  # on the concatenated heads [B, L, heads * head_dim]
    attn_norm: TensorFn | None = None  # on the attention output after the projection [B, L, C]
    ls1: TensorFn | None = None
    ls2: TensorFn | None = None
    rope: TensorFn | None = None
    # optional: the same q/k/v weights packed ``[3 * heads * head_dim, C]`` (q rows, then k, then v),
    # when the library stores them so (open_clip's in_proj, timm's qkv): one matrix product instead of three
    qkv_weight: torch.Tensor | None = None
    qkv_bias: torch.Tensor | None = None

    @property
    def keys_linear(self) -> bool:
        """True when a key enters the logits linearly (no q/k norm, cosine logits or rotation)."""
        return self.k_norm is None and self.q_norm is None and self.cosine_scale is None and self.rope is None


@dataclass(frozen=True)
class PoolParts:
    """An attention-pooling head ("MAP", SigLIP's): learned probe queries attend over all tokens.

    ``features = finish(out(attn(probe, tokens)))`` where ``tokens`` are the final tokens after
    ``Tower.final_norm``, the probe ``[P, C]`` is projected by ``q_weight``/``q_bias``, keys and
    values from the tokens, per-head scaled dot products (``scale``), heads concatenated, the
    output projection, then ``finish`` ``[B, P, C] -> [B, D]`` (the head's residual MLP, the choice
    of probe row, final norms and projections).
    """

    probe: torch.Tensor  # [P, C]
    q_weight: torch.Tensor
    q_bias: torch.Tensor | None
    k_weight: torch.Tensor
    k_bias: torch.Tensor | None
    v_weight: torch.Tensor
    v_bias: torch.Tensor | None
    heads: int
    head_dim: int
    scale: float
    out_weight: torch.Tensor
    out_bias: torch.Tensor | None
    finish: Callable[[torch.Tensor], torch.Tensor]
    q_norm: TensorFn | None = None
    k_norm: TensorFn | None = None
    key_position: torch.Tensor | None = None  # added to the tokens before keys/values, [L, C]


@dataclass(frozen=True)
class Readout:
    """How a [CLS] tower turns its final [CLS] token ``x`` ``[C]`` into features ``[D]``:

    ``features = (weight * (x - mean(x)) / sqrt(var(x) + eps) + bias) @ projection + projection_bias``

    (a LayerNorm, then a linear projection; ``None`` weight/bias: 1/0, ``None`` projection: identity).
    """

    weight: torch.Tensor | None  # [C]
    bias: torch.Tensor | None  # [C]
    eps: float
    projection: torch.Tensor | None  # [C, D]
    projection_bias: torch.Tensor | None = None  # [D]

    @classmethod
    def of_layer_norm(
        cls, norm: nn.Module, projection: torch.Tensor | None, bias: torch.Tensor | None = None
    ) -> Readout:
        """From a ``torch.nn.LayerNorm`` (over the last dimension), ``projection`` ``[C, D]`` and its
        ``bias`` ``[D]``; FalipError otherwise."""
        if not isinstance(norm, nn.LayerNorm) or len(norm.normalized_shape) != 1:
            raise FalipError(f"the final norm is a {type(norm).__name__}, not a LayerNorm over the channels")
        return cls(norm.weight, norm.bias, float(norm.eps), projection, bias)


def block_label(index: int) -> str:
    """How a person reads block ``index`` (0-based): ``"block 9"`` for index 8 (the paper counts from 1)."""
    return f"block {index + 1}"


def resolve_layers(
    layers: Any, depth: int, default_last: int = LAST_BLOCKS, allow_empty: bool = False, name: str = "layers"
) -> tuple[int, ...]:
    """0-based block indices, sorted and unique, of a ``depth``-block tower.

    ``None``: the last ``default_last`` blocks (all of a shallower tower). Negative indices count
    from the end (``-1`` is the last block). An index outside ``-depth .. depth-1`` is an error that
    names the depth (never wrapped around); so is an empty selection unless ``allow_empty``.
    ``name`` is the argument's name in the errors.
    """
    if layers is None:
        return tuple(range(max(0, depth - default_last), depth))
    resolved = set()
    for layer in layer_indices(layers, name):
        if not -depth <= layer < depth:
            counted = f"; counted from 1 it is block {layer + 1} of blocks 1..{depth}" if layer >= 0 else ""
            raise FalipError(
                f"{name}: index {layer} is out of range for a tower of {depth} blocks "
                f"(0-based indices 0..{depth - 1}, or -{depth}..-1 from the end{counted})"
            )
        resolved.add(layer % depth)
    if not resolved and not allow_empty:
        raise FalipError(f"{name} must name at least one block (use alpha=0 to turn FALIP off)")
    return tuple(sorted(resolved))


def resolve_layer(layer: Any, depth: int, name: str = "layer") -> int:
    """One 0-based block index (negative counts from the end); out of range is an error naming the depth."""
    if isinstance(layer, (list, tuple)):
        raise FalipError(f"{name} must be one block index, got {layer!r}")
    return resolve_layers([layer], depth, name=name)[0]


def as_tower(model: Any) -> Tower:
    """``model`` as a :class:`Tower`: a Tower itself, or the tower of an object holding one (a
    FovealCLIP). A library's model is wrapped by :mod:`falip.towers` (``falip.wrap(model)``), never
    here: core knows no library; FalipError saying so."""
    if isinstance(model, Tower):
        return model
    tower = getattr(model, "tower", None)
    if isinstance(tower, Tower):
        return tower
    raise FalipError(
        f"falip's core takes a falip Tower, got a {type(model).__module__}.{type(model).__qualname__}: wrap a "
        "library's model with falip.wrap(model), or build falip.FovealCLIP(model) / FovealCLIP.from_model(model), "
        "which wrap it"
    )


def as_cls_tower(model: Any, refusal: str) -> Tower:
    """``as_tower(model)`` for analyses that read the [CLS] token; an attention-pooled tower (no [CLS]
    token) raises FalipError with ``refusal``, where ``{library}`` names the tower's library."""
    tower = as_tower(model)
    if tower.pooling != "cls":
        raise FalipError(refusal.format(library=tower.library))
    return tower


class Tower(nn.Module):
    """A CLIP-like model seen through one interface; subclasses adapt one library each.

    The wrapped model is the only registered submodule (``self.model``), so ``state_dict()`` is the
    model's, prefixed ``model.``. Subclasses set ``library`` (e.g. ``"open_clip"``) and implement
    the abstract members below.
    """

    library: str = "?"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    # -------------------------------------------------------------------------- geometry
    @property
    def depth(self) -> int:
        """Number of transformer blocks of the image tower."""
        raise NotImplementedError

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(gh, gw)``."""
        raise NotImplementedError

    @property
    def patch_size(self) -> tuple[int, int]:
        """Patch size ``(ph, pw)`` in model-input pixels."""
        raise NotImplementedError

    @property
    def image_size(self) -> tuple[int, int]:
        """Model input size ``(H, W)`` in pixels."""
        raise NotImplementedError

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens ([CLS], registers); patch (r, c) is token ``prefix + r * gw + c``."""
        raise NotImplementedError

    @property
    def width(self) -> int:
        """Token width C of the blocks."""
        raise NotImplementedError

    @property
    def output_dim(self) -> int:
        """Feature dimension D of the image features (what ``head`` returns)."""
        raise NotImplementedError

    @property
    def pooling(self) -> str:
        """``"cls"`` (the [CLS] token is pooled) or ``"map"`` (an attention-pooling probe)."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the image tower's weights (inputs are cast to it)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_tokens(self) -> int:
        """Sequence length L entering the blocks."""
        gh, gw = self.grid_size
        return self.num_prefix_tokens + gh * gw

    def resolve_layers(
        self, layers: Any, default_last: int = LAST_BLOCKS, allow_empty: bool = False
    ) -> tuple[int, ...]:
        """THE layer resolver (0-based; see :func:`resolve_layers`)."""
        return resolve_layers(layers, self.depth, default_last, allow_empty)

    def resolve_biased(self, layers: Any) -> tuple[int, ...]:
        """The blocks FALIP biases: on a [CLS] tower None is the last 4 (at least one block); on an
        attention-pooled tower None and ``()`` mean none (the bias is in the pooling probe only)."""
        if self.pooling == "map":
            return () if layers is None else resolve_layers(layers, self.depth, allow_empty=True)
        return resolve_layers(layers, self.depth)

    # --------------------------------------------------------------------------- forward
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens entering block 0 ``[N, L, C]`` from preprocessed images ``[N, 3, H, W]``."""
        raise NotImplementedError

    def parts(self, index: int) -> BlockParts:
        """Block ``index``'s pieces (0-based); views of the live parameters, built on each call."""
        raise NotImplementedError

    def run_block(self, index: int, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """The library's own block ``index`` on tokens ``[B, L, C]`` with an additive bias ``[B, L, L]``
        (the same for every head) or None. The reference for the kernels."""
        raise NotImplementedError

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The norm applied to the final tokens before pooling (``[..., C] -> [..., C]``)."""
        raise NotImplementedError

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` from the final tokens ``[B, L, C]`` (the library's own pooling and
        projection; a [CLS] tower reads row 0 only, so ``[B, 1, C]`` is enough)."""
        raise NotImplementedError

    def pool_parts(self) -> PoolParts:
        """The attention-pooling head's pieces (``pooling == "map"`` only)."""
        raise FalipError(f"this {self.library} tower pools its [CLS] token; it has no attention-pooling probe")

    def run_pool(self, tokens: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """The library's own attention-pooling head on final tokens ``[B, L, C]`` (after
        ``final_norm``) with an additive bias on the probe's logits ``[B, P, L]``; features ``[B, D]``.
        ``pooling == "map"`` only; the reference for the FALIP-MAP kernel."""
        raise FalipError(f"this {self.library} tower pools its [CLS] token; it has no attention-pooling probe")

    def readout(self) -> Readout:
        """The final norm and projection of a [CLS] tower as a :class:`Readout` (analysis of the
        per-token terms in feature space); FalipError when the tower's head is not of that form."""
        raise FalipError(f"this {self.library} tower does not describe its head as a LayerNorm and a linear projection")

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The library's own image features ``[N, D]`` (e.g. open_clip's ``encode_image``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------ text side
    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text features ``[T, D]`` from token ids (the model's own tokenizer's output)."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        """The learned temperature, as stored (log scale); scores use ``logit_scale.exp()``."""
        raise NotImplementedError

    @property
    def logit_bias(self) -> torch.Tensor | None:
        """SigLIP's learned logit bias, or None (CLIP)."""
        return None

    def describe(self) -> str:
        """One line for ``falip models`` and reprs."""
        gh, gw = self.grid_size
        return (
            f"{self.library} {type(self.model).__name__}: {self.depth} blocks, grid {gh}x{gw}, "
            f"patch {self.patch_size[0]}, pooling {self.pooling}, D={self.output_dim}"
        )
