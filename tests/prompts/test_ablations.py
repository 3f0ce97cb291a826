"""The ablation forwards (feature mask, q/k/v swaps, enlarged circle) against hand computations on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import falip
from falip.core.errors import FalipError
from falip.core.mask import foveal_profile, full_mask, regions_to_roa
from falip.core.preprocess import Preprocess
from falip.core.regions import Regions
from falip.prompts import edits as vp
from falip.prompts.ablations import (
    feature_mask_forward,
    mixed_attention,
    scale_box,
    swap_forward,
)
from falip.prompts.registry import PromptParams, parse_method
from falip.scoring import RegionScorer, _Item
from falip.towers import wrap


@pytest.fixture
def setup(tiny_clip):
    """3 blocks, a 4x4 grid; two image pairs (prompted, original), their regions' ROA and FALIP mask."""
    torch.manual_seed(2)
    original = torch.randn(2, 3, 32, 32)
    prompted = original.clone()
    prompted[:, 0, 6:10, 4:28] += 2.0  # a "prompt": some pixels changed
    regions = [Regions([[4, 4, 20, 28]], image_size=(32, 32), frame="input"),
               Regions([[17, 0, 32, 15]], image_size=(32, 32), frame="input")]  # fmt: skip
    roa = torch.cat([regions_to_roa(r, 4, 8) for r in regions])
    mask = full_mask(foveal_profile(roa, 1.5, 100.0), "cls").float()
    return tiny_clip, prompted, original, regions, roa, mask


def _final(model, x):
    return model.visual.ln_post(x[:, 0]) @ model.visual.proj


