"""falip's tiny timm vision towers, registered with timm so open_clip can build them by name.

``falip_tiny_map_patch8_64`` is the image tower of ``falip-tiny-map``: a timm
``VisionTransformer`` shaped like falip-tiny's (width 96, 4 blocks, 3 heads of 32, patch 8,
64 px images, MLP ratio 4) but pooled the SigLIP way: no [CLS] token, and an attention-pool
("MAP") head after the final norm (one learned probe attends over every patch token, then
``x + mlp(norm(x))``). open_clip's ``TimmModel`` builds it from the model config's
``timm_model_name`` and adds the linear projection to the joint embedding (96 -> 64, no bias:
``timm_proj: "linear"``, the same map as falip-tiny's ``proj``, so the two models' features are
comparable; ``"none"`` would leave 96-d features the 64-d text tower cannot score).

Importing this module imports timm and registers the model (once); :mod:`falip.models.loading`
and :mod:`falip.train.tiny` import it only for configs that name a tower defined here.
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, register_model
from timm.models.vision_transformer import VisionTransformer

__all__ = ["TIMM_MODELS", "falip_tiny_map_patch8_64"]

# The timm model names this module registers (the open_clip configs' ``timm_model_name``).
TIMM_MODELS = ("falip_tiny_map_patch8_64",)

_TINY_MAP_ARGS = dict(
    img_size=64,
    patch_size=8,
    embed_dim=96,
    depth=4,
    num_heads=3,
    mlp_ratio=4.0,
    class_token=False,
    global_pool="map",
    num_classes=0,
)

_CFG = dict(
    url="",
    num_classes=0,
    input_size=(3, 64, 64),
    pool_size=None,
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
    first_conv="patch_embed.proj",
    classifier="head",
)


def _registered() -> bool:
    import timm

    return "falip_tiny_map_patch8_64" in timm.list_models("falip_*")


if not _registered():

    @register_model
    def falip_tiny_map_patch8_64(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
        """falip-tiny's tower shape with SigLIP's attention-pool head (no [CLS] token); random init."""
        if pretrained:
            raise ValueError("falip_tiny_map_patch8_64 has no timm weights; falip ships open_clip weights instead")
        cfg = kwargs.pop("pretrained_cfg", None) or _CFG
        args = {**_TINY_MAP_ARGS, **kwargs}
        return build_model_with_cfg(VisionTransformer, "falip_tiny_map_patch8_64", False, pretrained_cfg=cfg, **args)

else:  # imported twice under two names (e.g. editable install and a checkout): keep the first
    import timm.models._registry as _reg

    falip_tiny_map_patch8_64 = _reg._model_entrypoints["falip_tiny_map_patch8_64"]
