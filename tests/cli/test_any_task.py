"""Every command on every registered task: point clouds through compare and sweep, and a toy of each
registry (task, dataset, REC format, scoring method) registered and run through compare and sweep."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from falip.cli import main
from falip.data import synthetic
from support.toys import register_toys, write_toy_rec


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


@pytest.fixture(scope="module")
def modelnet(tmp_path_factory):
    """A ModelNet40-style h5 release of 4 clouds of 2 classes (a flat box, a ball)."""
    root = tmp_path_factory.mktemp("mn40")
    rng = np.random.default_rng(0)
    (root / "shape_names.txt").write_text("box\nball\n")
    labels = np.arange(4) % 2
    clouds = []
    for k in labels:
        if k == 0:
            pts = rng.uniform(-1, 1, size=(2048, 3)) * np.array([0.6, 0.3, 0.1])
        else:
            v = rng.normal(size=(2048, 3))
            pts = 0.5 * v / np.linalg.norm(v, axis=1, keepdims=True)
        clouds.append(pts.astype(np.float32))
    with h5py.File(root / "ply_data_test0.h5", "w") as f:
        f["data"] = np.stack(clouds)
        f["label"] = labels.astype(np.uint8)[:, None]
    (root / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    return root


@pytest.fixture(scope="module")
def rec_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    return synthetic.write_reclip_rec(synthetic.rec_examples(seed=3, n_scenes=3), root, split="toy_val")


@pytest.fixture(scope="module")
def cls_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    scenes = synthetic.classification_scenes(seed=5, n_scenes=3, min_objects=1, max_objects=2)
    return synthetic.write_classification(scenes, root, with_masks=False)


@pytest.fixture
def toys():
    added = register_toys()
    yield
    for registry, name in added:
        registry.pop(name)


def test_compare_and_sweep_point_clouds(modelnet, tmp_path, capsys):
    base = ["--task", "pointcloud", "--dataset", "modelnet40", "--root", str(modelnet), "--workers", "0"]
    code, out, err = _run(["compare", *base, "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| none |" in md and "| falip |" in md and "mean per class" in md and "point clouds (modelnet40)" in md
    assert _summary(tmp_path / "cmp" / "falip")["n"] == 4
    code, out, err = _run(["sweep", "alpha", *base, "--values", "0,5", "--out", str(tmp_path / "sw")], capsys)
    assert code == 0, err
    table = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert table["task"] == "pointcloud" and [r["alpha"] for r in table["rows"]] == ["0", "5"]
    assert "mean_per_class_accuracy" in table["rows"][0]
    # alpha 0 is plain CLIP: the same cosines as --method none, view by view
    plain = [json.loads(line) for line in (tmp_path / "cmp" / "none" / "results.jsonl").read_text().splitlines()]
    zero = [json.loads(line) for line in (tmp_path / "sw" / "alpha=0" / "results.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r["view_cosines"] for r in plain}
    for r in zero:
        np.testing.assert_allclose(r["view_cosines"], by_id[r["id"]], atol=1e-5)
    strong = [json.loads(line) for line in (tmp_path / "sw" / "alpha=5" / "results.jsonl").read_text().splitlines()]
    assert any(not np.allclose(r["view_cosines"], by_id[r["id"]], atol=1e-4) for r in strong)  # the point's alpha


def test_options_that_do_not_apply_and_methods_a_task_refuses(modelnet, cls_file, tmp_path, capsys):
    base = ["--task", "pointcloud", "--dataset", "modelnet40", "--root", str(modelnet), "--out", str(tmp_path / "o")]
    code, _, err = _run(["compare", *base, "--methods", "crop"], capsys)
    assert code == 2 and "takes the methods none, falip" in err
    code, _, err = _run(["compare", *base, "--top-k", "3"], capsys)
    assert code == 2 and "--top-k does not apply to --task pointcloud" in err
    code, _, err = _run(["compare", "--task", "classify", "--dataset", "modelnet40", "--root", str(cls_file),
                         "--out", str(tmp_path / "o2")], capsys)  # fmt: skip
    assert code == 2 and "modelnet40" in err and "regions" in err
    code, _, err = _run(["sweep", "alpha", "--task", "pointcloud", "--out", str(tmp_path / "o3")], capsys)
    assert code == 2 and "--task pointcloud needs --dataset and --root" in err
    code, _, err = _run(["heads", "--task", "pointcloud", "--dataset", "modelnet40", "--root", str(modelnet),
                         "--prompt", "circle", "--out", str(tmp_path / "o4")], capsys)  # fmt: skip
    assert code == 2 and "--task pointcloud takes the prompt falip only" in err


def test_the_help_comes_from_the_registries(capsys, toys):
    from falip.cli import build_parser

    for command in ("compare", "sweep", "heads"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        text = sub.format_help()
        for name in ("rec", "classify", "pointcloud", "verify", "modelnet40", "first-regions", "toyrec", "--first"):
            assert name in text, (command, name)


def test_a_toy_of_each_registry_through_compare_and_sweep(toys, rec_file, cls_file, tmp_path, capsys):
    # a REC format: the same sentences as the ReCLIP file give the same answers
    images = rec_file.parent / "images"
    toy = write_toy_rec(rec_file, tmp_path / "toy.json", images)
    rec = ["--task", "rec", "--methods", "none,crop,crop2", "--workers", "0", "--images", str(images)]
    code, _, err = _run(["compare", *rec, "--data", str(rec_file), "--out", str(tmp_path / "reclip")], capsys)
    assert code == 0, err
    code, _, err = _run(["compare", *rec, "--dataset", "toyrec", "--data", str(toy), "--out", str(tmp_path / "toy")],
                        capsys)  # fmt: skip
    assert code == 0, err
    for method in ("none", "crop", "crop2"):
        a, b = _summary(tmp_path / "reclip" / method), _summary(tmp_path / "toy" / method)
        assert a["n"] == b["n"] > 0 and a["correct"] == b["correct"]
    # a scoring method: crop2 is crop's features scaled, so crop's answers
    assert _summary(tmp_path / "reclip" / "crop2")["correct"] == _summary(tmp_path / "reclip" / "crop")["correct"]
    run_json = json.loads((tmp_path / "toy" / "crop2" / "run.json").read_text())
    assert run_json["config"]["format"] == "toyrec" and run_json["config"]["method"] == "crop2"
    # a dataset with its own option, on classification
    cls = ["--task", "classify", "--dataset", "first-regions", "--root", str(cls_file), "--first", "3"]
    code, _, err = _run(["compare", *cls, "--methods", "crop,crop2", "--workers", "0", "--out", str(tmp_path / "c")],
                        capsys)  # fmt: skip
    assert code == 0, err
    assert _summary(tmp_path / "c" / "crop2")["n"] == 3
    # a task, on a registered dataset and on the toy one, through compare and sweep
    verify = ["--task", "verify", "--dataset", "jsonl", "--root", str(cls_file), "--workers", "0"]
    code, out, err = _run(["compare", *verify, "--methods", "none,crop2", "--out", str(tmp_path / "v")], capsys)
    assert code == 0, err
    n = len(cls_file.read_text().splitlines())
    assert _summary(tmp_path / "v" / "crop2")["n"] == n and "verify:" in out
    assert "| crop2 |" in (tmp_path / "v" / "compare.md").read_text()
    code, _, err = _run(["sweep", "alpha", "--task", "verify", "--dataset", "first-regions", "--root", str(cls_file),
                         "--first", "2", "--other", "a blank wall", "--values", "0,1", "--workers", "0",
                         "--out", str(tmp_path / "vs")], capsys)  # fmt: skip
    assert code == 0, err
    table = json.loads((tmp_path / "vs" / "sweep.json").read_text())
    assert table["task"] == "verify" and [r["n"] for r in table["rows"]] == [2, 2]
    run_json = json.loads((tmp_path / "vs" / "alpha=1" / "run.json").read_text())
    assert run_json["config"]["other"] == "a blank wall" and run_json["config"]["alpha"] == 1.0
    # the Python API takes it too
    import falip
    from falip.scoring import RegionScorer
    from falip.tasks import evaluate, make_task

    fclip, pre, tok = falip.load("falip-tiny")
    scorer = RegionScorer(fclip, pre, tok)
    summary, records = evaluate("verify", scorer, tmp_path / "api", method="crop2", dataset="jsonl",
                                root=str(cls_file), run_options={"workers": 0, "progress": False})  # fmt: skip
    assert summary["n"] == n == len(records)
    with pytest.raises(falip.FalipError, match="takes no top_k"):
        make_task("verify", scorer, dataset="jsonl", root=str(cls_file), top_k=3)


def test_the_task_commands_take_a_registered_dataset_and_its_settings(toys, cls_file, modelnet, tmp_path, capsys):
    """`falip classify` and `falip pointcloud` are the registry's tasks: a new dataset and its own
    option work there as in compare (classify used to refuse --first, pointcloud the dataset name)."""
    from falip.data.registry import DATASETS, DatasetSpec, get_dataset, register_dataset

    argv = ["classify", "--dataset", "first-regions", "--root", str(cls_file), "--first", "3", "--method", "crop"]
    code, _, err = _run([*argv, "--workers", "0", "--out", str(tmp_path / "c")], capsys)
    assert code == 0, err
    assert _summary(tmp_path / "c")["n"] == 3
    mn40 = get_dataset("modelnet40")
    register_dataset(
        DatasetSpec("my-clouds", "pointcloud", mn40.reader, "a copy of modelnet40", settings=mn40.settings)
    )
    try:
        base = ["pointcloud", "--root", str(modelnet), "--workers", "0", "--method", "none"]
        code, _, err = _run([*base, "--dataset", "my-clouds", "--out", str(tmp_path / "p1")], capsys)
        assert code == 0, err
        code, _, err = _run([*base, "--dataset", "modelnet40", "--out", str(tmp_path / "p2")], capsys)
        assert code == 0, err
        ours = (tmp_path / "p1" / "results.jsonl").read_text().splitlines()
        theirs = (tmp_path / "p2" / "results.jsonl").read_text().splitlines()
        assert [json.loads(r)["pred"] for r in ours] == [json.loads(r)["pred"] for r in theirs] and len(ours) == 4
    finally:
        DATASETS.pop("my-clouds")
