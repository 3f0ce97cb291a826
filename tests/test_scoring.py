"""RegionScorer: method grammar, batching, caching, and equality with direct calls."""

from __future__ import annotations

import warnings

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from falip import FalipError, FovealCLIP, Preprocess, Regions
from falip.prompts import edits as vp
from falip.prompts.registry import (
    METHODS,
    MethodSpec,
    PromptParams,
    available_methods,
    register_method,
)
from falip.scoring import RegionScorer

torch.set_num_threads(1)

TEXTS = ["a red square", "a blue circle", "a green star"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32, "mlp_ratio": 2},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    ).eval()
    fclip = FovealCLIP(model, alpha=2.0)
    pre = Preprocess(32)
    tok = open_clip.get_tokenizer("ViT-B-16", context_length=16)
    return fclip, pre, tok


def _image(seed: int = 0, w: int = 64, h: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


BOXES = [[2.0, 3.0, 30.0, 25.0], [30.0, 10.0, 62.0, 46.0], [10.0, 20.0, 20.0, 30.0]]


def _scorer(setup, **kw) -> RegionScorer:
    fclip, pre, tok = setup
    return RegionScorer(fclip, pre, tok, **kw)


def _expected(setup, feats: torch.Tensor, texts: list[str]) -> torch.Tensor:
    fclip, _, tok = setup
    t = F.normalize(fclip.encode_text(tok(texts)), dim=-1)
    return fclip.model.logit_scale.exp() * F.normalize(feats, dim=-1) @ t.T


ALL_TERMS = available_methods() + [
    "falip+circle+blur",
    "blur&circle",
    "falip&circle",
    "gray&box",
    "unleash:circle",
    "falip+unleash@1:blur&circle",
]


@pytest.mark.parametrize("method", ALL_TERMS)
def test_shapes(setup, method):
    s = _scorer(setup).score(_image(), BOXES, TEXTS, method=method)
    assert s.shape == (3, 3) and s.dtype == torch.float32 and torch.isfinite(s).all()


def test_none_same_score_every_box(setup):
    s = _scorer(setup).score(_image(), BOXES, TEXTS, method="none")
    assert torch.allclose(s, s[0:1].expand_as(s))


@torch.no_grad()
def test_falip_equals_direct_call(setup):
    fclip, pre, _ = setup
    img = _image()
    s = _scorer(setup).score(img, BOXES, TEXTS, method="falip")
    feats = fclip.encode_image(pre(img)[None], boxes=[pre.map_boxes(BOXES, img.size)])
    assert torch.allclose(s, _expected(setup, feats, TEXTS), atol=1e-5)
    # and FALIP actually changes something relative to the whole image
    assert not torch.allclose(s, _scorer(setup).score(img, BOXES, TEXTS, method="none"), atol=1e-3)


@torch.no_grad()
def test_edit_methods_equal_manual_edits(setup):
    """circle/box at model-input scale; blur/gray/cpt on the original, then resized; crop from the original."""
    fclip, pre, _ = setup
    img = _image(1)
    mapped = pre.map_boxes(BOXES, img.size)
    sc = _scorer(setup)
    manual = {
        "circle": [pre.to_tensor(vp.red_circle(pre.resize(img), b.tolist())) for b in mapped],
        "box": [pre.to_tensor(vp.colored_box(pre.resize(img), b.tolist())) for b in mapped],
        "blur": [pre(vp.reverse_blur(img, b, 100.0, "ellipse")) for b in BOXES],
        "blur-box": [pre(vp.reclip_blur(img, b, 100.0, "box")) for b in BOXES],
        "redcircle": [pre(vp.authors_circle(img, b)) for b in BOXES],
        "redcircle-blur": [pre(vp.authors_red_circle(img, b, 100.0)) for b in BOXES],
        "crop-reclip": [pre(vp.reclip_crop(img, b)) for b in BOXES],
        "gray": [pre(vp.grayscale_outside(img, b)) for b in BOXES],
        "crop": [pre(vp.crop(img, b)) for b in BOXES],
        "blur&circle": [
            pre.to_tensor(vp.red_circle(pre.resize(vp.reverse_blur(img, b)), m.tolist())) for b, m in zip(BOXES, mapped)
        ],
    }
    for method, tensors in manual.items():
        feats = fclip.encode_image(torch.stack(tensors))
        assert torch.allclose(sc.score(img, BOXES, TEXTS, method=method), _expected(setup, feats, TEXTS), atol=1e-5), (
            method
        )
    # CPT: shaded original and the rewritten text
    feats = fclip.encode_image(torch.stack([pre(vp.reclip_shade(img, b)) for b in BOXES]))
    want = _expected(setup, feats, [vp.cpt_text(t) for t in TEXTS])
    assert torch.allclose(sc.score(img, BOXES, TEXTS, method="cpt"), want, atol=1e-5)
    # FALIP on the circled image, one box per edited image
    circled = torch.stack(manual["circle"])
    feats = fclip.encode_image(circled, boxes=[m[None] for m in mapped])
    assert torch.allclose(sc.score(img, BOXES, TEXTS, method="falip&circle"), _expected(setup, feats, TEXTS), atol=1e-5)


def test_prompt_params_used(setup):
    img = _image(2)
    a = _scorer(setup).score(img, BOXES, TEXTS, method="circle")
    b = _scorer(setup, params=PromptParams(circle_color=(0, 255, 0), circle_thickness=3)).score(
        img, BOXES, TEXTS, method="circle"
    )
    assert not torch.allclose(a, b)


def test_ensemble_is_sum_of_members(setup):
    sc = _scorer(setup)
    img = _image(3)
    total = sc.score(img, BOXES, TEXTS, method="falip+circle+blur")
    parts = sum(sc.score(img, BOXES, TEXTS, method=m) for m in ("falip", "circle", "blur"))
    assert torch.allclose(total, parts, atol=1e-5)


def test_text_cache(setup):
    fclip, pre, tok = setup
    sc = RegionScorer(fclip, pre, tok, template="a photo of {}.")
    calls: list[int] = []
    orig = fclip.encode_text

    def counting(tokens, *a, **k):
        calls.append(tokens.shape[0])
        return orig(tokens, *a, **k)

    fclip.encode_text = counting  # instance attribute shadows the method
    try:
        img = _image(4)
        sc.score(img, BOXES, TEXTS + TEXTS[:1], method="falip")
        assert calls == [3]  # one call, each distinct text once
        sc.score(img, BOXES, TEXTS, method="none+falip+circle")
        sc.score_many([img, img], [BOXES, BOXES[:1]], [TEXTS[:2], TEXTS[1:]], method="box")
        assert calls == [3]
        sc.score(img, BOXES, TEXTS, method="cpt+falip")
        assert calls == [3, 3]  # CPT's rewritten texts, once
        sc.score(img, BOXES, TEXTS, method="cpt")
        assert calls == [3, 3]
        assert sc.text_cache_size == 6
        assert "a red square is in red color." in sc._text_cache
        assert "a photo of a red square." in sc._text_cache
    finally:
        del fclip.encode_text


def test_score_many_matches_single_and_batches(setup):
    imgs = [_image(i, w=40 + 8 * i, h=48) for i in range(4)]
    boxes = [BOXES, BOXES[:1], [], [[0, 0, 10, 10], [5, 5, 39, 47]]]
    texts = [TEXTS, TEXTS[:1], TEXTS[1:], TEXTS]
    for method in ("falip", "circle+blur", "none", "crop", "falip&circle"):
        single = [_scorer(setup).score(im, b, t, method=method) for im, b, t in zip(imgs, boxes, texts)]
        many = _scorer(setup, batch_size=2).score_many(imgs, boxes, texts, method=method)
        for a, b, k, t in zip(single, many, boxes, texts):
            assert a.shape == b.shape == (len(k), len(t))
            assert torch.allclose(a, b, atol=1e-5), method


def test_one_image_tower_call_per_term(setup):
    fclip, _, _ = setup
    calls: list[tuple[int, bool]] = []
    orig = fclip.encode_image

    def counting(images, *a, **k):
        calls.append((images.shape[0], k.get("regions") is not None))
        return orig(images, *a, **k)

    fclip.encode_image = counting
    try:
        imgs = [_image(i) for i in range(3)]
        sc = _scorer(setup)
        sc.score_many(imgs, [BOXES] * 3, TEXTS, method="falip")
        assert calls == [(3, True)]  # all 9 boxes of 3 images in one FALIP pass
        calls.clear()
        sc.score_many(imgs, [BOXES] * 3, TEXTS, method="circle+crop")
        assert calls == [(9, False), (9, False)]  # 9 edited images per term, one call each
        calls.clear()
        _scorer(setup, batch_size=4).score_many(imgs, [BOXES] * 3, TEXTS, method="blur")
        assert calls == [(4, False), (4, False), (1, False)]
    finally:
        del fclip.encode_image


def test_shared_texts_and_box_formats(setup):
    sc = _scorer(setup)
    img = _image(5)
    xywh = [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in BOXES]
    for method in ("falip", "crop", "blur"):
        a = sc.score(img, BOXES, TEXTS, method=method)
        b = sc.score(img, torch.tensor(xywh), TEXTS, method=method, box_format="xywh")
        assert torch.allclose(a, b, atol=1e-5)
    out = sc.score_many([img, img], [BOXES, BOXES[:2]], TEXTS, method="falip")
    assert [o.shape for o in out] == [(3, 3), (2, 3)]


def test_config_override(setup):
    img = _image(6)
    fclip = setup[0]
    base = _scorer(setup).score(img, BOXES, TEXTS, method="falip")
    zero = _scorer(setup, config=fclip.config.override(alpha=0.0)).score(img, BOXES, TEXTS, method="falip")
    whole = _scorer(setup).score(img, BOXES, TEXTS, method="none")
    assert torch.allclose(zero, whole, atol=1e-5)
    assert not torch.allclose(base, zero, atol=1e-3)


def test_falip_options_still_work_and_warn_once(setup, monkeypatch):
    from falip.core import deprecation

    monkeypatch.setattr(deprecation, "_SAID", set())
    fclip = setup[0]
    with pytest.warns(FutureWarning, match=r"falip_options=\.\.\.\) is deprecated; use RegionScorer\(config="):
        old = _scorer(setup, falip_options={"alpha": 0.0, "form": "all"})
    assert old.config == fclip.config.override(alpha=0.0, form="all")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _scorer(setup, falip_options={"alpha": 0.0})  # once per process
    img = _image(6)
    new = _scorer(setup, config=old.config)
    assert torch.equal(old.score(img, BOXES, TEXTS, method="falip"), new.score(img, BOXES, TEXTS, method="falip"))


def test_with_options_shares_text_cache(setup):
    sc = _scorer(setup)
    img = _image(7)
    sc.score(img, BOXES, TEXTS)
    other = sc.with_options(config=sc.config.override(alpha=0.0))
    assert other.text_cache_size == 3
    assert torch.allclose(other.score(img, BOXES, TEXTS), sc.score(img, BOXES, TEXTS, method="none"), atol=1e-5)
    other.score(img, BOXES, ["a new text"])
    assert sc.text_cache_size == 4


def test_unknown_method_names_the_valid_ones(setup):  # the grammar itself: tests/prompts/test_registry.py
    sc = _scorer(setup)
    with pytest.raises(ValueError, match="valid methods: .*falip"):
        sc.score(_image(), BOXES, TEXTS, method="bluecircle")


def test_bad_inputs(setup):
    sc = _scorer(setup)
    with pytest.raises(ValueError):
        sc.score(_image(), [[200, 200, 300, 300]], TEXTS)  # wholly outside the image
    with pytest.raises(ValueError):
        sc.score(_image(), [1, 2, 3, 4], TEXTS)
    with pytest.raises(ValueError):
        sc.score_many([_image()], [BOXES, BOXES], TEXTS)
    assert sc.score(_image(), [], TEXTS).shape == (0, 3)


def test_a_registered_edit_scores(setup):  # registering itself: tests/prompts/test_registry.py
    spec = register_method(
        MethodSpec("invert", "edit", "invert the box", lambda im, b, p: vp.cpt_shade(im, b, (0, 0, 0), 255), "input")
    )
    try:
        sc = _scorer(setup)
        s = sc.score(_image(), BOXES, TEXTS, method="falip+invert")
        assert s.shape == (3, 3)
        torch.testing.assert_close(
            s, sc.score(_image(), BOXES, TEXTS, method="falip") + sc.score(_image(), BOXES, TEXTS, method="invert")
        )
        assert not torch.allclose(
            sc.score(_image(), BOXES, TEXTS, method="invert"), sc.score(_image(), BOXES, TEXTS, method="none")
        )
    finally:
        METHODS.pop(spec.name)


# ------------------------------------------------------------------------- texts and regions
def test_a_string_is_one_text(setup):
    sc = _scorer(setup)
    one = sc.score(_image(), BOXES, "a red square")
    assert one.shape == (3, 1)
    torch.testing.assert_close(one, sc.score(_image(), BOXES, ["a red square"]))
    many = sc.score_many([_image(0), _image(1)], [BOXES, BOXES[:1]], "a red square")
    assert [tuple(s.shape) for s in many] == [(3, 1), (1, 1)]
    with pytest.raises(FalipError, match="texts must be strings"):
        sc.score(_image(), BOXES, ["ok", 3])


@pytest.mark.parametrize("template", ["a photo of", "{} and {}", "a {0} photo", "{x}", "a {photo"])
def test_template_must_hold_exactly_one_placeholder(setup, template):
    fclip, pre, tok = setup
    with pytest.raises(FalipError, match="template"):
        RegionScorer(fclip, pre, tok, template=template)
    with pytest.raises(FalipError, match="template"):
        RegionScorer(fclip, pre, tok).score(_image(), BOXES, TEXTS, template=template)


def test_literal_braces_are_fine(setup):
    sc = _scorer(setup, template="{{a}} photo of {}")
    assert sc.final_text("x", ("falip",)) == "{a} photo of x"


def test_long_texts_warn_once_that_they_are_truncated(setup):
    sc = _scorer(setup)
    long = " ".join(["word"] * 40)  # the test tokenizer's context is 16 tokens
    with pytest.warns(
        UserWarning, match=r"1 text\(s\) are longer than the model's 16-token context and were truncated"
    ) as rec:
        sc.score(_image(), BOXES, [long, "short"])
    assert len([w for w in rec if "truncated" in str(w.message)]) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sc.score(_image(), BOXES, ["short", long])  # cached: no second warning
        sc.score(_image(), BOXES, [" ".join(["w"] * 14)])  # exactly fits 16 with start/end tokens


def test_whole_image_gives_every_box_the_same_score_bitwise(setup):
    sc = _scorer(setup)
    many = sc.score_many([_image(i) for i in range(5)], [BOXES * 7] * 5, TEXTS, method="none")
    for s in many:
        assert s.shape == (21, 3) and bool((s == s[0]).all())  # exact ties, not float-noise ties


def test_regions_with_masks_and_errors_in_original_pixels(setup):
    sc = _scorer(setup)
    img = _image(w=64, h=48)
    mask = np.zeros((1, 48, 64), dtype=bool)
    mask[0, 3:25, 2:30] = True
    by_mask = sc.score(img, Regions(masks=mask), TEXTS)
    by_box = sc.score(img, [[2, 3, 30, 25]], TEXTS)
    torch.testing.assert_close(by_mask, by_box)  # a rectangular mask selects the box's cells
    assert sc.score(img, Regions(masks=mask), TEXTS, method="crop").shape == (1, 3)
    with pytest.raises(FalipError, match=r"box 1 \(70, 0, 80, 10\) of a 64x48 image lies wholly outside it"):
        sc.score(img, [[0, 0, 5, 5], [70, 0, 80, 10]], TEXTS)
    with pytest.raises(FalipError, match="image 0 is 64x48"):
        sc.score(img, Regions([[0, 0, 5, 5]], image_size=(32, 32)), TEXTS)


# ------------------------------------------------------------------------- unleashed prompts
@pytest.mark.parametrize("method", ["unleash", "unleash:crop", "unleash@0:circle", "unleashed"])
def test_scorer_checks_the_method_before_any_work(setup, method):  # messages: tests/prompts/test_registry.py
    with pytest.raises(FalipError):
        _scorer(setup).score(_image(), BOXES, TEXTS, method=method)


def test_unleash_scores_in_ensembles_and_batches(setup):
    sc = _scorer(setup)
    imgs = [_image(i, w=40 + 8 * i, h=48) for i in range(3)]
    boxes = [BOXES, [], [[0, 0, 10, 10], [5, 5, 39, 47]]]
    for method in ("unleash:circle", "falip+unleash:blur&circle"):
        single = [sc.score(im, b, TEXTS, method=method) for im, b in zip(imgs, boxes)]
        many = _scorer(setup, batch_size=2).score_many(imgs, boxes, TEXTS, method=method)
        for a, b, k in zip(single, many, boxes):
            assert a.shape == b.shape == (len(k), 3)
            assert torch.allclose(a, b, atol=1e-5), method
    img = imgs[0]
    total = sc.score(img, BOXES, TEXTS, method="falip+unleash:circle")
    parts = sc.score(img, BOXES, TEXTS, method="falip") + sc.score(img, BOXES, TEXTS, method="unleash:circle")
    assert torch.allclose(total, parts, atol=1e-5)
    # unleashing moves the circle's scores, and k = 1 is not k = 2 (all blocks of this tower)
    circle = sc.score(img, BOXES, TEXTS, method="circle")
    unleashed = sc.score(img, BOXES, TEXTS, method="unleash:circle")
    assert not torch.allclose(circle, unleashed, atol=1e-3)
    assert not torch.allclose(unleashed, sc.score(img, BOXES, TEXTS, method="unleash@1:circle"), atol=1e-3)
    # cpt rewrites the text under unleash too
    assert sc.final_text("x", ("unleash", "cpt")) == "x is in red color."


def test_features_of_one_term(setup):
    fclip, pre, _ = setup
    sc = _scorer(setup)
    img = _image(2)
    with torch.no_grad():
        falip_feats = fclip.encode_image(pre(img)[None], boxes=[pre.map_boxes(BOXES, img.size)])
        whole = fclip.encode_image(pre(img)[None])
    assert torch.allclose(sc.features([img], [BOXES], "falip"), falip_feats, atol=1e-5)
    assert torch.allclose(sc.features([img, img], [BOXES, BOXES[:1]], "none"), whole.expand(4, -1), atol=1e-5)
    assert sc.features([img], [[]], "unleash:circle").shape == (0, 32)
    with pytest.raises(FalipError, match="one term"):
        sc.features([img], [BOXES], "falip+circle")


@torch.no_grad()
def test_enlarge_grows_every_atoms_box_falip_included(setup):
    """PromptParams.enlarge = N scores exactly as the boxes grown by N per side and clipped, for FALIP, the
    edits and the crops: the executors' ``enlarge_boxes`` (pumpkin805/FALIP @ 583df71 executor.py:139-144
    for FALIP's box, 157-162 for the circle, 187-192 for the crop)."""
    img = _image(2, w=300, h=210)  # over 200 px: the authors' circle is drawn (1 px)
    boxes = [[20.5, 30.0, 120.0, 100.5], [250.0, 150.0, 299.0, 209.0]]
    grown = [[max(x0 - 12, 0), max(y0 - 12, 0), min(x1 + 12, 300), min(y1 + 12, 210)] for x0, y0, x1, y1 in boxes]
    plain, bigger = _scorer(setup), _scorer(setup, params=PromptParams(enlarge=12))
    for method in ("falip", "redcircle", "redcircle-blur", "blur", "circle", "crop", "crop-reclip", "falip&circle"):
        want = plain.score(img, grown, TEXTS, method=method)
        assert torch.allclose(bigger.score(img, boxes, TEXTS, method=method), want, atol=1e-6), method
        assert not torch.allclose(plain.score(img, boxes, TEXTS, method=method), want, atol=1e-4), method
    with pytest.raises(FalipError, match="enlargement"):
        PromptParams(enlarge=-1)


def test_enlarge_grows_masks_by_whole_pixels():
    """A mask region grows by floor(N) pixels in every direction (a square), checked against a loop."""
    m = np.zeros((1, 20, 30), dtype=bool)
    m[0, 5, 7] = m[0, 12, 20] = True
    got = vp.enlarge_regions(Regions(masks=m), 2.7).masks[0]
    want = np.zeros((20, 30), dtype=bool)
    for r in range(20):
        for c in range(30):
            want[r, c] = any(abs(r - rr) <= 2 and abs(c - cc) <= 2 for rr, cc in ((5, 7), (12, 20)))
    assert np.array_equal(got, want)


def _naive_authors_logit(image: np.ndarray, text: np.ndarray, scale: float) -> float:
    """One logit as the authors' fp16 CUDA path computes it, with numpy float16 (each op in fp32, the
    result stored as fp16), the dot product accumulated in float32 one term at a time."""
    h, f32 = np.float16, np.float32
    img = image.astype(h)
    img = (img.astype(f32) / h(np.sqrt((img.astype(f32) ** 2).sum()))).astype(h)
    txt = text.astype(h)
    txt = (txt.astype(f32) / h(np.sqrt((txt.astype(f32) ** 2).sum()))).astype(h)
    scaled = (f32(scale) * img.astype(f32)).astype(h)
    acc = f32(0)
    for a, b in zip(scaled.astype(f32), txt.astype(f32)):
        acc = f32(acc + a * b)
    return float(h(acc))


def test_authors_fp16_logits_merge_near_ties_that_fp32_separates():
    """The authors' numerics (pumpkin805/FALIP@8c5fda9 executor.py:312 ``clip.load`` on CUDA keeps fp16
    weights, clip/clip.py:140-141; executor.py:331-346 normalises fp16 features and takes
    ``logit_scale * image_features @ text_features.t()`` in fp16): at logit scale 100 the step is 1/32
    near 30, so cosines 0.30000 and 0.30004 give one logit and np.argmax takes the first box; float32
    logits (falip's default) tell them apart and pick the second."""
    from falip.scoring import _authors_scores, _cosine_scores
    from falip.tasks.rec import pick_region

    d = 64
    text = torch.zeros(1, d)
    text[0, 0] = 1.0
    image = torch.zeros(3, d)
    for k, c in enumerate((0.30000, 0.30004, 0.2)):
        image[k, 0], image[k, 1 + k] = c, (1 - c * c) ** 0.5
    image = image * torch.tensor([[3.0], [5.0], [0.7]])  # unnormalised, as encode_image returns them
    scale = torch.tensor(100.0)
    fp32 = _cosine_scores(torch.nn.functional.normalize(image, dim=-1), text, scale)[:, 0]
    fp16 = _authors_scores(image, text, scale)[:, 0]
    assert fp32[1] > fp32[0] and pick_region(fp32) == 1
    assert fp16[0] == fp16[1] and pick_region(fp16) == 0  # merged: the first box
    naive = [_naive_authors_logit(image[k].numpy(), text[0].numpy(), 100.0) for k in range(3)]
    assert fp16.tolist() == naive  # exact: every value is an fp16 number
    assert torch.equal(fp16, fp16.half().float())
    # random features: the emulation agrees with the naive loop to one fp16 step (the order of the fp32 sum)
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(5, d, generator=g), torch.randn(4, d, generator=g)
    got = _authors_scores(image, text, scale)
    for k in range(5):
        for t in range(4):
            want = _naive_authors_logit(image[k].numpy(), text[t].numpy(), 100.0)
            assert abs(float(got[k, t]) - want) <= 2.0**-6 * max(1.0, abs(want) / 16)


def test_region_scorer_offers_the_authors_numerics(setup):
    fclip, pre, tok = setup
    image = _image()
    plain = RegionScorer(fclip, pre, tok)
    authors = RegionScorer(fclip, pre, tok, logits="fp16")
    assert plain.logits == "fp32" and authors.with_options(template="{}").logits == "fp16"
    s32 = plain.score(image, BOXES, TEXTS, method="falip+crop")
    s16 = authors.score(image, BOXES, TEXTS, method="falip+crop")
    assert torch.equal(s16, s16.half().float()) and not torch.equal(s32, s32.half().float())
    assert (s16 - s32).abs().max() < 0.1 * max(1.0, float(s32.abs().max()) / 16)
    with pytest.raises(FalipError, match="logits must be one of"):
        RegionScorer(fclip, pre, tok, logits="bf16")
