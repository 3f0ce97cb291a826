"""What a newcomer broke (issue 16), end to end on hand-written files in the published formats:
skip-don't-abort, nothing scored, argument checks before any work, messages, big inputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from falip.cli import main


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _image(path: Path, size=(400, 100), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def wide(tmp_path) -> Path:
    """A 400x100 image with: a box at the left edge (outside the 100x100 centre crop), one in the centre,
    one wholly outside the image; JSONL written by hand."""
    _image(tmp_path / "wide.png")
    rows = [
        {"image": "wide.png", "label": "cat", "box": [0, 10, 40, 60]},
        {"image": "wide.png", "label": "dog", "box": [170, 20, 230, 80]},
        {"image": "wide.png", "label": "cat", "box": [500, 0, 600, 50]},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------ 2. skip, don't abort
def test_crop_mode_skips_the_box_outside_the_crop_not_the_run(wide, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["classify", "--dataset", "jsonl", "--root", wide, "--resize", "crop", "--out", out, "--workers", "0"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 1 and summary["skipped"] == 2  # both counted in regions
    skipped = {s["id"]: s for s in _lines(out / "skipped.jsonl")}
    assert "centre crop" in skipped["items.jsonl:1"]["reason"]
    assert "outside" in skipped["items.jsonl:3"]["reason"]
    assert skipped["items.jsonl:1"]["source"].endswith("items.jsonl:1")
    assert not skipped["items.jsonl:1"]["reason"].startswith(skipped["items.jsonl:1"]["source"])  # said once
    assert [r["id"] for r in _lines(out / "results.jsonl")] == ["items.jsonl:2"]
    # squash sees the whole image: only the box outside the image is skipped
    code, _, _ = _run(["classify", "--dataset", "jsonl", "--root", wide, "--out", tmp_path / "sq"], capsys)
    assert code == 0 and json.loads((tmp_path / "sq" / "summary.json").read_text())["skipped"] == 1


def test_rec_crop_mode_a_candidate_outside_the_crop_cannot_win_and_the_run_goes_on(tmp_path, capsys):
    _image(tmp_path / "COCO_train2014_000000000001.jpg")
    line = {
        "file_name": "COCO_train2014_000000000001_3.jpg",
        "image_id": 1,
        "anns": [{"id": 1, "bbox": [0, 10, 40, 50]}, {"id": 2, "bbox": [170, 20, 60, 60]}],
        "ann_id": 2,
        "sentences": [{"raw": "the thing in the middle"}],
    }
    (tmp_path / "refcoco_val.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp_path / "out"
    argv = ["rec", "--data", tmp_path / "refcoco_val.jsonl", "--resize", "crop", "--out", out, "--workers", "0"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    (record,) = _lines(out / "results.jsonl")
    assert record["pred"] == 1 and record["unseen_candidates"] == 1 and "centre crop" in record["unseen_reason"]


def test_dataset_csv_is_read_as_csv_whatever_the_suffix(tmp_path, capsys):
    _image(tmp_path / "a.png", (64, 64))
    path = tmp_path / "items.txt"
    path.write_text("image,label,x0,y0,x1,y1\na.png,cat,0,0,30,30\na.png,dog,20,20,60,60\n")
    code, _, err = _run(
        ["classify", "--dataset", "csv", "--root", path, "--out", tmp_path / "o", "--workers", "0"], capsys
    )
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["n"] == 2


def test_a_single_class_dataset_warns(tmp_path, capsys, caplog):
    _image(tmp_path / "a.png", (64, 64))
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"image": "a.png", "label": "cat", "box": [0, 0, 30, 30]}) + "\n")
    with caplog.at_level(logging.WARNING):
        code, _, err = _run(
            ["classify", "--dataset", "jsonl", "--root", path, "--out", tmp_path / "o", "--workers", "0"], capsys
        )
    assert code == 0, err
    assert any("one class" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------ 3. nothing scored
def test_a_run_whose_every_image_is_missing_is_an_error_not_zero_percent(wide, tmp_path, capsys):
    (wide.parent / "wide.png").unlink()
    out = tmp_path / "out"
    code, out_text, err = _run(
        ["classify", "--dataset", "jsonl", "--root", wide, "--out", out, "--workers", "0"], capsys
    )
    assert code == 2 and err.count("\n") == 1
    assert "0 of 3 items could be scored; first reason:" in err and "wide.png" in err
    assert "0.0" not in out_text
    assert json.loads((out / "summary.json").read_text())["accuracy"] is None


def test_an_empty_split_is_an_error(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    code, _, err = _run(["classify", "--dataset", "jsonl", "--root", path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and err.count("\n") == 1 and "nothing to score" in err


def test_sweep_that_scores_nothing_is_an_error(wide, tmp_path, capsys):
    (wide.parent / "wide.png").unlink()
    argv = ["sweep", "alpha", "--values", "0,1", "--task", "classify", "--dataset", "jsonl", "--root", wide,
            "--out", tmp_path / "sw", "--workers", "0"]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 2 and "0 of 3 items could be scored" in err and err.count("\n") == 1
