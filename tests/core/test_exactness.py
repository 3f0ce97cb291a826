"""FALIP features against an independent, naive implementation written here (loops, float64).

The reference builds the paper's mask M cell by cell with math.exp, and runs the ViT by hand:
patch embedding as a matrix product, LayerNorm by its formula, attention head by head with an
explicit softmax, then the MLP. It shares nothing with falip but the model's weights.
Tolerance: 1e-4 absolute on features (the reference runs in float64, falip in float32).
"""

from __future__ import annotations

import pytest
import torch

import falip
from support.naive import naive_region_feature
from support.tiny import make_tiny_clip

TOL = 1e-4


BOXES = [
    [0.0, 0.0, 224.0, 224.0],  # whole image
    [10.0, 20.0, 100.0, 121.0],  # generic
    [32.0, 48.0, 48.0, 64.0],  # exactly one cell (borders on cell edges)
    [100.5, 3.0, 223.0, 40.0],  # wide, fractional
    [5.0, 60.0, 30.0, 220.0],  # tall
]


@pytest.fixture(scope="module")
def b16_geometry():
    """ViT-B/16's geometry (224 px, 16 px patches, 14 x 14 cells, 12 blocks) at width 64: the mask, the
    cells a box selects and the plan's schedule are those of ViT-B/16; only the width is small."""
    return make_tiny_clip(image_size=224, patch_size=16, width=64, layers=12, heads=4, seed=5)


@pytest.mark.parametrize(
    "form,layers",
    [("cls", (8, 9, 10, 11)), ("cls", (11,)), ("cls", (2, 7)), ("all", (8, 9, 10, 11)), ("diag", (10, 11))],
)
def test_vit_b16_geometry_matches_naive(b16_geometry, form, layers):
    torch.manual_seed(1)
    image = torch.randn(1, 3, 224, 224)
    fclip = falip.FovealCLIP(b16_geometry, alpha=6.0, sigma=3.0, layers=layers, form=form)
    boxes = torch.tensor(BOXES)
    with torch.no_grad():
        got = fclip.encode_image(image, boxes=[boxes])
        plain = b16_geometry.encode_image(image)
        for k, box in enumerate(boxes.tolist()):
            ref = naive_region_feature(b16_geometry, image[0], box, 6.0, 3.0, set(layers), form)
            assert (got[k].double() - ref).abs().max().item() <= TOL, (form, layers, box)
        # the check can fail: a biased feature really differs from the plain one
        assert (got[1] - plain[0]).abs().max().item() > 10 * TOL


def test_vit_b16_default_settings_match_naive(vit_b16):
    """ViT-B/16 itself (width 768, 12 heads: float32 accumulation at the paper's size) at the paper's
    defaults (alpha 0.2, sigma 100, last 4 blocks, cls), and a strong bias on a cell-aligned box."""
    torch.manual_seed(2)
    image = torch.randn(1, 3, 224, 224)
    box = [40.0, 30.0, 150.0, 170.0]
    with torch.no_grad():
        got = falip.FovealCLIP(vit_b16).encode_image(image, boxes=[torch.tensor([box])])
        ref = naive_region_feature(vit_b16, image[0], box, 0.2, 100.0, {8, 9, 10, 11}, "cls")
        assert (got[0].double() - ref).abs().max().item() <= TOL
        strong = falip.FovealCLIP(vit_b16, alpha=6.0, sigma=3.0).encode_image(image, boxes=[torch.tensor([BOXES[2]])])
        ref = naive_region_feature(vit_b16, image[0], BOXES[2], 6.0, 3.0, {8, 9, 10, 11}, "cls")
        assert (strong[0].double() - ref).abs().max().item() <= TOL
        assert (strong[0] - got[0]).abs().max().item() > 10 * TOL


def _regions_with_zero_bias(fclip, images, per_image, layers=None, form="cls"):
    """falip's biased computation itself (not the alpha == 0 shortcut) with an all-zero bias."""
    length = 1 + fclip.grid_size[0] * fclip.grid_size[1]
    counts = [per_image] * images.shape[0]
    return fclip._encode_regions(images, torch.zeros(sum(counts), length), counts, fclip.plan(layers, form))


@pytest.mark.parametrize("form", ["cls", "all", "diag"])
@pytest.mark.parametrize("layers", [(0,), (3, 8, 11), (10, 11), (11,)])
def test_biased_computation_with_zero_bias_is_vanilla_clip(form, layers):
    model = make_tiny_clip(layers=12)  # 12 blocks like ViT-B/16; the width does not matter here
    torch.manual_seed(3)
    images = torch.randn(2, 3, 32, 32)
    fclip = falip.FovealCLIP(model, layers=layers, form=form)
    with torch.no_grad():
        plain = model.encode_image(images)
        got = _regions_with_zero_bias(fclip, images, 2)
    assert (got - plain.repeat_interleave(2, dim=0)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("form", ["cls", "all", "diag"])
def test_zero_alpha_is_vanilla_clip(form):
    model = make_tiny_clip(layers=12)
    torch.manual_seed(3)
    images = torch.randn(2, 3, 32, 32)
    fclip = falip.FovealCLIP(model, alpha=0.0, form=form, layers=(3, 8, 11))
    boxes = [torch.tensor([[0.0, 0.0, 5.0, 5.0], [6.0, 1.0, 20.0, 22.0]]), torch.tensor([[1.0, 2.0, 3.0, 4.0]])]
    with torch.no_grad():
        plain = model.encode_image(images)
        got = fclip.encode_image(images, boxes=boxes)
        masks = [torch.zeros(1, 32, 32, dtype=torch.bool), torch.zeros(1, 32, 32, dtype=torch.bool)]
        masks[0][0, 10:12, 7:9] = True
        masks[1][0, 30, 1] = True
        got_masks = fclip.encode_image(images, masks=masks)
        no_regions = fclip.encode_image(images)
    expected = plain[torch.tensor([0, 0, 1])]
    assert torch.equal(got, expected)  # bitwise: alpha 0 is exactly CLIP
    assert torch.equal(got_masks, plain)
    assert torch.equal(no_regions, plain)


@pytest.mark.parametrize("inner_norm", [False, True])
def test_custom_attention_blocks_match_open_clip(inner_norm):
    """open_clip's own Attention module (qk-norm, head scale, inner norm, attn norm) through falip."""
    model = make_tiny_clip(qk_norm=True, scale_heads=True, scale_attn_inner=inner_norm, scale_attn=True, scale_fc=True)
    assert type(model.visual.transformer.resblocks[0]).__name__ == "CustomResidualAttentionBlock"
    torch.manual_seed(4)
    with torch.no_grad():  # make the head scales and norms non-trivial
        for block in model.visual.transformer.resblocks:
            block.attn.head_scale.uniform_(0.5, 1.5)
            block.attn.ln_q.weight.uniform_(0.5, 1.5)
            block.attn.ln_k.bias.uniform_(-0.5, 0.5)
    images = torch.randn(2, 3, 32, 32)
    fclip = falip.FovealCLIP(model, alpha=0.0, layers=(0, 1, 2))
    with torch.no_grad():
        got = _regions_with_zero_bias(fclip, images, 1)
        assert (got - model.encode_image(images)).abs().max().item() <= 1e-5
        biased = falip.FovealCLIP(model, alpha=2.0, layers=(0, 1, 2)).encode_image(
            images, boxes=[torch.tensor([[0.0, 0.0, 9.0, 9.0]])] * 2
        )
    assert (biased - got).abs().max().item() > 1e-3
