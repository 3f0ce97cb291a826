"""The generic classification format: CSV (box, mask or both), mask-only JSONL, class lists, skip mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from falip.core.errors import FalipError
from falip.data import Skipped, classification

CSV = """image,label,x0,y0,x1,y1,mask,note
imgs/a.png,"dog, small",1,2,5,4,,first
imgs/a.png,cat,,,,,m.png,mask only

/abs/b.png,dog,0,0,3,3,m.png,both
"""


def _mask_file(tmp_path):
    m = np.zeros((6, 8), dtype=np.uint8)
    m[1:3, 2:5] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    return m > 0


def test_csv_rows_with_box_mask_or_both(tmp_path):
    (tmp_path / "items.csv").write_text(CSV)
    mask = _mask_file(tmp_path)
    items = list(classification.iter_classification(tmp_path / "items.csv"))
    assert [i.id for i in items] == ["items.csv:2", "items.csv:3", "items.csv:5"]  # the blank line is not a row
    assert [i.source for i in items] == [f"{tmp_path / 'items.csv'}:{n}" for n in (2, 3, 5)]
    a, b, c = items
    assert (a.label, a.box, a.mask_path, a.image_path) == (
        "dog, small",
        (1.0, 2.0, 5.0, 4.0),
        None,
        tmp_path / "imgs/a.png",
    )
    assert b.box is None and b.mask_path == tmp_path / "m.png"
    assert c.image_path.as_posix() == "/abs/b.png" and c.box == (0.0, 0.0, 3.0, 3.0)
    r = b.regions((8, 6))  # mask only: the mask, and its bounding box
    assert np.array_equal(r.masks[0], mask) and r.boxes.tolist() == [[2, 1, 5, 3]]
    r = b.regions((8, 6), use_mask=False)
    assert r.masks is None and r.boxes.tolist() == [[2, 1, 5, 3]]
    assert c.regions((8, 6)).boxes.tolist() == [[0, 0, 3, 3]] and c.regions((8, 6)).masks is not None
    other = list(classification.iter_classification_csv(tmp_path / "items.csv", root=tmp_path / "r"))
    assert other[0].image_path == tmp_path / "r" / "imgs/a.png"


@pytest.mark.parametrize(
    "row, reason",
    [
        ("imgs/a.png,dog,1,2,5", "5 fields, but the header has 6"),
        ("imgs/a.png,dog,1,2,5,x", "x0,y0,x1,y1 must be 4 numbers, got '1,2,5,x'"),
        ("imgs/a.png,dog,5,2,1,4", "box (5, 2, 1, 4) is inverted (x1 < x0); boxes are xyxy"),
        ("imgs/a.png,dog,1,2,1,4", "box (1, 2, 1, 4) is empty (zero width)"),
        ("imgs/a.png,dog,1,2,nan,4", "box (1, 2, nan, 4) has a NaN or infinite coordinate"),
        ("imgs/a.png,,1,2,5,4", "label must be a non-empty string, got ''"),
        ("imgs/a.png,dog,,,,", "needs a box (x0,y0,x1,y1) or a mask (or both)"),
    ],
)
def test_csv_errors_name_file_and_line_or_are_skipped(tmp_path, row, reason):
    p = tmp_path / "items.csv"
    p.write_text("image,label,x0,y0,x1,y1\nimgs/a.png,dog,1,2,5,4\n" + row + "\nimgs/c.png,cat,0,0,1,1\n")
    with pytest.raises(FalipError) as e:
        list(classification.iter_classification_csv(p))
    assert str(e.value) == f"{p}:3: {reason}"
    out = list(classification.iter_classification_csv(p, errors="skip"))
    assert [type(x).__name__ for x in out] == ["ClassificationItem", "Skipped", "ClassificationItem"]
    assert out[1] == Skipped("items.csv:3", f"{p}:3", reason)


def test_csv_file_errors(tmp_path):
    p = tmp_path / "items.csv"
    p.write_text("path,label,x0,y0,x1,y1\na.png,dog,0,0,1,1\n")
    with pytest.raises(FalipError, match=r"items.csv:1: the header must name image, label"):
        list(classification.iter_classification_csv(p))
    p.write_text("image,label,x0,y0\na.png,dog,0,0\n")  # half a box and no mask column
    with pytest.raises(FalipError, match=r"items.csv:1: the header must name"):
        list(classification.iter_classification_csv(p, errors="skip"))
    p.write_bytes(b"image,label,mask\na.png,caf\xe9,m.png\n")
    with pytest.raises(FalipError, match="items.csv: not UTF-8 text"):
        list(classification.iter_classification_csv(p))
    with pytest.raises(FalipError, match="missing.csv: no such file"):
        list(classification.iter_classification_csv(tmp_path / "missing.csv"))


def test_jsonl_mask_only_and_skip_mode(tmp_path):
    lines = [
        {"image": "a.png", "mask": "m.png", "label": "cat"},
        {"image": "a.png", "label": "cat"},
        "[1]",
        {"image": "a.png", "box": [0, 0, 2, 2], "label": "dog"},
    ]
    p = tmp_path / "items.jsonl"
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    out = list(classification.iter_classification_jsonl(p, errors="skip"))
    assert out[0].box is None and out[0].mask_path == tmp_path / "m.png"
    assert out[1] == Skipped("items.jsonl:2", f"{p}:2", "needs a 'box' or a 'mask' (or both)")
    assert out[2] == Skipped("items.jsonl:3", f"{p}:3", "expected a JSON object, got list")
    assert out[3].id == "items.jsonl:4"


def test_classification_file_classes(tmp_path):
    p = tmp_path / "items.csv"
    p.write_text(
        "image,label,x0,y0,x1,y1\na.png,zebra,0,0,1,1\nb.png,ant,0,0,1,1\nc.png,zebra,0,0,1,1\nd.png,,0,0,1,1\n"
    )
    ds = classification.ClassificationFile(p, errors="skip")
    assert ds.classes == ["ant", "zebra"]  # sorted distinct labels; the bad row does not count
    out = list(ds)
    assert [x.label_index for x in out[:3]] == [1, 0, 1] and isinstance(out[3], Skipped)
    fixed = classification.ClassificationFile(p, classes=["zebra", "horse"], errors="skip")
    out = list(fixed)
    assert out[0].label_index == 0
    assert out[1] == Skipped("items.csv:3", f"{p}:3", "label 'ant' is not in the class list")
    with pytest.raises(FalipError, match=r"items.csv:3: label 'ant' is not in the class list"):
        list(classification.ClassificationFile(p, classes=["zebra"]))
