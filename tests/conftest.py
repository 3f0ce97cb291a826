"""Shared fixtures: tiny random open_clip configs (fast) and a random ViT-B-16 (exactness)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import open_clip
import pytest
import torch

from support.tiny import make_tiny_clip

torch.set_num_threads(int(os.environ.get("FALIP_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def vit_b16() -> open_clip.CLIP:
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None)
    return model.eval()


@pytest.fixture
def tiny_clip() -> open_clip.CLIP:
    return make_tiny_clip()
