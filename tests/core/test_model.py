"""FovealCLIP behaviour: batching, chunking, masks vs boxes, geometry, errors."""

from __future__ import annotations

import open_clip
import pytest
import torch

import falip
from support.tiny import make_tiny_clip
from support.naive import naive_region_feature


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.randn(3, 3, 32, 32)


REGIONS = [
    torch.tensor([[0.0, 0.0, 12.0, 20.0], [5.0, 5.0, 32.0, 32.0], [8.0, 8.0, 16.0, 16.0]]),
    torch.zeros(0, 4),
    torch.tensor([[20.0, 1.0, 31.0, 9.0], [0.0, 0.0, 32.0, 32.0]]),
]


@pytest.mark.parametrize("form", ["cls", "all", "diag"])
@pytest.mark.parametrize("layers", [None, (0,), (1,), (0, 2)])
def test_batched_equals_one_at_a_time(tiny_clip, images, form, layers):
    fclip = falip.FovealCLIP(tiny_clip, alpha=3.0, sigma=2.0, layers=layers, form=form)
    with torch.no_grad():
        batched = fclip.encode_image(images, boxes=REGIONS)
        singles = [
            fclip.encode_image(images[i : i + 1], boxes=[box[None]])[0]
            for i, boxes in enumerate(REGIONS)
            for box in boxes
        ]
    assert batched.shape == (5, 32)
    assert torch.allclose(batched, torch.stack(singles), atol=1e-5)
    assert (batched[0] - batched[1]).abs().max() > 1e-3  # regions really differ


@pytest.mark.parametrize("batch_size", [1, 2, 3, 100])
def test_chunk_size_does_not_change_results(tiny_clip, images, batch_size):
    reference = falip.FovealCLIP(tiny_clip, alpha=2.0, layers=(1, 2)).encode_image(images, boxes=REGIONS)
    chunked = falip.FovealCLIP(tiny_clip, alpha=2.0, layers=(1, 2), batch_size=batch_size)
    with torch.no_grad():
        assert torch.allclose(chunked.encode_image(images, boxes=REGIONS), reference, atol=1e-5)


def test_no_regions_at_all_gives_empty(tiny_clip, images):
    out = falip.FovealCLIP(tiny_clip).encode_image(images, boxes=[torch.zeros(0, 4)] * 3)
    assert out.shape == (0, 32)


@pytest.mark.parametrize("form", ["cls", "all", "diag"])
def test_rectangular_masks_equal_boxes(tiny_clip, images, form):
    fclip = falip.FovealCLIP(tiny_clip, alpha=2.5, sigma=1.5, layers=(1, 2), form=form)
    boxes = [torch.tensor([[0.0, 0.0, 12.0, 20.0], [17.0, 3.0, 29.0, 9.0]])] * 3
    masks = []
    for b in boxes:
        m = torch.zeros(len(b), 32, 32, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(b.long().tolist()):
            m[k, y0:y1, x0:x1] = True
        masks.append(m)
    with torch.no_grad():
        assert torch.allclose(fclip.encode_image(images, masks=masks), fclip.encode_image(images, boxes=boxes), atol=1e-6)


def test_partly_outside_boxes_are_clipped(tiny_clip, images):
    fclip = falip.FovealCLIP(tiny_clip, alpha=2.0)
    with torch.no_grad():
        a = fclip.encode_image(images[:1], boxes=[torch.tensor([[-10.0, -4.0, 10.0, 50.0]])])
        b = fclip.encode_image(images[:1], boxes=[torch.tensor([[0.0, 0.0, 10.0, 32.0]])])
    assert torch.equal(a, b)


def test_non_square_grid_matches_naive():
    model = make_tiny_clip(image_size=(24, 40), patch_size=(8, 10), layers=3)
    assert tuple(model.visual.grid_size) == (3, 4)
    torch.manual_seed(5)
    image = torch.randn(1, 3, 24, 40)
    fclip = falip.FovealCLIP(model, alpha=3.0, sigma=1.0, layers=(1, 2))
    box = [11.0, 2.0, 33.0, 17.0]
    with torch.no_grad():
        got = fclip.encode_image(image, boxes=[torch.tensor([box])])[0]
        ref = naive_region_feature(model, image[0], box, 3.0, 1.0, {1, 2}, "cls")
    assert (got.double() - ref).abs().max().item() <= 1e-5


def test_per_call_overrides(tiny_clip, images):
    fclip = falip.FovealCLIP(tiny_clip, alpha=0.2)
    other = falip.FovealCLIP(tiny_clip, alpha=1.0, sigma=3.0, layers=(2,), form="all")
    with torch.no_grad():
        a = fclip.encode_image(images, boxes=REGIONS, alpha=1.0, sigma=3.0, layers=(2,), form="all")
        b = other.encode_image(images, boxes=REGIONS)
    assert torch.equal(a, b)
    assert fclip.alpha == 0.2  # overrides do not stick


def test_gradients_flow_to_the_image(tiny_clip, images):
    x = images[:1].clone().requires_grad_(True)
    out = falip.FovealCLIP(tiny_clip, alpha=1.0).encode_image(x, boxes=[REGIONS[0]])
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_normalize_and_text_tower(tiny_clip, images):
    fclip = falip.FovealCLIP(tiny_clip)
    feats = fclip.encode_image(images, boxes=REGIONS, normalize=True)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(5), atol=1e-5)
    tokens = open_clip.get_tokenizer("ViT-B-16", context_length=16)(["a photo of a cat"])
    assert torch.equal(fclip.encode_text(tokens), tiny_clip.encode_text(tokens))


