"""COCO instances and panoptic readers on files written here in COCO's formats (FORMATS.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from falip.core.errors import FalipError
from falip.data import synthetic
from falip.data.coco import CocoInstances, CocoPanoptic, CocoRegion
from falip.data.reclip import decode_segmentation
from falip.data.records import Skipped


def _naive_rle(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with a run of zeros, by hand."""
    runs, current, n = [], 0, 0
    for x in range(mask.shape[1]):
        for y in range(mask.shape[0]):
            v = int(mask[y, x])
            if v != current:
                runs.append(n)
                current, n = v, 0
            n += 1
    runs.append(n)
    return runs


def _write(tmp_path, data, images=((1, 40, 30),)):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    for iid, w, h in images:
        Image.new("RGB", (w, h), (9, 9, 9)).save(tmp_path / "imgs" / f"{iid}.png")
    data.setdefault("images", [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i, w, h in images])
    data.setdefault("categories", [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog"}])
    path = tmp_path / "inst.json"
    path.write_text(json.dumps(data))
    return path


def test_rle_counts_both_encodings_match_a_hand_written_rle():
    rng = np.random.default_rng(0)
    mask = rng.random((7, 5)) > 0.5
    mask[0, 0] = True  # a first run of zero zeros
    counts = _naive_rle(mask)
    assert counts[0] == 0
    got = decode_segmentation({"size": [7, 5], "counts": counts}, 7, 5)
    np.testing.assert_array_equal(got, mask)
    from pycocotools import mask as mask_utils

    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    got = decode_segmentation({"size": [7, 5], "counts": enc["counts"].decode("ascii")}, 7, 5)
    np.testing.assert_array_equal(got, mask)
    with pytest.raises(FalipError, match="differs from the image"):
        decode_segmentation({"size": [7, 5], "counts": counts}, 5, 7)


def test_instances_boxes_masks_classes_and_counted_skips(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 8], "iscrowd": 0,
         "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1,
         "segmentation": {"size": [30, 40], "counts": [0, 900, 300]}},
        {"id": 3, "image_id": 1, "category_id": 99, "bbox": [0, 0, 5, 5], "iscrowd": 0, "segmentation": []},
        {"id": 4, "image_id": 5, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0, "segmentation": []},
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [4, 4, 0, 6], "iscrowd": 0, "segmentation": []},
        {"id": 6, "image_id": 1, "category_id": 1, "bbox": [1, 1, 6, 6], "iscrowd": 0,
         "segmentation": [[100, 100, 120, 100, 120, 120]]},
    ]  # fmt: skip
    path = _write(tmp_path, {"annotations": anns})
    ds = CocoInstances(path, tmp_path / "imgs", region="box")
    assert ds.classes == ["cat", "dog"] and ds.category_ids == [1, 7]
    items = list(ds)
    assert ds.counts["crowd"] == 1
    good = [i for i in items if isinstance(i, CocoRegion)]
    bad = {i.id: i.reason for i in items if isinstance(i, Skipped)}
    assert [g.id for g in good] == ["inst.json:1", "inst.json:6"]
    assert good[0].label == "dog" and good[0].label_index == 1 and good[0].box == (2.0, 3.0, 12.0, 11.0)
    assert "category_id 99 is not in the file's categories" in bad["inst.json:3"]
    assert "image_id 5 is not in the file's images" in bad["inst.json:4"]
    assert "empty" in bad["inst.json:5"] or "zero" in bad["inst.json:5"]
    r = good[0].regions((40, 30))
    assert r.masks is None and np.allclose(r.boxes, [[2, 3, 12, 11]])
    # masks: the polygon wholly outside the image is a counted skip, named in the file's terms
    ds = CocoInstances(path, tmp_path / "imgs", region="mask")
    items = list(ds)
    bad = {i.id: i.reason for i in items if isinstance(i, Skipped)}
    assert "polygon wholly outside it" in bad["inst.json:6"]
    first = next(i for i in items if isinstance(i, CocoRegion))
    m = first.regions((40, 30)).masks[0]
    assert m[5, 5] and not m[20, 20] and m.shape == (30, 40)
    with pytest.raises(FalipError, match="inst.json: annotation 1: the image is 41x30 px"):
        first.regions((41, 30))
    with pytest.raises(FalipError, match="annotation 3: category_id 99"):
        list(CocoInstances(path, tmp_path / "imgs", errors="raise"))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"images": [], "annotations": []}, "`categories` is missing"),
        ({"images": [], "annotations": [], "categories": []}, "`categories` is empty"),
        ({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]},
         "categories 1 and 2 are both named 'a'"),
        ([1, 2], "a COCO annotation file is a JSON object"),
    ],
)  # fmt: skip
def test_bad_files_name_the_file_and_the_item(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    (tmp_path / "imgs").mkdir()
    with pytest.raises(FalipError, match=message) as e:
        CocoInstances(path, tmp_path / "imgs")
    assert "bad.json" in str(e.value)


def test_synthetic_writers_read_back_exactly(tmp_path):
    scenes = synthetic.classification_scenes(seed=3, n_scenes=3, min_objects=2, max_objects=3)
    for mode in ("compressed", "uncompressed"):
        path = synthetic.write_coco_instances(scenes, tmp_path / mode, rle=mode)
        ds = CocoInstances(path, tmp_path / mode / "instances_synthetic", region="mask")
        items = list(ds)
        assert all(isinstance(i, CocoRegion) for i in items)
        assert len(items) == sum(len(s.objects) for s in scenes)
        k = 0
        for s in scenes:
            for j, o in enumerate(s.objects):
                assert items[k].label == o.label and items[k].box == tuple(float(v) for v in o.box)
                np.testing.assert_array_equal(items[k].mask(), s.masks[j])
                k += 1
    path = synthetic.write_coco_panoptic(scenes, tmp_path / "pan")
    ds = CocoPanoptic(path, tmp_path / "pan" / "panoptic_synthetic")
    items = list(ds)
    for item in items:
        scene = scenes[item.image_id - 1]
        visible = scene.masks[item.segment_id - 1].copy()
        for later in scene.masks[item.segment_id :]:
            visible &= ~later
        np.testing.assert_array_equal(item.regions(item.image_size).masks[0], visible)
        assert item.label == scene.objects[item.segment_id - 1].label


def test_panoptic_segment_ids_use_all_three_channels(tmp_path):
    (tmp_path / "pan").mkdir()
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (6, 4)).save(tmp_path / "imgs" / "a.png")
    big = 3 + 256 * 2 + 65536 * 1  # needs R, G and B
    ids = np.zeros((4, 6), dtype=np.int64)
    ids[1:3, 2:5] = big
    rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "pan" / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 6, "height": 4}],
        "annotations": [{"image_id": 1, "file_name": "a.png",
                         "segments_info": [{"id": big, "category_id": 4, "bbox": [2, 1, 3, 2], "iscrowd": 0}]}],
        "categories": [{"id": 4, "name": "sky", "isthing": 0}],
    }  # fmt: skip
    (tmp_path / "pan.json").write_text(json.dumps(data))
    (item,) = list(CocoPanoptic(tmp_path / "pan.json", tmp_path / "imgs"))
    np.testing.assert_array_equal(item.mask(), ids == big)
    assert item.label == "sky"
