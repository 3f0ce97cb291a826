"""What the Hugging Face adapters share: finding the vision transformer, running one encoder layer
with an additive bias, reading features out of transformers' output objects, and the geometry,
blocks and text side common to CLIP and SigLIP (:class:`HFVisionTower`).

transformers is never imported here: the adapters receive models it built.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import FalipError
from ..core.tower import BlockParts, Tower


def is_transformers_model(model: nn.Module, class_names: tuple[str, ...]) -> bool:
    """True when ``model`` is one of transformers' ``class_names`` (by module and name; no import)."""
    cls = type(model)
    return cls.__module__.startswith("transformers.") and cls.__name__ in class_names


def vision_core(model: nn.Module) -> nn.Module:
    """The module holding ``embeddings``, ``encoder`` and ``post_layernorm`` of an HF vision tower.

    transformers 5 makes ``CLIPVisionModel`` that module itself; 4.x wraps a ``*VisionTransformer``
    in ``.vision_model``; ``CLIPModel`` / ``SiglipModel`` hold a vision model in ``.vision_model``.
    """
    node = model
    for _ in range(3):
        if all(hasattr(node, name) for name in ("embeddings", "encoder", "post_layernorm")):
            return node
        node = getattr(node, "vision_model", None)
        if node is None:
            break
    raise FalipError(f"{type(model).__name__}: no vision transformer (embeddings, encoder, post_layernorm) found")


def features(output: Any, *names: str) -> torch.Tensor:
    """A feature tensor from what a transformers method returned: a tensor (4.x) or an output
    object (5.x), read by the first of ``names`` it has."""
    if isinstance(output, torch.Tensor):
        return output
    for name in names:
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise FalipError(f"transformers returned a {type(output).__name__} without {' or '.join(names)}")


def check_attention_impl(config: Any) -> None:
    """The encoder layers take an additive float mask only with the eager or SDPA attention."""
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl not in ("eager", "sdpa"):
        raise FalipError(
            f"attention implementation {impl!r} is not supported: load the model with "
            "attn_implementation='eager' or 'sdpa' (an additive attention bias needs one of them)"
        )


def encoder_block_parts(layer: nn.Module) -> BlockParts:
    """A CLIP/SigLIP encoder layer (``layer_norm1``, ``self_attn`` q/k/v/out projections,
    ``layer_norm2``, ``mlp``) as a :class:`BlockParts` record."""
    attn = layer.self_attn
    return BlockParts(
        norm1=layer.layer_norm1,
        q_weight=attn.q_proj.weight,
        q_bias=attn.q_proj.bias,
        k_weight=attn.k_proj.weight,
        k_bias=attn.k_proj.bias,
        v_weight=attn.v_proj.weight,
        v_bias=attn.v_proj.bias,
        heads=int(attn.num_heads),
        head_dim=int(attn.head_dim),
        scale=float(attn.scale),
        out_weight=attn.out_proj.weight,
        out_bias=attn.out_proj.bias,
        norm2=layer.layer_norm2,
        mlp=layer.mlp,
    )


def run_encoder_layer(layer: nn.Module, x: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
    """transformers' own encoder layer with an additive bias ``[B, L, L]`` (the same for every head).

    Both the eager and the SDPA attention add ``attention_mask`` to the ``[B, heads, L, L]`` logits,
    so it goes in as ``[B, 1, L, L]``.
    """
    mask = None if attn_bias is None else attn_bias.to(x.dtype).unsqueeze(1)
    out = layer(x, mask)
    return out[0] if isinstance(out, tuple) else out  # transformers 4.x returns a tuple


class HFVisionTower(Tower):
    """The part of a transformers CLIP-like model that CLIP and SigLIP share: square patch grid,
    encoder layers, ``post_layernorm``, text through ``get_text_features``. Subclasses set
    ``_CLASSES`` (the model classes they wrap), pooling, ``embed`` and the head."""

    library = "transformers"
    _CLASSES: tuple[str, ...] = ()
    _FULL_MODEL = ""  # the class to load for the text side, named in the vision-only error

    @classmethod
    def accepts(cls, model: nn.Module) -> bool:
        """True for the transformers classes in ``_CLASSES`` (checked by name, without importing transformers)."""
        return is_transformers_model(model, cls._CLASSES)

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        check_attention_impl(vision_core(model).config)

    # ----------------------------------------------------------------------------- geometry
    @property
    def core(self) -> nn.Module:
        return vision_core(self.model)

    @property
    def depth(self) -> int:
        return len(self.core.encoder.layers)

    @property
    def patch_size(self) -> tuple[int, int]:
        p = int(self.core.embeddings.patch_size)
        return p, p

    @property
    def image_size(self) -> tuple[int, int]:
        s = int(self.core.embeddings.image_size)
        return s, s

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.image_size[0] // self.patch_size[0]
        return g, g

    @property
    def width(self) -> int:
        return int(self.core.config.hidden_size)

    @property
    def dtype(self) -> torch.dtype:
        return self.core.embeddings.patch_embedding.weight.dtype

    # ------------------------------------------------------------------------------ forward
    def parts(self, index: int) -> BlockParts:
        return encoder_block_parts(self.core.encoder.layers[index])

    def run_block(self, index: int, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        return run_encoder_layer(self.core.encoder.layers[index], x, attn_bias)

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.core.post_layernorm(tokens)

    # --------------------------------------------------------------------------- text side
    def _needs_text(self) -> None:
        if not hasattr(self.model, "get_text_features"):
            raise FalipError(
                f"{type(self.model).__name__} is a vision-only model: it has no text tower to score texts with "
                f"(load the full {self._FULL_MODEL})"
            )

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        self._needs_text()
        out = features(self.model.get_text_features(input_ids=tokens.to(self.device)), "pooler_output", "text_embeds")
        return F.normalize(out, dim=-1) if normalize else out
