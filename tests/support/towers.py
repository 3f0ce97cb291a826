"""Tiny random towers for the parametrised tests: one entry per tower flavour = one builder function.

``TOWERS[name](seed)`` returns a tiny random-weight model in eval mode: a library's own model (that a
falip tower adapter wraps, e.g. an open_clip CLIP) or a :class:`falip.core.tower.Tower`. Tests wrap it
with :func:`falip.wrap` / ``falip.FovealCLIP`` and read its geometry from the tower
(image size, grid, pooling), so a new entry needs no other change. To add a library's tower, add its
builder here (a few blocks, width <= 64, input <= 64 px, non-trivial norms and scales).

The ``map-*`` entries are a test-only attention-pooled tower: open_clip's ViT trunk with a learned
probe head written here (``MapHead``: multi-head attention of P probes over the final tokens, then
``x + mlp(norm(x))``, the mean over probes, a projection), with and without the [CLS] prefix token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from falip.core.tower import PoolParts
from falip.towers.open_clip_vit import OpenClipViTTower
from support.tiny import make_tiny_clip

__all__ = ["TOWERS", "MapHead", "TinyMapTower", "build", "randomise_norms"]


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Make LayerNorm affines, head scales and layer scales non-trivial (so that a kernel ignoring one fails)."""
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.LayerNorm) and module.weight is not None and "visual" in name:
                if any(k in name for k in ("ln_q", "ln_k", "ln_inner", "ln_attn")):
                    module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                    module.bias.copy_(torch.rand(module.bias.shape, generator=g) * 0.6 - 0.3)
            head_scale = getattr(module, "head_scale", None)
            if isinstance(head_scale, torch.Tensor):
                head_scale.copy_(torch.rand(head_scale.shape, generator=g) + 0.5)
    return model


def _open_clip(seed: int, **options: Any) -> nn.Module:
    return randomise_norms(make_tiny_clip(layers=4, seed=seed, **options), seed)


class MapHead(nn.Module):
    """A learned-probe attention-pooling head (SigLIP-style "MAP"), written for the tests."""

    def __init__(self, width: int, heads: int, out_dim: int, probes: int = 2) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.randn(probes, width) * 0.5)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.proj = nn.Linear(width, out_dim)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, P, C]`` attention output -> features ``[B, D]``."""
        x = x + self.mlp(self.norm(x))
        return self.proj(x.mean(dim=1))

    def forward(self, tokens: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        q = self.probe[None].expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        mask = None if attn_bias is None else attn_bias.to(tokens.dtype).repeat_interleave(self.attn.num_heads, dim=0)
        out = self.attn(q, tokens, tokens, need_weights=False, attn_mask=mask)[0]
        return self.finish(out)


class TinyMapTower(OpenClipViTTower):
    """open_clip's ViT trunk pooled by a :class:`MapHead` (``model.map_head``); ``prefix`` 0 drops [CLS]."""

    library = "test-map"

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return False

    def __init__(self, model: nn.Module, prefix: int = 0) -> None:
        super().__init__(model)
        self.prefix = prefix

    @property
    def num_prefix_tokens(self) -> int:
        return self.prefix

    @property
    def pooling(self) -> str:
        return "map"

    @property
    def output_dim(self) -> int:
        return int(self.model.map_head.proj.out_features)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = super().embed(images)
        return x if self.prefix else x[:, 1:]

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.run_pool(self.final_norm(tokens))

    def pool_parts(self) -> PoolParts:
        h = self.model.map_head
        attn = h.attn
        c = attn.embed_dim
        w, b = attn.in_proj_weight, attn.in_proj_bias
        return PoolParts(
            probe=h.probe,
            q_weight=w[:c],
            q_bias=b[:c],
            k_weight=w[c : 2 * c],
            k_bias=b[c : 2 * c],
            v_weight=w[2 * c :],
            v_bias=b[2 * c :],
            heads=attn.num_heads,
            head_dim=c // attn.num_heads,
            scale=(c // attn.num_heads) ** -0.5,
            out_weight=attn.out_proj.weight,
            out_bias=attn.out_proj.bias,
            finish=h.finish,
        )

    def run_pool(self, tokens: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.map_head(tokens, attn_bias)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images)
        for i in range(self.depth):
            x = self.run_block(i, x)
        return self.head(x)


def _map(seed: int, prefix: int) -> TinyMapTower:
    model = _open_clip(seed)
    torch.manual_seed(seed + 7)
    model.map_head = MapHead(64, 4, 32)
    return TinyMapTower(model.eval(), prefix=prefix)


TOWERS: dict[str, Callable[[int], Any]] = {
    # open_clip's VisionTransformer: nn.MultiheadAttention blocks
    "open_clip-mha": lambda seed: _open_clip(seed),
    # open_clip's own Attention: qk-norm, head scale, attention-output norm
    "open_clip-qknorm-headscale-attnnorm": lambda seed: _open_clip(
        seed, qk_norm=True, scale_heads=True, scale_attn=True
    ),
    # open_clip's own Attention: inner norm (no per-head split), MLP norm
    "open_clip-innernorm-fcnorm": lambda seed: _open_clip(seed, scale_attn_inner=True, scale_fc=True),
    # layer scale on both residual branches
    "open_clip-layerscale": lambda seed: _open_clip(seed, ls_init_value=0.5),
    # attention-pooled (test-only head), without and with a prefix token
    "map-prefix0": lambda seed: _map(seed, 0),
    "map-prefix1": lambda seed: _map(seed, 1),
}


def build(name: str, seed: int = 0) -> Any:
    """The tiny model of entry ``name``, in eval mode."""
    return TOWERS[name](seed).eval()
