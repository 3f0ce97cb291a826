"""open_clip models whose image tower is timm's: a ``TimmModel`` around ``VisionTransformer`` or ``Eva``.

Covered: timm's ``VisionTransformer`` pooling its class token (``global_pool="token"``) or through
the attention-pool head (``global_pool="map"``, no class token: ``ViT-B-16-SigLIP``,
``ViT-B-16-SigLIP2``), and timm's ``Eva`` (``EVA02-B-16``: rotary embedding on the patch tokens
only, q/v biases with a zero k bias, the "sub-LN" norm of the concatenated heads, SwiGLU MLP).
timm is imported only through the model it built: this module imports it lazily.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..core.errors import FalipError
from ..core.tower import BlockParts, PoolParts, Readout
from ._open_clip import OpenClipTower
from ._parts import optional_module, split_packed

__all__ = ["OpenClipTimmTower"]

_TRUNKS = ("VisionTransformer", "Eva")


def _scale_by(gamma: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """EVA's per-channel layer scale ``gamma * x`` (None when the block has none)."""
    if gamma is None:
        return None
    return lambda x: gamma * x


class OpenClipTimmTower(OpenClipTower):
    """An open_clip ``CLIP``/``CustomTextCLIP`` whose ``visual`` is a ``TimmModel`` (timm ViT or EVA).

    Refused with the reason: other timm trunks (CNNs...), open_clip's custom pools on a timm trunk,
    global pools other than the class token or "map", a map head that skips prefix tokens,
    ``dynamic_img_size``, gated attention, blocks other than timm's pre-norm ``Block`` /
    ``EvaBlock``, per-block ("mixed") or non-axial rotary embeddings, and patch dropout in train mode.
    """

    library = "open_clip+timm"

    @classmethod
    def accepts(cls, model: nn.Module) -> bool:
        """True for an open_clip model with a ``TimmModel`` image tower (checked without importing timm)."""
        visual = getattr(model, "visual", None)
        return (
            type(model).__module__.startswith("open_clip")
            and visual is not None
            and type(visual).__name__ == "TimmModel"
            and type(visual).__module__.startswith("open_clip")
        )

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        visual = model.visual
        trunk = getattr(visual, "trunk", None)
        name = type(trunk).__name__
        if name not in _TRUNKS or not type(trunk).__module__.startswith("timm."):
            raise FalipError(
                f"the timm image tower is a {name}: falip wraps timm's VisionTransformer and Eva "
                "(FALIP biases transformer attention over patch tokens)"
            )
        self._eva = name == "Eva"
        if any(isinstance(m, nn.Module) and "pool" in key for key, m in visual.head.named_children()):
            raise FalipError(
                "open_clip's attention pool on a timm trunk (timm_pool 'abs_attn'/'rot_attn') is not supported"
            )
        if type(trunk.patch_embed).__name__ != "PatchEmbed":
            raise FalipError(
                f"the timm tower embeds patches with a {type(trunk.patch_embed).__name__} (a hybrid stem): "
                "falip needs timm's plain PatchEmbed"
            )
        if getattr(trunk, "dynamic_img_size", False):
            raise FalipError("a timm tower built with dynamic_img_size=True is not supported (fixed input size only)")
        pool = trunk.global_pool
        if pool not in ("token", "map"):
            raise FalipError(
                f"the timm tower pools with global_pool={pool!r}: FALIP needs the class token ('token') "
                "or an attention-pooling probe ('map')"
            )
        if pool == "map":
            if type(trunk.attn_pool).__name__ != "AttentionPoolLatent":
                raise FalipError(f"the timm map head is a {type(trunk.attn_pool).__name__}, not AttentionPoolLatent")
            if trunk.attn_pool.mlp is None:
                raise FalipError("the timm map head has no output projection/MLP (out_features=0): not supported")
            skips_prefix = not self._eva and not getattr(trunk, "pool_include_prefix", False)
            if skips_prefix and trunk.num_prefix_tokens:
                raise FalipError(
                    "the timm map head attends over patch tokens only while the tower has "
                    f"{trunk.num_prefix_tokens} prefix tokens: not supported"
                )
        if self._eva:
            if getattr(trunk, "rope_mixed", False):
                raise FalipError("EVA with per-block ('mixed') rotary embeddings is not supported")
            rope = getattr(trunk, "rope", None)
            if rope is not None and type(rope).__name__ != "RotaryEmbeddingCat":
                raise FalipError(
                    f"EVA rotary embedding {type(rope).__name__} is not supported (RotaryEmbeddingCat only)"
                )
        for i, block in enumerate(trunk.blocks):
            self._check_block(block, i)
        self.pool_type = "cls" if pool == "token" else "map"

    def _check_block(self, block: nn.Module, index: int) -> None:
        want_block, want_attn = ("EvaBlock", "EvaAttention") if self._eva else ("Block", "Attention")
        got_block, got_attn = type(block).__name__, type(getattr(block, "attn", None)).__name__
        if got_block != want_block or got_attn != want_attn:
            raise FalipError(
                f"timm block {index + 1} is a {got_block} with {got_attn}: falip runs timm's pre-norm "
                f"{want_block} with {want_attn}"
            )
        if getattr(block.attn, "gate", None) is not None:
            raise FalipError(f"timm block {index + 1} uses gated attention, which falip does not support")

    # ----------------------------------------------------------------------------- geometry
    @property
    def trunk(self) -> nn.Module:
        return self.model.visual.trunk

    @property
    def depth(self) -> int:
        return len(self.trunk.blocks)

    @property
    def grid_size(self) -> tuple[int, int]:
        gh, gw = self.trunk.patch_embed.grid_size
        return int(gh), int(gw)

    @property
    def patch_size(self) -> tuple[int, int]:
        ph, pw = self.trunk.patch_embed.patch_size
        return int(ph), int(pw)

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.trunk.patch_embed.img_size
        return int(h), int(w)

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.trunk.num_prefix_tokens)

    @property
    def width(self) -> int:
        return int(self.trunk.embed_dim)

    @property
    def output_dim(self) -> int:
        linears = [m for m in self.model.visual.head.modules() if isinstance(m, nn.Linear)]
        if linears:
            return int(linears[-1].out_features)
        head = self.trunk.head
        return int(head.out_features) if isinstance(head, nn.Linear) else self.width

    @property
    def pooling(self) -> str:
        return self.pool_type

    @property
    def dtype(self) -> torch.dtype:
        return self.trunk.patch_embed.proj.weight.dtype

    # ------------------------------------------------------------------------------ forward
    def _check_patch_dropout(self) -> None:
        drop = getattr(self.trunk, "patch_drop", None)
        if self.trunk.training and optional_module(drop) is not None:
            raise FalipError("the timm tower drops patches in train mode; call .eval() first")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        self._check_patch_dropout()
        trunk = self.trunk
        x = trunk.patch_embed(images.to(self.dtype))
        x = trunk._pos_embed(x)
        if self._eva:
            x = x[0]  # Eva returns (tokens, rotary embedding); parts() rebuilds the latter
        return trunk.norm_pre(x)

    def _rope_embed(self) -> torch.Tensor | None:
        rope = getattr(self.trunk, "rope", None)
        if rope is None:
            return None
        if hasattr(rope, "feat_shape"):
            return rope.get_embed()
        return rope.get_embed(shape=self.grid_size)

    def _rope_fn(self, attn: nn.Module, embed: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        from timm.layers import apply_rot_embed_cat

        prefix = self.num_prefix_tokens
        half = bool(getattr(attn, "rotate_half", False))
        patches = self.grid_size[0] * self.grid_size[1]

        def rope(t: torch.Tensor) -> torch.Tensor:
            if t.shape[-2] != prefix + patches:
                raise FalipError(
                    f"the rotary embedding rotates the whole sequence of {prefix + patches} tokens, got {t.shape[-2]}"
                )
            rotated = apply_rot_embed_cat(t[..., prefix:, :], embed, half=half).type_as(t)
            return torch.cat([t[..., :prefix, :], rotated], dim=-2)

        return rope

    def parts(self, index: int) -> BlockParts:
        block = self.trunk.blocks[index]
        attn = block.attn
        width = attn.num_heads * attn.head_dim
        if self._eva:
            if attn.qkv is not None:
                q_w, k_w, v_w = split_packed(attn.qkv.weight, width)
                q_b, k_b, v_b = attn.q_bias, attn.k_bias, attn.v_bias
            else:
                q_w, k_w, v_w = attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight
                q_b, k_b, v_b = attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias
            embed = self._rope_embed()
            rope = None if embed is None else self._rope_fn(attn, embed)
            ls1, ls2 = _scale_by(block.gamma_1), _scale_by(block.gamma_2)
        else:
            q_w, k_w, v_w = split_packed(attn.qkv.weight, width)
            q_b, k_b, v_b = split_packed(attn.qkv.bias, width)
            rope = None
            ls1, ls2 = optional_module(block.ls1), optional_module(block.ls2)
        return BlockParts(
            norm1=block.norm1,
            q_weight=q_w,
            q_bias=q_b,
            k_weight=k_w,
            k_bias=k_b,
            v_weight=v_w,
            v_bias=v_b,
            heads=int(attn.num_heads),
            head_dim=int(attn.head_dim),
            scale=float(attn.scale),
            out_weight=attn.proj.weight,
            out_bias=attn.proj.bias,
            norm2=block.norm2,
            mlp=block.mlp,
            q_norm=optional_module(attn.q_norm),
            k_norm=optional_module(attn.k_norm),
            inner_norm=optional_module(attn.norm),
            ls1=ls1,
            ls2=ls2,
            rope=rope,
        )

    def run_block(self, index: int, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        block = self.trunk.blocks[index]
        # timm hands the mask to SDPA / its own softmax, which broadcast it over [B, heads, L, L]
        mask = None if attn_bias is None else attn_bias.to(x.dtype).unsqueeze(1)
        if self._eva:
            return block(x, rope=self._rope_embed(), attn_mask=mask)
        return block(x, attn_mask=mask)

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.trunk.norm(tokens)

    def _after_pool(self, pooled: torch.Tensor) -> torch.Tensor:
        """timm's fc_norm, head dropout and classifier head, then open_clip's projection head."""
        trunk = self.trunk
        x = trunk.head(trunk.head_drop(trunk.fc_norm(pooled)))
        return self.model.visual.head(x)

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        trunk = self.trunk
        x = trunk.norm(tokens)
        pooled = x[:, 0] if self.pool_type == "cls" else trunk.attn_pool(x)
        return self._after_pool(pooled)

    def readout(self) -> Readout:
        """timm's final norm, then its classifier and open_clip's head when those are linear maps (dropout aside)."""
        trunk = self.trunk
        mods = [m for part in (trunk.head, self.model.visual.head) for m in part.modules()]
        mods = [m for m in mods if not isinstance(m, (nn.Sequential, nn.Dropout, nn.Identity))]
        if self.pool_type != "cls" or not isinstance(getattr(trunk, "fc_norm", None), nn.Identity):
            return super().readout()
        if not all(isinstance(m, nn.Linear) for m in mods):
            return super().readout()
        proj = bias = None
        for m in mods:  # compose the linear maps: x @ W1^T + b1, then @ W2^T + b2
            proj = m.weight.T if proj is None else proj @ m.weight.T
            bias = None if bias is None else bias @ m.weight.T
            if m.bias is not None:
                bias = m.bias if bias is None else bias + m.bias
        return Readout.of_layer_norm(trunk.norm, proj, bias)

    def pool_parts(self) -> PoolParts:
        if self.pool_type != "map":
            return super().pool_parts()
        pool = self.trunk.attn_pool
        dim = pool.num_heads * pool.head_dim
        latent = pool.latent[0]
        if isinstance(pool.q, nn.Linear):
            q_w, q_b = pool.q.weight, pool.q.bias
        else:  # q_proj=False: the latent is the query
            q_w, q_b = torch.eye(dim, dtype=latent.dtype, device=latent.device), None
        k_w, v_w = pool.kv.weight[:dim], pool.kv.weight[dim:]
        k_b, v_b = (None, None) if pool.kv.bias is None else (pool.kv.bias[:dim], pool.kv.bias[dim:])

        def finish(x: torch.Tensor) -> torch.Tensor:
            x = x + pool.mlp(pool.norm(x))
            if pool.pool == "token":
                x = x[:, 0]
            elif pool.pool == "avg":
                x = x.mean(1)
            return self._after_pool(x)

        return PoolParts(
            probe=latent,
            q_weight=q_w,
            q_bias=q_b,
            k_weight=k_w,
            k_bias=k_b,
            v_weight=v_w,
            v_bias=v_b,
            heads=int(pool.num_heads),
            head_dim=int(pool.head_dim),
            scale=float(pool.scale),
            out_weight=pool.proj.weight,
            out_bias=pool.proj.bias,
            finish=finish,
            q_norm=optional_module(pool.q_norm),
            k_norm=optional_module(pool.k_norm),
            key_position=pool.pos_embed,
        )

    def run_pool(self, tokens: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        if self.pool_type != "map":
            return super().run_pool(tokens, attn_bias)
        mask = None if attn_bias is None else attn_bias.to(tokens.dtype).unsqueeze(1)
        return self._after_pool(self.trunk.attn_pool(tokens, attn_mask=mask))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images.to(self.dtype))
