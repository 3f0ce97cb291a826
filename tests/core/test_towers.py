"""The tower contract and FALIP's exactness, parametrised over every tiny tower of ``support.towers.TOWERS``.

For each tower: the block record read by falip's kernels equals the library's own block (with and
without a bias); alpha 0 equals the library's own image features bitwise; every forward plan
equals the reference forward (the library's own blocks with an additive mask) over forms, layer
sets and box shapes; batching and chunking do not change results. Tolerance 1e-5 (float32).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import falip
from falip.core.attention import block_forward, pool_attention
from falip.core.reference import reference_forward
from falip.core.regions import Regions
from falip.towers import wrap
from support.towers import TOWERS, build

TOL = 1e-5
NAMES = list(TOWERS)


def _tower(name, seed=0):
    return wrap(build(name, seed))


def _boxes(tower, fractions):
    h, w = tower.image_size
    return [[x0 * w, y0 * h, x1 * w, y1 * h] for x0, y0, x1, y1 in fractions]


# boxes as fractions of the input: generic, one cell, whole image, thin and fractional (partly outside)
BOXES = {
    "generic": [(0.0, 0.0, 0.375, 0.625), (0.28, 0.28, 0.97, 0.94)],
    "one-cell": [(0.25, 0.5, 0.5, 0.75)],
    "whole": [(0.0, 0.0, 1.0, 1.0)],
    "fractional-thin": [(0.11, 0.54, 0.125, 0.78), (0.966, 0.003, 1.25, 0.0625)],
}


def _regions(tower, per_image):
    h, w = tower.image_size
    return [Regions(_boxes(tower, b), image_size=(w, h), frame="input") for b in per_image]


def _images(tower, n, seed=6):
    torch.manual_seed(seed)
    return torch.randn(n, 3, *tower.image_size)


def _layer_sets(tower):
    """Layer sets and forms to test: [CLS] towers every form; attention-pooled ones the pool only, or
    blocks with 'all'/'diag'."""
    d = tower.depth
    sets = [(0,), (d - 1,), tuple(range(d)), (1, d - 1), (d - 2, d - 1), (0, 2), (1, 2)]
    if tower.pooling == "map":
        return [(None, "all")] + [(s, f) for s in sets for f in ("all", "diag")]
    return [(s, f) for s in sets for f in ("cls", "all", "diag")]


@pytest.mark.parametrize("name", NAMES)
def test_block_record_equals_the_library_block(name):
    tower = _tower(name)
    torch.manual_seed(0)
    x = torch.randn(2, tower.num_tokens, tower.width)
    bias = torch.randn(2, tower.num_tokens, tower.num_tokens)
    with torch.no_grad():
        for i in range(tower.depth):
            p = tower.parts(i)
            torch.testing.assert_close(block_forward(p, x), tower.run_block(i, x), atol=TOL, rtol=0)
            ours = block_forward(p, x, bias[:, None])
            torch.testing.assert_close(ours, tower.run_block(i, x, bias), atol=TOL, rtol=0)
            # the check can fail: the bias changes the block's output
            assert (ours - block_forward(p, x)).abs().max() > 1e-3
            if p.qkv_weight is not None:  # the separate q/k/v path (towers without packed weights) agrees
                split = dataclasses.replace(p, qkv_weight=None, qkv_bias=None)
                torch.testing.assert_close(block_forward(split, x, bias[:, None]), ours, atol=TOL, rtol=0)
                torch.testing.assert_close(
                    block_forward(split, x, None, slice(1, None)), block_forward(p, x)[:, 1:], atol=TOL, rtol=0
                )


@pytest.mark.parametrize("name", NAMES)
def test_the_tower_pieces_give_the_library_features(name):
    tower = _tower(name)
    images = _images(tower, 2)
    with torch.no_grad():
        x = tower.embed(images)
        assert x.shape == (2, tower.num_tokens, tower.width)
        for i in range(tower.depth):
            x = tower.run_block(i, x)
        own = tower.forward_features(images)
        assert own.shape == (2, tower.output_dim)
        torch.testing.assert_close(tower.head(x), own, atol=TOL, rtol=0)
        if tower.pooling == "map":
            torch.testing.assert_close(pool_attention(tower.pool_parts(), tower.final_norm(x)), own, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_zero_alpha_is_the_library_bitwise(name):
    tower = _tower(name)
    images = _images(tower, 2, seed=3)
    fclip = falip.FovealCLIP(tower, alpha=0.0)
    with torch.no_grad():
        own = tower.forward_features(images)
        got = fclip.encode_image(images, regions=_regions(tower, [BOXES["generic"], BOXES["one-cell"]]))
        plain = fclip.encode_image(images)
    assert torch.equal(got, own[torch.tensor([0, 0, 1])])
    assert torch.equal(plain, own)


@pytest.mark.parametrize("name", NAMES)
def test_every_plan_equals_the_reference(name):
    tower = _tower(name)
    images = _images(tower, 3)
    per_image = [BOXES["generic"], BOXES["one-cell"] + BOXES["whole"], BOXES["fractional-thin"]]
    regions = _regions(tower, per_image)
    with torch.no_grad():
        own = tower.forward_features(images)
        for layers, form in _layer_sets(tower):
            fclip = falip.FovealCLIP(tower, alpha=3.0, sigma=1.5, layers=layers, form=form, batch_size=3)
            got = fclip.encode_image(images, regions=regions)
            ref = reference_forward(tower, images, regions, alpha=3.0, sigma=1.5, layers=layers, form=form)
            assert got.shape == ref.features.shape == (6, tower.output_dim)
            assert (got - ref.features).abs().max().item() <= TOL, (layers, form, fclip.plan().describe())
            unbiased_cls = form == "diag" and layers == (tower.depth - 1,) and tower.pooling == "cls"
            if not unbiased_cls:  # the diag form in the last block leaves the [CLS] row unbiased: no effect
                assert (ref.features[0] - own[0]).abs().max().item() > 1e-3, (layers, form)  # the bias acts


@pytest.mark.parametrize("name", NAMES)
def test_batched_and_chunked_equal_one_at_a_time(name):
    tower = _tower(name)
    images = _images(tower, 3, seed=0)
    per_image = [BOXES["generic"] + BOXES["one-cell"], [], BOXES["fractional-thin"]]
    regions = _regions(tower, per_image)
    layers = None if tower.pooling == "map" else (1, 2)
    reference = falip.FovealCLIP(tower, alpha=2.0, layers=layers)
    with torch.no_grad():
        batched = reference.encode_image(images, regions=regions)
        singles = [
            reference.encode_image(images[i : i + 1], regions=[r.select([k])])[0]
            for i, r in enumerate(regions)
            for k in range(len(r))
        ]
        torch.testing.assert_close(batched, torch.stack(singles), atol=TOL, rtol=0)
        for batch_size in (1, 2, 100):
            chunked = falip.FovealCLIP(tower, alpha=2.0, layers=layers, batch_size=batch_size)
            torch.testing.assert_close(chunked.encode_image(images, regions=regions), batched, atol=TOL, rtol=0)
    assert (batched[0] - batched[1]).abs().max() > 1e-3  # regions really differ


@pytest.mark.parametrize("name", NAMES)
def test_out_of_range_layers_name_the_depth(name):
    tower = _tower(name)
    images = _images(tower, 1)
    d = tower.depth
    with pytest.raises(falip.FalipError, match=f"index {d + 1} is out of range for a tower of {d} blocks"):
        reference_forward(tower, images, layers=[d + 1], form="all")
    with pytest.raises(falip.FalipError, match=f"index {d + 1} is out of range for a tower of {d} blocks"):
        falip.FovealCLIP(tower, layers=[d + 1], form="all")


def test_reference_layers_beyond_the_depth_is_an_error_not_a_wraparound():
    """The issue's case: layers=[5] on a 3-block tower once gave the features of layers=[2]."""
    from support.tiny import make_tiny_clip

    model = wrap(make_tiny_clip(layers=3))
    images = torch.randn(1, 3, 32, 32)
    regions = [Regions([[0, 0, 12, 20]], image_size=(32, 32), frame="input")]
    with pytest.raises(falip.FalipError, match="index 5 is out of range for a tower of 3 blocks"):
        reference_forward(model, images, regions, layers=[5])
    with pytest.raises(falip.FalipError, match="record: index 3 is out of range for a tower of 3 blocks"):
        reference_forward(model, images, regions, record=[3])


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("map")])
def test_falip_map_pool_only_runs_the_trunk_once(name, monkeypatch):
    """Pool only (the map default): the blocks run once per image whatever the number of regions."""
    tower = _tower(name)
    fclip = falip.FovealCLIP(tower, alpha=2.0)
    assert fclip.layers == () and fclip.plan().prefix == tower.depth and fclip.plan().steps == ()
    calls = []
    original = tower.run_block
    monkeypatch.setattr(tower, "run_block", lambda i, x, b=None: calls.append(x.shape[0]) or original(i, x, b))
    images = _images(tower, 2)
    with torch.no_grad():
        out = fclip.encode_image(images, regions=_regions(tower, [BOXES["generic"] * 3, BOXES["whole"]]))
    assert out.shape == (7, tower.output_dim)
    assert calls == [2] * tower.depth  # one batch of 2 images per block, not 7 regions


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("map")])
def test_falip_map_moves_the_probe_toward_the_region(name):
    tower = _tower(name)
    images = _images(tower, 1)
    regions = _regions(tower, [[(0.0, 0.0, 0.5, 0.5)]])
    with torch.no_grad():
        plain = reference_forward(tower, images)
        biased = reference_forward(tower, images, regions, alpha=3.0)
    roa = tower.num_prefix_tokens + torch.tensor([0, 1, 4, 5])  # the top-left 2x2 cells of the 4x4 grid
    assert plain.pool_attention.shape == (1, 4, 2, tower.num_tokens)
    assert biased.pool_attention[0, :, :, roa].sum() > plain.pool_attention[0, :, :, roa].sum() + 0.5
    torch.testing.assert_close(biased.pool_attention.sum(-1), torch.ones(1, 4, 2))
    assert biased.cls_stream is None and plain.pool_attention is not None


