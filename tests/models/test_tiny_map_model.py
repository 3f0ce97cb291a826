"""The shipped falip-tiny-map (attention-pooled, no [CLS] token) loads offline; FALIP-MAP at alpha 0 is
the library's own output, and at alpha > 0 equals a plain implementation on timm's own modules."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from safetensors import safe_open

import falip
from falip.core.mask import foveal_profile, regions_to_roa
from falip.core.regions import Regions
from falip.data import synthetic
from falip.models.presets import CONFIG_DIR, PRESETS, WEIGHTS_DIR
from falip.train.tiny import to_model_input, zero_shot_accuracy

CONFIG = CONFIG_DIR / "falip-tiny-map.json"
WEIGHTS = WEIGHTS_DIR / "falip-tiny-map.safetensors"


@pytest.fixture(scope="module")
def loaded():
    torch.set_num_threads(1)
    return falip.load("falip-tiny-map")  # the shipped weights, offline


def test_config_is_falip_tiny_with_a_timm_map_tower():
    cfg = json.loads(CONFIG.read_text())
    tiny = json.loads((CONFIG_DIR / "falip-tiny.json").read_text())
    v = cfg["vision_cfg"]
    assert v["timm_model_name"] == "falip_tiny_map_patch8_64" and v["timm_pool"] == "map"
    assert v["timm_proj"] == "linear" and v["image_size"] == tiny["vision_cfg"]["image_size"]
    assert cfg["text_cfg"] == tiny["text_cfg"] and cfg["embed_dim"] == tiny["embed_dim"]


def test_weights_are_small_fp16_safetensors():
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size <= 10 * 1024 * 1024
    with safe_open(str(WEIGHTS), framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert "visual.trunk.attn_pool.latent" in f.keys()
    assert dtypes == {"F16"}


def test_loads_offline_as_an_attention_pooled_tower_with_its_preset(loaded):
    fclip, pre, _ = loaded
    assert fclip.pooling == "map" and fclip.depth == 4 and fclip.grid_size == (8, 8)
    preset = PRESETS["falip-tiny-map"]
    assert fclip.alpha == preset.alpha and fclip.form == preset.form
    assert fclip.layers == (preset.layers or ())
    assert tuple(pre.input_size) == (64, 64)
    # the shipped weights are loaded, not a fresh init
    fresh = open_clip.create_model("falip-tiny-map")
    assert not torch.equal(fresh.visual.trunk.attn_pool.latent, fclip.model.visual.trunk.attn_pool.latent)


def _scene_batch(n: int = 3):
    rng = np.random.default_rng(7)
    scenes = [synthetic.random_scene(rng, 3) for _ in range(n)]
    images = to_model_input(np.stack([s.image for s in scenes]))
    boxes = [np.array([o.box for o in s.objects], dtype=float) for s in scenes]
    regions = [Regions(b, image_size=(64, 64), frame="input") for b in boxes]
    return images, regions


@pytest.mark.parametrize("layers", [(), (3,), (1, 2, 3)])
def test_alpha_zero_is_the_librarys_own_output(loaded, layers):
    fclip = loaded[0]
    images, regions = _scene_batch()
    with torch.no_grad():
        own = fclip.model.encode_image(images)
        got = fclip.encode_image(images, regions=regions, alpha=0.0, layers=layers, form="all")
    index = torch.repeat_interleave(torch.arange(3), torch.tensor([len(r) for r in regions]))
    torch.testing.assert_close(got, own[index], rtol=0, atol=1e-5)


def _naive(model, image: torch.Tensor, bias: torch.Tensor, layers: tuple[int, ...]) -> torch.Tensor:
    """One region, written out: timm's blocks with the additive mask on the chosen ones (every query
    row), then the pool's probe attention by hand with the profile on its logits, per head."""
    trunk = model.visual.trunk
    x = trunk.norm_pre(trunk._pos_embed(trunk.patch_embed(image[None])))
    for i, block in enumerate(trunk.blocks):
        x = block(x, attn_mask=bias[None, None, None, :] if i in layers else None)
    x = trunk.norm(x)[0]  # [N, C]
    pool = trunk.attn_pool
    heads, hd = pool.num_heads, pool.head_dim
    q = pool.q(pool.latent[0]).reshape(heads, hd)  # one probe
    k, v = pool.kv(x).reshape(-1, 2, heads, hd).unbind(1)  # [N, heads, hd]
    out = []
    for h in range(heads):
        logits = (k[:, h] @ q[h]) * hd**-0.5 + bias
        out.append(torch.softmax(logits, dim=0) @ v[:, h])
    y = pool.proj(torch.cat(out))
    y = y + pool.mlp(pool.norm(y))
    return model.visual.head(trunk.head(trunk.fc_norm(y)))


@pytest.mark.parametrize("layers", [(), (3,), (2, 3)])
def test_falip_map_equals_a_plain_implementation(loaded, layers):
    fclip = loaded[0]
    images, regions = _scene_batch(2)
    with torch.no_grad():
        got = fclip.encode_image(images, regions=regions, alpha=5.0, sigma=1.5, layers=layers, form="all")
        expected = []
        for image, reg in zip(images, regions):
            profile = foveal_profile(regions_to_roa(reg, (8, 8), (8, 8)), 5.0, 1.5).float()
            expected += [_naive(fclip.model, image, profile[k], layers) for k in range(len(reg))]
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-4, atol=1e-5)
    plain = fclip.model.encode_image(images)
    assert (got - plain[torch.repeat_interleave(torch.arange(2), torch.tensor([3, 3]))]).abs().max() > 1e-3


def test_shipped_map_model_recognises_single_objects(loaded):
    fclip, _, tok = loaded
    scenes = synthetic.classification_scenes(4242, 144, 64, 1, 1)
    images = np.stack([s.image for s in scenes])
    acc = zero_shot_accuracy(fclip.model, tok, images, [s.objects[0].label for s in scenes])
    assert acc >= 0.7, acc  # chance is 1/36
