"""Per-head decomposition (Eq. 5) sums back to the model's output; head sensitivity; `falip heads` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import falip
from falip.analysis.heads import (
    HeadSensitivity,
    classification_samples,
    decompose,
    head_sensitivity,
    load_samples,
    rec_samples,
)
from falip.cli import main
from falip.core.reference import reference_forward
from falip.core.regions import Regions
from falip.core.unleash import project
from falip.data import synthetic
from falip.towers import wrap
from support.tiny import make_tiny_clip

BOXES = [[[0.0, 0.0, 12.0, 20.0], [9.0, 9.0, 31.0, 30.0]], [[8.0, 16.0, 16.0, 24.0]]]
OPTIONS = {"plain": {}, "layerscale": dict(ls_init_value=0.5), "qknorm-headscale": dict(qk_norm=True, scale_heads=True)}


def _tiny(options: str):
    model = make_tiny_clip(layers=4, seed=1, **OPTIONS[options])
    with torch.no_grad():  # non-trivial LayerScale gains and head scales
        for block in model.visual.transformer.resblocks:
            for ls in (block.ls_1, block.ls_2):
                if hasattr(ls, "gamma"):
                    ls.gamma.uniform_(0.2, 1.5)
            if getattr(block.attn, "head_scale", None) is not None:
                block.attn.head_scale.uniform_(0.5, 1.5)
    return model


def _regions(boxes):
    return [Regions(b, image_size=(32, 32), frame="input") for b in boxes]


@pytest.fixture(scope="module")
def shipped():
    fclip, preprocess, tokenizer = falip.load("falip-tiny")
    return fclip.eval(), preprocess


@pytest.mark.parametrize("options", list(OPTIONS))
def test_decomposition_sums_back_to_the_model_output(options):
    model = _tiny(options)
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    fclip = falip.FovealCLIP(model, alpha=3.0, sigma=2.0, layers=(2, 3))
    with torch.no_grad():
        plain = decompose(model, images)
        biased = decompose(model, images, _regions(BOXES), alpha=3.0, sigma=2.0, biased_layers=(2, 3))
        want_plain = model.encode_image(images)
        want_biased = fclip.encode_image(images, regions=_regions(BOXES))  # the fast path, not the reference
        blocks = model.visual.transformer.resblocks
        assert plain.heads.shape == (4, 2, 4, 64) and biased.heads.shape == (4, 3, 4, 64)
        for d, want in ((plain, want_plain), (biased, want_biased)):
            torch.testing.assert_close(d.reconstruct(), d.output, atol=1e-5, rtol=0)
            assert (project(wrap(model), d.reconstruct()) - want).abs().max().item() <= 1e-4
            for layer in range(4):  # per block: the heads and the bias term are its attention term
                torch.testing.assert_close(
                    d.head_terms(layer).sum(1) + d.bias[layer], d.attention[layer], atol=1e-5, rtol=0
                )
        # the bias changes block 3's heads, and leaves block 0's alone
        assert (biased.heads[3][0] - plain.heads[3][0]).abs().max() > 1e-2
        torch.testing.assert_close(biased.heads[0][:2], plain.heads[0][[0, 0]], atol=1e-6, rtol=0)
        if options == "layerscale":  # the terms are ls_1(G_h) = gamma * G_h, not the raw G_h
            raw = reference_forward(wrap(model), images, record=[1]).head_outputs[1][:, :, 0]
            torch.testing.assert_close(plain.heads[1], raw * blocks[1].ls_1.gamma, atol=1e-6, rtol=0)
            assert (plain.heads[1] - raw).abs().max() > 1e-2


def test_decomposition_of_the_shipped_model_matches_its_output(shipped):
    fclip, preprocess = shipped
    example = synthetic.rec_examples(seed=3, n_scenes=1)[0]
    image = Image.fromarray(example.scene.image)
    boxes = np.array([o.box for o in example.scene.objects], dtype=np.float64)
    regions = preprocess.map_regions(Regions(boxes, image_size=image.size))
    x = preprocess(image)[None]
    with torch.no_grad():
        plain = decompose(fclip.model, x)
        biased = decompose(
            fclip.model, x, [regions], alpha=fclip.alpha, sigma=fclip.sigma, biased_layers=fclip.layers, form=fclip.form
        )
        assert (project(fclip, plain.reconstruct()) - fclip.encode_image(x)).abs().max().item() <= 1e-4
        want = fclip.encode_image(x, regions=[regions])
        assert (project(fclip, biased.reconstruct()) - want).abs().max().item() <= 1e-4
        assert (want[0] - fclip.encode_image(x)[0]).abs().max().item() > 1e-2  # the bias acts on this model


def test_blocks_that_normalise_attention_have_no_per_head_split():
    torch.manual_seed(0)
    images = torch.randn(1, 3, 32, 32)
    for option, name in (("scale_attn", "attention output"), ("scale_attn_inner", "concatenated heads")):
        model = make_tiny_clip(layers=2, **{option: True})
        with pytest.raises(falip.FalipError, match=f"block index 0 normalises its {name}"):
            decompose(model, images)
        d = decompose(model, images, split_layers=[])  # the block-level terms still sum back
        assert d.heads.shape[0] == 0 and d.split_layers == ()
        torch.testing.assert_close(project(wrap(model), d.reconstruct()), model.encode_image(images), atol=1e-5, rtol=0)


def test_some_layers_only_and_bad_layers():
    model = _tiny("plain")
    images = torch.randn(1, 3, 32, 32)
    d = decompose(model, images, split_layers=[-1, 1])
    assert d.split_layers == (1, 3) and d.heads.shape == (2, 1, 4, 64)
    torch.testing.assert_close(d.reconstruct(), d.output, atol=1e-5, rtol=0)
    with pytest.raises(falip.FalipError, match="block 0 was not decomposed"):
        d.head_terms(0)
    with pytest.raises(falip.FalipError, match="out of range"):
        decompose(model, images, split_layers=[4])


def test_ranking_and_heatmap(tmp_path):
    delta = np.array([[0.0, 1.0], [3.0, 2.0], [0.5, 4.0]])
    s = HeadSensitivity("circle", delta, np.full_like(delta, 2.0), regions=5, images=2)
    ranking = s.ranking()
    assert [(r["layer"], r["head"]) for r in ranking] == [(2, 1), (1, 0), (1, 1), (0, 1), (2, 0), (0, 0)]
    assert ranking[0]["relative"] == 2.0
    data = s.to_json()
    assert data["delta"] == delta.tolist() and data["blocks"] == 3 and data["heads"] == 2
    # what a person reads numbers blocks from 1, and says so
    # JSON counts blocks and heads from 1 (as people read them); head_index keeps the 0-based index
    assert [(r["block"], r["head"], r["head_index"]) for r in data["ranking"]][:2] == [(3, 2, 1), (2, 1, 0)]
    assert "blocks are numbered from 1" in data["numbering"] and "heads are numbered from 1" in data["numbering"]
    png = s.save_heatmap(tmp_path / "h.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 150


def _scenes(n: int):
    out = []
    for example in synthetic.rec_examples(seed=11, n_scenes=n):
        image = Image.fromarray(example.scene.image)
        out.append((image, Regions([o.box for o in example.scene.objects], image_size=image.size)))
    return out


def test_falip_deltas_are_zero_before_the_first_biased_block_and_not_after(shipped):
    fclip, preprocess = shipped
    assert fclip.layers == (1, 2, 3)
    s = head_sensitivity(fclip, preprocess, _scenes(4), "falip", batch_size=5)
    assert s.delta.shape == (4, 3) and s.biased_layers == (1, 2, 3) and s.images == 4
    assert (s.delta[0] == 0).all()  # exactly: nothing has changed before block 1
    assert (s.delta[1:] > 0.5).all()
    late = head_sensitivity(fclip, preprocess, _scenes(4), "falip", layers=[3], batch_size=64)
    assert (late.delta[:3] == 0).all() and (late.delta[3] > 0.5).all()
    circle = head_sensitivity(fclip, preprocess, _scenes(4), "circle")
    assert (circle.delta[0] > 0).all() and circle.biased_layers == ()  # pixels change: every block moves


@pytest.fixture(scope="module")
def rec_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads-rec")
    examples = synthetic.rec_examples(seed=5, n_scenes=4)
    path = synthetic.write_reclip_rec(examples, root, split="val")
    gold = {(i, ex.queries[q].target) for i, ex in enumerate(examples) for q in range(len(ex.queries))}
    return path, root / "images", len(gold)


def test_rec_samples_use_each_lines_gold_box_once(rec_data):
    path, images, n_gold = rec_data
    entries = list(rec_samples([path], images))
    assert len(entries) == 4 and sum(len(e[1]) for e in entries) == n_gold
    loaded = list(load_samples(entries, limit=3))
    assert len(loaded) == 3 and all(len(r) == len(e[1]) for (_, r), e in zip(loaded, entries))


def test_heads_cli_rec_end_to_end(rec_data, tmp_path, capsys):
    path, images, n_gold = rec_data
    argv = ["heads", "--task", "rec", "--data", str(path), "--images", str(images), "--prompt", "blur&circle",
            "--out", str(tmp_path / "out"), "--top", "4"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{n_gold} regions of 4 images" in out and out.count("\n") >= 7
    assert "blocks are numbered from 1" in out and "heads are numbered from 1" in out
    data = json.loads((tmp_path / "out" / "heads.json").read_text())
    assert data["prompt"] == "blur&circle" and data["regions"] == n_gold and (data["blocks"], data["heads"]) == (4, 3)
    top = next(line.split() for line in out.splitlines() if line.split()[:1] == ["1"])  # rank 1: block, head
    assert (int(top[1]), int(top[2])) == (data["ranking"][0]["block"], data["ranking"][0]["head"])
    assert 1 <= data["ranking"][0]["head"] == data["ranking"][0]["head_index"] + 1 <= 3
    deltas = [r["delta"] for r in data["ranking"]]
    assert len(deltas) == 12 and deltas == sorted(deltas, reverse=True) and deltas[0] > 0
    with Image.open(tmp_path / "out" / "heads.png") as im:
        assert im.format == "PNG" and im.getextrema() != ((255, 255), (255, 255), (255, 255), (255, 255))


def test_heads_cli_classify_and_limit(tmp_path, capsys):
    scenes = synthetic.classification_scenes(seed=2, n_scenes=3, min_objects=1, max_objects=2)
    jsonl = synthetic.write_classification(scenes, tmp_path / "cls", with_masks=True)
    entries = list(classification_samples("jsonl", jsonl))
    assert [len(e[1]) for e in entries] == [len(s.objects) for s in scenes]
    argv = ["heads", "--task", "classify", "--dataset", "jsonl", "--root", str(jsonl), "--prompt", "falip",
            "--limit", "2", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((tmp_path / "out" / "heads.json").read_text())
    assert data["images"] == 2 and data["regions"] == len(scenes[0].objects) + len(scenes[1].objects)
    assert data["biased_blocks"] == [2, 3, 4] and data["delta"][0] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", "crop"], "a visual prompt is image edits and/or falip"),
        (["--detector-file", "d.json"], "--detector-file: falip heads analyses each REC line's gold box"),
        (["--template", "a {}"], "--template: falip heads uses no text"),
    ],
)
def test_heads_cli_errors_are_one_line(rec_data, tmp_path, capsys, extra, message):
    path, images, _ = rec_data
    argv = ["heads", "--task", "rec", "--data", str(path), "--images", str(images), "--out", str(tmp_path)]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("falip: error: ") and message in err and err.count("\n") == 1


def test_heads_cli_needs_its_data_and_says_why_nothing_was_read(rec_data, tmp_path, capsys):
    assert main(["heads", "--task", "rec", "--out", str(tmp_path)]) == 2
    assert "--task rec needs --data" in capsys.readouterr().err
    path, _, _ = rec_data
    assert main(["heads", "--task", "rec", "--data", str(path), "--out", str(tmp_path)]) == 2  # images not there
    err = capsys.readouterr().err
    assert "no regions to analyse" in err and "no such image file" in err


# ------------------------------------------------------------------------------ point clouds
def _write_point_folder(root, n_per_class: int = 2, seed: int = 0):
    """A ``folder`` point-cloud dataset: one subfolder per class of .npy clouds (a flat box, a ball)."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(("box", "ball")):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            if k == 0:
                pts = rng.uniform(-1, 1, size=(700, 3)) * np.array([0.6, 0.3, 0.1])
            else:
                v = rng.normal(size=(700, 3))
                pts = 0.5 * v / np.linalg.norm(v, axis=1, keepdims=True)
            np.save(root / name / f"{i}.npy", pts.astype(np.float32))
    return root


