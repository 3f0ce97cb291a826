"""Attention maps: rows are distributions, rollout as defined, upsampling, prompts, and FALIP's effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import falip
from falip.analysis.maps import (
    attention_maps,
    attention_rollout,
    cls_attention,
    in_region_mass,
    plot_attention_maps,
    prompted_image,
    upsample_map,
)
from falip.core.errors import FalipError
from falip.core.mask import regions_to_roa
from falip.core.preprocess import Preprocess
from falip.core.reference import reference_forward
from falip.core.regions import Regions, Resize
from falip.data import synthetic
from falip.scoring import RegionScorer, _Item
from falip.towers import wrap


@pytest.fixture(scope="module")
def shipped():
    return falip.load("falip-tiny")


@pytest.fixture
def tiny(tiny_clip):
    """A 3-block random model (32 px input, 8 px patches: a 4x4 grid), two images, regions."""
    torch.manual_seed(1)
    images = torch.randn(2, 3, 32, 32)
    regions = [
        Regions([[0, 0, 16, 16], [8, 4, 30, 20]], image_size=(32, 32), frame="input"),
        Regions([[10, 10, 31, 31]], image_size=(32, 32), frame="input"),
    ]
    return tiny_clip, images, regions


@pytest.mark.parametrize("head", ["mean", 0, 3, "rollout"])
@pytest.mark.parametrize("layer", [0, -1])
def test_attention_rows_sum_to_one(tiny, head, layer):
    model, images, regions = tiny
    for regs, n in ((None, 2), (regions, 3)):
        rows = cls_attention(model, images, regs, layer=layer, head=head, alpha=2.0, layers=[1, 2])
        assert rows.shape == (n, 1 + 16)
        assert (rows >= 0).all()
        torch.testing.assert_close(rows.sum(dim=1), torch.ones(n, dtype=rows.dtype), atol=1e-5, rtol=0)


def test_head_rows_are_the_reference_probabilities(tiny):
    model, images, regions = tiny
    out = reference_forward(wrap(model), images, regions, alpha=2.0, layers=[1, 2], record=[2])
    probs = out.attention[2][:, :, 0].double()
    for h in range(4):
        row = cls_attention(model, images, regions, layer=2, head=h, alpha=2.0, layers=[1, 2])
        torch.testing.assert_close(row, probs[:, h])
    mean = cls_attention(model, images, regions, layer=-1, head="mean", alpha=2.0, layers=[1, 2])
    torch.testing.assert_close(mean, probs.mean(dim=1))


def test_rollout_by_hand():
    """``(0.5 A + 0.5 I)`` per block (head mean, rows renormalised), multiplied last block leftmost."""
    g = torch.Generator().manual_seed(0)
    blocks = [torch.rand(2, 3, 5, 5, generator=g).softmax(dim=-1) for _ in range(3)]
    expected = []
    for r in range(2):
        joint = np.eye(5)
        for a in blocks:
            m = 0.5 * a[r].double().mean(dim=0).numpy() + 0.5 * np.eye(5)
            m /= m.sum(axis=1, keepdims=True)
            joint = m @ joint
        expected.append(joint)
    out = attention_rollout(blocks)
    np.testing.assert_allclose(out.numpy(), np.stack(expected), atol=1e-12)
    np.testing.assert_allclose(out.sum(dim=-1).numpy(), 1.0, atol=1e-12)  # every row, not only [CLS]'s
    one = attention_rollout(blocks[:1])
    np.testing.assert_allclose(one.numpy(), 0.5 * blocks[0].double().mean(dim=1).numpy() + 0.5 * np.eye(5), atol=1e-12)


def test_rollout_row_is_row_zero_of_the_full_product(tiny):
    model, images, _ = tiny
    out = reference_forward(wrap(model), images, None, record="all", tokens="all")
    full = attention_rollout([out.attention[i] for i in range(2)])
    row = cls_attention(model, images, None, layer=1, head="rollout")
    torch.testing.assert_close(row, full[:, 0])


def test_bad_layer_and_head(tiny):
    model, images, _ = tiny
    with pytest.raises(FalipError, match="out of range"):
        cls_attention(model, images, layer=3)
    with pytest.raises(FalipError, match="head must be"):
        cls_attention(model, images, head=4)
    with pytest.raises(FalipError, match="head must be"):
        cls_attention(model, images, head="max")


def test_in_region_mass():
    row = np.array([0.1, 0.2, 0.3, 0.4, 0.0])
    roa = np.array([[True, False], [False, True]])
    assert in_region_mass(row, roa) == pytest.approx(0.2)
    with pytest.raises(FalipError, match="does not fit"):
        in_region_mass(row[:4], roa)


def test_upsample_squash_and_crop():
    patches = np.arange(4.0).reshape(2, 2)
    squash = upsample_map(patches, (20, 10), Resize((16, 16), "squash"), (8, 8))
    assert squash.shape == (10, 20)
    assert squash[0, 0] == 0 and squash[0, 19] == 1 and squash[9, 0] == 2 and squash[9, 19] == 3
    assert squash[4, 9] == 0 and squash[5, 10] == 3  # the centre lines split at the patch edges
    crop = upsample_map(patches, (32, 16), Resize((16, 16), "crop"), (8, 8))  # sees x in [8, 24)
    assert np.isnan(crop[:, :8]).all() and np.isnan(crop[:, 24:]).all()
    assert crop[0, 8] == 0 and crop[15, 23] == 3
    flat = upsample_map(np.full((2, 2), 0.25), (20, 10), Resize((16, 16)), (8, 8), mode="bilinear")
    np.testing.assert_allclose(flat, 0.25)
    smooth = upsample_map(patches, (16, 16), Resize((16, 16)), (8, 8), mode="bilinear")
    assert smooth[0, 0] == 0 and smooth[15, 15] == 3 and 0 < smooth[8, 8] < 3
    partial = upsample_map(patches, (20, 20), Resize((20, 20)), (8, 8))  # pixels 16-19 lie beyond the last patch
    assert np.isnan(partial[:, 16:]).all() and not np.isnan(partial[:16, :16]).any()


@pytest.mark.parametrize("prompt", ["circle", "blur&circle", "gray"])
def test_prompted_image_is_what_the_scorer_sees(shipped, prompt):
    fclip, pre, tok = shipped
    scene = synthetic.classification_scenes(3, 1, image_size=96, min_objects=2, max_objects=2)[0]
    image = Image.fromarray(scene.image)
    region = Regions([scene.objects[0].box], image_size=image.size)
    scorer = RegionScorer(fclip, pre, tok)
    item = _Item(image, region, pre.map_regions(region), [])  # as score_many builds it
    expected = scorer.edited(item, 0, tuple(prompt.split("&")))
    got = prompted_image(pre, image, region, prompt)
    assert got.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    with pytest.raises(FalipError, match="image edits"):
        prompted_image(pre, image, region, "falip")


def test_attention_maps_on_a_tiny_model(tiny_clip):
    fclip = falip.FovealCLIP(tiny_clip, alpha=3.0, layers=[1, 2])
    pre = Preprocess(32)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    mask = np.zeros((40, 60), dtype=bool)
    mask[5:20, 10:40] = True
    region = Regions([[8, 4, 42, 22]], mask[None], image_size=image.size)
    maps = attention_maps(fclip, pre, image, region, layer=-1, head="mean", prompt="circle")
    assert list(maps.maps) == ["vanilla", "falip", "circle"]
    roa = regions_to_roa(pre.map_regions(region), fclip.grid_size, fclip.patch_size)[0].numpy()
    np.testing.assert_array_equal(maps.roa, roa)
    for m in maps.maps.values():
        assert m.row.shape == (17,) and m.row.sum() == pytest.approx(1.0, abs=1e-5)
        assert m.patches.shape == (4, 4) and m.upsampled.shape == (40, 60)
        assert m.in_region == pytest.approx(m.patches[roa].sum())
        assert m.shown.size == image.size
    assert maps.maps["falip"].in_region > maps.maps["vanilla"].in_region
    with pytest.raises(FalipError, match="one region"):
        attention_maps(fclip, pre, image, [[0, 0, 10, 10], [5, 5, 20, 20]])


def _mass(fclip, pre, scenes, head):
    """In-region [CLS] mass at the last block, vanilla and FALIP (the preset), per object of each scene."""
    images, regions, roas = [], [], []
    for scene in scenes:
        image = Image.fromarray(scene.image)
        for obj in scene.objects[:2]:
            r = pre.map_regions(Regions([obj.box], image_size=image.size))
            images.append(pre(image))
            regions.append(r)
            roas.append(regions_to_roa(r, fclip.grid_size, fclip.patch_size)[0].numpy())
    x = torch.stack(images)
    kw = dict(layer=-1, head=head, alpha=fclip.alpha, sigma=fclip.sigma, layers=fclip.layers, form=fclip.form)
    vanilla = cls_attention(fclip.model, x, None, **kw).numpy()
    foveal = cls_attention(fclip.model, x, regions, **kw).numpy()
    mv = np.array([in_region_mass(v, roa) for v, roa in zip(vanilla, roas)])
    mf = np.array([in_region_mass(f, roa) for f, roa in zip(foveal, roas)])
    return mv, mf


def test_falip_puts_more_cls_attention_in_the_box_on_the_shipped_model(shipped):
    """Measured on these 75 regions: head mean 0.325 -> 0.994 (+0.669, min +0.131); rollout +0.220 (min +0.072)."""
    fclip, pre, _ = shipped
    scenes = [e.scene for e in synthetic.rec_examples(11, 20)] + synthetic.classification_scenes(
        12, 20, min_objects=1, max_objects=4
    )
    mv, mf = _mass(fclip, pre, scenes, "mean")
    assert len(mv) >= 60
    assert (mf > mv).all()
    assert (mf - mv).mean() > 0.45
    mv, mf = _mass(fclip, pre, scenes, "rollout")
    assert (mf > mv).all()
    assert (mf - mv).mean() > 0.12


def test_attention_maps_with_scores_and_plot(shipped, tmp_path):
    fclip, pre, tok = shipped
    example = synthetic.rec_examples(3, 1)[0]
    image = Image.fromarray(example.scene.image)
    query = example.queries[0]
    box = example.scene.objects[query.target].box
    maps = attention_maps(fclip, pre, image, box, texts=[query.expression], tokenizer=tok, head="rollout")
    scorer = RegionScorer(fclip, pre, tok)
    for name, method in (("vanilla", "none"), ("falip", "falip"), ("input-circle", "input-circle")):
        expected = float(scorer.score(image, [box], query.expression, method=method)[0, 0])
        assert maps.maps[name].scores[query.expression] == pytest.approx(expected, abs=1e-4)
    path = plot_attention_maps(maps, tmp_path / "maps.png")
    assert path.stat().st_size > 5000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
