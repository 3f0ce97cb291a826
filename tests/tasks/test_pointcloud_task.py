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
    default_view_chunk,
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


def test_falip_config_is_a_sweeps_point_and_falip_options_still_work(tiny, modelnet, monkeypatch):
    from falip.core import deprecation

    monkeypatch.setattr(deprecation, "_SAID", set())
    fclip, tok = tiny
    clouds = [it.load_points() for it in list(open_pointcloud_dataset("modelnet40", str(modelnet))[0])[:2]]
    settings = PointCloudSettings("m", "-")
    zero = PointCloudTask(fclip, tok, settings, [], CLASSES, falip_config=fclip.config.override(alpha=0.0))
    plain = PointCloudTask(fclip, tok, PointCloudSettings("m", "-", method="none"), [], CLASSES)
    torch.testing.assert_close(zero.view_features(clouds), plain.view_features(clouds))
    assert PointCloudTask(fclip, tok, settings, [], CLASSES).falip_config == fclip.config
    with pytest.warns(FutureWarning, match="PointCloudTask\\(falip_options=...\\) is deprecated"):
        old = PointCloudTask(fclip, tok, settings, [], CLASSES, falip_options={"alpha": 0.0})
    assert old.falip_config == zero.falip_config


def test_batched_equals_per_cloud(tiny, modelnet):
    fclip, tok = tiny
    task = PointCloudTask(fclip, tok, PointCloudSettings("m", "-"), [], CLASSES)
    clouds = [it.load_points() for it in list(open_pointcloud_dataset("modelnet40", str(modelnet))[0])[:4]]
    clouds[1] = clouds[1][:1500]  # another point count in the same batch
    together = task.view_features(clouds)
    alone = torch.cat([task.view_features([c]) for c in clouds])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["falip", "none"])
def test_view_chunks_give_the_unchunked_features(tiny, modelnet, monkeypatch, method):
    from falip.tasks import projection

    def some_views_empty(images, name):  # two views the cloud "does not cover", to mix both calls in a chunk
        masks = real(images, name).clone()
        masks[0, 2] = False
        masks[1, 5] = False
        return masks

    real = projection.foreground
    monkeypatch.setattr(projection, "foreground", some_views_empty)
    fclip, tok = tiny
    clouds = [it.load_points() for it in list(open_pointcloud_dataset("modelnet40", str(modelnet))[0])[:3]]
    settings = PointCloudSettings("m", "-", method=method)
    whole = PointCloudTask(fclip, tok, settings, [], CLASSES, view_chunk=None).view_features(clouds)
    assert whole.shape == (3, 6, fclip.output_dim)
    for chunk in (1, 4, 6, 7, 100):  # 4 and 7 cut clouds across calls
        chunked = PointCloudTask(fclip, tok, settings, [], CLASSES, view_chunk=chunk).view_features(clouds)
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    if method == "falip":  # the emptied views really took the plain path
        plain = PointCloudTask(fclip, tok, PointCloudSettings("m", "-", method="none"), [], CLASSES, view_chunk=None)
        ref = plain.view_features(clouds)
        torch.testing.assert_close(whole[0, 2], ref[0, 2], atol=1e-5, rtol=1e-5)
        assert (whole[0, 1] - ref[0, 1]).abs().max() > 1e-3


def test_view_chunk_by_device(tiny):
    fclip, tok = tiny
    assert default_view_chunk("cpu", 6) == 6 and default_view_chunk(torch.device("cpu"), 10) == 10
    assert default_view_chunk("cuda", 6) is None and default_view_chunk("cuda:1", 10) is None
    assert PointCloudTask(fclip, tok, PointCloudSettings("m", "-"), [], CLASSES).view_chunk == 6  # the CPU default
    assert PointCloudTask(fclip, tok, PointCloudSettings("m", "-", projection="v2"), [], CLASSES).view_chunk == 10
    for bad in (0, -3, "big"):
        with pytest.raises(falip.FalipError, match="view_chunk"):
            PointCloudTask(fclip, tok, PointCloudSettings("m", "-"), [], CLASSES, view_chunk=bad)


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


