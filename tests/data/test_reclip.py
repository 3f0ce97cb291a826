"""ReCLIP jsonl streaming (ids, skip mode), detector files in both shapes, masks from COCO segmentations."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from falip.core.errors import FalipError
from falip.data import Skipped, reclip


def _mask(h, w):
    m = np.zeros((h, w), dtype=bool)
    m[2:6, 3:9] = True
    m[7, 1] = True
    return m


MASK = _mask(12, 10)  # the image is 10 wide, 12 high
RLE = coco_mask.encode(np.asfortranarray(MASK.astype(np.uint8)))  # COCO's own encoder: compressed bytes

LINE = {
    "file_name": "COCO_train2014_000000000042_7.jpg",
    "image_id": 42,
    "anns": [
        {"id": 7, "bbox": [3, 2, 6, 4], "category_id": 1, "segmentation": [[3, 2, 9, 2, 9, 6, 3, 6]]},
        {"id": "8", "bbox": [0, 0, 4, 4], "category_id": 2, "segmentation": {"size": [12, 10], "counts": "x"}},
        {"id": 9, "bbox": [1, 7, 1, 1], "category_id": 3},
    ],
    "ann_id": "7",
    "sentences": [{"raw": "Left dog"}, {"raw": "the dog on the left"}],
}
LINE["anns"][1]["segmentation"] = {"size": [12, 10], "counts": RLE["counts"].decode()}


def _write(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_streams_one_sample_per_sentence_with_stable_ids(tmp_path):
    second = dict(LINE, ann_id=[8, "9"], sentences=[{"raw": "the cat"}])
    p = _write(tmp_path / "refcoco_testa.jsonl", [LINE, "", second])
    it = reclip.iter_reclip_jsonl(p, image_root=tmp_path / "train2014")
    assert isinstance(it, types.GeneratorType)
    s = list(it)
    assert [x.id for x in s] == ["refcoco_testa.jsonl:1#0", "refcoco_testa.jsonl:1#1", "refcoco_testa.jsonl:3#0"]
    assert [x.sentence_index for x in s] == [0, 1, 0]
    assert [x.source for x in s] == [f"{p}:1", f"{p}:1", f"{p}:3"]
    assert s[0].image_path == tmp_path / "train2014" / "COCO_train2014_000000000042.jpg"
    assert s[0].anns is s[1].anns  # the sentences of a line share its annotations
    assert s[0].gold_indices == (0,)  # "7" (str) matches 7 (int)
    assert s[2].gold_indices == (1, 2)  # 8 (int) matches "8" (str)
    np.testing.assert_array_equal(s[0].gold_boxes, [[3, 2, 9, 6]])
    np.testing.assert_array_equal(s[2].gold_boxes, [[0, 0, 4, 4], [1, 7, 2, 8]])
    listed = reclip.read_reclip_jsonl(p)  # the list form; image root defaults to the jsonl's directory
    assert [x.id for x in listed] == [x.id for x in s] and listed[2].image_path == tmp_path / s[2].image_path.name


def test_skip_mode_yields_skipped_in_place_and_goes_on(tmp_path):
    bad_sentence = dict(LINE, sentences=[{"raw": "ok"}, {"sent": "no raw"}, {"raw": "also ok"}])
    bad_box = dict(LINE, anns=[{"id": 7, "bbox": [5, 5, -1, 3]}])  # (zero area is kept: see below)
    p = _write(tmp_path / "r.jsonl", [LINE, "{not json", bad_box, bad_sentence, dict(LINE, ann_id=99)])
    out = list(reclip.iter_reclip_jsonl(p, errors="skip"))
    kinds = [(type(x).__name__, x.id) for x in out]
    assert kinds == [
        ("RecSample", "r.jsonl:1#0"),
        ("RecSample", "r.jsonl:1#1"),
        ("Skipped", "r.jsonl:2"),
        ("Skipped", "r.jsonl:3"),
        ("RecSample", "r.jsonl:4#0"),
        ("Skipped", "r.jsonl:4#1"),
        ("RecSample", "r.jsonl:4#2"),
        ("Skipped", "r.jsonl:5"),
    ]
    skipped = [x for x in out if isinstance(x, Skipped)]
    assert skipped[0] == Skipped(
        "r.jsonl:2", f"{p}:2", "invalid JSON (Expecting property name enclosed in double quotes, column 2)"
    )
    assert skipped[1].reason == (
        "the gold annotation's box is unusable: anns[0].bbox (5, 5, -1, 3) has a negative width or height (xywh)"
    )
    assert skipped[2].reason == "sentences[1] must be an object with a string 'raw'"
    assert skipped[3].reason == "ann_id [99] not among the ids of anns"
    with pytest.raises(FalipError) as e:  # the same file in raise mode stops at line 2, naming it
        list(reclip.iter_reclip_jsonl(p))
    assert str(e.value) == f"{p}:2: " + skipped[0].reason
    with pytest.raises(FalipError, match="errors must be one of"):
        next(reclip.iter_reclip_jsonl(p, errors="ignore"))


def test_detections_in_both_shapes(tmp_path):
    as_dict = {"42": [[1, 2, 3, 4], [0, 0, 10, 12]], "7": [[5, 5, 1, 1]]}
    as_list = [
        {"image_id": 42, "box": [1, 2, 3, 4], "score": 0.9},
        {"image_id": 7, "box": [5, 5, 1, 1]},
        {"image_id": "42", "box": [0, 0, 10, 12]},
    ]
    a = reclip.read_detections(_write(tmp_path / "d.json", [as_dict]))
    b = reclip.read_detections(_write(tmp_path / "l.json", [as_list]))
    assert a.keys() == b.keys() == {"42", "7"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["42"], [[1, 2, 4, 6], [0, 0, 10, 12]])  # xywh in the file, xyxy out
    # ids compared as ReCLIP does (int(image_id)) when numeric, as strings otherwise
    assert [reclip.image_key(v) for v in (42, "42", "0042", " 42", "COCO_42")] == ["42"] * 4 + ["COCO_42"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"42": [[1, 2, 3]]}', r"d.json: image_id '42' box 0 must be a list of 4 numbers"),
        ('{"42": [[1, 2, -3, 4]]}', r"d.json: image_id '42' box 0 \(1, 2, -3, 4\) has a negative width"),
        ('[{"image_id": 1, "box": [0, 0, 1, 1]}, {"box": [0, 0, 1, 1]}]', r"d.json: entry \[1\] must be an object"),
        ('[{"image_id": 1, "box": [0, 0, 1, "x"]}]', r"d.json: entry \[0\] box must be a list of 4 numbers"),
        ('{"42": [[1, 2, NaN, 4]]}', r"d.json: image_id '42' box 0 \(1, 2, nan, 4\)"),
        ('{"42": [[1, 2, 3, 4]]', r"d.json: invalid JSON"),
        ('"boxes"', r"d.json: expected an object"),
    ],
)
def test_detection_file_errors_name_the_file_and_entry(tmp_path, content, message):
    (tmp_path / "d.json").write_text(content)
    with pytest.raises(FalipError, match=message):
        reclip.read_detections(tmp_path / "d.json")


def test_a_bad_annotation_box_drops_that_box_not_the_line(tmp_path):
    """ReCLIP main.py:128 (allenai/reclip @ 3ed4f47) makes every ann a candidate box and scores each
    sentence; one unusable box (zero area here) must not cost the line its sentences: it leaves the
    candidates and the sample says so."""
    anns = LINE["anns"] + [{"id": 10, "bbox": [4, 4, 0, 3]}, {"id": 11, "bbox": [1, 1, "w", 2]}]
    p = _write(tmp_path / "r.jsonl", [dict(LINE, anns=anns)])
    out = list(reclip.iter_reclip_jsonl(p, errors="skip"))
    assert [type(x).__name__ for x in out] == ["RecSample", "RecSample"]
    assert [a.id for a in out[0].anns] == [7, "8", 9]
    assert out[0].dropped == (
        "anns[3].bbox (4, 4, 0, 3) is empty (zero width)",
        "anns[4].bbox must be a list of 4 numbers, got [1, 1, 'w', 2]",
    )
    np.testing.assert_array_equal(out[0].gold_boxes, [[3, 2, 9, 6]])


def test_detector_boxes_with_a_score_and_zero_area_boxes(tmp_path):
    """ReCLIP main.py:104-110 and 135 (allenai/reclip @ 3ed4f47) read ``box[0..3]`` of each detection
    (a 5th number, the score, is ignored); a zero-area proposal is left out and reported, not an
    error for the whole file."""
    content = {"42": [[1, 2, 3, 4, 0.93], [5, 5, 0, 2, 0.5], [0, 0, 10, 12]], "7": [[2, 2, 3, 0]]}
    dropped: dict = {}
    d = reclip.read_detections(_write(tmp_path / "d.json", [content]), dropped=dropped)
    np.testing.assert_array_equal(d["42"], [[1, 2, 4, 6], [0, 0, 10, 12]])
    assert d["7"].shape == (0, 4)  # every proposal of image 7 dropped: it has none left
    assert {k: len(v) for k, v in dropped.items()} == {"42": 1, "7": 1}
    assert dropped["42"][0].endswith("image_id '42' box 1 [5.0, 5.0, 0.0, 2.0] has zero width")
    listed = [{"image_id": 42, "box": [1, 2, 3, 4, 0.9]}, {"image_id": 42, "box": [1, 1, 2, 0]}]
    np.testing.assert_array_equal(reclip.read_detections(_write(tmp_path / "l.json", [listed]))["42"], [[1, 2, 4, 6]])


def test_candidates_and_regions_with_and_without_detections(tmp_path):
    p = _write(tmp_path / "r.jsonl", [LINE, dict(LINE, image_id="1234")])
    s42, _, s1234, _ = reclip.read_reclip_jsonl(p)
    dets = reclip.read_detections(_write(tmp_path / "d.json", [{"42": [[1, 2, 3, 4]]}]))
    np.testing.assert_array_equal(s42.candidates(), s42.boxes)
    np.testing.assert_array_equal(s42.candidates(dets), [[1, 2, 4, 6]])
    assert s1234.candidates(dets).shape == (0, 4)
    np.testing.assert_array_equal(s42.regions((10, 12)).boxes, s42.boxes)
    np.testing.assert_array_equal(s42.regions((10, 12), dets).boxes, [[1, 2, 4, 6]])
    # an image without detections is scored with the whole image as its one box (as ReCLIP does)
    np.testing.assert_array_equal(s1234.regions((10, 12), dets).boxes, [[0, 0, 10, 12]])
    with pytest.raises(FalipError) as e:
        s42.regions((1, 1), dets)
    assert str(e.value) == (
        f"{p}:1: detections for image_id 42: box 0 (1, 2, 3, 4) of a 1x1 image lies wholly outside it"
    )


def test_masks_from_polygon_compressed_and_uncompressed_rle(tmp_path):
    from falip.data.synthetic import mask_to_rle

    line = dict(LINE)
    line["anns"] = [dict(a) for a in LINE["anns"]]
    line["anns"][2]["segmentation"] = mask_to_rle(MASK)  # uncompressed counts
    (s, _) = reclip.read_reclip_jsonl(_write(tmp_path / "r.jsonl", [line]))
    r = s.regions((10, 12), masks=True)
    assert r.masks.shape == (3, 12, 10)
    polygon = np.zeros((12, 10), dtype=bool)
    polygon[2:6, 3:9] = True  # pycocotools (COCO's annToMask): the rectangle (3, 2)-(9, 6) covers the box's pixels
    np.testing.assert_array_equal(r.masks[0], polygon)
    np.testing.assert_array_equal(r.masks[1], MASK)
    np.testing.assert_array_equal(r.masks[2], MASK)
    with pytest.raises(FalipError, match=r"r.jsonl:1: anns\[1\].segmentation: RLE size \(h, w\) = \(12, 10\) differs"):
        s.regions((12, 10), masks=True)
    (t, _) = reclip.read_reclip_jsonl(_write(tmp_path / "n.jsonl", [LINE]))
    with pytest.raises(FalipError, match=r"n.jsonl:1: anns\[2\] has no segmentation"):
        t.regions((10, 12), masks=True)


def test_decode_segmentation_validates_before_pycocotools():
    assert np.array_equal(reclip.decode_segmentation(RLE, 12, 10), MASK)  # bytes counts
    assert np.array_equal(
        reclip.decode_segmentation({"size": [12, 10], "counts": RLE["counts"].decode()}, 12, 10), MASK
    )
    short = coco_mask.encode(np.asfortranarray(np.ones((2, 2), dtype=np.uint8)))["counts"].decode()
    with pytest.raises(FalipError, match="RLE counts sum to 4, expected 120"):
        reclip.decode_segmentation({"size": [12, 10], "counts": short}, 12, 10)
    with pytest.raises(FalipError, match="not a COCO RLE character"):
        reclip.decode_segmentation({"size": [2, 2], "counts": "1 2"}, 2, 2)
    with pytest.raises(FalipError, match="negative run"):
        reclip.decode_segmentation({"size": [2, 2], "counts": [5, -1]}, 2, 2)
    # a 2-point "polygon" is dropped (pycocotools would read 4 numbers as a box)
    two = reclip.decode_segmentation([[0, 0, 3, 3], [1, 1, 4, 1, 4, 3, 1, 3]], 5, 6)
    assert two.sum() == reclip.decode_segmentation([[1, 1, 4, 1, 4, 3, 1, 3]], 5, 6).sum() == 6
    with pytest.raises(FalipError, match="no polygon of 3 or more points"):
        reclip.decode_segmentation([[0, 0, 3, 3]], 5, 6)
    with pytest.raises(FalipError, match="NaN or infinite"):
        reclip.decode_segmentation([[0, 0, 3, float("nan"), 1, 2]], 5, 6)


def test_a_zero_area_gold_box_keeps_its_line(tmp_path):
    """ReCLIP (allenai/reclip@3ed4f47 main.py:128) builds a Box of every ann without a check, and
    interpreter.py:88-96 gives a zero-area gold box IoU 0 with any prediction: the line's sentences
    stay in the evaluation, counted wrong. The reader keeps such a line (it used to skip it) and says
    which gold boxes have zero area; the box is no candidate (``dropped``) nor in ``gold_boxes``."""
    line = dict(LINE, anns=[{"id": 7, "bbox": [5, 5, 0, 3]}, {"id": 8, "bbox": [0, 0, 4, 4]}], ann_id=7)
    both = dict(line, ann_id=[7, 8])
    p = _write(tmp_path / "z.jsonl", [line, both])
    out = list(reclip.iter_reclip_jsonl(p))
    assert [x.id for x in out] == ["z.jsonl:1#0", "z.jsonl:1#1", "z.jsonl:2#0", "z.jsonl:2#1"]
    assert out[0].zero_area_gold == ((5.0, 5.0, 5.0, 8.0),) and out[0].gold_boxes.shape == (0, 4)
    assert out[0].dropped == ("anns[0].bbox (5, 5, 0, 3) is empty (zero width)",)
    np.testing.assert_array_equal(out[0].boxes, [[0, 0, 4, 4]])
    np.testing.assert_array_equal(out[2].gold_boxes, [[0, 0, 4, 4]])
    assert out[2].zero_area_gold == ((5.0, 5.0, 5.0, 8.0),)