@pytest.fixture(scope="module")
def point_folder(tmp_path_factory):
    return _write_point_folder(tmp_path_factory.mktemp("heads-points"))


def test_point_cloud_head_deltas_equal_per_view_reference_forwards(point_folder):
    """A cloud's sample is the task's views and foregrounds; its deltas are those of one reference
    forward per view (plain, and biased on the view's foreground), taken by hand block by block."""
    from falip.analysis.heads import pointcloud_samples
    from falip.tasks.pointcloud import PointCloudSettings, PointCloudTask, open_pointcloud_dataset
    from falip.tasks.projection import foreground, project_v1

    model = _tiny("layerscale")
    fclip = falip.FovealCLIP(model, alpha=3.0, sigma=2.0, layers=(2, 3)).eval()
    samples = list(pointcloud_samples("folder", point_folder, image_size=32, n_points=512))
    items, classes, _ = open_pointcloud_dataset("folder", str(point_folder), n_points=512)
    clouds = [it.load_points() for it in items]
    assert len(samples) == len(clouds) == 4
    want_delta, want_norm, n_views = np.zeros((4, 4)), np.zeros((4, 4)), 0
    gammas = [b.ls_1.gamma.detach() for b in model.visual.transformer.resblocks]
    for (views, regions), points in zip(samples, clouds):
        # the views: PointCLIP V1 of every point loaded (a folder's clouds), the model's input as it is
        assert views.shape == (6, 3, 32, 32)
        assert torch.equal(views, project_v1(torch.from_numpy(points)[None], n_points=len(points), size=32)[0])
        masks = foreground(views[None], "v1")[0].numpy()
        for v in range(6):
            r = regions[v]
            assert r is not None and r.frame == "input" and np.array_equal(r.masks[0], masks[v])
            assert 0 < masks[v].sum() < masks[v].size
            plain = reference_forward(wrap(model), views[v : v + 1], record="all")
            biased = reference_forward(
                wrap(model), views[v : v + 1], [r], alpha=3.0, sigma=2.0, layers=(2, 3), form=fclip.form, record="all"
            )
            for layer in range(4):
                g0 = gammas[layer] * plain.head_outputs[layer][0, :, 0]  # [heads, C]: ls_1(G_h)
                g1 = gammas[layer] * biased.head_outputs[layer][0, :, 0]
                want_delta[layer] += (g1 - g0).norm(dim=-1).double().numpy()
                want_norm[layer] += g0.norm(dim=-1).double().numpy()
            n_views += 1
    with torch.no_grad():
        got = head_sensitivity(fclip, None, samples, "falip", batch_size=7)  # batches cut across clouds
    assert (got.images, got.regions, got.empty_views, got.biased_layers) == (4, 24, 0, (2, 3))
    np.testing.assert_allclose(got.delta, want_delta / n_views, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.norm, want_norm / n_views, atol=1e-5, rtol=0)
    assert (got.delta[:2] == 0).all() and (got.delta[2:] > 1e-3).all()
    # the same views and regions as the point-cloud task encodes (its features, view by view)
    settings = PointCloudSettings("folder", str(point_folder), projected_points=None)
    task = PointCloudTask(fclip, None, settings, items, classes)
    with torch.no_grad():
        feats = task.view_features(clouds)
        for (views, regions), f in zip(samples, feats):
            own = torch.nn.functional.normalize(fclip.encode_image(views, regions=regions), dim=-1)
            torch.testing.assert_close(f, own, atol=1e-5, rtol=0)


