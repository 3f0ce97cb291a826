"""FALIP features against an independent, naive implementation written here (loops, float64).

The reference builds the paper's mask M cell by cell with math.exp, and runs the ViT by hand:
patch embedding as a matrix product, LayerNorm by its formula, attention head by head with an
explicit softmax, then the MLP. It shares nothing with falip but the model's weights.
Tolerance: 1e-4 absolute on features (the reference runs in float64, falip in float32).
"""

from __future__ import annotations

import math

import pytest
import torch

import falip
from conftest import make_tiny_clip

TOL = 1e-4


def naive_mask(box, grid, patch, alpha, sigma, form):
    """The paper's M [L, L] for one xyxy box, cell by cell."""
    (gh, gw), (ph, pw) = grid, patch
    x0, y0, x1, y1 = box
    cells = [
        (r, c)
        for r in range(gh)
        for c in range(gw)
        if c * pw < x1 and (c + 1) * pw > x0 and r * ph < y1 and (r + 1) * ph > y0
    ]
    r0, r1 = min(r for r, _ in cells), max(r for r, _ in cells)
    c0, c1 = min(c for _, c in cells), max(c for _, c in cells)
    hh, ww = r1 - r0 + 1, c1 - c0 + 1
    gauss = {}
    for i in range(hh):
        for j in range(ww):
            gauss[i, j] = math.exp(-((i - (hh - 1) / 2) ** 2 + (j - (ww - 1) / 2) ** 2) / (2 * sigma**2))
    lo, hi = min(gauss.values()), max(gauss.values())
    length = 1 + gh * gw
    m = torch.zeros(length, length, dtype=torch.float64)
    for r, c in cells:
        value = alpha * (gauss[r - r0, c - c0] - lo + 1e-6) / (hi - lo + 1e-6)
        t = 1 + r * gw + c
        if form == "cls":
            m[0, t] = value
        elif form == "all":
            m[:, t] = value
        else:
            m[t, t] = value
    return m


def _layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight.double() + ln.bias.double()


def naive_features(model, image, mask_by_block):
    """One image [3, H, W] through the ViT by hand; ``mask_by_block[i]`` is M for block i or None."""
    v = model.visual
    ph, pw = v.patch_size
    c_in, height, width = image.shape
    gh, gw = height // ph, width // pw
    img = image.double()
    patches = img.reshape(c_in, gh, ph, gw, pw).permute(1, 3, 0, 2, 4).reshape(gh * gw, -1)
    x = patches @ v.conv1.weight.double().reshape(v.conv1.weight.shape[0], -1).T
    x = torch.cat([v.class_embedding.double()[None], x]) + v.positional_embedding.double()
    x = _layer_norm(x, v.ln_pre)
    for i, block in enumerate(v.transformer.resblocks):
        attn = block.attn
        heads = attn.num_heads
        width_c = x.shape[1]
        hd = width_c // heads
        h = _layer_norm(x, block.ln_1)
        qkv = h @ attn.in_proj_weight.double().T + attn.in_proj_bias.double()
        q, k, vv = qkv[:, :width_c], qkv[:, width_c : 2 * width_c], qkv[:, 2 * width_c :]
        out = torch.zeros_like(q)
        for head in range(heads):
            sl = slice(head * hd, (head + 1) * hd)
            logits = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
            if mask_by_block[i] is not None:
                logits = logits + mask_by_block[i]
            weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
            weights = weights / weights.sum(dim=1, keepdim=True)
            out[:, sl] = weights @ vv[:, sl]
        x = x + out @ attn.out_proj.weight.double().T + attn.out_proj.bias.double()
        h2 = _layer_norm(x, block.ln_2)
        hidden = h2 @ block.mlp.c_fc.weight.double().T + block.mlp.c_fc.bias.double()
        hidden = block.mlp.gelu(hidden)
        x = x + hidden @ block.mlp.c_proj.weight.double().T + block.mlp.c_proj.bias.double()
    cls = _layer_norm(x[0], v.ln_post)
    return cls @ v.proj.double()


def naive_region_feature(model, image, box, alpha, sigma, layers, form):
    v = model.visual
    m = naive_mask(box, v.grid_size, v.patch_size, alpha, sigma, form)
    n = len(v.transformer.resblocks)
    masks = [m if i in layers else None for i in range(n)]
    return naive_features(model, image, masks)


