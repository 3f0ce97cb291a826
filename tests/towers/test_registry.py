"""The tower registry: lazy "module:Class" entries, tower_for / falip.wrap, falip.FovealCLIP (core keeps
no resolver)."""

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
from support.tiny_towers import TINY_TOWERS

CONTRACT = [(name, variant) for name, variants in TINY_TOWERS.items() for variant in variants]


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


def test_core_takes_a_tower_and_says_how_to_wrap_a_library_model():
    """core keeps no resolver: a library's model is refused with the fix, whatever was imported before."""
    from falip.core.model import FovealCLIP as CoreFovealCLIP

    model = make_tiny_clip()
    assert not hasattr(core_tower, "_RESOLVER") and not hasattr(core_tower, "set_tower_resolver")
    for call in (lambda: as_tower(model), lambda: CoreFovealCLIP(model)):
        with pytest.raises(falip.FalipError, match=r"takes a falip Tower, got a open_clip\.model\.CLIP: .*falip\.wrap"):
            call()
    tower = falip.wrap(model)
    core = CoreFovealCLIP(tower, alpha=3.0)  # core alone, from a Tower
    assert core.tower is tower and type(core) is CoreFovealCLIP
    top = falip.FovealCLIP(model, alpha=3.0)  # the top-level class wraps
    assert isinstance(top, CoreFovealCLIP) and isinstance(top.tower, OpenClipViTTower) and top.model is model
    assert falip.FovealCLIP.from_model(model, alpha=3.0).config == core.config == top.config
    assert falip.wrap(top) is top.tower and falip.wrap(tower) is tower
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        boxes = [torch.tensor([[0.0, 0.0, 16.0, 24.0]])]
        assert torch.equal(core.encode_image(x, boxes=boxes), top.encode_image(x, boxes=boxes))


def test_the_issues_case_in_a_fresh_process():
    """``from falip.core.model import FovealCLIP; FovealCLIP(open_clip_model)`` first in a process: the
    error names falip.wrap (once: "import falip.towers first"); then ``falip.FovealCLIP`` wraps it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "from falip.core.model import FovealCLIP\n"
        "from falip.core.errors import FalipError\n"
        "from support.tiny import make_tiny_clip\n"
        "model = make_tiny_clip()\n"
        "try:\n"
        "    FovealCLIP(model)\n"
        "except FalipError as e:\n"
        "    assert 'falip.wrap(model)' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('core wrapped a library model')\n"
        "import falip\n"
        "f = falip.FovealCLIP(model, alpha=2.0)\n"
        "assert f.tower.library == 'open_clip' and f.alpha == 2.0 and isinstance(f, FovealCLIP)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), *sys.path]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --------------------------------------------------- the tower contract, over the product registry
def test_every_registered_adapter_has_tiny_test_models():
    """A tower adapter added to falip.towers.TOWERS without a tiny builder in
    tests/support/tiny_towers.py:TINY_TOWERS fails here (and its contract is then untested)."""
    missing = sorted(set(TOWERS) - set(TINY_TOWERS))
    assert not missing, f"add tiny test models for {missing} to tests/support/tiny_towers.py:TINY_TOWERS"
    assert not set(TINY_TOWERS) - set(TOWERS), "TINY_TOWERS names an adapter the registry does not have"
    assert all(TINY_TOWERS[name] for name in TOWERS)


@pytest.mark.parametrize("name, variant", CONTRACT, ids=[f"{n}:{v}" for n, v in CONTRACT])
def test_registered_adapter_keeps_the_tower_contract(name, variant):
    """falip.wrap picks the registry's adapter; blocks + head are the library's features; FALIP at
    alpha 0 is exactly those features, and at alpha > 0 changes them."""
    model = TINY_TOWERS[name][variant]().eval()
    tower = falip.wrap(model)
    assert type(tower) is adapter_class(name) and tower.model is model
    h, w = tower.image_size
    images = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    gh, gw = tower.grid_size
    assert (gh * tower.patch_size[0], gw * tower.patch_size[1]) == (h, w) and tower.pooling in ("cls", "map")
    regions = [falip.Regions([[0, 0, w / 2, h / 2], [w / 4, h / 4, w, h]], image_size=(w, h), frame="input")] * 2
    with torch.no_grad():
        x = tower.embed(images)
        assert x.shape == (2, tower.num_tokens, tower.width)
        for i in range(tower.depth):
            x = tower.run_block(i, x)
        want = tower.forward_features(images)
        assert want.shape == (2, tower.output_dim)
        torch.testing.assert_close(tower.head(x), want, atol=1e-5, rtol=0)
        zero = falip.FovealCLIP(tower, alpha=0.0).encode_image(images, regions=regions)
        assert torch.equal(zero, want[[0, 0, 1, 1]])
        form = "cls" if tower.pooling == "cls" else "all"
        biased = falip.FovealCLIP(tower, alpha=3.0, layers=[-1], form=form).encode_image(images, regions=regions)
        assert not torch.allclose(biased, zero, atol=1e-4)
