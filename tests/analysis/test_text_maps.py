"""Text-conditioned head maps (Fig. 6; Gandelsman et al. 2024): per-token terms sum back to the features,
agree with the per-head decomposition and with a naive loop, and draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import falip
from falip.analysis.heads import decompose
from falip.analysis.text_maps import plot_text_head_maps, text_head_maps, token_contributions
from falip.core.errors import FalipError
from falip.core.mask import foveal_profile, full_mask, regions_to_roa
from falip.core.regions import Regions
from falip.towers import wrap
from support import towers as tiny_towers
from support.tiny import make_tiny_clip

OPTIONS = {"plain": {}, "layerscale": dict(ls_init_value=0.5), "qknorm-headscale": dict(qk_norm=True, scale_heads=True)}
BOXES = [[[0.0, 0.0, 12.0, 20.0], [9.0, 9.0, 31.0, 30.0]], [[8.0, 16.0, 16.0, 24.0]]]
SETTINGS = dict(alpha=3.0, sigma=2.0, biased_layers=(2, 3))


def _tiny(options: str, seed: int = 1):
    model = make_tiny_clip(layers=4, seed=seed, **OPTIONS[options])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial layer scales, head scales and final norm
        for block in model.visual.transformer.resblocks:
            for ls in (block.ls_1, block.ls_2):
                if hasattr(ls, "gamma"):
                    ls.gamma.uniform_(0.2, 1.5, generator=gen)
            if getattr(block.attn, "head_scale", None) is not None:
                block.attn.head_scale.uniform_(0.5, 1.5, generator=gen)
        model.visual.ln_post.weight.uniform_(0.5, 1.5, generator=gen)
        model.visual.ln_post.bias.normal_(0, 0.3, generator=gen)
    return model


def _regions(boxes):
    return [Regions(b, image_size=(32, 32), frame="input") for b in boxes]


@pytest.mark.parametrize("options", list(OPTIONS))
def test_terms_sum_back_to_the_features_and_to_the_head_decomposition(options):
    """Sum over tokens, heads and blocks + the other terms = the tower's features (float32, 1e-5 of
    values ~1); summed over tokens, a head's terms are heads.py's ls_1(G_h) through the same readout."""
    model = _tiny(options)
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    for regions in (None, _regions(BOXES)):
        c = token_contributions(model, images, regions, **SETTINGS)
        d = decompose(model, images, regions, **SETTINGS)
        rows = 2 if regions is None else 3
        assert c.tokens.shape == (4, rows, 4, 17, 32) and c.split_layers == (0, 1, 2, 3)
        want = falip.FovealCLIP(model, alpha=3.0, sigma=2.0, layers=(2, 3)).encode_image(images, regions=regions)
        torch.testing.assert_close(c.reconstruct(), c.features, atol=1e-5, rtol=0)
        torch.testing.assert_close(c.features, want, atol=1e-5, rtol=0)
        # per head, summed over tokens: heads.py's decomposition carried by the frozen-std readout
        ln = model.visual.ln_post
        sigma = torch.sqrt(d.output.var(-1, unbiased=False) + ln.eps)[:, None, None]
        heads = d.heads - d.heads.mean(-1, keepdim=True)
        expected = (heads * ln.weight / sigma) @ model.visual.proj  # [layers, R, heads, D]
        torch.testing.assert_close(c.tokens.sum(3), expected, atol=1e-5, rtol=0)
    # only some blocks split: the others enter whole
    c2 = token_contributions(model, images, split_layers=[1])
    assert c2.tokens.shape[0] == 1
    torch.testing.assert_close(c2.reconstruct(), c2.features, atol=1e-5, rtol=0)


def _naive_block_terms(model, image, region, layer, alpha, sigma, biased):
    """a_{h,t} (W_out,h v_{h,t}) for the [CLS] query, loop over heads and tokens, through ls_1, ln_post
    (final [CLS]'s std frozen) and proj: ``[heads, L, D]`` float64. Open_clip MHA blocks only."""
    visual = model.visual
    x = visual._embeds(image[None]).double()[0]  # [L, C]
    length, c = x.shape
    bias = torch.zeros(length, length, dtype=torch.float64)
    if region is not None:
        roa = regions_to_roa(region, (4, 4), (8, 8))
        bias = full_mask(foveal_profile(roa, alpha, sigma), "cls", 1)[0].double()
    terms = None
    for i, block in enumerate(visual.transformer.resblocks):
        attn = block.attn
        heads = attn.num_heads
        d = c // heads
        ln_1 = block.ln_1
        h = torch.nn.functional.layer_norm(x, (c,), ln_1.weight.double(), ln_1.bias.double(), ln_1.eps)
        w_in, b_in = attn.in_proj_weight.double(), attn.in_proj_bias.double()
        q, k, v = (h @ w_in[j * c : (j + 1) * c].T + b_in[j * c : (j + 1) * c] for j in range(3))
        w_out = attn.out_proj.weight.double()
        if i == layer:
            terms = torch.zeros(heads, length, c, dtype=torch.float64)
            for hd in range(heads):
                s = slice(hd * d, (hd + 1) * d)
                logits = torch.stack([q[0, s] @ k[t, s] / d**0.5 for t in range(length)])
                if i in biased:
                    logits = logits + bias[0]
                a = torch.softmax(logits, 0)
                for t in range(length):
                    terms[hd, t] = a[t] * (w_out[:, s] @ v[t, s])
            gamma = getattr(block.ls_1, "gamma", None)
            if gamma is not None:
                terms = terms * gamma.double()
        xf = x.float()[None]
        with torch.no_grad():  # the library's own block moves the stream on; the terms above are the loop's
            xf = block(xf, attn_mask=bias.float()) if i in biased else block(xf)
        x = xf[0].double()
    ln = visual.ln_post
    final = x[0]
    std = torch.sqrt(final.var(unbiased=False) + ln.eps)
    terms = terms - terms.mean(-1, keepdim=True)
    return (terms * ln.weight.double() / std) @ visual.proj.double()


@pytest.mark.parametrize("region", [False, True])
def test_block_terms_match_a_naive_loop(region):
    """One block's per-token, per-head terms against loops over heads and tokens (float64 loop vs the
    float32 forward: 1e-4 absolute on terms of size ~0.01-1)."""
    model = _tiny("layerscale", seed=3)
    torch.manual_seed(2)
    image = torch.randn(3, 32, 32)
    r = Regions([[4.0, 8.0, 20.0, 28.0]], image_size=(32, 32), frame="input") if region else None
    c = token_contributions(model, image[None], None if r is None else [r], split_layers=[3], **SETTINGS)
    with torch.no_grad():
        naive = _naive_block_terms(model, image, r, 3, 3.0, 2.0, (2, 3))
    got = c.block(3)[0].double()
    assert got.shape == naive.shape == (4, 17, 32)
    torch.testing.assert_close(got, naive, atol=1e-4, rtol=0)
    assert naive.abs().max() > 1e-2  # the comparison is not of zeros


def test_text_maps_add_up_to_the_score_and_falip_changes_them():
    """The patch maps plus the [CLS] term of every block plus the other terms, dotted with t, give
    features . t; FALIP's bias changes a biased block's map."""
    model = _tiny("plain")
    torch.manual_seed(0)
    images = torch.randn(1, 3, 32, 32)
    text = torch.randn(32)
    t = text / text.norm()
    for regions in (None, _regions(BOXES[1:])):
        c = token_contributions(model, images, regions, **SETTINGS)
        total = (c.reconstruct() - c.tokens.sum(dim=(0, 2, 3)))[0].double() @ t.double()
        for layer in range(4):
            maps, cls = c.text_maps(text, layer)
            assert maps.shape == (1, 4, 4, 4) and cls.shape == (1, 4)
            total = total + maps.sum() + cls.sum()
        assert abs(float(total) - float(c.features[0].double() @ t.double())) < 1e-5
    plain = token_contributions(model, images, **SETTINGS).text_maps(text, 3)[0]
    biased = token_contributions(model, images, _regions(BOXES[1:]), **SETTINGS).text_maps(text, 3)[0]
    assert np.abs(plain - biased).max() > 1e-3
    with pytest.raises(FalipError, match="was not decomposed"):
        token_contributions(model, images, split_layers=[0]).text_maps(text, 2)
    with pytest.raises(FalipError, match="32"):
        c.text_maps(torch.randn(7), 3)


def test_attention_pooled_towers_are_refused_with_the_reason():
    model = tiny_towers.build("map-prefix0")
    with pytest.raises(FalipError, match="attention probe"):
        token_contributions(model, torch.randn(1, 3, 32, 32))


def _library_tower(name):
    from support import tiny_towers as lib

    if name == "timm-vit":
        return lib.make_timm_clip("vit", "token", seed=1)
    if name == "timm-eva":
        return lib.make_timm_clip("eva", "token", seed=1)
    if name.startswith("hf:"):
        return lib.make_hf_clip(name[3:], seed=1)
    return tiny_towers.build(name)


@pytest.mark.parametrize(
    "name",
    ["open_clip-mha", "open_clip-layerscale", "timm-vit", "timm-eva", "hf:CLIPModel", "hf:CLIPVisionModel"],
)
def test_readout_reproduces_the_tower_head(name):
    """Readout (LayerNorm + projection) is each library's own head, on the [CLS] towers of every adapter."""
    tower = wrap(_library_tower(name))
    ro = tower.readout()
    x = torch.randn(3, 5, tower.width)
    cls = x[:, 0]
    normed = torch.nn.functional.layer_norm(cls, (tower.width,), ro.weight, ro.bias, ro.eps)
    want = normed if ro.projection is None else normed @ ro.projection
    want = want if ro.projection_bias is None else want + ro.projection_bias
    torch.testing.assert_close(tower.head(x), want, atol=1e-6, rtol=0)
    # and the per-token terms of every block sum back to that tower's features (EVA's sub-LN mixes the
    # heads: no per-head split, its blocks enter whole)
    h, w = tower.image_size
    region = Regions([[0.0, 0.0, w / 2, h / 2]], image_size=(w, h), frame="input")
    split = [] if name == "timm-eva" else None
    c = token_contributions(tower, torch.randn(1, 3, h, w), [region], split_layers=split, alpha=2.0, sigma=3.0)
    torch.testing.assert_close(c.reconstruct(), c.features, atol=1e-5, rtol=0)


def test_shipped_model_maps_and_figure():
    fclip, preprocess, tokenizer = falip.load("falip-tiny")
    image = Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8))
    region = Regions([[10.0, 5.0, 40.0, 40.0]], image_size=image.size)
    maps = text_head_maps(fclip, preprocess, image, "a red square", tokenizer, region, layer=-1)
    heads = fclip.tower.parts(3).heads
    gh, gw = fclip.grid_size
    assert maps.layer == 3 and maps.clip.shape == maps.falip.shape == (heads, gh, gw)
    assert maps.roa.shape == (gh, gw) and maps.roa.any() and not maps.roa.all()
    data = maps.to_json()
    assert data["block"] == 4 and len(data["falip"]["maps"]) == heads
    fig = plot_text_head_maps(maps, head=1)
    assert type(fig).__name__ == "Figure" and len(fig.axes) >= 3
    with pytest.raises(FalipError, match="head must be"):
        plot_text_head_maps(maps, head=heads)
    alone = text_head_maps(fclip, preprocess, image, "a red square", tokenizer, None, layer=0)
    assert alone.falip is None and alone.layer == 0
    assert len(plot_text_head_maps(alone).axes) >= 2