def test_a_folder_s_clouds_are_projected_with_every_point_loaded(tiny, tmp_path, capsys):
    """Issue 13 item 5: ``--dataset folder --points N`` with N > 1024 used to project only the first
    1024 points of the sorted subsample (a spatially biased part of an ordered file). PointCLIP's
    1024 (Dassl3D data_manager.py ``item.impath[:1024]``) applies to its own h5 clouds only."""
    rng = np.random.default_rng(4)
    root = tmp_path / "folder"
    for k, c in enumerate(CLASSES):
        (root / c).mkdir(parents=True)
        pts = _cloud(k, rng, n=3000)
        np.save(root / c / "a.npy", pts[np.argsort(pts[:, 0])])  # an ordered file: the first half is one side
    base = ["pointcloud", "--dataset", "folder", "--root", str(root), "--points", "2000", "--workers", "0"]
    assert main([*base, "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "run.json").read_text())["config"]["projected_points"] is None
    fclip, tok = tiny
    items, classes, _ = open_pointcloud_dataset("folder", str(root), n_points=2000)
    clouds = [it.load_points() for it in items]
    assert {len(c) for c in clouds} == {2000}
    every = PointCloudTask(fclip, tok, PointCloudSettings("folder", str(root), projected_points=None), items, classes)
    first = PointCloudTask(fclip, tok, PointCloudSettings("folder", str(root), projected_points=1024), items, classes)
    all_2000 = PointCloudTask(
        fclip, tok, PointCloudSettings("folder", str(root), projected_points=2000), items, classes
    )
    assert torch.equal(every.view_features(clouds), all_2000.view_features(clouds))
    assert not torch.allclose(every.view_features(clouds), first.view_features(clouds))


def test_post_search_is_pointclouds_grid_in_loop_order():
    """PointCLIP trainers/search_weights.py (ZrrSkywalker/PointCLIP @ 8656f2c, search_weights_zs):
    nested loops over (i + 1) * RANGE / TIME for each view, a vector kept when strictly better:
    checked against those loops written out."""
    import itertools

    from falip.tasks.pointcloud import POST_SEARCH_GRID, post_search_view_weights

    rng = np.random.default_rng(0)
    cos = rng.normal(size=(30, 3, 4))
    labels = rng.integers(0, 4, size=30)
    best, best_acc = None, 0.0
    for w in itertools.product(POST_SEARCH_GRID, repeat=3):
        acc = 100.0 * float((np.argmax(np.einsum("nvc,v->nc", cos, np.array(w)), axis=1) == labels).mean())
        if acc > best_acc:
            best, best_acc = w, acc
    got, acc = post_search_view_weights(cos, labels, chunk=7)
    assert got == best and acc == pytest.approx(best_acc)
    assert POST_SEARCH_GRID == (0.25, 0.5, 0.75, 1.0)


def test_cli_v2_preset_prompts_file_and_post_search(modelnet, tmp_path, capsys):
    """PointCLIP V2 zeroshot_cls/trainers/zeroshot.py:71 reads its per-dataset view weights from
    best_param.py (the presets); its prompts are user-given sentence lists per class, averaged in
    feature space here. The post-search is labelled as PointCLIP's optimistic protocol."""
    from falip.tasks.pointcloud import POST_SEARCH_LABEL, VIEW_WEIGHT_PRESETS

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"box": ["a depth map of a box.", "a flat box"], "ball": ["a round ball."]}))
    base = ["pointcloud", "--dataset", "modelnet40", "--root", str(modelnet), "--workers", "0", "--projection", "v2"]
    argv = [*base, "--view-weights", "v2-modelnet40-vit-b16", "--prompts", str(prompts), "--post-search"]
    assert main([*argv, "--out", str(tmp_path / "v2")]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "v2" / "summary.json").read_text())
    assert summary["view_weights"] == list(VIEW_WEIGHT_PRESETS["v2-modelnet40-vit-b16"])
    assert summary["weights_from"].startswith("preset v2-modelnet40-vit-b16")
    post = json.loads((tmp_path / "v2" / "post_search.json").read_text())
    assert post["label"] == POST_SEARCH_LABEL and len(post["view_weights"]) == 10 and POST_SEARCH_LABEL in out
    assert main([*base, "--view-weights", "v2-nope", "--out", str(tmp_path / "x")]) == 2
    assert "no such preset" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"box": ["x"]}))
    assert main([*base, "--prompts", str(tmp_path / "bad.json"), "--out", str(tmp_path / "y")]) == 2
    assert "no sentences for class 'ball'" in capsys.readouterr().err


def test_prompt_lists_are_averaged_in_feature_space(tiny, modelnet):
    fclip, tok = tiny
    items, classes, _ = open_pointcloud_dataset("modelnet40", str(modelnet))
    prompts = (("box", ("a box.", "a flat box")), ("ball", ("a ball.",)))
    task = PointCloudTask(fclip, tok, PointCloudSettings("modelnet40", str(modelnet), prompts=prompts), items, classes)
    with torch.no_grad():
        f = torch.nn.functional.normalize(fclip.encode_text(tok(["a box.", "a flat box", "a ball."])).float(), dim=-1)
    want = torch.nn.functional.normalize(torch.stack([f[:2].mean(0), f[2]]), dim=-1)
    assert torch.allclose(task.text_features(), want, atol=1e-6)