BOXES = [
    [0.0, 0.0, 224.0, 224.0],  # whole image
    [10.0, 20.0, 100.0, 121.0],  # generic
    [32.0, 48.0, 48.0, 64.0],  # exactly one cell (borders on cell edges)
    [100.5, 3.0, 223.0, 40.0],  # wide, fractional
    [5.0, 60.0, 30.0, 220.0],  # tall
]


@pytest.mark.parametrize(
    "form,layers",
    [("cls", (8, 9, 10, 11)), ("cls", (11,)), ("cls", (2, 7)), ("all", (8, 9, 10, 11)), ("diag", (10, 11))],
)
def test_vit_b16_matches_naive(vit_b16, form, layers):
    torch.manual_seed(1)
    image = torch.randn(1, 3, 224, 224)
    fclip = falip.FovealCLIP(vit_b16, alpha=6.0, sigma=3.0, layers=layers, form=form)
    boxes = torch.tensor(BOXES[:3] if form != "cls" or layers != (8, 9, 10, 11) else BOXES)
    with torch.no_grad():
        got = fclip.encode_image(image, boxes=[boxes])
        plain = vit_b16.encode_image(image)
        for k, box in enumerate(boxes.tolist()):
            ref = naive_region_feature(vit_b16, image[0], box, 6.0, 3.0, set(layers), form)
            assert (got[k].double() - ref).abs().max().item() <= TOL, (form, layers, box)
        # the check can fail: a biased feature really differs from the plain one
        assert (got[1] - plain[0]).abs().max().item() > 10 * TOL


def test_vit_b16_default_settings_match_naive(vit_b16):
    """The paper's defaults (alpha 0.2, sigma 100, last 4 blocks, cls)."""
    torch.manual_seed(2)
    image = torch.randn(1, 3, 224, 224)
    fclip = falip.FovealCLIP(vit_b16)
    box = [40.0, 30.0, 150.0, 170.0]
    with torch.no_grad():
        got = fclip.encode_image(image, boxes=[torch.tensor([box])])
        ref = naive_region_feature(vit_b16, image[0], box, 0.2, 100.0, {8, 9, 10, 11}, "cls")
    assert (got[0].double() - ref).abs().max().item() <= TOL


def _regions_with_zero_bias(fclip, images, per_image, layers=None, form="cls"):
    """falip's biased computation itself (not the alpha == 0 shortcut) with an all-zero bias."""
    length = 1 + fclip.grid_size[0] * fclip.grid_size[1]
    n = images.shape[0]
    index = torch.arange(n).repeat_interleave(per_image)
    return fclip._encode_regions(images, torch.zeros(len(index), length), index, layers or fclip.layers, form)


@pytest.mark.parametrize("form", ["cls", "all", "diag"])
@pytest.mark.parametrize("layers", [(0,), (3, 8, 11), (10, 11), (11,)])
def test_biased_computation_with_zero_bias_is_vanilla_clip(vit_b16, form, layers):
    torch.manual_seed(3)
    images = torch.randn(2, 3, 224, 224)
    fclip = falip.FovealCLIP(vit_b16, layers=layers, form=form)
    with torch.no_grad():
        plain = vit_b16.encode_image(images)
        got = _regions_with_zero_bias(fclip, images, 2)
    assert (got - plain.repeat_interleave(2, dim=0)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("form", ["cls", "all", "diag"])
def test_zero_alpha_is_vanilla_clip(vit_b16, form):
    torch.manual_seed(3)
    images = torch.randn(2, 3, 224, 224)
    fclip = falip.FovealCLIP(vit_b16, alpha=0.0, form=form, layers=(3, 8, 11))
    boxes = [torch.tensor([[0.0, 0.0, 50.0, 50.0], [60.0, 10.0, 200.0, 220.0]]), torch.tensor([[1.0, 2.0, 3.0, 4.0]])]
    with torch.no_grad():
        plain = vit_b16.encode_image(images)
        got = fclip.encode_image(images, boxes=boxes)
        masks = [torch.zeros(1, 224, 224, dtype=torch.bool)] * 2
        masks[0][0, 100:120, 7:9] = True
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
