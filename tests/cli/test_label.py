"""falip label: every proposal of every image named among the classes, through the harness."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import falip
from falip.cli import main
from falip.data import synthetic
from falip.defaults import CLS_TEMPLATE
from falip.scoring import RegionScorer
from falip.tasks.label import read_classes

CLASSES = "red circle,blue square,green triangle,yellow star"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    (root / "imgs").mkdir()
    entries = []
    for i, ex in enumerate(synthetic.rec_examples(seed=41, n_scenes=3, image_size=128)):
        Image.fromarray(ex.scene.image).save(root / "imgs" / f"{i + 1:012d}.png")
        if i < 2:  # the third image has no proposals: a counted skip
            for o in ex.scene.objects:
                x0, y0, x1, y1 = o.box
                entries.append({"image_id": i + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": 0.5})
    (root / "props.json").write_text(json.dumps(entries))
    return root


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_labels_are_the_scorers_softmax_and_files_are_written(images, capsys, tmp_path):
    out = tmp_path / "run"
    code, text, err = _run(["label", str(images / "imgs"), "--classes", CLASSES, "--proposals",
                            str(images / "props.json"), "--workers", "0", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    labels = json.loads((out / "labels.json").read_text())
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [s["id"] for s in skipped] == ["000000000003.png"] and "no proposals" in skipped[0]["reason"]
    scorer = RegionScorer(*falip.load("falip-tiny"))
    classes = CLASSES.split(",")
    first = [r for r in labels if r["image"] == "000000000001.png"]
    image = Image.open(images / "imgs" / "000000000001.png").convert("RGB")
    scores = scorer.score(image, np.array([r["box"] for r in first]), classes, "falip", template=CLS_TEMPLATE)
    prob = scores.double().softmax(dim=1).numpy()
    for r, row in zip(first, prob):
        assert r["class"] == classes[int(np.argmax(row))]
        assert r["score"] == pytest.approx(float(row.max()), abs=1e-4)  # one image alone vs batched: float32
    coco = json.loads((out / "labels_coco.json").read_text())
    assert len(coco) == len(labels) and {d["image_id"] for d in coco} == {1, 2}
    assert all(classes[d["category_id"] - 1] == r["class"] for d, r in zip(coco, labels))
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["000000000001.png", "000000000002.png"]
    assert "2 images" in text and "1 images skipped" in text


def test_label_resumes_to_the_same_records(images, capsys, tmp_path):
    base = ["label", str(images / "imgs"), "--classes", CLASSES, "--proposals", str(images / "props.json"),
            "--workers", "0"]  # fmt: skip
    assert _run([*base, "--out", str(tmp_path / "whole")], capsys)[0] == 0
    assert _run([*base, "--out", str(tmp_path / "parts"), "--limit", "1"], capsys)[0] == 0
    assert _run([*base, "--out", str(tmp_path / "parts"), "--resume"], capsys)[0] == 0
    a = json.loads((tmp_path / "whole" / "labels.json").read_text())
    b = json.loads((tmp_path / "parts" / "labels.json").read_text())
    assert [(r["id"], r["class"]) for r in a] == [(r["id"], r["class"]) for r in b]


@pytest.mark.parametrize(
    "classes, message",
    [
        ("cat,dog,cat", "class 3: 'cat' repeats class 1"),
        ("cat,,dog", "class 2 is empty"),
        ("cat", "at least two classes"),
    ],
)
def test_bad_classes_are_one_line(images, capsys, tmp_path, classes, message):
    code, _, err = _run(["label", str(images / "imgs"), "--classes", classes, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_classes_from_a_file_name_the_line(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("cat\n\ndog\nCat\n")
    with pytest.raises(falip.FalipError, match=r"classes.txt:4: 'Cat' repeats .*classes.txt:1"):
        read_classes(str(f))
    f.write_text("cat\ndog\n")
    assert read_classes(str(f)) == ["cat", "dog"]
    many = [f"class number {k}" for k in range(40)]  # longer than a file name may be
    assert read_classes(",".join(many)) == many


def test_a_relative_folder_is_labelled(images, capsys, tmp_path, monkeypatch):
    """`falip label photos` (a folder relative to the working directory) used to fail with "internal
    error: ValueError: 'photos/0.png' is not in the subpath of '/.../photos'" (exit 1)."""
    monkeypatch.chdir(images)
    out = tmp_path / "run"
    code, _, err = _run(["label", "imgs", "--classes", CLASSES, "--proposals", "props.json", "--workers", "0",
                         "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    assert {r["image"] for r in json.loads((out / "labels.json").read_text())} == {
        "000000000001.png",
        "000000000002.png",
    }
