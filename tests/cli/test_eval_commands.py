"""`falip rec`, `classify`, `compare` and `paper` end to end on files written in the real formats."""

from __future__ import annotations

import json

import pytest

from falip.cli import main
from falip.data import synthetic


@pytest.fixture(scope="module")
def rec_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("refcoco")
    for i, name in enumerate(("refcoco_testa", "refcoco+_testb")):
        synthetic.write_reclip_rec(synthetic.rec_examples(seed=40 + i, n_scenes=5), root, split=name)
    return root


@pytest.fixture(scope="module")
def cls_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    scenes = synthetic.classification_scenes(seed=7, n_scenes=5, min_objects=1, max_objects=2)
    return synthetic.write_classification(scenes, root, with_masks=True)


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_rec_writes_results_summary_and_resumes(rec_dir, tmp_path, capsys):
    argv = ["rec", "--data", str(rec_dir / "refcoco_testa.jsonl"), "--images", str(rec_dir / "images"),
            "--out", str(tmp_path / "out"), "--workers", "0"]  # fmt: skip
    code, out, _ = _run(argv, capsys)
    assert code == 0 and "refcoco_testa.jsonl" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert summary["n"] == len(lines) > 0
    code, _, err = _run(argv, capsys)
    assert code == 2 and "already holds results of a run; pass --resume to continue it, or choose another --out" in err
    code, out, _ = _run([*argv, "--resume"], capsys)
    assert code == 0 and json.loads((tmp_path / "out" / "summary.json").read_text()) == summary