V2_PROMPTS = (  # PointCLIP V2's best_param.py layout; our own sentences (none of V2's text)
    "\nbest_prompt_weight = {}\n"
    "best_prompt_weight['modelnet40_rn50_test_prompts'] = ['rn50 sentence for a box.', 'rn50 sentence for a ball.']\n"
    "best_prompt_weight['modelnet40_vit_b16_test_prompts'] = ['A flat grey box seen in depth.', "
    "'A round grey ball in depth.']\n"
    "best_prompt_weight['modelnet40_vit_b16_test_weights'] = [0.75, 0.75, 0.75, 0.25, 0.75, 1.0, 0.25, 1.0, "
    "0.75, 0.25]\n"
)


def test_v2_test_searched_prompts_one_sentence_per_class(tiny, modelnet, tmp_path, capsys):
    """PointCLIP V2 (yangyangyang127/PointCLIP_V2@0b5aee8 zeroshot_cls/trainers/best_param.py:3-16,
    zeroshot.py:18-20) uses ONE test-searched sentence per class, verbatim, from
    ``best_prompt_weight['<dataset>_<backbone>_test_prompts']`` (position i = class i), not averaged
    lists; the list of the run's dataset and backbone is taken. The file is parsed, never run."""
    from falip.tasks.pointcloud import read_prompts, v2_backbone

    path = tmp_path / "best_param.py"
    path.write_text(V2_PROMPTS + "raise SystemExit('never executed')\n")
    assert v2_backbone("ViT-B-16-quickgelu") == "vit_b16" and v2_backbone("RN101") == "rn101"
    assert v2_backbone("falip-tiny") is None
    got = read_prompts(str(path), CLASSES, "modelnet40", "ViT-B-16")
    assert got == (("box", ("A flat grey box seen in depth.",)), ("ball", ("A round grey ball in depth.",)))
    with pytest.raises(falip.FalipError, match=r"holds 2 lists \(modelnet40_rn50, modelnet40_vit_b16\)"):
        read_prompts(str(path), CLASSES, "modelnet40", "falip-tiny")
    one = tmp_path / "one.py"
    one.write_text(
        "best_prompt_weight = {}\nbest_prompt_weight['scanobjectnn_vit_b32_test_prompts'] = ['a', 'b', 'c']\n"
    )
    with pytest.raises(falip.FalipError, match="has 3 sentences for 2 classes"):
        read_prompts(str(one), CLASSES)
    one.write_text("best_prompt_weight = {}\nbest_prompt_weight['x_rn50_test_prompts'] = ['A box.', 'A ball.']\n")
    fclip, tok = tiny
    items, classes, _ = open_pointcloud_dataset("modelnet40", str(modelnet))
    settings = PointCloudSettings("modelnet40", str(modelnet), prompts=read_prompts(str(one), classes))
    task = PointCloudTask(fclip, tok, settings, items, classes)
    with torch.no_grad():  # one sentence each, as written: no template, no averaging
        want = torch.nn.functional.normalize(fclip.encode_text(tok(["A box.", "A ball."])).float(), dim=-1)
    assert torch.allclose(task.text_features(), want, atol=1e-6)
    # the command line: the file as --prompts (one list: taken whatever the model)
    base = ["pointcloud", "--dataset", "modelnet40", "--root", str(modelnet), "--workers", "0", "--projection", "v2"]
    assert main([*base, "--prompts", str(one), "--out", str(tmp_path / "v2p")]) == 0
    run_json = json.loads((tmp_path / "v2p" / "run.json").read_text())
    assert run_json["config"]["prompts"] == {"box": ["A box."], "ball": ["A ball."]}


def test_prompts_help_describes_v2_files():
    """The --prompts help used to call V2's prompts "lists" to average; V2 has one sentence per class."""
    from falip.cli import build_parser

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    text = next(a.help for a in sub.choices["pointcloud"]._actions if a.dest == "prompts")
    assert "one sentence per class" in text and "_test_prompts" in text and "averaged" in text


def test_view_cosines_of_clouds_in_memory_are_the_runs(tiny, modelnet, tmp_path):
    """The app's one-cloud scoring (no dataset, no run) gives the harness's per-view cosines."""
    from falip.tasks.pointcloud import view_cosines

    run(_task(tiny, modelnet), tmp_path / "out", progress=False, batch_units=6)
    records, _ = read_results(tmp_path / "out")
    items, classes, _ = open_pointcloud_dataset("modelnet40", str(modelnet))
    clouds = {it.id: it.load_points() for it in items}
    cos = view_cosines(*tiny, [clouds[r["id"]] for r in records], classes)
    np.testing.assert_allclose(cos, np.array([r["view_cosines"] for r in records]), atol=1e-5)
