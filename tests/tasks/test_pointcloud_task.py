"""Point clouds on the harness: FALIP per view, fusion, weight search, the CLI on a ModelNet40-style h5."""

from __future__ import annotations

import json

import h5py
import numpy as np
import open_clip
import pytest
import torch

import falip
from falip.cli import main
from falip.runner import read_results, run
from falip.tasks.pointcloud import (
    PointCloudSettings,
    PointCloudTask,
    fuse_views,
    open_pointcloud_dataset,
    search_view_weights,
)
from support.tiny import make_tiny_clip

CLASSES = ["box", "ball"]


def _cloud(kind: int, rng: np.random.Generator, n: int = 2048) -> np.ndarray:
    """A flat box (kind 0) or a ball (kind 1) inside the unit sphere."""
    if kind == 0:
        pts = rng.uniform(-1, 1, size=(n, 3)) * np.array([0.6, 0.3, 0.1])
    else:
        v = rng.normal(size=(n, 3))
        pts = 0.5 * v / np.linalg.norm(v, axis=1, keepdims=True)
    return (pts + rng.normal(0, 0.01, size=(n, 3))).astype(np.float32)


def write_modelnet(root, n_test: int = 6, n_train: int = 6, seed: int = 0):
    """PointNet's modelnet40_ply_hdf5_2048 layout: list files with repo-relative paths, h5 data/label."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "shape_names.txt").write_text("".join(c + "\n" for c in CLASSES))
    for split, n in (("test", n_test), ("train", n_train)):
        labels = np.arange(n) % 2
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = np.stack([_cloud(int(k), rng) for k in labels])
            f["label"] = labels.astype(np.uint8)[:, None]
        (root / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
    return root


@pytest.fixture(scope="module")
def tiny():
    model = make_tiny_clip(layers=3)
    return falip.FovealCLIP(model, alpha=2.0, layers=(1, 2)), open_clip.get_tokenizer("ViT-B-16", context_length=16)


@pytest.fixture(scope="module")
def modelnet(tmp_path_factory):
    return write_modelnet(tmp_path_factory.mktemp("mn40"))


def _task(tiny, modelnet, method="falip", weights=None):
    fclip, tok = tiny
    items, classes, _ = open_pointcloud_dataset("modelnet40", str(modelnet))
    settings = PointCloudSettings("modelnet40", str(modelnet), method=method, view_weights=weights)
    return PointCloudTask(fclip, tok, settings, items, classes)


def test_run_records_and_per_class_summary(tiny, modelnet, tmp_path):
    summary = run(_task(tiny, modelnet), tmp_path / "out", progress=False, batch_units=4)
    records, skipped = read_results(tmp_path / "out")
    assert summary["n"] == len(records) == 6 and not skipped
    assert set(summary["by_label_name"]) == set(CLASSES)
    per_class = [row["accuracy"] for row in summary["by_label_name"].values()]
    assert summary["mean_per_class_accuracy"] == pytest.approx(np.mean(per_class))
    assert summary["weights_from"] == "equal"
    cos = np.array([r["view_cosines"] for r in records])
    assert cos.shape == (6, 6, 2)
    preds = fuse_views(cos).argmax(-1)
    assert [r["pred"] for r in records] == preds.tolist()


def test_falip_with_zero_alpha_is_plain_clip_per_view(tiny, modelnet):
    fclip, tok = tiny
    items = list(open_pointcloud_dataset("modelnet40", str(modelnet))[0])[:3]
    clouds = [it.load_points() for it in items]
    zero = falip.FovealCLIP(fclip.model, alpha=0.0, layers=(1, 2))
    plain = PointCloudTask(zero, tok, PointCloudSettings("m", "-", method="none"), [], CLASSES).view_features(clouds)
    ours = PointCloudTask(zero, tok, PointCloudSettings("m", "-"), [], CLASSES).view_features(clouds)
    biased = PointCloudTask(fclip, tok, PointCloudSettings("m", "-"), [], CLASSES).view_features(clouds)
    torch.testing.assert_close(ours, plain)
    assert (biased - plain).abs().max() > 1e-3  # the foreground bias really acts


def test_batched_equals_per_cloud(tiny, modelnet):
    fclip, tok = tiny
    task = PointCloudTask(fclip, tok, PointCloudSettings("m", "-"), [], CLASSES)
    clouds = [it.load_points() for it in list(open_pointcloud_dataset("modelnet40", str(modelnet))[0])[:4]]
    clouds[1] = clouds[1][:1500]  # another point count in the same batch
    together = task.view_features(clouds)
    alone = torch.cat([task.view_features([c]) for c in clouds])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_weight_search_finds_the_informative_view():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=200)
    cos = rng.normal(0, 1, size=(200, 6, 3))
    cos[np.arange(200), 0, labels] += 1.5  # only view 0 knows the answer
    weights, acc = search_view_weights(cos, labels, trials=300, seed=1)
    equal = 100 * (fuse_views(cos).argmax(-1) == labels).mean()
    assert acc > equal + 10 and weights[0] == max(weights)
    assert search_view_weights(cos, labels, trials=300, seed=1) == (weights, acc)  # seeded
    flat = np.zeros((10, 6, 2))
    assert search_view_weights(flat, np.zeros(10, int), trials=20)[0] == (1.0,) * 6  # ties keep equal weights


def test_cli_with_resume_and_weight_search(modelnet, tmp_path, capsys):
    base = ["pointcloud", "--dataset", "modelnet40", "--root", str(modelnet), "--workers", "0"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert main([*base, "--out", str(tmp_path / "a"), "--resume"]) == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == first
    assert main([*base, "--out", str(tmp_path / "b"), "--search-weights-on", "train", "--search-trials", "20"]) == 0
    searched = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert searched["weights_from"].startswith("searched on train (6 clouds, 20 seeded trials, seed 0")
    assert len(searched["view_weights"]) == 6
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "c"), "--search-weights-on", "test"]) == 2
    assert "is the split reported" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "d"), "--view-weights", "1,1,1"]) == 2
    assert "3 view weights" in capsys.readouterr().err


def test_bad_cloud_is_skipped_with_its_source(tmp_path):
    root = write_modelnet(tmp_path / "mn", n_test=4, n_train=2)
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        data = f["data"][...]
        data[2, 5] = np.nan
        f["data"][...] = data
    fclip = falip.FovealCLIP(make_tiny_clip(), alpha=1.0)
    items, classes, _ = open_pointcloud_dataset("modelnet40", str(root))
    task = PointCloudTask(fclip, open_clip.get_tokenizer("ViT-B-16", context_length=16),
                          PointCloudSettings("modelnet40", str(root)), items, classes)  # fmt: skip
    summary = run(task, tmp_path / "out", progress=False)
    _, skipped = read_results(tmp_path / "out")
    assert summary["n"] == 3 and summary["skipped"] == 1
    assert "ply_data_test0.h5#2" in skipped[0]["source"]


def test_python_api(tiny, modelnet, tmp_path):
    from falip.tasks.pointcloud import evaluate_pointcloud

    fclip, tok = tiny
    summary, records = evaluate_pointcloud(fclip, tok, "modelnet40", str(modelnet), str(tmp_path / "api"),
                                           view_weights=[1, 1, 1, 1, 0.5, 0.5], progress=False)  # fmt: skip
    assert summary["n"] == len(records) == 6 and summary["weights_from"] == "given"
    assert summary["view_weights"] == [1, 1, 1, 1, 0.5, 0.5]
