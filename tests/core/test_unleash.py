"""Unleashed visual prompts (Eq. 6): the core terms, identities, a hand computation, and the scorer's methods."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import falip
from falip import FovealCLIP, Preprocess, Regions
from falip.core.reference import reference_forward
from falip.core.unleash import attention_terms, project, unleash_cls, unleash_features
from falip.prompts import edits as vp
from falip.prompts.registry import METHODS, MethodSpec, PromptParams, register_method
from falip.scoring import RegionScorer
from falip.towers import wrap
from support.tiny import make_tiny_clip

OPTIONS = {
    "mha": {},
    "layerscale": dict(ls_init_value=0.5),
    "qknorm-headscale-attnnorm": dict(qk_norm=True, scale_heads=True, scale_attn=True),
    "innernorm": dict(scale_attn_inner=True),
}
BOXES = [[[0.0, 0.0, 12.0, 20.0], [9.0, 9.0, 31.0, 30.0]], [[8.0, 16.0, 16.0, 24.0]]]


def _tiny(options: str = "layerscale", layers: int = 4):
    model = make_tiny_clip(layers=layers, seed=2, **OPTIONS[options])
    with torch.no_grad():
        for block in model.visual.transformer.resblocks:
            for ls in (block.ls_1, block.ls_2):
                if hasattr(ls, "gamma"):
                    ls.gamma.uniform_(0.2, 1.5)
    return model


def _regions(boxes):
    return [Regions(b, image_size=(32, 32), frame="input") for b in boxes]


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("form", ["cls", "all", "diag"])
def test_attention_terms_equal_the_reference_forward(options, form):
    model = _tiny(options)
    torch.manual_seed(1)
    images = torch.randn(2, 3, 32, 32)
    ref = reference_forward(wrap(model), images, _regions(BOXES), alpha=3.0, sigma=1.5, layers=(1, 3), form=form)
    for k in (1, 4):
        t = attention_terms(wrap(model), images, _regions(BOXES), k=k, alpha=3.0, sigma=1.5, layers=(1, 3), form=form)
        assert t.blocks == tuple(range(4 - k, 4)) and t.msa.shape == (k, 3, 64)
        torch.testing.assert_close(t.cls, ref.cls_stream[-1], atol=1e-5, rtol=0)
        torch.testing.assert_close(t.msa, ref.msa_cls[4 - k :], atol=1e-5, rtol=0)
    plain = attention_terms(wrap(model), images, k=2)
    torch.testing.assert_close(project(wrap(model), plain.cls), model.encode_image(images), atol=1e-5, rtol=0)


def test_unleashing_the_image_itself_gives_its_own_feature():
    model = _tiny("layerscale")
    torch.manual_seed(2)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model.encode_image(images)
        same = unleash_features(wrap(model), images, images.clone())
        torch.testing.assert_close(same, plain, atol=1e-5, rtol=0)
        repeated = unleash_features(wrap(model), images, images[[1, 0, 1]], index=[1, 0, 1], k=2)
        torch.testing.assert_close(repeated, plain[[1, 0, 1]], atol=1e-5, rtol=0)
        # FALIP as the prompt, at alpha 0, is no prompt either
        zero = unleash_features(wrap(model), images, images, [0, 0, 1], prompted_regions=_regions(BOXES), alpha=0.0)
        torch.testing.assert_close(zero, plain[[0, 0, 1]], atol=1e-5, rtol=0)


def test_unleash_errors():
    model = _tiny("mha", layers=3)
    images = torch.randn(2, 3, 32, 32)
    for k in (0, 4, 1.5, True):
        with pytest.raises(falip.FalipError, match="k"):
            attention_terms(wrap(model), images, k=k)
    assert attention_terms(wrap(model), images).blocks == (0, 1, 2)  # default: the last 4, or all of a shallower tower
    with pytest.raises(falip.FalipError, match="pass index"):
        unleash_features(wrap(model), images, images[:1])
    a, b = attention_terms(wrap(model), images, k=1), attention_terms(wrap(model), images, k=2)
    with pytest.raises(falip.FalipError, match="different blocks"):
        unleash_cls(a, b)


# ------------------------------------------------------------------------------------- scorer
TEXTS = ["a red square", "a blue circle", "a green star"]
IMAGE_BOXES = [[2.0, 3.0, 30.0, 25.0], [30.0, 10.0, 62.0, 46.0]]


@pytest.fixture(scope="module")
def setup():
    model = _tiny("layerscale")
    fclip = FovealCLIP(model, alpha=2.0, sigma=1.5, layers=(2, 3))
    tok = open_clip.get_tokenizer("ViT-B-16", context_length=16)
    return fclip, Preprocess(32), tok


def _image(seed: int = 0, w: int = 64, h: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def test_unleash_circle_by_hand_for_one_region(setup):
    """Eq. 6 written out from the reference forward's per-head outputs G_h (LayerScale gains included)."""
    fclip, pre, tok = setup
    model = fclip.model
    img = _image(3)
    box = IMAGE_BOXES[1]
    box_in = tuple(float(v) for v in pre.map_boxes([box], img.size)[0])
    x = pre(img)[None]
    x_circle = pre.to_tensor(vp.red_circle(pre.resize(img), box_in, vp.RED, 2.0))[None]
    with torch.no_grad():
        g = reference_forward(wrap(model), x, record="all")
        g_prime = reference_forward(wrap(model), x_circle, record="all")
        blocks = model.visual.transformer.resblocks
        delta = sum(
            blocks[i].ls_1.gamma * (g_prime.head_outputs[i][0, :, 0] - g.head_outputs[i][0, :, 0]).sum(0)
            for i in (2, 3)
        )
        by_hand = model.visual.ln_post(g_prime.cls_stream[-1, 0] + delta) @ model.visual.proj
        got = RegionScorer(fclip, pre, tok).features([img], [[box]], "unleash@2:circle")
        circle = RegionScorer(fclip, pre, tok).features([img], [[box]], "circle")
    torch.testing.assert_close(got[0], by_hand, atol=1e-5, rtol=0)
    assert (got[0] - circle[0]).abs().max() > 1e-2  # unleashing changes the circle's feature
    torch.testing.assert_close(circle[0], model.encode_image(x_circle)[0], atol=1e-5, rtol=0)


