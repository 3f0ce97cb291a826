"""Shared fixtures: tiny random open_clip configs (fast) and a random ViT-B-16 (exactness)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import open_clip
import pytest
import torch

torch.set_num_threads(int(os.environ.get("FALIP_TEST_THREADS", "1")))


def make_tiny_clip(
    image_size=32,
    patch_size=8,
    width=64,
    layers=3,
    heads=4,
    seed=0,
    **vision_extra,
) -> open_clip.CLIP:
    """A random-weight open_clip CLIP small enough for sub-second tests."""
    torch.manual_seed(seed)
    vision_cfg = dict(
        image_size=image_size, patch_size=patch_size, width=width, layers=layers, head_width=width // heads, mlp_ratio=2.0
    )
    vision_cfg.update(vision_extra)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg=vision_cfg,
        text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    )
    return model.eval()


@pytest.fixture(scope="session")
def vit_b16() -> open_clip.CLIP:
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None)
    return model.eval()


@pytest.fixture
def tiny_clip() -> open_clip.CLIP:
    return make_tiny_clip()
