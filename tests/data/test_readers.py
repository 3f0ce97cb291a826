"""Readers on hand-written fixture files in the published formats, including malformed input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from falip.data import reclip as datasets

REC_LINE = {
    "file_name": "COCO_train2014_000000581857_16.jpg",
    "image_id": 581857,
    "anns": [
        {"id": 1719310, "bbox": [103.93, 299.99, 134.22, 177.39], "category_id": 1,
         "segmentation": [[110.0, 300.0, 230.0, 300.0, 230.0, 470.0, 110.0, 470.0]], "area": 100.0},
        {"id": 1720105, "bbox": [0, 0, 50, 40], "category_id": 3,
         "segmentation": {"size": [4, 3], "counts": [1, 2, 3, 6]}},
    ],
    "ann_id": 1719310,
    "sentences": [{"raw": "The lady with the blue shirt", "sent": "the lady with the blue shirt"},
                  {"raw": "lady in back", "sent": "lady in back"}],
    "category_id": 1,
    "split": "testA",
}


def _write_lines(path, lines):
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return path


def test_reclip_reader_reads_every_sentence(tmp_path):
    second = dict(REC_LINE, file_name="COCO_train2014_000000000042_3.jpg", image_id="42",
                  ann_id=["1720105", 1719310], sentences=[{"raw": "left car"}])
    p = _write_lines(tmp_path / "refcoco_testa.jsonl", [REC_LINE, "", second])
    s = datasets.read_reclip_jsonl(p, image_root=tmp_path / "train2014")
    assert [x.sentence for x in s] == ["The lady with the blue shirt", "lady in back", "left car"]
    assert s[0].image_path == tmp_path / "train2014" / "COCO_train2014_000000581857.jpg"
    assert s[2].image_path.name == "COCO_train2014_000000000042.jpg" and s[2].image_id == "42"
    assert s[0].anns[0].box == pytest.approx((103.93, 299.99, 238.15, 477.38))
    assert s[0].boxes.shape == (2, 4)
    assert s[0].gold_indices == (0,)
    assert s[2].gold_indices == (0, 1)  # str and int ids both match
    assert s[0].extra == {"category_id": 1, "split": "testA"}
    assert datasets.read_reclip_jsonl(p)[0].image_path.parent == tmp_path  # default root


def test_coco_image_name():
    assert datasets.coco_image_name("COCO_train2014_000000581857_16.jpg") == "COCO_train2014_000000581857.jpg"
    assert datasets.coco_image_name("synth_val_000000000007_12.png") == "synth_val_000000000007.png"
    assert datasets.coco_image_name("photo_2_3.jpg") == "photo_2_3.jpg"
    assert datasets.coco_image_name("COCO_train2014_000000581857.jpg") == "COCO_train2014_000000581857.jpg"


def test_segmentation_decoding():
    poly = datasets.decode_segmentation([[1, 1, 4, 1, 4, 3, 1, 3]], 5, 6)
    assert poly.shape == (5, 6) and poly[2, 2] and not poly[0, 0] and not poly[4, 5]
    # uncompressed RLE, column-major, starting with background: 1 off, 2 on, 3 off, 6 on
    rle = datasets.decode_segmentation({"size": [4, 3], "counts": [1, 2, 3, 6]}, 4, 3)
    expected = np.zeros(12, dtype=bool)
    expected[1:3] = True
    expected[6:12] = True
    assert np.array_equal(rle, expected.reshape(3, 4).T)
    with pytest.raises(ValueError, match="sum"):
        datasets.decode_segmentation({"size": [4, 3], "counts": [1, 2]}, 4, 3)


def _coco_rle_string(counts):
    """COCO's compressed-RLE encoder, written from its description, to check the decoder."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_compressed_rle_matches_uncompressed():
    rng = np.random.default_rng(0)
    mask = rng.random((23, 17)) < 0.3
    mask[5:15, 3:12] = True
    from falip.data.synthetic import mask_to_rle

    rle = mask_to_rle(mask)
    s = _coco_rle_string(rle["counts"])
    assert np.array_equal(datasets.decode_segmentation({"size": rle["size"], "counts": s}, 23, 17), mask)
    assert np.array_equal(datasets.decode_segmentation({"size": rle["size"], "counts": s.encode()}, 23, 17), mask)
    assert np.array_equal(datasets.decode_segmentation(rle, 23, 17), mask)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({k: v for k, v in REC_LINE.items() if k != "sentences"}, "missing key 'sentences'"),
        (dict(REC_LINE, anns=[]), "anns must be a non-empty list"),
        (dict(REC_LINE, anns=[{"id": 1719310, "bbox": [1, 2, 3]}]), "bbox must be a list of 4"),
        (dict(REC_LINE, anns=[{"id": 1719310, "bbox": [1, 2, -3, 4]}]), "negative width"),
        (dict(REC_LINE, ann_id=999), "not among the ids"),
        (dict(REC_LINE, ann_id=[]), "ann_id must be"),
        (dict(REC_LINE, sentences=[{"sent": "x"}]), "string 'raw'"),
        (dict(REC_LINE, file_name=""), "file_name"),
    ],
)
def test_reclip_reader_errors_name_file_and_line(tmp_path, line, message):
    p = _write_lines(tmp_path / "bad.jsonl", [REC_LINE, line])
    with pytest.raises(ValueError, match=message) as e:
        datasets.read_reclip_jsonl(p)
    assert f"{p}:2:" in str(e.value)