def test_default_layers_are_last_four():
    assert falip.FovealCLIP(make_tiny_clip(layers=6)).layers == (2, 3, 4, 5)
    assert falip.FovealCLIP(make_tiny_clip(layers=2)).layers == (0, 1)
    assert falip.FovealCLIP(make_tiny_clip(layers=6), layers=[-1, 0]).layers == (0, 5)


@pytest.mark.slow
def test_vit_l14_geometry_runs():
    model = open_clip.create_model("ViT-L-14", pretrained=None).eval()
    fclip = falip.FovealCLIP(model)
    assert fclip.grid_size == (16, 16) and fclip.layers == (20, 21, 22, 23)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = fclip.encode_image(x, boxes=[torch.tensor([[0.0, 0.0, 100.0, 50.0], [13.0, 13.0, 15.0, 15.0]])])
        zero = fclip.encode_image(x, boxes=[torch.tensor([[0.0, 0.0, 100.0, 50.0]])], alpha=0.0)
        plain = model.encode_image(x)
    assert out.shape == (2, 768) and torch.isfinite(out).all()
    assert (zero - plain).abs().max().item() <= 1e-5


# --------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(boxes=[torch.tensor([[float("nan"), 0, 5, 5]])] * 3), r"boxes\[0\]\[0\] contains NaN"),
        (dict(boxes=[torch.zeros(0, 4), torch.tensor([[9.0, 0, 5, 5]]), torch.zeros(0, 4)]), r"boxes\[1\]\[0\] is inverted"),
        (dict(boxes=[torch.tensor([[40.0, 40, 50, 50]])] * 3), "wholly outside"),
        (dict(boxes=[torch.tensor([[0.0, 0, 5, 5]])]), "boxes has 1 entries but there are 3 images"),
        (dict(boxes=torch.zeros(3, 1, 4)), "boxes must be a list"),
        (dict(boxes=[torch.zeros(1, 3)] * 3), r"boxes\[0\] must have shape \[K, 4\]"),
        (dict(masks=[torch.ones(1, 16, 16, dtype=torch.bool)] * 3), r"masks\[0\] has shape \(1, 16, 16\)"),
        (dict(masks=[torch.ones(32, 32, dtype=torch.bool)] * 3), "add a region axis"),
        (dict(masks=[torch.ones(1, 32, 32)] * 3), "must be a bool tensor"),
        (dict(masks=[torch.zeros(1, 32, 32, dtype=torch.bool)] * 3), r"masks\[0\]\[0\] is empty"),
        (dict(boxes=[torch.zeros(0, 4)] * 3, masks=[torch.zeros(0, 32, 32, dtype=torch.bool)] * 3), "either boxes or masks"),
        (dict(boxes=[torch.zeros(0, 4)] * 3, alpha=-1.0), "alpha must be"),
        (dict(boxes=[torch.zeros(0, 4)] * 3, form="row"), "form must be one of"),
        (dict(boxes=[torch.zeros(0, 4)] * 3, layers=[3]), "index 3 is out of range"),
    ],
)
def test_bad_input_names_the_problem(tiny_clip, images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        falip.FovealCLIP(tiny_clip).encode_image(images, **kwargs)


def test_bad_images(tiny_clip):
    fclip = falip.FovealCLIP(tiny_clip)
    with pytest.raises(ValueError, match=r"images must be a float tensor \[N, 3, H, W\]"):
        fclip.encode_image(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="the model takes"):
        fclip.encode_image(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(alpha=-0.5), "alpha must be"),
        (dict(sigma=0.0), "sigma must be"),
        (dict(form="diagonal"), "form must be one of"),
        (dict(layers=[0, 7]), "index 7 is out of range"),
        (dict(layers=[]), "at least one block"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_settings(tiny_clip, kwargs, message):
    with pytest.raises(ValueError, match=message):
        falip.FovealCLIP(tiny_clip, **kwargs)


def test_models_without_cls_pooling_are_refused():
    with pytest.raises(ValueError, match="no \\[CLS\\] token to pool from"):
        falip.FovealCLIP(make_tiny_clip(pool_type="avg"))
    with pytest.raises(ValueError, match="no \\[CLS\\] token to pool from"):
        falip.FovealCLIP(make_tiny_clip(attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=2))
    resnet = open_clip.CLIP(
        embed_dim=32,
        vision_cfg=dict(image_size=64, layers=(1, 1, 1, 1), width=16, head_width=16),
        text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    )
    with pytest.raises(ValueError, match="not an open_clip VisionTransformer"):
        falip.FovealCLIP(resnet)
    with pytest.raises(ValueError, match="no .visual"):
        falip.FovealCLIP(torch.nn.Linear(2, 2))


def _plain_per_region(model, image, box, alpha, sigma, layers, form):
    """Every block on all tokens with the full mask: no sharing, no [CLS]-only shortcuts."""
    from falip.core.attention import block_forward
    from falip.core.mask import boxes_to_roa, foveal_profile, full_mask

    v = model.visual
    roa = boxes_to_roa(torch.tensor([box], dtype=torch.float64), v.grid_size, v.patch_size)
    m = full_mask(foveal_profile(roa, alpha, sigma), form)[:, None].float()  # [1, 1, L, L]
    x = v._embeds(image[None])
    for i, block in enumerate(v.transformer.resblocks):
        x = block_forward(block, x, m if i in layers else None)
    return v.ln_post(x[:, 0]) @ v.proj


@pytest.mark.parametrize(
    "extra",
    [{}, dict(qk_norm=True, scale_heads=True, scale_attn=True), dict(scale_attn_inner=True, scale_fc=True)],
)
@pytest.mark.parametrize("layers", [(0,), (0, 1, 2, 3), (1, 3), (2, 3), (3,)])
def test_shortcuts_equal_plain_per_region_forward(extra, layers):
    model = make_tiny_clip(layers=4, **extra)
    with torch.no_grad():
        for block in model.visual.transformer.resblocks:
            if getattr(block.attn, "head_scale", None) is not None:
                block.attn.head_scale.uniform_(0.5, 1.5)
    torch.manual_seed(6)
    images = torch.randn(2, 3, 32, 32)
    boxes = [torch.tensor([[0.0, 0.0, 12.0, 20.0], [9.0, 9.0, 31.0, 30.0]]), torch.tensor([[3.0, 17.0, 8.0, 25.0]])]
    fclip = falip.FovealCLIP(model, alpha=3.0, sigma=1.5, layers=layers)
    with torch.no_grad():
        got = fclip.encode_image(images, boxes=boxes)
        ref = torch.cat([
            _plain_per_region(model, images[i], box, 3.0, 1.5, set(layers), "cls")
            for i, bs in enumerate(boxes) for box in bs.tolist()
        ])
    assert (got - ref).abs().max().item() <= 1e-5
