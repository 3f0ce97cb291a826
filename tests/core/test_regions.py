"""Regions: the one validator, errors in the caller's terms, and the one original -> input mapping."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from falip.core.errors import FalipError
from falip.core.regions import Regions, Resize, check_boxes


@pytest.mark.parametrize(
    "boxes,message",
    [
        (
            [[0, 0, 5, 5], [0, 0, 5, 5], [90, 110, 20, 40]],
            r"box 2 \(90, 110, 20, 40\) of a 256x192 image is inverted \(x1 < x0\)",
        ),
        ([[10, 50, 20, 40]], r"box 0 \(10, 50, 20, 40\) of a 256x192 image is inverted \(y1 < y0\)"),
        ([[10, 20, 10, 40]], r"box 0 \(10, 20, 10, 40\) of a 256x192 image is empty \(zero width\)"),
        ([[10, 20, 15, 20]], r"is empty \(zero height\)"),
        ([[float("nan"), 0, 5, 5]], r"box 0 \(nan, 0, 5, 5\) of a 256x192 image has a NaN or infinite coordinate"),
        ([[0, 0, float("inf"), 5]], "NaN or infinite"),
        ([[256, 0, 300, 5]], r"box 0 \(256, 0, 300, 5\) of a 256x192 image lies wholly outside it"),
        ([[-9, -9, -1, -1]], "lies wholly outside"),
        ([[0, 192, 5, 200]], "lies wholly outside"),
        ([[1, 2, 3]], r"shape \[K, 4\]"),
        ([1, 2, 3, 4], "wrap it in a list"),
        ([["a", 1, 2, 3]], "must be numbers"),
    ],
)
def test_box_errors_name_the_box_in_the_callers_coordinates(boxes, message):
    with pytest.raises(FalipError, match=message):
        Regions(boxes, image_size=(256, 192))


def test_xywh_is_converted_and_errors_show_the_box_as_written():
    r = Regions([[10, 20, 30, 40]], image_size=(256, 192), box_format="xywh")
    assert r.boxes.tolist() == [[10, 20, 40, 60]]
    with pytest.raises(FalipError, match=r"box 0 \(10, 20, -3, 4\) of a 256x192 image has a negative width"):
        Regions([[10, 20, -3, 4]], image_size=(256, 192), box_format="xywh")
    with pytest.raises(FalipError, match=r"\(10, 20, 0, 4\) of a 256x192 image is empty"):
        Regions([[10, 20, 0, 4]], image_size=(256, 192), box_format="xywh")


def test_input_frame_errors_say_model_input():
    with pytest.raises(FalipError, match=r"box 0 \(3, 3, 1, 9\) of the 224x224 model input is inverted"):
        Regions([[3, 3, 1, 9]], image_size=(224, 224), frame="input")


def test_readers_validate_without_an_image_size_and_with_their_own_names():
    with pytest.raises(FalipError, match=r"val.jsonl:7: anns\[1\].bbox \(1, 2, 0, 5\) is empty"):
        check_boxes([[0, 0, 1, 1], [1, 2, 0, 5]], box_format="xywh", names=["x", "val.jsonl:7: anns[1].bbox"])
    assert check_boxes([[1e6, 1e6, 1, 1]], box_format="xywh").shape == (1, 4)  # no size: no outside check


def test_accepts_numpy_torch_lists_and_empty():
    for boxes in (np.array([[1.0, 2, 3, 4]]), torch.tensor([[1.0, 2, 3, 4]]), [[1, 2, 3, 4]], ((1, 2, 3, 4),)):
        assert Regions(boxes, image_size=(8, 8)).boxes.tolist() == [[1, 2, 3, 4]]
    assert len(Regions([], image_size=(8, 8))) == 0
    assert len(Regions(np.zeros((0, 4)), image_size=(8, 8))) == 0


def test_needs_an_image_size_for_boxes_and_takes_it_from_masks():
    with pytest.raises(FalipError, match="image_size"):
        Regions([[0, 0, 1, 1]])
    r = Regions(masks=np.ones((2, 5, 7), dtype=bool))
    assert r.image_size == (7, 5) and len(r) == 2


def test_masks_validated_and_their_bounding_boxes_derived():
    masks = np.zeros((2, 6, 10), dtype=np.uint8)
    masks[0, 1:3, 2:5] = 1
    masks[1, 5, 9] = 1
    r = Regions(masks=masks, image_size=(10, 6))
    assert r.masks.dtype == bool and not r.has_boxes
    assert r.boxes.tolist() == [[2, 1, 5, 3], [9, 5, 10, 6]]
    with pytest.raises(FalipError, match="mask 1 of a 10x6 image is empty"):
        Regions(masks=np.stack([masks[0], np.zeros((6, 10))]))
    with pytest.raises(FalipError, match=r"masks are 10x6 \(width x height\) but they are for a 12x6 image"):
        Regions(masks=masks, image_size=(12, 6))
    with pytest.raises(FalipError, match="binary"):
        Regions(masks=masks * 0.5)
    with pytest.raises(FalipError, match="2 boxes but 1 masks"):
        Regions([[0, 0, 1, 1], [0, 0, 2, 2]], masks=masks[:1], image_size=(10, 6))


def test_clipped_boxes_clip_to_the_frame():
    r = Regions([[-5, 3, 40, 50]], image_size=(32, 32))
    assert r.boxes.tolist() == [[-5, 3, 40, 50]]  # kept as given
    assert r.clipped_boxes().tolist() == [[0, 3, 32, 32]]


def test_squash_mapping():
    r = Regions([[10, 20, 110, 60]], image_size=(200, 100)).to_input(Resize((50, 40)))
    assert r.frame == "input" and r.image_size == (40, 50)
    np.testing.assert_allclose(r.boxes, [[2, 10, 22, 30]])


def test_crop_mapping_and_a_box_outside_the_crop():
    geo = Resize((100, 100), "crop")  # a 400x200 image -> 200x100, crop x from 50 to 150 (original 100..300)
    assert geo.layout((400, 200)) == (200, 100, 50, 0)
    assert geo.visible_box((400, 200)) == (100, 0, 300, 200)
    r = Regions([[90, 0, 200, 100]], image_size=(400, 200)).to_input(geo)
    np.testing.assert_allclose(r.boxes, [[0, 0, 50, 50]])  # clipped to the crop
    with pytest.raises(
        FalipError,
        match=r"box 0 \(0, 0, 100, 200\) of a 400x200 image lies wholly outside the centre crop \(100, 0, 300, 200\)",
    ):
        Regions([[0, 0, 100, 200]], image_size=(400, 200)).to_input(geo)


def test_mask_mapping_nearest_and_a_vanishing_mask():
    masks = np.zeros((1, 100, 100), dtype=bool)
    masks[0, :50, :50] = True
    out = Regions(masks=masks).to_input(Resize((10, 10)))
    assert out.masks.shape == (1, 10, 10) and out.masks[0, :5, :5].all() and out.masks[0].sum() == 25
    tiny = np.zeros((1, 1000, 1000), dtype=bool)
    tiny[0, 1, 1] = True
    with pytest.raises(
        FalipError, match=r"mask 0 of a 1000x1000 image \(1 pixels\) vanishes when resized to the 224x224 model input"
    ):
        Regions(masks=tiny).to_input(Resize((224, 224)))
    left = np.zeros((1, 200, 400), dtype=bool)
    left[0, 50:60, 10:20] = True
    with pytest.raises(FalipError, match="lies wholly outside the centre crop"):
        Regions(masks=left).to_input(Resize((100, 100), "crop"))


def test_input_frame_regions_must_match_the_input_size():
    r = Regions([[0, 0, 4, 4]], image_size=(32, 32), frame="input")
    assert r.to_input(Resize((32, 32))) is r
    with pytest.raises(FalipError, match="model input is 40x32"):
        r.to_input(Resize((32, 40)))


def test_describe_and_repr():
    r = Regions([[0, 0, 4.5, 4]], image_size=(32, 16))
    assert r.describe(0) == "box 0 (0, 0, 4.5, 4) of a 32x16 image"
    assert repr(r) == "Regions(1 boxes, a 32x16 image)"


def test_regions_import_without_torch():
    code = "import sys, falip.core.regions, falip; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
