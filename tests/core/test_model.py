"""FovealCLIP behaviour: batching, chunking, masks vs boxes, geometry, errors."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

import falip
from support.naive import naive_region_feature
from support.tiny import make_tiny_clip


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
        assert torch.allclose(
            fclip.encode_image(images, masks=masks), fclip.encode_image(images, boxes=boxes), atol=1e-6
        )


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


def test_vit_l14_geometry_runs():
    """ViT-L/14's geometry (224 px, 14 px patches, 24 blocks) on a narrow random tower: size does not matter."""
    model = make_tiny_clip(image_size=224, patch_size=14, width=64, layers=24, heads=4)
    fclip = falip.FovealCLIP(model)
    assert fclip.grid_size == (16, 16) and fclip.layers == (20, 21, 22, 23)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = fclip.encode_image(x, boxes=[torch.tensor([[0.0, 0.0, 100.0, 50.0], [13.0, 13.0, 15.0, 15.0]])])
        zero = fclip.encode_image(x, boxes=[torch.tensor([[0.0, 0.0, 100.0, 50.0]])], alpha=0.0)
        plain = model.encode_image(x)
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    assert (zero - plain).abs().max().item() <= 1e-5


# --------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            dict(boxes=[torch.tensor([[float("nan"), 0, 5, 5]])] * 3),
            r"boxes\[0\]: box 0 \(nan, 0, 5, 5\) of the 32x32 model input has a NaN",
        ),
        (
            dict(boxes=[torch.zeros(0, 4), torch.tensor([[9.0, 0, 5, 5]]), torch.zeros(0, 4)]),
            r"boxes\[1\]: box 0 \(9, 0, 5, 5\) of the 32x32 model input is inverted \(x1 < x0\)",
        ),
        (dict(boxes=[torch.tensor([[40.0, 40, 50, 50]])] * 3), "wholly outside"),
        (dict(boxes=[torch.tensor([[0.0, 0, 5, 5]])]), "boxes has 1 entries but there are 3 images"),
        (dict(boxes=torch.zeros(3, 1, 4)), "boxes must be a list"),
        (dict(boxes=[torch.zeros(1, 3)] * 3), r"boxes\[0\]: boxes must have shape \[K, 4\]"),
        (
            dict(masks=[torch.ones(1, 16, 16, dtype=torch.bool)] * 3),
            r"masks\[0\]: masks are 16x16 \(width x height\) but they are for the 32x32 model input",
        ),
        (dict(masks=[torch.full((1, 32, 32), 0.5)] * 3), r"masks\[0\]: masks must be binary"),
        (
            dict(masks=[torch.zeros(1, 32, 32, dtype=torch.bool)] * 3),
            r"masks\[0\]: mask 0 of the 32x32 model input is empty",
        ),
        (
            dict(boxes=[torch.zeros(0, 4)] * 3, masks=[torch.zeros(0, 32, 32, dtype=torch.bool)] * 3),
            "pass one of boxes, masks or regions, not boxes and masks",
        ),
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
    with pytest.raises(ValueError, match="no falip tower adapter fits a torch.nn.modules.linear.Linear"):
        falip.FovealCLIP(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------- FovealCLIP fixes
def test_state_dict_holds_the_model_once(tiny_clip):
    fclip = falip.FovealCLIP(tiny_clip)
    keys = list(fclip.state_dict())
    assert keys == ["model." + k for k in tiny_clip.state_dict()]
    assert fclip.visual is tiny_clip.visual


def test_train_mode_is_refused_with_the_fix(images):
    model = make_tiny_clip(patch_dropout=0.5).train()
    fclip = falip.FovealCLIP(model, alpha=1.0)
    with pytest.raises(falip.FalipError, match=r"train mode .* call fclip.eval\(\)"):
        fclip.encode_image(images, boxes=[torch.tensor([[0.0, 0, 8, 8]])] * 3)
    fclip.eval()
    assert fclip.encode_image(images, boxes=[torch.tensor([[0.0, 0, 8, 8]])] * 3).shape == (3, 32)


def test_numpy_and_torch_numbers_are_accepted(tiny_clip, images):
    boxes = [torch.tensor([[0.0, 0, 12, 20]])] * 3
    ref = falip.FovealCLIP(tiny_clip, alpha=2.0, sigma=1.5, layers=(1, 2), batch_size=2)
    fclip = falip.FovealCLIP(
        tiny_clip, alpha=np.float32(2.0), sigma=torch.tensor(1.5), layers=np.array([1, 2]), batch_size=np.int64(2)
    )
    assert (fclip.alpha, fclip.sigma, fclip.layers, fclip.batch_size) == (2.0, 1.5, (1, 2), 2)
    assert type(fclip.alpha) is float and type(fclip.batch_size) is int
    with torch.no_grad():
        torch.testing.assert_close(fclip.encode_image(images, boxes=boxes), ref.encode_image(images, boxes=boxes))
        over = fclip.encode_image(images, boxes=boxes, alpha=torch.tensor(3.0), layers=torch.tensor([2]))
        torch.testing.assert_close(over, ref.encode_image(images, boxes=boxes, alpha=3.0, layers=[2]))
    with pytest.raises(falip.FalipError, match="alpha must be one number"):
        falip.FovealCLIP(tiny_clip, alpha=np.array([1.0, 2.0]))
    with pytest.raises(falip.FalipError, match="batch_size must be an integer"):
        falip.FovealCLIP(tiny_clip, batch_size=2.5)
    with pytest.raises(falip.FalipError, match="layers must be an integer"):
        falip.FovealCLIP(tiny_clip, layers=[1.5])


def test_per_call_none_means_the_instance_setting(tiny_clip, images):
    fclip = falip.FovealCLIP(tiny_clip, alpha=2.0, sigma=1.0, layers=(2,), form="all")
    boxes = [torch.tensor([[0.0, 0, 12, 20]])] * 3
    with torch.no_grad():
        default = fclip.encode_image(images, boxes=boxes)
        explicit = fclip.encode_image(images, boxes=boxes, alpha=None, sigma=None, layers=None, form=None)
        other = fclip.encode_image(images, boxes=boxes, layers=(0, 1, 2))
    assert torch.equal(default, explicit)
    assert (default - other).abs().max() > 1e-4


def test_image_dtypes(tiny_clip, images):
    fclip = falip.FovealCLIP(tiny_clip, alpha=2.0)
    boxes = [torch.tensor([[0.0, 0, 12, 20]])] * 3
    with torch.no_grad():
        ref = fclip.encode_image(images, boxes=boxes)
        torch.testing.assert_close(fclip.encode_image(images.double(), boxes=boxes), ref)  # cast to the model's
        torch.testing.assert_close(fclip.encode_image(images.double()), tiny_clip.encode_image(images))
    with pytest.raises(falip.FalipError, match="torch.uint8; normalise them first"):
        fclip.encode_image((images * 50 + 100).clamp(0, 255).to(torch.uint8), boxes=boxes)


def test_empty_batch_and_nan_pixels(tiny_clip, images):
    fclip = falip.FovealCLIP(tiny_clip, alpha=2.0)
    empty = torch.zeros(0, 3, 32, 32)
    assert fclip.encode_image(empty).shape == (0, 32)
    assert fclip.encode_image(empty, boxes=[]).shape == (0, 32)
    bad = images.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(falip.FalipError, match="image 1 of the batch has NaN"):
        fclip.encode_image(bad, boxes=[torch.tensor([[0.0, 0, 12, 20]])] * 3)


def test_regions_argument_and_encode_pil_errors_in_original_pixels(tiny_clip):
    from PIL import Image

    fclip, preprocess, _ = falip.load("falip-tiny")
    image = Image.new("RGB", (256, 192), (200, 30, 30))
    with pytest.raises(falip.FalipError, match=r"box 1 \(90, 110, 20, 40\) of a 256x192 image is inverted \(x1 < x0\)"):
        fclip.encode_pil([image], boxes=[[[0, 0, 50, 50], [90, 110, 20, 40]]])
    regions = falip.Regions([[0, 0, 50, 50]], image_size=image.size)
    with torch.no_grad():
        a = fclip.encode_pil([image], regions=[regions])
        b = fclip.encode_image(preprocess(image)[None], regions=[preprocess.map_regions(regions)])
    torch.testing.assert_close(a, b)
    with pytest.raises(falip.FalipError, match="'original' frame; encode_image takes model-input regions"):
        fclip.encode_image(preprocess(image)[None], regions=[regions])


def test_encode_pil_refuses_regions_of_another_image_size_as_the_scorer_does():
    """Issue 21 item 3: a Regions for a 1000x1000 image with a 160x120 image gave features (and a box at
    500-900 px, wholly outside the real image, was accepted); both entry points share one check."""
    from PIL import Image

    fclip, preprocess, tokenizer = falip.load("falip-tiny")
    image = Image.new("RGB", (160, 120), (200, 30, 30))
    regions = falip.Regions([[500, 500, 900, 900]], image_size=(1000, 1000))
    message = r"regions\[0\] are for an image of 1000x1000, but image 0 is 160x120"
    with pytest.raises(falip.FalipError, match=message):
        fclip.encode_pil([image], regions=[regions])
    with pytest.raises(falip.FalipError, match=message):
        falip.RegionScorer(fclip, preprocess, tokenizer).score(image, regions, "a cat")
    model_input = preprocess.map_regions(falip.Regions([[0, 0, 50, 50]], image_size=image.size))
    with pytest.raises(falip.FalipError, match=r"regions\[0\] are for a model input of"):
        fclip.encode_pil([image], regions=[model_input])