def test_unleashing_a_prompt_that_changes_nothing_is_the_whole_image(setup):
    fclip, pre, tok = setup
    spec = register_method(MethodSpec("same", "edit", "no change", lambda im, b, p: im.copy(), "input"))
    try:
        sc = RegionScorer(fclip, pre, tok)
        img = _image(4)
        whole = sc.features([img], [IMAGE_BOXES], "none")
        for method in ("unleash:same", "unleash@1:same"):
            torch.testing.assert_close(sc.features([img], [IMAGE_BOXES], method), whole, atol=1e-5, rtol=0)
        zero = sc.with_options(config=sc.config.override(alpha=0.0))
        torch.testing.assert_close(zero.features([img], [IMAGE_BOXES], "unleash:falip"), whole, atol=1e-5, rtol=0)
        assert (sc.features([img], [IMAGE_BOXES], "unleash:falip") - whole).abs().max() > 1e-2
    finally:
        METHODS.pop(spec.name)


def test_unleash_falip_is_falip_plus_its_delta(setup):
    fclip, pre, tok = setup
    img = _image(5)
    sc = RegionScorer(fclip, pre, tok)
    regions = [pre.map_regions(Regions(IMAGE_BOXES, image_size=img.size))]
    x = pre(img)[None]
    with torch.no_grad():
        want = unleash_features(fclip, x, x, [0, 0], prompted_regions=regions, k=4, alpha=2.0, sigma=1.5, layers=(2, 3))
        biased = attention_terms(fclip, x, regions, k=4, alpha=2.0, sigma=1.5, layers=(2, 3))
        plain = attention_terms(fclip, x, k=4)
    torch.testing.assert_close(sc.features([img], [IMAGE_BOXES], "unleash:falip"), want, atol=1e-5, rtol=0)
    # blocks 0-1 are not biased: their terms are the same, only blocks 2-3 add a delta
    torch.testing.assert_close(biased.msa[:2], plain.msa[:2, [0, 0]], atol=1e-6, rtol=0)
    torch.testing.assert_close(project(fclip, biased.cls), fclip.encode_image(x, regions=regions), atol=1e-5, rtol=0)


def test_unleash_scores_batches_params_and_ensembles(setup):
    fclip, pre, tok = setup
    imgs = [_image(i, w=40 + 8 * i) for i in range(3)]
    boxes = [IMAGE_BOXES, [], [[0, 0, 10, 10], [5, 5, 39, 47], [3, 3, 30, 30]]]
    one = RegionScorer(fclip, pre, tok, batch_size=128)
    small = RegionScorer(fclip, pre, tok, batch_size=2)
    for method in ("unleash:circle", "unleash:blur&circle", "unleash@3:falip&box"):
        a = one.score_many(imgs, boxes, TEXTS, method=method)
        b = small.score_many(imgs, boxes, TEXTS, method=method)
        assert [tuple(s.shape) for s in a] == [(2, 3), (0, 3), (3, 3)]
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
    # scores are logit_scale * cosine with the text features
    feats = one.features(imgs[:1], boxes[:1], "unleash:circle")
    text = F.normalize(fclip.encode_text(tok(TEXTS)), dim=-1)
    want = fclip.model.logit_scale.exp() * F.normalize(feats, dim=-1) @ text.T
    torch.testing.assert_close(one.score(imgs[0], boxes[0], TEXTS, method="unleash:circle"), want, atol=1e-4, rtol=0)
    # the ensemble is the sum of its terms
    sum_ = one.score(imgs[0], boxes[0], TEXTS, method="falip+unleash:circle")
    parts = one.score(imgs[0], boxes[0], TEXTS, method="falip") + one.score(imgs[0], boxes[0], TEXTS, "unleash:circle")
    torch.testing.assert_close(sum_, parts, atol=1e-4, rtol=0)
    # k: from the params unless the term gives it
    k2 = RegionScorer(fclip, pre, tok, params=PromptParams(unleash_k=2))
    torch.testing.assert_close(
        k2.features(imgs[:1], boxes[:1], "unleash:circle"), one.features(imgs[:1], boxes[:1], "unleash@2:circle")
    )
    assert (k2.features(imgs[:1], boxes[:1], "unleash:circle") - feats).abs().max() > 1e-3
    with pytest.raises(falip.FalipError, match="k must be between 1 and the tower's 4 blocks, got 9"):
        one.score(imgs[0], boxes[0], TEXTS, method="unleash@9:circle")


def test_unleash_through_the_rec_harness(tmp_path, capsys):
    from falip.cli import main
    from falip.data import synthetic

    synthetic.write_reclip_rec(synthetic.rec_examples(seed=8, n_scenes=3), tmp_path, split="val")
    argv = ["rec", "--data", str(tmp_path / "val.jsonl"), "--images", str(tmp_path / "images"), "--workers", "0",
            "--method", "falip+unleash:blur&circle", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 0
    assert "falip+unleash:blur&circle" in (tmp_path / "run" / "run.json").read_text()
    assert (tmp_path / "run" / "summary.json").is_file()
    capsys.readouterr()
