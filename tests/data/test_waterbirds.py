"""Waterbirds on a fixture folder in the group-DRO format, with the CUB tables the boxes come from."""

from __future__ import annotations

import pytest
from PIL import Image

from falip.core.errors import FalipError
from falip.data import Skipped, waterbirds

ALBATROSS = "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
SPARROW = "113.Baird_Sparrow/Baird_Sparrow_0001_794578.jpg"
GULL = "059.California_Gull/California_Gull_0003_41308.jpg"
WREN = "193.Bewick_Wren/Bewick_Wren_0005_185230.jpg"


def write_cub(root, boxes=None):
    """The two CUB tables Waterbirds needs (ids 1-based, boxes float xywh)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = [ALBATROSS, SPARROW, GULL, WREN]
    boxes = boxes or ["4.0 2.0 10.0 6.0", "1.0 1.0 5.0 5.0", "0.0 0.0 8.0 8.0", "2.0 3.0 4.0 4.0"]
    (root / "images.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(paths, start=1)))
    (root / "bounding_boxes.txt").write_text("".join(f"{i} {b}\n" for i, b in enumerate(boxes, start=1)))
    return root


# as pandas writes it (df.to_csv with the img_id index); place_filename keeps its leading slash
METADATA = """img_id,img_filename,y,split,place,place_filename
1,{ALBATROSS},1,2,0,/b/bamboo_forest/00002178.jpg
2,{SPARROW},0,2,1,/o/ocean/00003421.jpg
3,{GULL},1,0,1,/l/lake/natural/00000512.jpg
4,{WREN},0,2,0,/f/forest/broadleaf/00001045.jpg
"""


def write_waterbirds(root, text=METADATA):
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_text(text.format(ALBATROSS=ALBATROSS, SPARROW=SPARROW, GULL=GULL, WREN=WREN))
    return root


def test_items_groups_and_boxes_from_cub(tmp_path):
    cub = write_cub(tmp_path / "CUB_200_2011")
    root = write_waterbirds(tmp_path / "waterbird_complete95_forest2water2")
    ds = waterbirds.Waterbirds(root, cub)
    assert ds.classes == ["landbird", "waterbird"]
    items = list(ds)
    assert [i.id for i in items] == [f"waterbirds:{p}" for p in (ALBATROSS, SPARROW, WREN)]  # split 2 = test
    a, s, w = items
    assert (a.label, a.label_index, a.group, a.place) == ("waterbird", 1, "waterbird/land", 0)
    assert (s.label, s.group) == ("landbird", "landbird/water")
    assert w.group == "landbird/land"
    assert a.box == (4.0, 2.0, 14.0, 8.0) and a.image_path == root / ALBATROSS
    assert a.source == f"{root / 'metadata.csv'}:2"
    assert [i.group for i in waterbirds.Waterbirds(root, cub, split="train")] == ["waterbird/water"]
    assert len(list(waterbirds.Waterbirds(root, cub, split="all"))) == 4
    assert list(waterbirds.Waterbirds(root, cub, split="val")) == []
    assert waterbirds.GROUPS.index(a.group) == 2 * 1 + 0  # group-DRO's group index y * 2 + place


def test_box_is_scaled_when_the_image_is_not_the_cub_size(tmp_path):
    cub = write_cub(tmp_path / "cub")
    root = write_waterbirds(tmp_path / "wb")
    (cub / "images" / ALBATROSS).parent.mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(cub / "images" / ALBATROSS)
    a = next(iter(waterbirds.Waterbirds(root, cub)))
    assert a.regions((40, 30)).boxes.tolist() == [[4, 2, 14, 8]]  # the group-DRO release: CUB's size
    assert a.regions((80, 15)).boxes.tolist() == [[8, 1, 28, 4]]  # a resized copy: scaled
    s = list(waterbirds.Waterbirds(root, cub))[1]  # no CUB image on disk: sizes assumed equal
    assert s.regions((40, 30)).boxes.tolist() == [[1, 1, 6, 6]]


@pytest.mark.parametrize(
    "row, reason",
    [
        ("1,{ALBATROSS},2,2,0,/x.jpg", "y must be one of 0, 1, got '2'"),
        ("1,{ALBATROSS},1,2,water,/x.jpg", "place must be one of 0, 1, got 'water'"),
        ("1,{ALBATROSS},1,2,0", "5 fields, but the header has 6"),
        ("9,200.Other/bird.jpg,1,2,0,/x.jpg", "img_filename '200.Other/bird.jpg' is not in {CUB}/images.txt"),
    ],
)
def test_bad_rows_raise_or_are_skipped(tmp_path, row, reason):
    cub = write_cub(tmp_path / "cub")
    root = write_waterbirds(tmp_path / "wb", METADATA.replace("1,{ALBATROSS},1,2,0,/b/bamboo_forest/00002178.jpg", row))
    reason = reason.replace("{CUB}", str(cub))
    with pytest.raises(FalipError) as e:
        list(waterbirds.Waterbirds(root, cub))
    assert str(e.value) == f"{root / 'metadata.csv'}:2: {reason}"
    out = list(waterbirds.Waterbirds(root, cub, errors="skip"))
    assert isinstance(out[0], Skipped) and out[0].source == f"{root / 'metadata.csv'}:2" and out[0].reason == reason
    assert [i.id for i in out[1:]] == [f"waterbirds:{SPARROW}", f"waterbirds:{WREN}"]


def test_a_bad_cub_box_is_named_in_cub(tmp_path):
    cub = write_cub(tmp_path / "cub", ["4 2 0 6", "1 1 5 5", "0 0 8 8", "2 3 4 4"])
    root = write_waterbirds(tmp_path / "wb")
    out = list(waterbirds.Waterbirds(root, cub, errors="skip"))
    assert out[0] == Skipped(
        f"waterbirds:{ALBATROSS}", f"{cub / 'bounding_boxes.txt'}:1", "box (4, 2, 0, 6) is empty (zero width)"
    )
    with pytest.raises(FalipError, match=r"bounding_boxes.txt:1: box \(4, 2, 0, 6\) is empty"):
        list(waterbirds.Waterbirds(root, cub))


def test_folder_errors(tmp_path):
    cub = write_cub(tmp_path / "cub")
    root = write_waterbirds(tmp_path / "wb")
    with pytest.raises(FalipError, match="needs the CUB-200-2011 folder"):
        waterbirds.Waterbirds(root, None)
    with pytest.raises(FalipError, match=r"images.txt: no such file or directory \(is .* the CUB_200_2011"):
        waterbirds.Waterbirds(root, tmp_path)
    with pytest.raises(FalipError, match=r"metadata.csv: no such file or directory \(is .* the Waterbirds folder"):
        waterbirds.Waterbirds(tmp_path, cub)
    with pytest.raises(FalipError, match="split must be one of"):
        waterbirds.Waterbirds(root, cub, split="valid")
    (root / "metadata.csv").write_text("img_id,img_filename,y,split\n")
    with pytest.raises(FalipError, match=r"metadata.csv:1: no column place in the header"):
        list(waterbirds.Waterbirds(root, cub, errors="skip"))