def test_map_towers_refuse_the_cls_form_in_blocks():
    tower = _tower("map-prefix0")
    with pytest.raises(falip.FalipError, match="no \\[CLS\\] query row to bias in its blocks: use form='all'"):
        falip.FovealCLIP(tower, layers=[-1])
    assert falip.FovealCLIP(tower).layers == ()  # pool only is fine with the default form
    with pytest.raises(falip.FalipError, match="no \\[CLS\\] query row to bias"):
        reference_forward(tower, _images(tower, 1), layers=[-1])


@pytest.mark.parametrize("name", ["map-prefix0", "map-prefix1"])
def test_analysis_on_map_towers_maps_the_probe_and_refuses_the_cls_stream(name):
    from falip.analysis.heads import decompose
    from falip.analysis.maps import cls_attention, in_region_mass
    from falip.core.unleash import attention_terms
    from falip.prompts.ablations import feature_mask_forward, swap_forward

    tower = _tower(name)
    images = _images(tower, 1)
    regions = _regions(tower, [[(0.0, 0.0, 0.5, 0.5)]])
    with torch.no_grad():
        plain = cls_attention(tower, images)
        foveal = cls_attention(tower, images, regions, alpha=3.0)
    assert plain.shape == (1, tower.num_tokens)
    torch.testing.assert_close(foveal.sum(-1), torch.ones(1, dtype=torch.float64))
    roa = torch.zeros(4, 4, dtype=torch.bool)
    roa[:2, :2] = True
    prefix = tower.num_prefix_tokens
    assert in_region_mass(foveal[0], roa, prefix) > in_region_mass(plain[0], roa, prefix) + 0.2
    with pytest.raises(falip.FalipError, match="pooling probe's attention, after the last block"):
        cls_attention(tower, images, layer=0)
    with pytest.raises(falip.FalipError, match="rollout .* an attention-pooled tower has none"):
        cls_attention(tower, images, head="rollout")
    for call in (
        lambda: decompose(tower, images),
        lambda: attention_terms(tower, images),
        lambda: feature_mask_forward(tower, images, roa[None]),
        lambda: swap_forward(tower, images, images, "qk-prompt"),
    ):
        with pytest.raises(falip.FalipError, match="attention probe over all tokens"):
            call()


@pytest.mark.parametrize("name", NAMES)
def test_masks_equal_boxes_and_gradients_flow(name):
    tower = _tower(name)
    h, w = tower.image_size
    images = _images(tower, 2, seed=4)
    boxes = _boxes(tower, [(0.0, 0.0, 0.375, 0.625), (0.53, 0.09, 0.91, 0.28)])
    masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, round(y0) : round(y1), round(x0) : round(x1)] = True
    layers = None if tower.pooling == "map" else (1, 2)
    form = "all" if tower.pooling == "map" else "cls"
    fclip = falip.FovealCLIP(tower, alpha=2.5, sigma=1.5, layers=layers, form=form)
    with torch.no_grad():
        by_mask = fclip.encode_image(images, masks=[masks, masks])
        by_box = fclip.encode_image(images, boxes=[torch.tensor(boxes)] * 2)
    torch.testing.assert_close(by_mask, by_box, atol=1e-6, rtol=0)
    x = images[:1].clone().requires_grad_(True)
    fclip.encode_image(x, boxes=[torch.tensor(boxes)]).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
