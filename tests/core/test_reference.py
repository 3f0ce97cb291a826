"""The reference forward (the library's own blocks + additive mask) and its hooks (plans: tests/core/test_plan.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from falip.core.reference import reference_forward
from falip.core.regions import Regions
from falip.towers import wrap
from support.naive import naive_region_feature
from support.tiny import make_tiny_clip
from support.towers import build

BOXES = {
    "generic": [[0.0, 0.0, 12.0, 20.0], [9.0, 9.0, 31.0, 30.0]],
    "one-cell": [[8.0, 16.0, 16.0, 24.0]],
    "whole": [[0.0, 0.0, 32.0, 32.0]],
    "fractional-thin": [[3.5, 17.25, 4.0, 25.0], [30.9, 0.1, 40.0, 2.0]],
}


def _model(options: str, seed: int = 0):
    """The tiny open_clip tower ``open_clip-<options>`` of the shared registry (support.towers)."""
    return build(f"open_clip-{options}", seed)


def _input_regions(boxes_per_image):
    return [Regions(b, image_size=(32, 32), frame="input") for b in boxes_per_image]


# every plan against the reference, over towers, forms, layer sets and box shapes: tests/core/test_towers.py


def test_reference_is_exact_against_the_naive_loops():
    """Two independent implementations: open_clip's blocks + mask (float64) vs loops by hand."""
    model = make_tiny_clip(layers=3).double()
    torch.manual_seed(2)
    image = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    box = [5.0, 3.0, 27.0, 19.0]
    for form in ("cls", "all", "diag"):
        ref = reference_forward(
            wrap(model), image, _input_regions([[box]]), alpha=4.0, sigma=2.0, layers=(1, 2), form=form
        )
        naive = naive_region_feature(model, image[0], box, 4.0, 2.0, {1, 2}, form)
        assert (ref.features[0] - naive).abs().max().item() <= 1e-10


@pytest.mark.parametrize("options", ["mha", "qknorm-headscale-attnnorm"])
def test_hooks_decompose_the_cls_output(options):
    model = _model(options, seed=3)
    torch.manual_seed(3)
    images = torch.randn(2, 3, 32, 32)
    regions = _input_regions([BOXES["generic"], BOXES["one-cell"]])
    with torch.no_grad():
        out = reference_forward(
            wrap(model), images, regions, alpha=2.0, sigma=1.0, layers=(2, 3), record="all", tokens="all"
        )
        cls_only = reference_forward(wrap(model), images, regions, alpha=2.0, sigma=1.0, layers=(2, 3), record=[2])
    blocks = model.visual.transformer.resblocks
    r, heads, length = 3, blocks[0].attn.num_heads, 1 + 16
    for layer in range(4):
        probs, per_head = out.attention[layer], out.head_outputs[layer]
        assert probs.shape == (r, heads, length, length) and per_head.shape == (r, heads, length, 64)
        torch.testing.assert_close(probs.sum(-1), torch.ones(r, heads, length))
        # sum over heads + out_proj bias, through ls_1 / ln_attn, is the block's attention term for [CLS]
        attn_out = per_head[:, :, 0].sum(1) + out.out_proj_bias[layer]
        msa = blocks[layer].ls_1(getattr(blocks[layer], "ln_attn", torch.nn.Identity())(attn_out))
        torch.testing.assert_close(msa, out.msa_cls[layer], atol=1e-5, rtol=1e-5)
    # Eq. 5: [X_L]cls = [X_0]cls + sum_l MSA_l + sum_l MLP_l
    torch.testing.assert_close(
        out.cls_stream[0] + out.msa_cls.sum(0) + out.mlp_cls.sum(0), out.cls_stream[-1], atol=1e-5, rtol=1e-5
    )
    # the bias moves [CLS] attention onto the region's tokens in the biased blocks only
    roa_tokens = 1 + torch.tensor([0, 1, 4, 5, 8, 9])  # box (0, 0, 12, 20) on the 4x4 grid of 8-px cells
    plain = reference_forward(wrap(model), images, None, record=[1, 2])
    assert out.attention[2][0, :, 0, roa_tokens].sum() > plain.attention[2][0, :, 0, roa_tokens].sum() + 0.1
    torch.testing.assert_close(out.attention[1][0, :, 0], plain.attention[1][0, :, 0])
    assert cls_only.attention[2].shape == (r, heads, 1, length) and set(cls_only.attention) == {2}


def test_reference_without_regions_and_with_zero_alpha_is_open_clip():
    model = make_tiny_clip()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model.encode_image(images)
        torch.testing.assert_close(reference_forward(wrap(model), images).features, plain, atol=1e-6, rtol=1e-6)
        zero = reference_forward(wrap(model), images, _input_regions([BOXES["generic"], BOXES["whole"]]), alpha=0.0)
    torch.testing.assert_close(zero.features, plain[[0, 0, 1]], atol=1e-6, rtol=1e-6)


def test_inner_norm_has_no_per_head_outputs():
    model = _model("innernorm-fcnorm")
    out = reference_forward(wrap(model), torch.randn(1, 3, 32, 32), record="all")
    assert out.head_outputs == {} and set(out.attention) == {0, 1, 2, 3}


def test_masks_and_boxes_agree_in_the_reference():
    model = make_tiny_clip()
    images = torch.randn(1, 3, 32, 32)
    mask = np.zeros((1, 32, 32), dtype=bool)
    mask[0, 0:20, 0:12] = True
    by_mask = reference_forward(wrap(model), images, [Regions(masks=mask, frame="input")], alpha=2.0, layers=(1, 2))
    by_box = reference_forward(wrap(model), images, _input_regions([[[0, 0, 12, 20]]]), alpha=2.0, layers=(1, 2))
    torch.testing.assert_close(by_mask.features, by_box.features)