def test_rec_bad_input_is_one_line(rec_dir, tmp_path, capsys):
    code, _, err = _run(["rec", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err.count("\n") == 1 and "none.jsonl" in err
    argv = ["rec", "--data", str(rec_dir / "refcoco_testa.jsonl"), "--out", str(tmp_path / "o"), "--method", "x"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "unknown method 'x'" in err


def test_classify_jsonl_with_masks_and_templates_file(cls_file, tmp_path, capsys):
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}.\na rendering of a {}.\n")
    argv = ["classify", "--dataset", "jsonl", "--root", str(cls_file), "--templates", str(templates),
            "--out", str(tmp_path / "out"), "--workers", "2", "--top-k", "3"]  # fmt: skip
    code, out, _ = _run(argv, capsys)
    assert code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["n"] == len(cls_file.read_text().splitlines())
    assert summary["correct3_accuracy"] >= summary["accuracy"]
    assert run["config"]["templates"] == ["a photo of a {}.", "a rendering of a {}."]


def test_compare_table(rec_dir, tmp_path, capsys):
    argv = ["compare", "--task", "rec", "--data", str(rec_dir / "refcoco_testa.jsonl"), "--images",
            str(rec_dir / "images"), "--methods", "none,falip,falip+circle", "--out", str(tmp_path / "cmp"),
            "--workers", "0"]  # fmt: skip
    code, out, _ = _run(argv, capsys)
    assert code == 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    for row in ("| none |", "| falip |", "| falip+circle |"):
        assert row in md
    assert (tmp_path / "cmp" / "falip-plus-circle" / "summary.json").is_file()
    code, _, err = _run(["compare", "--task", "rec", "--out", str(tmp_path / "c2")], capsys)
    assert code == 2 and "needs --data" in err


def test_paper_table1_from_the_files_present(rec_dir, tmp_path, capsys):
    argv = ["paper", "table1", "--refcoco-dir", str(rec_dir), "--coco-images", str(rec_dir / "images"),
            "--subtract-q", "3", "--out", str(tmp_path / "t1"), "--workers", "0", "--limit", "2"]  # fmt: skip
    code, out, _ = _run(argv, capsys)
    assert code == 0
    table = (tmp_path / "t1" / "table1.md").read_text()
    assert "| method | refcoco_testa | refcoco+_testb |" in table
    rows = ("| CPT (adapted to this CLIP) |", "| RedCircle |", "| FALIP |", "| FALIP E (box blur) |", "| FALIP + P |",
            "| RedCircle E (ellipse blur) + P |")  # fmt: skip
    for row in rows:
        assert row in table
    code, _, err = _run(["paper", "table1", "--refcoco-dir", str(tmp_path), "--out", str(tmp_path / "t")], capsys)
    assert code == 2 and "holds none of" in err


def test_rec_results_do_not_depend_on_how_images_are_grouped(rec_dir, tmp_path, capsys):
    """What sharding changes for a task: which images share a model call and which run resumes them.
    (Two processes under torchrun: tests/test_runner.py, with the toy task; the runner is task-agnostic.)"""
    data = ["--data", str(rec_dir / "refcoco_testa.jsonl"), "--images", str(rec_dir / "images"), "--workers", "0"]
    code, _, _ = _run(["rec", *data, "--out", str(tmp_path / "one")], capsys)
    assert code == 0
    code, _, _ = _run(["rec", *data, "--out", str(tmp_path / "split"), "--batch", "1", "--limit", "2"], capsys)
    assert code == 0
    code, _, _ = _run(["rec", *data, "--out", str(tmp_path / "split"), "--batch", "3", "--resume"], capsys)
    assert code == 0
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert json.loads((tmp_path / "split" / "summary.json").read_text()) == one

    def records(folder):
        rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
        return sorted(rows, key=lambda r: r["id"])

    split, whole = records(tmp_path / "split"), records(tmp_path / "one")
    assert len(split) == len(whole) == one["n"] > 2
    for a, b in zip(split, whole):  # the same answers; scores equal up to float32 noise of the batch size
        assert {k: v for k, v in a.items() if k != "scores"} == {k: v for k, v in b.items() if k != "scores"}
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)


def test_classify_stanford_dogs_one_record_per_dog(tmp_path, capsys):
    """A Stanford Dogs folder in the real layout (VOC XML with two dogs, lists/*.mat): one record per dog."""
    import numpy as np
    from PIL import Image
    from scipy.io import savemat

    root = tmp_path / "dogs"
    breed, stem = "n02085620-Chihuahua", "n02085620_7"
    (root / "Images" / breed).mkdir(parents=True)
    (root / "Annotation" / breed).mkdir(parents=True)
    scene = synthetic.classification_scenes(seed=3, n_scenes=1, min_objects=2, max_objects=2)[0]
    Image.fromarray(scene.image).save(root / "Images" / breed / f"{stem}.jpg")
    objects = "".join(
        f"<object><name>Chihuahua</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object>"
        for x0, y0, x1, y1 in (o.box for o in scene.objects)
    )
    size = "<size><width>64</width><height>64</height><depth>3</depth></size>"
    (root / "Annotation" / breed / stem).write_text(f"<annotation>{size}{objects}</annotation>")

    def cell(strings):
        out = np.empty((len(strings), 1), dtype=object)
        for i, s in enumerate(strings):
            out[i, 0] = np.array([s])
        return out

    (root / "lists").mkdir()
    for split in ("test", "train"):
        savemat(root / "lists" / f"{split}_list.mat", {"file_list": cell([f"{breed}/{stem}.jpg"]),
                "annotation_list": cell([f"{breed}/{stem}"]), "labels": np.ones((1, 1))})  # fmt: skip
    argv = ["classify", "--dataset", "dogs", "--root", str(root), "--out", str(tmp_path / "out"), "--workers", "0"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2 and {r["label_name"] for r in records} == {"Chihuahua"}
    assert len({r["id"] for r in records}) == 2 and all(r["id"].endswith(("#0", "#1")) for r in records)


def test_paper_table2_from_the_datasets_given(tmp_path, capsys):
    scenes = synthetic.classification_scenes(seed=11, n_scenes=4, min_objects=2, max_objects=3)
    cub = synthetic.write_cub_style(scenes, tmp_path / "cub")
    argv = ["paper", "table2", "--cub", str(cub), "--out", str(tmp_path / "t2"), "--workers", "0"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    table = (tmp_path / "t2" / "table2.md").read_text()
    assert "| method | CUB-200-2011 |" in table
    for row in ("| CLIP |", "| RedCircle |", "| Blur |", "| Blur box (extra) |", "| Crop (extra) |", "| FALIP |"):
        assert row in table
    code, _, err = _run(["paper", "table2", "--out", str(tmp_path / "t3")], capsys)
    assert code == 2 and "needs at least one of" in err
    code, _, err = _run(["paper", "table2", "--waterbirds", str(tmp_path), "--out", str(tmp_path / "t4")], capsys)
    assert code == 2 and "--waterbirds needs --cub" in err