def test_tensor_samples_empty_views_and_what_they_refuse(point_folder):
    from falip.analysis.heads import pointcloud_samples

    fclip = falip.FovealCLIP(_tiny("plain"), alpha=3.0, sigma=2.0, layers=(3,)).eval()
    views, regions = next(iter(pointcloud_samples("folder", point_folder, image_size=32)))
    some = [r if v % 2 else None for v, r in enumerate(regions)]  # every other view uncovered
    with torch.no_grad():
        full = head_sensitivity(fclip, None, [(views, regions)], "falip")
        half = head_sensitivity(fclip, None, [(views, some)], "falip")
        odd = head_sensitivity(fclip, None, [(views[v], regions[v]) for v in (1, 3, 5)], "falip")
    assert (half.regions, half.empty_views, full.empty_views, half.images, odd.images) == (3, 3, 0, 1, 3)
    np.testing.assert_allclose(half.delta, odd.delta, atol=1e-6, rtol=0)  # a [3, S, S] view alone, the same
    assert not np.allclose(half.delta, full.delta)
    assert half.to_json()["empty_views"] == 3
    with pytest.raises(falip.FalipError, match="takes the prompt 'falip' only; image edits"):
        head_sensitivity(fclip, None, [(views, regions)], "circle")
    with pytest.raises(falip.FalipError, match=r"must be the model's input, \[3, 32, 32\]"):
        head_sensitivity(fclip, None, [(views[:, :, :16], regions)], "falip")
    with pytest.raises(falip.FalipError, match="6 views needs one entry per view"):
        head_sensitivity(fclip, None, [(views, regions[:5])], "falip")
    with pytest.raises(falip.FalipError, match="model-input frame of 32x32"):
        head_sensitivity(fclip, None, [(views[0], Regions([[0, 0, 8, 8]], image_size=(32, 32)))], "falip")
    with pytest.raises(falip.FalipError, match="no regions to analyse"):
        head_sensitivity(fclip, None, [(views, [None] * 6)], "falip")


