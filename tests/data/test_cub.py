"""CUB-200-2011 on fixture folders written in the dataset's own format (1-based ids, float xywh boxes)."""

from __future__ import annotations

import types

import pytest

from falip.core.errors import FalipError
from falip.data import Skipped, cub

CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
IMAGES = [  # (image_id, path under images/, class_id, "x y w h", is_training_image)
    (1, "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", 1, "60.0 27.0 325.0 304.0", 0),
    (2, "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", 1, "139.0 30.0 153.0 264.0", 1),
    (3, "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg", 2, "14.0 112.0 388.0 186.0", 0),
    (4, "003.Sooty_Albatross/Sooty_Albatross_0031_1066.jpg", 3, "112.5 90.25 255.0 242.0", 0),
]


def write_cub(root, images=IMAGES, classes=CLASSES, **override):
    """The five CUB tables, as the archive has them (the boxes file in another order, CRLF line ends)."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "classes.txt": "".join(f"{k} {c}\n" for k, c in enumerate(classes, start=1)),
        "images.txt": "".join(f"{i} {p}\n" for i, p, *_ in images),
        "image_class_labels.txt": "".join(f"{i} {c}\n" for i, _, c, *_ in images),
        "bounding_boxes.txt": "".join(f"{i} {b}\r\n" for i, _, _, b, _ in reversed(images)),
        "train_test_split.txt": "".join(f"{i} {t}\n" for i, *_, t in images),
    }
    files.update(override)
    for name, text in files.items():
        (root / name).write_text(text, newline="")
    return root


def test_test_split_items(tmp_path):
    root = write_cub(tmp_path / "CUB_200_2011")
    ds = cub.CUB(root)
    assert ds.classes == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert isinstance(iter(ds), types.GeneratorType)
    items = list(ds)
    assert [i.id for i in items] == [f"cub:{p}" for _, p, *_ in (IMAGES[0], IMAGES[2], IMAGES[3])]
    first = items[0]
    assert first.image_path == root / "images" / IMAGES[0][1]
    assert first.box == (60.0, 27.0, 385.0, 331.0)  # xywh in the file, xyxy on the item
    assert (first.label, first.label_index) == ("Black footed Albatross", 0)
    assert items[2].box == (112.5, 90.25, 367.5, 332.25) and items[2].label_index == 2
    assert first.source == f"{root / 'images.txt'}:1"
    assert first.regions((500, 400)).boxes.tolist() == [[60, 27, 385, 331]]
    with pytest.raises(FalipError, match=r"bounding_boxes.txt:4: box 0 \(60, 27, 385, 331\) of a 50x20 image lies"):
        first.regions((50, 20))
    assert [i.id for i in cub.CUB(root, split="train")] == [f"cub:{IMAGES[1][1]}"]
    assert len(list(cub.CUB(root, split="all"))) == 4


BOXES_OF_3_4 = "3 1 1 1 1\n4 1 1 1 1\n"
LABELS_OF_2_3_4 = "2 1\n3 2\n4 3\n"


@pytest.mark.parametrize(
    "name, text, where, reason",
    [
        (
            "bounding_boxes.txt",
            "1 60 27 0 304\n" + BOXES_OF_3_4,
            "bounding_boxes.txt:1",
            "box (60, 27, 0, 304) is empty (zero width)",
        ),
        (
            "bounding_boxes.txt",
            "1 60 27 x 304\n" + BOXES_OF_3_4,
            "bounding_boxes.txt:1",
            "x y width height must be 4 numbers, got '60 27 x 304'",
        ),
        ("bounding_boxes.txt", BOXES_OF_3_4, "images.txt:1", "image 1 has no line in bounding_boxes.txt"),
        (
            "image_class_labels.txt",
            "1 9\n" + LABELS_OF_2_3_4,
            "image_class_labels.txt:1",
            "class id 9 is not in classes.txt (1..3)",
        ),
        ("image_class_labels.txt", LABELS_OF_2_3_4, "images.txt:1", "image 1 has no line in image_class_labels.txt"),
        (
            "train_test_split.txt",
            "1 yes\n2 1\n3 0\n4 0\n",
            "train_test_split.txt:1",
            "is_training_image must be 0 or 1, got 'yes'",
        ),
    ],
)
def test_a_bad_line_names_its_file_and_line_or_is_skipped(tmp_path, name, text, where, reason):
    root = write_cub(tmp_path / "c", **{name: text})
    with pytest.raises(FalipError) as e:
        list(cub.CUB(root))
    assert str(e.value) == f"{root / where}: {reason}"
    out = list(cub.CUB(root, errors="skip"))
    assert out[0] == Skipped(f"cub:{IMAGES[0][1]}", f"{root / where}", reason)
    assert [type(x).__name__ for x in out[1:]] == ["ClassificationItem", "ClassificationItem"]


def test_lines_without_a_usable_id(tmp_path):
    root = write_cub(
        tmp_path / "c", **{"images.txt": "".join(f"{i} {p}\n" for i, p, *_ in IMAGES) + "five x.jpg\n2 y.jpg\n"}
    )
    out = list(cub.CUB(root, split="all", errors="skip"))
    skipped = [x for x in out if isinstance(x, Skipped)]
    assert skipped == [
        Skipped("cub:images.txt:5", f"{root / 'images.txt'}:5", "the id must be an integer, got 'five'"),
        Skipped("cub:images.txt:6", f"{root / 'images.txt'}:6", "id 2 is already on line 2"),
    ]
    assert len(out) - len(skipped) == 4


def test_class_list_and_folder_errors(tmp_path):
    with pytest.raises(FalipError, match="no such directory"):
        cub.CUB(tmp_path / "nowhere")
    root = write_cub(tmp_path / "c", **{"classes.txt": "1 001.A\n3 003.C\n"})
    with pytest.raises(FalipError, match=r"classes.txt: class ids must be 1..2"):
        cub.CUB(root, errors="skip")  # the class list is needed by every item: never skipped
    (root / "classes.txt").write_text("1 001.A\n2\n")
    with pytest.raises(FalipError, match=r"classes.txt:2: expected 2 fields"):
        cub.CUB(root)
    (root / "classes.txt").unlink()
    with pytest.raises(FalipError, match=r"classes.txt: no such file or directory \(is .* the CUB_200_2011 folder\?\)"):
        cub.CUB(root)
    with pytest.raises(FalipError, match="split must be one of"):
        cub.CUB(write_cub(tmp_path / "d"), split="val")
    assert cub.class_name("200.Common_Yellowthroat") == "Common Yellowthroat"


def test_cub_boxes_by_path(tmp_path):
    root = write_cub(tmp_path / "c", **{"bounding_boxes.txt": "1 1 2 3 4\n2 0 0 0 1\n"})
    boxes = cub.cub_boxes(root)
    assert boxes[IMAGES[0][1]] == cub.CubBox((1.0, 2.0, 4.0, 6.0), f"{root / 'bounding_boxes.txt'}:1")
    assert boxes[IMAGES[1][1]].box is None and "is empty" in boxes[IMAGES[1][1]].reason
    assert boxes[IMAGES[2][1]].reason == "image 3 has no line in bounding_boxes.txt"
