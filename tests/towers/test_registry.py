"""The tower registry: lazy "module:Class" entries, tower_for, and the resolver core uses."""

from __future__ import annotations

import open_clip
import pytest
import torch

import falip
from falip.core import tower as core_tower
from falip.core.tower import Tower, as_tower
from falip.towers import TOWERS, adapter_class, tower_for
from falip.towers.open_clip_vit import OpenClipViTTower
from support.tiny import make_tiny_clip


def test_entries_are_lazy_module_class_strings_with_accepts():
    for name, entry in TOWERS.items():
        module, _, cls = entry.target.partition(":")
        assert module.startswith("falip.towers.") and cls, name
        found = adapter_class(name)  # None while an adapter's file is not written yet
        if found is not None:
            assert issubclass(found, Tower) and callable(found.accepts), name


def test_open_clip_models_get_the_vit_tower():
    model = make_tiny_clip()
    tower = tower_for(model)
    assert isinstance(tower, OpenClipViTTower) and tower.model is model and tower.library == "open_clip"
    assert (tower.depth, tower.grid_size, tower.patch_size, tower.image_size) == (3, (4, 4), (8, 8), (32, 32))
    assert (tower.num_prefix_tokens, tower.num_tokens, tower.width, tower.output_dim) == (1, 17, 64, 32)
    assert tower.pooling == "cls" and tower.dtype == torch.float32 and tower.logit_bias is None
    assert tower_for(tower) is tower and as_tower(tower) is tower
    fclip = falip.FovealCLIP(model)
    assert isinstance(fclip.tower, OpenClipViTTower) and as_tower(fclip) is fclip.tower
    custom = open_clip.CustomTextCLIP(
        embed_dim=32,
        vision_cfg=dict(image_size=32, patch_size=8, width=64, layers=2, head_width=16),
        text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    )
    assert isinstance(tower_for(custom), OpenClipViTTower)


def test_what_no_adapter_fits_is_named():
    with pytest.raises(falip.FalipError, match="no falip tower adapter fits a torch.nn.modules.conv.Conv2d"):
        tower_for(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(falip.FalipError, match="FALIP wraps a PyTorch model, got a builtins.str"):
        tower_for("ViT-B-16")


def test_core_needs_the_resolver_installed(monkeypatch):
    """core never imports falip.towers: without the resolver a library model is refused with the fix."""
    monkeypatch.setattr(core_tower, "_RESOLVER", None)
    with pytest.raises(falip.FalipError, match="import falip.towers first"):
        as_tower(make_tiny_clip())