def test_mixed_attention_equals_torch_multihead_attention(tiny_clip):
    attn = tiny_clip.visual.transformer.resblocks[1].attn
    parts = falip.FovealCLIP(tiny_clip).tower.parts(1)
    g = torch.Generator().manual_seed(0)
    hq, hv = torch.randn(2, 17, 64, generator=g), torch.randn(2, 17, 64, generator=g)
    bias = torch.randn(2, 17, 17, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(mixed_attention(parts, hq, hq), attn(hq, hq, hq, need_weights=False)[0])
        expected = attn(hq, hq, hv, need_weights=False, attn_mask=bias.repeat_interleave(4, dim=0))[0]
        torch.testing.assert_close(mixed_attention(parts, hq, hv, bias), expected)


@torch.no_grad()
def test_qk_prompt_by_hand(setup):
    """7b: in the chosen blocks x' += attn(q, k from LN x', v from LN x); x runs plain CLIP."""
    model, prompted, original, _, _, _ = setup
    blocks = model.visual.transformer.resblocks
    xp, xo = model.visual._embeds(prompted), model.visual._embeds(original)
    for i, block in enumerate(blocks):
        if i in (1, 2):
            a = block.attn(block.ln_1(xp), block.ln_1(xp), block.ln_1(xo), need_weights=False)[0]
            xp = xp + a
            xp = xp + block.mlp(block.ln_2(xp))
        else:
            xp = block(xp)
        xo = block(xo)
    got = swap_forward(wrap(model), prompted, original, "qk-prompt", layers=[1, 2])
    torch.testing.assert_close(got, _final(model, xp), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_v_prompt_by_hand(setup):
    """7c: in the chosen blocks x' += attn(q, k from LN x with M, v from LN x'); x runs FALIP (M)."""
    model, prompted, original, _, _, mask = setup
    blocks = model.visual.transformer.resblocks
    m = mask.repeat_interleave(4, dim=0)
    xp, xo = model.visual._embeds(prompted), model.visual._embeds(original)
    for i, block in enumerate(blocks):
        if i in (1, 2):
            a = block.attn(block.ln_1(xo), block.ln_1(xo), block.ln_1(xp), need_weights=False, attn_mask=m)[0]
            xp = xp + a
            xp = xp + block.mlp(block.ln_2(xp))
            xo = block(xo, attn_mask=m)
        else:
            xp, xo = block(xp), block(xo)
    got = swap_forward(wrap(model), prompted, original, "v-prompt", layers=[1, 2], mask=mask)
    torch.testing.assert_close(got, _final(model, xp), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_swaps_of_an_unprompted_image_are_clip_and_falip(setup):
    model, _, original, regions, _, mask = setup
    clip = model.encode_image(original)
    torch.testing.assert_close(
        swap_forward(wrap(model), original, original, "qk-prompt", [1, 2]), clip, atol=1e-5, rtol=1e-5
    )
    fclip = falip.FovealCLIP(model, alpha=1.5, layers=[1, 2])
    foveal = fclip.encode_image(original, regions=regions)
    got = swap_forward(wrap(model), original, original, "v-prompt", [1, 2], mask)
    torch.testing.assert_close(got, foveal, atol=1e-5, rtol=1e-5)
    with pytest.raises(FalipError, match="swap must be"):
        swap_forward(wrap(model), original, original, "q-prompt")


@torch.no_grad()
def test_feature_mask_by_hand(setup):
    model, _, original, _, roa, _ = setup
    blocks = model.visual.transformer.resblocks
    keep = torch.cat([torch.ones(2, 1), roa.flatten(1).float()], dim=1)[:, :, None]
    x = model.visual._embeds(original)
    for i, block in enumerate(blocks):
        if i in (1, 2):
            x = x * keep
        x = block(x)
    got = feature_mask_forward(wrap(model), original, roa, layers=[1, 2])
    torch.testing.assert_close(got, _final(model, x), atol=1e-5, rtol=1e-5)
    everything = torch.ones_like(roa)
    clip = model.encode_image(original)
    torch.testing.assert_close(
        feature_mask_forward(wrap(model), original, everything, [1, 2]), clip, atol=1e-5, rtol=1e-5
    )
    assert not torch.allclose(got, clip, atol=1e-3)


def test_scale_box():
    assert scale_box((10, 10, 20, 30), 1.0, (64, 64)) == (10, 10, 20, 30)
    assert scale_box((10, 10, 20, 30), 2.0, (64, 64)) == (5, 0, 25, 40)  # clipped at the top
    assert scale_box((0, 0, 64, 64), 3.0, (64, 64)) == (0, 0, 64, 64)
    with pytest.raises(FalipError, match="> 0"):
        scale_box((0, 0, 1, 1), 0.0, (4, 4))


@pytest.fixture
def scorers(tiny_clip):
    fclip = falip.FovealCLIP(tiny_clip, alpha=2.0, layers=[1, 2])
    pre = Preprocess(32)
    base = RegionScorer(fclip, pre, lambda texts: torch.randint(1, 100, (len(texts), 16), generator=None))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))
    boxes = np.array([[2.0, 3.0, 20.0, 30.0], [18.0, 10.0, 39.0, 46.0]])
    return base, image, boxes


def test_ablation_scorer_features_are_the_forwards(scorers):
    base, image, boxes = scorers
    pre, model = base.preprocess, base.fclip.model
    region = Regions(boxes, image_size=image.size)
    item = _Item(image, region, pre.map_regions(region), [])
    x = pre(image)[None].expand(2, -1, -1, -1)
    roa = regions_to_roa(item.regions_input, 4, 8)
    circled = torch.stack([pre.to_tensor(vp.red_circle(pre.resize(image), b)) for b in item.regions_input.boxes])
    mask = full_mask(foveal_profile(roa, 2.0, 100.0), "cls")
    expected = {
        "feature-mask": feature_mask_forward(wrap(model), x, roa, [1, 2]),
        "qk-prompt": swap_forward(wrap(model), circled, x, "qk-prompt", [1, 2]),
        "v-prompt": swap_forward(wrap(model), circled, x, "v-prompt", [1, 2], mask.float()),
    }
    for variant, feats in expected.items():  # registered method atoms: the scorer's own term features
        torch.testing.assert_close(base._term_features([item], (variant,)), feats, atol=1e-5, rtol=1e-5)
        scores = base.score(image, boxes, ["a", "b"], method=f"{variant}+circle")
        assert scores.shape == (2, 2)
    with pytest.raises(FalipError, match="cannot be combined"):
        parse_method("qk-prompt&circle")
    with pytest.raises(FalipError, match="one term of image edits"):
        base.with_options(params=PromptParams(swap_prompt="falip")).features([image], [boxes], "qk-prompt")


def test_ablation_scorer_scales_the_circle(scorers):
    base, image, boxes = scorers
    pre = base.preprocess
    region = Regions(boxes, image_size=image.size)
    item = _Item(image, region, pre.map_regions(region), [])
    same = base.with_options(params=PromptParams(circle_scale=1.0))
    bigger = base.with_options(params=PromptParams(circle_scale=1.5))
    for k in range(2):
        plain = np.asarray(base.edited(item, k, ("circle",)))
        np.testing.assert_array_equal(np.asarray(same.edited(item, k, ("circle",))), plain)
        box = scale_box(item.regions_input.boxes[k], 1.5, (32, 32))
        expected = np.asarray(vp.red_circle(pre.resize(image), box))
        np.testing.assert_array_equal(np.asarray(bigger.edited(item, k, ("circle",))), expected)
        assert not np.array_equal(expected, plain)
        blurred = np.asarray(bigger.edited(item, k, ("blur", "circle")))  # the other edits, then the circle
        np.testing.assert_array_equal(blurred, np.asarray(vp.red_circle(base.edited(item, k, ("blur",)), box)))


def test_the_old_import_path_still_works():
    """The ablations moved beside the scoring methods (prompts/); falip.analysis.ablations keeps its names."""
    from falip.analysis import ablations as old
    from falip.prompts import ablations as new

    assert old.__all__ == new.__all__ and all(getattr(old, n) is getattr(new, n) for n in new.__all__)
