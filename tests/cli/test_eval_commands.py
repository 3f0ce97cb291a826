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
    rows = ("| CPT (adapted to this CLIP) |", "| RedCircle |", "| FALIP |", "| FALIP E |", "| FALIP + P |",
            "| RedCircle E + P |")  # fmt: skip
    for row in rows:
        assert row in table
    code, _, err = _run(["paper", "table1", "--refcoco-dir", str(tmp_path), "--out", str(tmp_path / "t")], capsys)
    assert code == 2 and "holds none of" in err


def test_rec_under_torchrun_matches_one_process(rec_dir, tmp_path, capsys):
    """2 CPU processes (gloo) with the real task and model: disjoint shards, rank 0's summary = 1 process."""
    import os
    import subprocess
    import sys

    data = ["--data", str(rec_dir / "refcoco_testa.jsonl"), "--images", str(rec_dir / "images")]
    code, _, _ = _run(["rec", *data, "--out", str(tmp_path / "one"), "--workers", "0"], capsys)
    assert code == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "--monitor-interval", "0.1", "-m", "falip.cli", "rec", *data, "--out", str(tmp_path / "two"),
           "--workers", "0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert one == two
    ids = [
        {json.loads(line)["id"] for line in (tmp_path / "two" / f"results.rank{r}.jsonl").read_text().splitlines()}
        for r in (0, 1)
    ]
    assert ids[0] and ids[1] and not ids[0] & ids[1]


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
    for row in ("| CLIP |", "| RedCircle |", "| Blur (extra) |", "| Crop (extra) |", "| FALIP |"):
        assert row in table
    code, _, err = _run(["paper", "table2", "--out", str(tmp_path / "t3")], capsys)
    assert code == 2 and "needs at least one of" in err
    code, _, err = _run(["paper", "table2", "--waterbirds", str(tmp_path), "--out", str(tmp_path / "t4")], capsys)
    assert code == 2 and "--waterbirds needs --cub" in err
