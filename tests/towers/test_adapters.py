"""The open_clip-timm and Hugging Face tower adapters on tiny random models of each library.

For each tower: embed -> run_block over all blocks -> head equals the library's own image features;
the naive hand-written block (tests/support/naive_towers.py) read from ``parts(i)`` equals the
library's own block under a random additive bias (RoPE, sub-LN, SwiGLU, qk-norm, layer scale,
registers); the naive attention-pool head read from ``pool_parts()`` equals the library's own head
under a bias on the probe's logits; FovealCLIP over the tower equals the library's features at
alpha 0 and the reference forward otherwise. Tolerances: 1e-5 absolute, float32.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import falip
from falip.core.errors import FalipError
from falip.core.reference import reference_forward
from falip.core.regions import Regions
from falip.towers import tower_for
from support.naive_towers import naive_block, naive_pool, naive_rotate
from support.tiny_towers import TINY_TOWERS, make_hf_clip, make_hf_siglip, make_timm_clip

ATOL = 1e-5

# the tiny models of every adapter but open_clip's own ViT (tests/core/test_towers.py and the registry's
# contract test in tests/towers/test_registry.py cover that one): all of depth 2, width 32, 32 px
TOWERS = {
    v: build for name, variants in TINY_TOWERS.items() if name != "open_clip_vit" for v, build in variants.items()
}
EXPECTED = {
    "timm": ("OpenClipTimmTower", "open_clip+timm"),
    "hf-clip": ("HFCLIPTower", "transformers"),
    "hf-siglip": ("HFSiglipTower", "transformers"),
}


def _tower(name):
    return tower_for(TOWERS[name]())


def _images(n=2, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(TOWERS))
def test_registry_picks_the_adapter_and_its_geometry(name):
    tower = _tower(name)
    cls_name, library = next(v for k, v in EXPECTED.items() if name.startswith(k))
    assert type(tower).__name__ == cls_name and tower.library == library
    assert tower.depth == 2 and tower.grid_size == (4, 4) and tower.patch_size == (8, 8)
    assert tower.image_size == (32, 32) and tower.width == 32
    map_pooled = "map" in name or "siglip" in name
    assert tower.pooling == ("map" if map_pooled else "cls")
    prefix = 0 if map_pooled else (3 if "reg" in name else 1)
    assert tower.num_prefix_tokens == prefix and tower.num_tokens == prefix + 16
    with torch.no_grad():
        assert tower.embed(_images()).shape == (2, prefix + 16, 32)
        assert tower.forward_features(_images()).shape == (2, tower.output_dim)


@pytest.mark.parametrize("name", list(TOWERS))
def test_blocks_then_head_equal_the_librarys_features(name):
    tower = _tower(name)
    images = _images(3)
    with torch.no_grad():
        x = tower.embed(images)
        for i in range(tower.depth):
            x = tower.run_block(i, x)
        got = tower.head(x)
        want = tower.forward_features(images)
        if tower.pooling == "map":
            assert torch.allclose(tower.run_pool(tower.final_norm(x)), want, atol=ATOL)
    assert torch.allclose(got, want, atol=ATOL), (got - want).abs().max()


@pytest.mark.parametrize("name", list(TOWERS))
def test_the_naive_block_from_parts_equals_the_librarys_block_under_a_bias(name):
    tower = _tower(name)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        x = tower.embed(_images())
        length = x.shape[1]
        for i in range(tower.depth):
            bias = 2.0 * torch.randn(2, length, length, generator=gen)
            got = tower.run_block(i, x, bias)
            want = naive_block(tower.parts(i), x, bias)
            assert torch.allclose(got, want, atol=ATOL), (i, (got - want).abs().max())
            assert not torch.allclose(got, tower.run_block(i, x), atol=1e-3)  # the bias reaches the block
            x = tower.run_block(i, x)


@pytest.mark.parametrize("name", [n for n in TOWERS if "map" in n or "siglip" in n])
def test_the_naive_pool_from_pool_parts_equals_the_librarys_head_under_a_bias(name):
    tower = _tower(name)
    parts = tower.pool_parts()
    assert parts.probe.shape == (1, 32)
    with torch.no_grad():
        x = tower.embed(_images())
        for i in range(tower.depth):
            x = tower.run_block(i, x)
        tokens = tower.final_norm(x)
        assert torch.allclose(naive_pool(parts, tokens), tower.head(x), atol=ATOL)
        bias = 3.0 * torch.randn(2, 1, x.shape[1], generator=torch.Generator().manual_seed(3))
        got, want = tower.run_pool(tokens, bias), naive_pool(parts, tokens, bias)
    assert torch.allclose(got, want, atol=ATOL), (got - want).abs().max()
    assert not torch.allclose(got, tower.head(x), atol=1e-3)


@pytest.mark.parametrize("name", ["timm-eva-rope", "timm-eva-fused-ls-half"])
def test_eva_rope_rotates_patch_tokens_only_by_its_definition(name):
    tower = _tower(name)
    parts = tower.parts(0)
    assert parts.rope is not None and not parts.keys_linear
    embed = tower._rope_embed()
    sin, cos = embed.chunk(2, -1)
    half = "half" in name
    x = torch.randn(2, 4, 17, 8, generator=torch.Generator().manual_seed(4))
    got = parts.rope(x)
    assert torch.equal(got[:, :, :1], x[:, :, :1])  # [CLS] is not rotated
    assert torch.allclose(got, naive_rotate(x, sin, cos, prefix=1, half=half), atol=1e-6)
    with pytest.raises(FalipError, match="whole sequence of 17 tokens"):
        parts.rope(x[:, :, :1])


def test_eva_parts_are_what_eva02_has():
    eva = _tower("timm-eva-rope").parts(1)
    assert eva.k_bias is None and eva.q_bias is not None and eva.v_bias is not None  # EVA: no k bias
    assert eva.inner_norm is not None  # sub-LN on the concatenated heads
    assert type(eva.mlp).__name__ == "SwiGLU"
    fused = _tower("timm-eva-fused-ls-half").parts(0)
    assert torch.equal(fused.k_bias, torch.zeros(32)) and fused.ls1 is not None and fused.inner_norm is None


def test_hf_eager_and_sdpa_agree():
    for make in (make_hf_clip, make_hf_siglip):
        eager, sdpa = tower_for(make(attn="eager")), tower_for(make(attn="sdpa"))
        assert eager.model.config.vision_config._attn_implementation == "eager"
        assert sdpa.model.config.vision_config._attn_implementation == "sdpa"
        with torch.no_grad():
            x = eager.embed(_images())
            bias = torch.randn(2, x.shape[1], x.shape[1])
            assert torch.allclose(eager.run_block(0, x, bias), sdpa.run_block(0, x, bias), atol=ATOL)
            assert torch.allclose(eager.forward_features(_images()), sdpa.forward_features(_images()), atol=ATOL)


# ------------------------------------------------------------------------ FovealCLIP over them
BOXES = [[[0.0, 0.0, 12.0, 20.0], [9.0, 9.0, 31.0, 30.0]], [[8.0, 16.0, 16.0, 24.0]]]


def _regions():
    return [Regions(b, image_size=(32, 32), frame="input") for b in BOXES]


@pytest.mark.parametrize("name", list(TOWERS))
def test_foveal_clip_at_alpha_0_is_the_librarys_features(name):
    tower = _tower(name)
    layers = [0, 1] if tower.pooling == "cls" else None
    fclip = falip.FovealCLIP(tower, alpha=0.0, layers=layers)
    images = _images()
    with torch.no_grad():
        got = fclip.encode_image(images, regions=_regions())
        want = tower.forward_features(images)
    assert torch.allclose(got, want[[0, 0, 1]], atol=ATOL)


def _plans(name):
    map_pooled = "map" in name or "siglip" in name
    if map_pooled:
        return [(None, "all"), ((1,), "all"), ((0, 1), "all")]
    return [((1,), "cls"), ((0, 1), "cls"), ((0,), "all"), ((0, 1), "diag")]


@pytest.mark.parametrize("name", list(TOWERS))
def test_foveal_clip_equals_the_reference_on_each_tower(name):
    tower = _tower(name)
    images = _images()
    for layers, form in _plans(name):
        fclip = falip.FovealCLIP(tower, alpha=3.0, sigma=1.5, layers=layers, form=form, batch_size=2)
        with torch.no_grad():
            got = fclip.encode_image(images, regions=_regions())
            ref = reference_forward(tower, images, _regions(), alpha=3.0, sigma=1.5, layers=layers, form=form)
            plain = tower.forward_features(images)[[0, 0, 1]]
        assert torch.allclose(got, ref.features, atol=ATOL), (layers, form, (got - ref.features).abs().max())
        assert not torch.allclose(got, plain, atol=1e-3)  # FALIP changed something


# ------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "build,reason",
    [
        (lambda: make_timm_clip("vit", "avg", class_token=False), "global_pool='avg'"),
        (lambda: make_timm_clip("vit", "token", dynamic_img_size=True), "dynamic_img_size"),
        (lambda: _gated(make_timm_clip("eva", "token")), "block 2 uses gated attention"),
        (lambda: make_timm_clip("vit", "map", class_token=True), "patch tokens only"),
    ],
)
def test_timm_towers_falip_cannot_run_are_refused_with_the_reason(build, reason):
    with pytest.raises(FalipError, match=reason):
        tower_for(build())


def _gated(model):
    model.visual.trunk.blocks[1].attn.gate = torch.nn.Linear(32, 32)
    return model


def test_timm_patch_dropout_in_train_mode_is_refused():
    tower = tower_for(make_timm_clip("vit", "token", patch_drop_rate=0.5))
    tower.embed(_images())  # eval mode: no dropout
    tower.model.train()
    with pytest.raises(FalipError, match="drops patches in train mode"):
        tower.embed(_images())


def test_hf_towers_falip_cannot_run_are_refused_with_the_reason():
    import transformers

    cfg = transformers.SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=8
    )
    cfg.vision_use_head = False
    with pytest.raises(FalipError, match="vision_use_head=False"):
        tower_for(transformers.SiglipVisionModel(cfg))
    model = make_hf_clip("CLIPVisionModel")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(FalipError, match="'flash_attention_2' is not supported"):
        tower_for(model)
    with pytest.raises(FalipError, match="vision-only model"):
        tower_for(make_hf_clip("CLIPVisionModel")).encode_text(torch.zeros(1, 4, dtype=torch.long))


def test_hf_text_side_is_the_models_own():
    for make in (make_hf_clip, make_hf_siglip):
        tower = tower_for(make())
        ids = torch.randint(0, 10, (3, 8))
        with torch.no_grad():
            got = tower.encode_text(ids, normalize=True)
            out = tower.model.get_text_features(input_ids=ids)
            want = torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1)
        assert torch.allclose(got, want, atol=ATOL)
        assert tower.logit_scale.shape == ()
    assert tower.logit_bias is not None and tower.logit_bias.shape == ()
    assert tower_for(make_hf_clip()).logit_bias is None


def test_accepts_checks_names_without_importing_the_libraries():
    code = (
        "import sys, torch\n"
        "from falip.towers.hf_clip import HFCLIPTower\n"
        "from falip.towers.hf_siglip import HFSiglipTower\n"
        "from falip.towers.open_clip_timm import OpenClipTimmTower\n"
        "m = torch.nn.Linear(2, 2)\n"
        "assert not any(c.accepts(m) for c in (HFCLIPTower, HFSiglipTower, OpenClipTimmTower))\n"
        "heavy = [x for x in ('transformers', 'timm', 'open_clip') if x in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


def _env():
    import os

    env = dict(os.environ)
    src = str(__import__("pathlib").Path(falip.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize(
    "extra",
    [dict(), dict(qkv_fused=True, init_values=0.5, rope_rotate_half=True), dict(num_reg_tokens=2, qk_norm=True)],
    ids=["split-qkv", "fused-ls-half", "registers-qknorm"],
)
def test_eva_rope_shared_block_is_exact(extra):
    """The block after the first biased one shares the image's rotated tokens between regions and
    folds each region's unrotated [CLS] key in (core.attention.block_forward_shared_patches): on a
    4-block EVA without the inner norm, every plan that has that step equals the reference."""
    tower = tower_for(make_timm_clip("eva", "token", depth=4, scale_attn_inner=False, **extra))
    images = _images()
    for layers in ([1, 2, 3], [0, 1, 2, 3], [1, 3]):
        fclip = falip.FovealCLIP(tower, alpha=3.0, sigma=1.5, layers=layers, form="cls", batch_size=2)
        assert any(step.kind == "shared" for step in fclip.plan().steps), layers
        with torch.no_grad():
            got = fclip.encode_image(images, regions=_regions())
            ref = reference_forward(tower, images, _regions(), alpha=3.0, sigma=1.5, layers=layers, form="cls")
        assert torch.allclose(got, ref.features, atol=ATOL), (layers, (got - ref.features).abs().max())
