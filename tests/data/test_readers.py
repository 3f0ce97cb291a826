"""Readers on hand-written fixture files in the published formats, including malformed input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from falip.core.errors import FalipError
from falip.core.regions import Regions
from falip.data import classification, reclip

REC_LINE = {
    "file_name": "COCO_train2014_000000581857_16.jpg",
    "image_id": 581857,
    "anns": [
        {
            "id": 1719310,
            "bbox": [103.93, 299.99, 134.22, 177.39],
            "category_id": 1,
            "segmentation": [[110.0, 300.0, 230.0, 300.0, 230.0, 470.0, 110.0, 470.0]],
            "area": 100.0,
        },
        {
            "id": 1720105,
            "bbox": [0, 0, 50, 40],
            "category_id": 3,
            "segmentation": {"size": [4, 3], "counts": [1, 2, 3, 6]},
        },
    ],
    "ann_id": 1719310,
    "sentences": [
        {"raw": "The lady with the blue shirt", "sent": "the lady with the blue shirt"},
        {"raw": "lady in back", "sent": "lady in back"},
    ],
    "category_id": 1,
    "split": "testA",
}


def _write_lines(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_reclip_reader_reads_every_sentence(tmp_path):
    second = dict(
        REC_LINE,
        file_name="COCO_train2014_000000000042_3.jpg",
        image_id="42",
        ann_id=["1720105", 1719310],
        sentences=[{"raw": "left car"}],
    )
    p = _write_lines(tmp_path / "refcoco_testa.jsonl", [REC_LINE, "", second])
    s = reclip.read_reclip_jsonl(p, image_root=tmp_path / "train2014")
    assert [x.sentence for x in s] == ["The lady with the blue shirt", "lady in back", "left car"]
    assert s[0].image_path == tmp_path / "train2014" / "COCO_train2014_000000581857.jpg"
    assert s[2].image_path.name == "COCO_train2014_000000000042.jpg" and s[2].image_id == "42"
    assert s[0].anns[0].box == pytest.approx((103.93, 299.99, 238.15, 477.38))
    assert s[0].boxes.shape == (2, 4)
    assert s[0].gold_indices == (0,)
    assert s[2].gold_indices == (0, 1)  # str and int ids both match
    assert s[0].extra == {"category_id": 1, "split": "testA"}
    assert reclip.read_reclip_jsonl(p)[0].image_path.parent == tmp_path  # default root


def test_coco_image_name():
    assert reclip.coco_image_name("COCO_train2014_000000581857_16.jpg") == "COCO_train2014_000000581857.jpg"
    assert reclip.coco_image_name("synth_val_000000000007_12.png") == "synth_val_000000000007.png"
    assert reclip.coco_image_name("photo_2_3.jpg") == "photo_2_3.jpg"
    assert reclip.coco_image_name("COCO_train2014_000000581857.jpg") == "COCO_train2014_000000581857.jpg"


def test_segmentation_decoding():
    poly = reclip.decode_segmentation([[1, 1, 4, 1, 4, 3, 1, 3]], 5, 6)
    assert poly.shape == (5, 6) and poly[2, 2] and not poly[0, 0] and not poly[4, 5]
    # uncompressed RLE, column-major, starting with background: 1 off, 2 on, 3 off, 6 on
    rle = reclip.decode_segmentation({"size": [4, 3], "counts": [1, 2, 3, 6]}, 4, 3)
    expected = np.zeros(12, dtype=bool)
    expected[1:3] = True
    expected[6:12] = True
    assert np.array_equal(rle, expected.reshape(3, 4).T)
    with pytest.raises(FalipError, match="sum"):
        reclip.decode_segmentation({"size": [4, 3], "counts": [1, 2]}, 4, 3)
    with pytest.raises(FalipError, match="differs from the image"):
        reclip.decode_segmentation({"size": [4, 3], "counts": [1, 2, 3, 6]}, 3, 4)
    with pytest.raises(FalipError, match="unsupported segmentation"):
        reclip.decode_segmentation("polygon", 4, 3)


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
    assert np.array_equal(reclip.decode_segmentation({"size": rle["size"], "counts": s}, 23, 17), mask)
    assert np.array_equal(reclip.decode_segmentation({"size": rle["size"], "counts": s.encode()}, 23, 17), mask)
    assert np.array_equal(reclip.decode_segmentation(rle, 23, 17), mask)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({k: v for k, v in REC_LINE.items() if k != "sentences"}, "missing key 'sentences'"),
        (dict(REC_LINE, anns=[]), "anns must be a non-empty list"),
        (dict(REC_LINE, anns=[{"id": 1719310, "bbox": [1, 2, 3]}]), "bbox must be a list of 4"),
        (
            dict(REC_LINE, anns=[{"id": 1719310, "bbox": [1, 2, -3, 4]}]),
            r"anns\[0\].bbox \(1, 2, -3, 4\) has a negative width",
        ),
        (dict(REC_LINE, anns=[{"id": 1719310, "bbox": [1, 2, 3, True]}]), "bbox must be a list of 4 numbers"),
        (dict(REC_LINE, anns=[{"id": 1719310, "bbox": [1, 2, 3, "4"]}]), "bbox must be a list of 4 numbers"),
        (
            '{"file_name": "a_000001_1.jpg", "image_id": 1, "ann_id": 1, "sentences": [{"raw": "x"}], '
            '"anns": [{"id": 1, "bbox": [1, 2, NaN, 4]}]}',
            r"anns\[0\].bbox \(1, 2, nan, 4\) has a NaN or infinite",
        ),
        (
            # (a zero-area gold box is kept and counted wrong, as ReCLIP: tests/data/test_reclip.py)
            dict(REC_LINE, anns=[{"id": 7, "bbox": [1, 2, 3, 4]}, {"id": 1719310, "bbox": [5, 6, -7, 4]}]),
            r"the gold annotation's box is unusable: anns\[1\].bbox \(5, 6, -7, 4\) has a negative width",
        ),
        (dict(REC_LINE, anns=[{"id": 1.5, "bbox": [1, 2, 3, 4]}]), r"anns\[0\].id must be an int or a str"),
        (dict(REC_LINE, image_id=[1]), "image_id must be an int or a str"),
        (dict(REC_LINE, ann_id=999), "not among the ids"),
        (dict(REC_LINE, ann_id=[]), "ann_id must be"),
        (dict(REC_LINE, sentences=[{"sent": "x"}]), "string 'raw'"),
        (dict(REC_LINE, file_name=""), "file_name"),
    ],
)
def test_reclip_reader_errors_name_file_and_line(tmp_path, line, message):
    p = _write_lines(tmp_path / "bad.jsonl", [REC_LINE, line])
    with pytest.raises(FalipError, match=message) as e:
        reclip.read_reclip_jsonl(p)
    assert str(e.value).startswith(f"{p}:2: ")


def test_reclip_zero_size_box_leaves_the_candidates_as_the_model_would_reject_it(tmp_path):
    """A zero-area annotation box is dropped from its line's candidates (named in ``dropped``); the
    line stays (issue 13 item 4; it used to be rejected whole)."""
    anns = [dict(a) for a in REC_LINE["anns"]] + [{"id": 5, "bbox": [0, 0, 4, 4]}, {"id": 9, "bbox": [10, 20, 0, 5]}]
    p = _write_lines(tmp_path / "refcoco_testa.jsonl", [REC_LINE] * 11 + [dict(REC_LINE, anns=anns)])
    last = reclip.read_reclip_jsonl(p)[-1]
    assert last.dropped == ("anns[3].bbox (10, 20, 0, 5) is empty (zero width)",)
    assert len(last.anns) == len(anns) - 1
    with pytest.raises(FalipError):  # the same box, as the model sees it
        Regions([[10, 20, 0, 5]], image_size=(64, 64), box_format="xywh")


def test_reclip_sample_regions_check_the_image_size(tmp_path):
    p = _write_lines(tmp_path / "r.jsonl", [REC_LINE])
    s = reclip.read_reclip_jsonl(p)[0]
    assert s.source == f"{p}:1"
    r = s.regions((640, 480))
    assert isinstance(r, Regions) and r.image_size == (640, 480)
    assert np.allclose(r.boxes, s.boxes)
    with pytest.raises(FalipError) as e:
        s.regions((100, 100))  # anns[0] starts at x=103.93: wholly outside a 100x100 image
    assert str(e.value) == f"{p}:1: box 0 (103.93, 299.99, 134.22, 177.39) of a 100x100 image lies wholly outside it"


def test_jsonl_file_errors(tmp_path):
    with pytest.raises(FalipError, match="missing.jsonl: no such file"):
        reclip.read_reclip_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(FalipError, match="is a directory"):
        classification.read_classification_jsonl(tmp_path)
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(json.dumps(REC_LINE).encode() + b"\n" + '{"file_name": "caf\u00e9"}'.encode("latin-1") + b"\n")
    with pytest.raises(FalipError) as e:
        reclip.read_reclip_jsonl(bad)
    assert str(e.value) == f"{bad}:2: not UTF-8 text"
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(REC_LINE).encode() + b"\r\n")
    assert len(reclip.read_reclip_jsonl(bom)) == 2  # a UTF-8 byte-order mark and CRLF line ends are fine


def test_classification_reader(tmp_path):
    abs_img = tmp_path / "elsewhere" / "a.jpg"
    lines = [
        {"image": "imgs/0001.jpg", "box": [10, 20, 110, 220.5], "label": "Black footed Albatross"},
        {"image": str(abs_img), "box": [0, 0, 5, 5], "mask": "masks/0002.png", "label": "dog"},
    ]
    p = _write_lines(tmp_path / "items.jsonl", lines)
    items = classification.read_classification_jsonl(p)
    assert items[0].image_path == tmp_path / "imgs" / "0001.jpg" and items[0].mask_path is None
    assert items[0].box == (10.0, 20.0, 110.0, 220.5) and items[0].label == "Black footed Albatross"
    assert items[1].image_path == abs_img and items[1].mask_path == tmp_path / "masks" / "0002.png"
    other = classification.read_classification_jsonl(p, root=tmp_path / "r")
    assert other[0].image_path == tmp_path / "r" / "imgs" / "0001.jpg"


@pytest.mark.parametrize(
    "line, message",
    [
        ({"box": [0, 0, 1, 1], "label": "x"}, "missing key 'image'"),
        ({"image": "a.jpg", "box": [0, 0, 1], "label": "x"}, "box must be a list of 4"),
        ({"image": "a.jpg", "box": [5, 0, 1, 1], "label": "x"}, r"box \(5, 0, 1, 1\) is inverted \(x1 < x0\)"),
        ({"image": "a.jpg", "box": [0, 3, 1, 3], "label": "x"}, r"box \(0, 3, 1, 3\) is empty \(zero height\)"),
        ({"image": "a.jpg", "box": [0, 0, 1, "1"], "label": "x"}, "box must be a list of 4 numbers"),
        ({"image": "a.jpg", "box": [0, 0, 1, float("nan")], "label": "x"}, "NaN or infinite"),
        ({"image": "a.jpg", "box": [0, 0, 1, float("inf")], "label": "x"}, "NaN or infinite"),
        ({"image": "a.jpg", "box": [0, 0, 1, 1], "label": 3}, "label must be"),
        ({"image": "a.jpg", "box": [0, 0, 1, 1], "label": "x", "mask": 5}, "mask must be"),
        ('"just a string"', "expected a JSON object"),
    ],
)
def test_classification_reader_errors_name_file_and_line(tmp_path, line, message):
    good = {"image": "a.jpg", "box": [0, 0, 1, 1], "label": "x"}
    p = _write_lines(tmp_path / "bad.jsonl", [good, good, line])
    with pytest.raises(FalipError, match=message) as e:
        classification.read_classification_jsonl(p)
    assert str(e.value).startswith(f"{p}:3: ")


def test_classification_item_regions_and_masks(tmp_path):
    from PIL import Image

    mask = np.zeros((6, 8), dtype=np.uint8)
    mask[1:3, 2:5] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    lines = [
        {"image": "a.png", "box": [2, 1, 5, 3], "label": "x", "mask": "m.png"},
        {"image": "a.png", "box": [20, 20, 30, 30], "label": "y"},
    ]
    p = _write_lines(tmp_path / "items.jsonl", lines)
    first, second = classification.read_classification_jsonl(p)
    r = first.regions((8, 6))
    assert r.boxes.tolist() == [[2.0, 1.0, 5.0, 3.0]] and np.array_equal(r.masks[0], mask > 0)
    assert first.regions((8, 6), use_mask=False).masks is None
    with pytest.raises(FalipError, match=f"^{p}:1: masks are 8x6"):
        first.regions((16, 12))  # the mask does not have the image's size
    with pytest.raises(FalipError, match=rf"^{p}:2: box 0 \(20, 20, 30, 30\) of a 8x6 image lies wholly outside"):
        second.regions((8, 6))


def test_load_mask(tmp_path):
    from PIL import Image

    pal = Image.fromarray(np.array([[0, 1], [2, 0]], dtype=np.uint8), "P")
    pal.putpalette([255, 255, 255] + [0] * 765)  # index 0 is white: the stored index decides, not the colour
    pal.save(tmp_path / "pal.png")
    assert classification.load_mask(tmp_path / "pal.png").tolist() == [[False, True], [True, False]]
    Image.fromarray(np.array([[0, 300]], dtype=np.uint16)).save(tmp_path / "deep.png")
    assert classification.load_mask(tmp_path / "deep.png").tolist() == [[False, True]]
    with pytest.raises(FalipError, match="nope.png: no such image file"):
        classification.load_mask(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("not a png")
    with pytest.raises(FalipError, match="text.png: not an image"):
        classification.load_mask(tmp_path / "text.png")
    big = np.random.default_rng(0).integers(0, 2, (64, 64), dtype=np.uint8) * 255
    Image.fromarray(big).save(tmp_path / "big.png")
    data = (tmp_path / "big.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(FalipError, match="cut.png: truncated or corrupt"):
        classification.load_mask(tmp_path / "cut.png")


def test_one_mask_rule_for_readers_and_viz(tmp_path):
    """Issue 13 item 7: ``falip viz --mask`` and the readers read a pure-blue RGB mask the same way
    (any nonzero colour channel; before, viz counted 9 pixels and the readers 0). Alpha is ignored."""
    from PIL import Image

    from falip.cli.viz import _read_mask

    rgb = np.zeros((6, 8, 3), dtype=np.uint8)
    rgb[1:4, 2:5] = (0, 0, 255)  # 9 pure-blue pixels
    rgb[5, 7] = (0, 1, 0)
    Image.fromarray(rgb, "RGB").save(tmp_path / "blue.png")
    want = (rgb != 0).any(axis=2)
    assert want.sum() == 10
    assert np.array_equal(classification.load_mask(tmp_path / "blue.png"), want)
    assert np.array_equal(_read_mask(str(tmp_path / "blue.png"), (8, 6))[0], want)
    rgba = np.zeros((6, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque black background
    rgba[2, 3] = (0, 0, 9, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert classification.load_mask(tmp_path / "rgba.png").sum() == 1
