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
            assert (project(model, d.reconstruct()) - want).abs().max().item() <= 1e-4
            for layer in range(4):  # per block: the heads and the bias term are its attention term
                torch.testing.assert_close(
                    d.head_terms(layer).sum(1) + d.bias[layer], d.attention[layer], atol=1e-5, rtol=0
                )
        # the bias changes block 3's heads, and leaves block 0's alone
        assert (biased.heads[3][0] - plain.heads[3][0]).abs().max() > 1e-2
        torch.testing.assert_close(biased.heads[0][:2], plain.heads[0][[0, 0]], atol=1e-6, rtol=0)
        if options == "layerscale":  # the terms are ls_1(G_h) = gamma * G_h, not the raw G_h
            raw = reference_forward(model, images, record=[1]).head_outputs[1][:, :, 0]
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
        assert (project(fclip.model, plain.reconstruct()) - fclip.encode_image(x)).abs().max().item() <= 1e-4
        want = fclip.encode_image(x, regions=[regions])
        assert (project(fclip.model, biased.reconstruct()) - want).abs().max().item() <= 1e-4
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
        torch.testing.assert_close(project(model, d.reconstruct()), model.encode_image(images), atol=1e-5, rtol=0)


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
    assert [(r["block"], r["head"]) for r in data["ranking"]][:2] == [(3, 1), (2, 0)]
    assert "numbered from 1" in data["numbering"]
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
    assert "blocks numbered from 1" in out
    data = json.loads((tmp_path / "out" / "heads.json").read_text())
    assert data["prompt"] == "blur&circle" and data["regions"] == n_gold and (data["blocks"], data["heads"]) == (4, 3)
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
