"""Tiny random-weight open_clip models: sub-second tests where the size does not matter."""

from __future__ import annotations

import open_clip
import torch


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
        image_size=image_size,
        patch_size=patch_size,
        width=width,
        layers=layers,
        head_width=width // heads,
        mlp_ratio=2.0,
    )
    vision_cfg.update(vision_extra)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg=vision_cfg,
        text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    )
    return model.eval()