def test_prompted_and_unleashed_maps_fig6_middle():
    """Fig. 6, middle column: the original image, RedCircle and the unleashed RedCircle (Sec. 4.4,
    Eq. 6). Checked against core.unleash's own path (attention_terms, the block's whole attention
    term, not split per token): in an unleashed block the unleashed per-token maps plus the [CLS]
    terms plus the out-projection bias add up to M_u(2 MSA'_l - MSA_l) . t, with M_u the readout at
    the unleashed [CLS]'s std (float64 sums of float32 terms, 1e-4); the score is the unleashed
    features . t; a block outside the unleashed ones gets the prompted maps rescaled by sigma'/sigma_u."""
    from falip.core.unleash import attention_terms, unleash_cls, unleash_features

    fclip, preprocess, tokenizer = falip.load("falip-tiny")
    image = Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8))
    region = Regions([[10.0, 5.0, 40.0, 40.0]], image_size=image.size)
    maps = text_head_maps(fclip, preprocess, image, "a red circle", tokenizer, region, prompt="circle", unleash=True)
    assert [p[0] for p in maps.panels()] == ["clip", "falip", "prompted", "unleashed"]
    assert maps.unleashed_blocks == (0, 1, 2, 3)  # the last 4 of falip-tiny's 4
    assert np.abs(maps.prompted - maps.clip).max() > 1e-4 and np.abs(maps.unleashed - maps.prompted).max() > 1e-4

    tower = fclip.tower
    ro = tower.readout()
    x = preprocess(image)[None]
    from falip.analysis.maps import prompted_image

    xp = preprocess.to_tensor(prompted_image(preprocess, image, region, "circle"))[None]
    t = fclip.encode_text(tokenizer(["a red circle"]))[0].detach().double()
    t = t / t.norm()
    original, prompted = attention_terms(tower, x, k=4), attention_terms(tower, xp, k=4)
    cls_u = unleash_cls(prompted, original)[0].double()
    sigma_u = torch.sqrt(cls_u.var(unbiased=False) + ro.eps)

    def m_u(c):
        c = c.double() - c.double().mean()
        return (c * ro.weight.double() / sigma_u) @ ro.projection.double()

    layer = maps.layer  # 3, the last block
    whole = m_u(2 * prompted.msa[layer, 0] - original.msa[layer, 0]) @ t
    bias = tower.parts(layer).out_bias
    per_token = maps.unleashed.sum() + maps.cls_unleashed.sum() + float(m_u(bias.detach()) @ t)
    assert abs(per_token - float(whole)) < 1e-4 and abs(float(whole)) > 1e-3
    feats_u = unleash_features(tower, x, xp)[0].double()
    assert maps.score_unleashed == pytest.approx(float(feats_u @ t), abs=1e-5)
    # k=1: block 3 of 4 unleashed only; block 1 gets the prompted maps through M_u
    one = text_head_maps(
        fclip, preprocess, image, "a red circle", tokenizer, region, layer=0, prompt="circle", unleash=True, k=1
    )
    sigma_p = float(torch.sqrt(prompted.cls[0].double().var(unbiased=False) + ro.eps))
    sigma_u1 = float(
        torch.sqrt(
            unleash_cls(attention_terms(tower, xp, k=1), attention_terms(tower, x, k=1))[0].double().var(unbiased=False)
            + ro.eps
        )
    )
    np.testing.assert_allclose(one.unleashed, one.prompted * sigma_p / sigma_u1, rtol=1e-6, atol=1e-9)
    assert "unleashed" in one.to_json() and one.to_json()["unleashed"]["blocks"] == [4]
    assert len(plot_text_head_maps(maps, head="mean").axes) >= 5
    with pytest.raises(FalipError, match="needs a visual prompt"):
        text_head_maps(fclip, preprocess, image, "x", tokenizer, region, unleash=True)
    with pytest.raises(FalipError, match="drawn on a region"):
        text_head_maps(fclip, preprocess, image, "x", tokenizer, None, prompt="circle")