def test_heads_cli_point_clouds_end_to_end(point_folder, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["heads", "--task", "pointcloud", "--dataset", "folder", "--root", str(point_folder), "--points", "512",
            "--out", str(out), "--top", "5"]  # fmt: skip
    assert main(argv) == 0  # the prompt defaults to falip on point clouds
    text = capsys.readouterr().out
    assert "prompt 'falip' on falip-tiny: 24 regions of 4 images" in text and "heads are numbered from 1" in text
    data = json.loads((out / "heads.json").read_text())
    assert (data["prompt"], data["images"], data["regions"], data["empty_views"]) == ("falip", 4, 24, 0)
    assert data["biased_blocks"] == [2, 3, 4] and data["delta"][0] == [0.0, 0.0, 0.0]  # blocks from 1
    assert {r["block"] for r in data["ranking"][:9]} == {2, 3, 4} and min(r["block"] for r in data["ranking"]) == 1
    printed = [line.split()[1] for line in text.splitlines()[4:9]]  # the table's block column, from 1
    assert printed == [str(r["block"]) for r in data["ranking"][:5]]
    with Image.open(out / "heads.png") as im:
        assert im.format == "PNG"
    assert main([*argv[:-4], "--limit", "1", "--out", str(tmp_path / "one")]) == 0
    assert json.loads((tmp_path / "one" / "heads.json").read_text())["regions"] == 6
    capsys.readouterr()
    assert main([*argv, "--prompt", "falip&circle"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("falip: error: --prompt 'falip&circle': --task pointcloud takes the prompt falip only")
    assert "circle: image edits" in err and err.count("\n") == 1
