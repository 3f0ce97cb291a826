"""Preprocessing geometry: boxes and masks follow the image through squash and crop modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import falip
from falip.core.preprocess import OPENAI_MEAN, OPENAI_STD, Preprocess
from support.tiny import make_tiny_clip


def white_rectangle(size, box):
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = 255
    return Image.fromarray(array)


def bright_bounds(image: Image.Image):
    a = np.asarray(image.convert("L")) > 127
    ys, xs = np.nonzero(a)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_squash_maps_boxes_by_scale():
    pre = Preprocess(32)
    out = pre.map_boxes([[0, 0, 100, 50], [50, 25, 200, 100]], (200, 100))
    assert out.tolist() == [[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 32.0, 32.0]]
    xywh = pre.map_boxes([[50, 25, 150, 75]], (200, 100), box_format="xywh")
    assert xywh.tolist() == [[8.0, 8.0, 32.0, 32.0]]


@pytest.mark.parametrize("mode", ["squash", "crop"])
@pytest.mark.parametrize("size,box", [((300, 200), (60, 40, 180, 150)), ((150, 320), (10, 100, 140, 200))])
def test_mapped_box_bounds_the_drawn_rectangle(mode, size, box):
    pre = Preprocess(64, mode=mode)
    resized = pre.resize(white_rectangle(size, box))
    assert resized.size == (64, 64)
    mapped = pre.map_boxes([box], size)[0].tolist()
    got = bright_bounds(resized)
    assert all(abs(g - m) <= 1.5 for g, m in zip(got, mapped)), (got, mapped)


def test_crop_mode_offsets_and_rejects_boxes_outside_the_crop():
    pre = Preprocess(32, mode="crop")
    # 64 x 32 (W x H): the short side is already 32, the crop keeps x in [16, 48)
    assert pre.map_boxes([[16, 0, 48, 32]], (64, 32)).tolist() == [[0.0, 0.0, 32.0, 32.0]]
    assert pre.map_boxes([[0, 0, 20, 10]], (64, 32)).tolist() == [[0.0, 0.0, 4.0, 10.0]]  # clipped
    with pytest.raises(ValueError, match="wholly outside"):
        pre.map_boxes([[0, 0, 10, 10]], (64, 32))


def test_to_tensor_normalises():
    pre = Preprocess(8)
    image = Image.new("RGB", (8, 8), (255, 0, 128))
    t = pre(image)
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(OPENAI_MEAN)) / torch.tensor(OPENAI_STD)
    assert t.shape == (3, 8, 8)
    assert torch.allclose(t[:, 3, 3], expected, atol=1e-6)
    raw = Preprocess(8, mean=None, std=None)(image)
    assert torch.allclose(raw[:, 0, 0], torch.tensor([1.0, 0.0, 128 / 255]))


def test_masks_follow_the_image():
    pre = Preprocess(32, mode="crop")
    mask = np.zeros((40, 80), dtype=bool)
    mask[10:30, 30:50] = True
    out = pre.map_masks(mask)
    assert out.shape == (1, 32, 32) and out.dtype == torch.bool
    ys, xs = np.nonzero(out[0].numpy())
    box = pre.map_boxes([[30, 10, 50, 30]], (80, 40))[0].tolist()
    assert abs(xs.min() - box[0]) <= 1 and abs(xs.max() + 1 - box[2]) <= 1
    assert abs(ys.min() - box[1]) <= 1 and abs(ys.max() + 1 - box[3]) <= 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of"):
        Preprocess(32, mode="letterbox")
    with pytest.raises(ValueError, match="box_format must be one of"):
        Preprocess(32).map_boxes([[0, 0, 1, 1]], (10, 10), box_format="cxcywh")
    with pytest.raises(ValueError, match=r"shape \[K, 4\]"):
        Preprocess(32).map_boxes([[0, 0, 1]], (10, 10))
    with pytest.raises(ValueError, match="PIL.Image"):
        Preprocess(32).resize(np.zeros((4, 4, 3)))


def test_encode_pil_equals_manual_pipeline():
    model = make_tiny_clip()
    fclip = falip.FovealCLIP(model, alpha=2.0)
    fclip.preprocess = Preprocess(32)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)) for _ in range(2)]
    boxes = [[[10, 5, 40, 30]], [[0, 0, 90, 60], [45, 30, 20, 20]]]
    with torch.no_grad():
        got = fclip.encode_pil(images, boxes=[np.array(boxes[0]), np.array(boxes[1][:1])])
        got_xywh = fclip.encode_pil(images[1:], boxes=[np.array(boxes[1][1:])], box_format="xywh")
        batch = torch.stack([fclip.preprocess(im) for im in images])
        manual = fclip.encode_image(
            batch,
            boxes=[
                fclip.preprocess.map_boxes(boxes[0], (90, 60)),
                fclip.preprocess.map_boxes(boxes[1][:1], (90, 60)),
            ],
        )
        manual_xywh = fclip.encode_image(batch[1:], boxes=[fclip.preprocess.map_boxes([[45, 30, 65, 50]], (90, 60))])
    assert torch.equal(got, manual)
    assert torch.equal(got_xywh, manual_xywh)