def test_classification_reader(tmp_path):
    abs_img = tmp_path / "elsewhere" / "a.jpg"
    lines = [
        {"image": "imgs/0001.jpg", "box": [10, 20, 110, 220.5], "label": "Black footed Albatross"},
        {"image": str(abs_img), "box": [0, 0, 5, 5], "mask": "masks/0002.png", "label": "dog"},
    ]
    p = _write_lines(tmp_path / "items.jsonl", lines)
    items = datasets.read_classification_jsonl(p)
    assert items[0].image_path == tmp_path / "imgs" / "0001.jpg" and items[0].mask_path is None
    assert items[0].box == (10.0, 20.0, 110.0, 220.5) and items[0].label == "Black footed Albatross"
    assert items[1].image_path == abs_img and items[1].mask_path == tmp_path / "masks" / "0002.png"
    other = datasets.read_classification_jsonl(p, root=tmp_path / "r")
    assert other[0].image_path == tmp_path / "r" / "imgs" / "0001.jpg"


@pytest.mark.parametrize(
    "line, message",
    [
        ({"box": [0, 0, 1, 1], "label": "x"}, "missing key 'image'"),
        ({"image": "a.jpg", "box": [0, 0, 1], "label": "x"}, "box must be a list of 4"),
        ({"image": "a.jpg", "box": [5, 0, 1, 1], "label": "x"}, "x1 > x0"),
        ({"image": "a.jpg", "box": [0, 0, 1, "1"], "label": "x"}, "finite numbers"),
        ({"image": "a.jpg", "box": [0, 0, 1, float("nan")], "label": "x"}, "finite numbers"),
        ({"image": "a.jpg", "box": [0, 0, 1, 1], "label": 3}, "label must be"),
        ({"image": "a.jpg", "box": [0, 0, 1, 1], "label": "x", "mask": 5}, "mask must be"),
        ('"just a string"', "expected a JSON object"),
    ],
)
def test_classification_reader_errors_name_file_and_line(tmp_path, line, message):
    good = {"image": "a.jpg", "box": [0, 0, 1, 1], "label": "x"}
    p = _write_lines(tmp_path / "bad.jsonl", [good, good, line])
    with pytest.raises(ValueError, match=message) as e:
        datasets.read_classification_jsonl(p)
    assert f"{p}:3:" in str(e.value)
