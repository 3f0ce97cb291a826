"""FalipConfig: one frozen record of FALIP's settings, its defaults, its resolution against a tower,
and its holders (FovealCLIP, presets)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

import falip
from falip.core import defaults
from falip.core.config import FalipConfig
from falip.core.errors import FalipError
from falip.models.presets import PAPER_PRESET, PRESETS, Preset
from falip.towers import tower_for
from support.towers import build


@pytest.fixture(scope="module")
def cls_tower():
    return tower_for(build("open_clip-mha"))  # 4 blocks, [CLS]


@pytest.fixture(scope="module")
def map_tower():
    return build("map-prefix0")  # attention-pooled


def test_defaults_are_core_defaults():
    c = FalipConfig()
    assert (c.alpha, c.sigma, c.layers, c.form) == (defaults.ALPHA, defaults.SIGMA, None, defaults.FORM)
    assert falip.FalipConfig is FalipConfig
    assert PAPER_PRESET.config == c  # the presets declare no default of their own


def test_frozen_and_normalised():
    c = FalipConfig(alpha=np.float32(2.5), sigma=torch.tensor(3.0), layers=np.array([3, -1, 0]), form="all")
    assert c == FalipConfig(2.5, 3.0, (3, -1, 0), "all")
    assert type(c.alpha) is float and type(c.sigma) is float and all(type(i) is int for i in c.layers)
    assert FalipConfig(layers=2).layers == (2,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.alpha = 1.0  # type: ignore[misc]
    assert hash(c) == hash(FalipConfig(2.5, 3.0, [3, -1, 0], "all"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
        ({"sigma": 0.0}, "sigma must be a finite number > 0"),
        ({"form": "row"}, "form must be one of"),
        ({"layers": "2"}, "layers must be block indices"),
        ({"layers": [1.5]}, "layers must be an integer"),
    ],
)
def test_bad_values_are_one_clear_error(kwargs, message):
    with pytest.raises(FalipError, match=message):
        FalipConfig(**kwargs)


def test_override_keeps_none_and_refuses_unknown_names():
    c = FalipConfig(alpha=3.0, layers=(1, 2))
    assert c.override(alpha=None, layers=None, form="diag") == FalipConfig(3.0, defaults.SIGMA, (1, 2), "diag")
    assert c.override() is c
    with pytest.raises(FalipError, match="unknown FALIP setting.*'blocks'"):
        c.override(blocks=[1])
    assert FalipConfig.of({"alpha": 4.0, "layers": None}) == FalipConfig(alpha=4.0)
    assert FalipConfig.of(c, sigma=5.0) == dataclasses.replace(c, sigma=5.0)
    with pytest.raises(FalipError, match="unknown FALIP setting"):
        FalipConfig.of({"alpah": 1.0})


def test_resolve_against_a_cls_tower(cls_tower):
    depth = cls_tower.depth
    assert FalipConfig().resolve(cls_tower).layers == tuple(range(max(0, depth - defaults.LAST_BLOCKS), depth))
    assert FalipConfig(layers=(-1, 0, 0)).resolve(cls_tower).layers == (0, depth - 1)
    resolved = FalipConfig(layers=(1,)).resolve(cls_tower)
    assert resolved.resolve(cls_tower) is resolved
    with pytest.raises(FalipError, match=f"out of range for a tower of {depth} blocks"):
        FalipConfig(layers=(depth,)).resolve(cls_tower)
    with pytest.raises(FalipError, match="at least one block"):
        FalipConfig(layers=()).resolve(cls_tower)


def test_resolve_against_an_attention_pooled_tower(map_tower):
    assert FalipConfig().resolve(map_tower).layers == ()  # the pooling probe only
    assert FalipConfig(layers=(), form="cls").resolve(map_tower).layers == ()
    assert FalipConfig(layers=(-1,), form="all").resolve(map_tower).layers == (map_tower.depth - 1,)
    with pytest.raises(FalipError, match="no \\[CLS\\] query row"):
        FalipConfig(layers=(-1,), form="cls").resolve(map_tower)


def test_foveal_clip_holds_its_resolved_config(cls_tower):
    config = FalipConfig(alpha=3.0, sigma=2.0, layers=(-1,), form="all")
    fclip = falip.FovealCLIP(cls_tower, config=config)
    assert fclip.config == config.resolve(cls_tower)
    assert (fclip.alpha, fclip.sigma, fclip.layers, fclip.form) == (3.0, 2.0, (cls_tower.depth - 1,), "all")
    # keywords over the config; the old keyword-only construction gives the same model
    assert falip.FovealCLIP(cls_tower, alpha=5.0, config=config).config == dataclasses.replace(fclip.config, alpha=5.0)
    old = falip.FovealCLIP(cls_tower, 3.0, 2.0, (-1,), "all")
    assert old.config == fclip.config
    # layers=None given explicitly is the tower's default, not the config's
    assert falip.FovealCLIP(cls_tower, layers=None, config=config).layers == FalipConfig().resolve(cls_tower).layers
    fclip.alpha = 7.0
    fclip.layers = [0]
    assert fclip.config == FalipConfig(7.0, 2.0, (0,), "all")
    with pytest.raises(FalipError, match="alpha must be"):
        fclip.alpha = -1.0


def test_config_features_equal_keyword_features(cls_tower):
    torch.manual_seed(0)
    images = torch.randn(2, 3, *cls_tower.image_size)
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 20.0]]), torch.tensor([[8.0, 8.0, 40.0, 30.0]])]
    a = falip.FovealCLIP(cls_tower, alpha=4.0, layers=(1, 2), form="diag")
    b = falip.FovealCLIP(cls_tower, config=FalipConfig(alpha=4.0, layers=(2, 1), form="diag"))
    with torch.no_grad():
        plain = a.encode_image(images, boxes=boxes)
        assert torch.equal(plain, b.encode_image(images, boxes=boxes))
        assert torch.equal(plain, a.encode_image(images, boxes=boxes, **a.config.kwargs()))


def test_presets_hold_a_config():
    tiny = PRESETS["falip-tiny"]
    assert tiny.config == FalipConfig(alpha=10.0, layers=(1, 2, 3))
    assert (tiny.alpha, tiny.sigma, tiny.layers, tiny.form) == (10.0, defaults.SIGMA, (1, 2, 3), defaults.FORM)
    assert Preset(alpha=1.0, form="all", notes="x") == Preset(FalipConfig(alpha=1.0, form="all"), notes="x")
    assert tiny.settings() == {"alpha": 10.0, "sigma": defaults.SIGMA, "layers": (1, 2, 3), "form": "cls"}


def test_load_applies_the_preset_then_the_callers_settings():
    fclip, _, _ = falip.load("falip-tiny")
    assert fclip.config == PRESETS["falip-tiny"].config
    fclip, _, _ = falip.load("falip-tiny", alpha=2.0, layers=None)  # None: the tower's default, as before
    assert fclip.config == FalipConfig(alpha=2.0).resolve(fclip.tower)
    fclip, _, _ = falip.load("falip-tiny", config=FalipConfig(sigma=3.0))  # a whole config replaces the preset's
    assert fclip.config == FalipConfig(sigma=3.0).resolve(fclip.tower)


def test_config_is_torch_free():
    code = "import sys, falip.core.config, falip.models.presets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_leftover_names_warn_once(monkeypatch, tiny_clip):
    """``num_blocks`` and ``falip.tasks.task_names`` still answer, with one FutureWarning each."""
    import warnings

    from falip.core import deprecation
    from falip.tasks import TASKS, task_names

    monkeypatch.setattr(deprecation, "_SAID", set())
    fclip = falip.FovealCLIP(tiny_clip)
    with pytest.warns(FutureWarning, match="FovealCLIP.num_blocks is deprecated; use FovealCLIP.depth"):
        assert fclip.num_blocks == fclip.depth
    with pytest.warns(FutureWarning, match="task_names\\(\\) is deprecated"):
        assert task_names() == tuple(TASKS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fclip.num_blocks == fclip.depth and task_names() == tuple(TASKS)


def test_leftovers_are_gone():
    from falip.core import tower
    from falip.core.tower import BlockParts

    assert "rope_before_norm" not in {f.name for f in dataclasses.fields(BlockParts)}
    assert not hasattr(tower, "blocks_note") and defaults.BLOCKS_NOTE
