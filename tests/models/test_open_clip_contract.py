"""The open_clip internals falip relies on: if a release changes them, these fail with the reason.

falip's open_clip tower (``falip/towers/open_clip_vit.py``) reads ViT blocks' parameters directly
(packed in_proj, out_proj, ln_1/ln_2, ls_1/ls_2, mlp) and calls ``VisionTransformer._embeds``;
pyproject admits open_clip_torch 3.x; CI runs these on the newest release it resolves.
"""

from __future__ import annotations

import importlib.metadata

import open_clip
import pytest
import torch

from falip.core.attention import block_forward
from falip.towers.open_clip_vit import OpenClipViTTower
from support.tiny import make_tiny_clip

VERSION = importlib.metadata.version("open_clip_torch")
HINT = (
    f"open_clip_torch {VERSION} changed the ViT internals falip's kernels use ({{what}}); "
    "update falip/towers/open_clip_vit.py, or bound open_clip_torch in pyproject.toml"
)


@pytest.mark.parametrize("extra", [{}, dict(qk_norm=True, scale_heads=True, scale_attn=True, scale_fc=True)])
def test_block_layout(extra):
    model = make_tiny_clip(**extra)
    block = model.visual.transformer.resblocks[0]
    for name in ("ln_1", "attn", "ls_1", "ln_2", "mlp", "ls_2"):
        assert hasattr(block, name), HINT.format(what=f"block attribute {name!r}")
    for name in ("in_proj_weight", "in_proj_bias", "out_proj", "num_heads"):
        assert hasattr(block.attn, name), HINT.format(what=f"attention attribute {name!r}")
    torch.manual_seed(0)
    x = torch.randn(2, 17, 64)
    with torch.no_grad():
        ours, theirs = block_forward(OpenClipViTTower(model).parts(0), x), block(x)
    assert (ours - theirs).abs().max().item() <= 1e-5, HINT.format(what=f"{type(block).__name__}.forward")


def test_embeds_and_pooling():
    model = make_tiny_clip()
    v = model.visual
    for name in (
        "_embeds",
        "conv1",
        "class_embedding",
        "positional_embedding",
        "ln_pre",
        "ln_post",
        "proj",
        "patch_dropout",
        "pool_type",
        "attn_pool",
        "grid_size",
        "patch_size",
        "image_size",
    ):
        assert hasattr(v, name), HINT.format(what=f"VisionTransformer.{name}")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        x = v._embeds(images)
        assert x.shape == (2, 17, 64), HINT.format(what="_embeds output shape")
        for block in v.transformer.resblocks:
            x = block(x)
        pooled = v.ln_post(x[:, 0]) @ v.proj
        assert (pooled - model.encode_image(images)).abs().max().item() <= 1e-5, HINT.format(what="[CLS] pooling")


def test_the_tested_release_is_installed():
    major, minor = (int(p) for p in VERSION.split(".")[:2])
    assert (3, 0) <= (major, minor) < (3, 4), HINT.format(what="the version itself")
    assert open_clip.create_model is not None
