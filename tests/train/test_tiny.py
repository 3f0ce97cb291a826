"""falip-tiny training: a tiny run is reproducible, resumes to the same weights, writes its log, and
tokenises with the model's own tokenizer, keying its scene cache on it."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import load_file

from falip.core.errors import FalipError
from falip.data import synthetic
from falip.models.presets import CONFIG_DIR
from falip.train import tiny as training
from falip.train.tiny import TrainConfig

open_clip.add_model_config(CONFIG_DIR)


def _config(out, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), steps=6, batch_size=16, n_scenes=400, warmup=2, eval_scenes=36, eval_every=3,
                log_every=1, ckpt_every=2, progress=False)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _register_variant(tmp_path, name: str, **text_cfg) -> str:
    """A falip-tiny config under another name, with ``text_cfg`` entries replaced (a different tokenizer)."""
    cfg = json.loads((CONFIG_DIR / "falip-tiny.json").read_text())
    cfg["text_cfg"].update(text_cfg)
    folder = tmp_path / f"cfg_{name}"
    folder.mkdir()
    (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    return name


def test_resume_gives_identical_weights(tmp_path):
    torch.set_num_threads(1)
    full = training.train(_config(tmp_path / "a"))
    part = training.train(_config(tmp_path / "b", stop_after=4))
    assert part["complete"] is False and part["final_step"] == 4 and part["steps"] == 6
    assert not (tmp_path / "b" / "falip-tiny.safetensors").exists()
    assert not (tmp_path / "b" / "train_summary.json").exists()
    summary = training.train(_config(tmp_path / "b"))  # resumes at step 4
    assert summary["complete"] is True and summary["resumed_from_step"] == 4
    wa = load_file(str(tmp_path / "a" / "falip-tiny.safetensors"))
    wb = load_file(str(tmp_path / "b" / "falip-tiny.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert all(v.dtype == torch.float16 for v in wa.values())
    rows = list(csv.DictReader(open(tmp_path / "b" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert rows[2]["zero_shot_top1"] != "" and rows[0]["zero_shot_top1"] == ""
    written = json.loads((tmp_path / "b" / "train_summary.json").read_text())
    assert written == json.loads(json.dumps(summary, default=str))  # train returns what it writes
    assert written["final_step"] == 6 and 0.0 <= written["zero_shot_top1_heldout"] <= 1.0
    assert written["config"] == dataclasses.asdict(_config(tmp_path / "b"))
    assert full["zero_shot_top1_heldout"] == summary["zero_shot_top1_heldout"]
    # a checkpoint of other settings is refused, not silently mixed in
    with pytest.raises(FalipError, match=r"checkpoint.pt was written by a run with other settings \(seed 0 -> 1\)"):
        training.train(_config(tmp_path / "b", seed=1))


def test_training_tokenises_with_the_models_own_tokenizer(tmp_path):
    # A model whose tokenizer differs from ViT-B-16's (it strips punctuation and has 20 tokens).
    canon = {"clean": "canonicalize"}
    name = _register_variant(tmp_path, "falip-tiny-canon", context_length=20, tokenizer_kwargs=canon)
    own = open_clip.get_tokenizer(name)
    summary = training.train(_config(tmp_path / "run", model=name, steps=1, n_scenes=40, eval_scenes=4, hard_colours=0))
    assert summary["tokenizer_key"] == training.tokenizer_key(own)
    stem = training.cache_stem(tmp_path / "run", _config(tmp_path / "run", n_scenes=40), 64, own)
    toks = np.load(f"{stem}.tokens.npy")
    rng = np.random.default_rng(0)  # the cache's scenes and captions, regenerated
    caps = []
    for _ in range(40):
        scene = synthetic.training_scene(rng, 64, 0.6)
        caps.append(synthetic.caption(scene, rng))
    assert np.array_equal(toks, own(caps).numpy())
    other = open_clip.get_tokenizer("ViT-B-16", context_length=20)(caps).numpy()
    assert not np.array_equal(toks, other)  # what the cache held before: the wrong tokens for this model


def test_cache_key_follows_the_tokenizer(tmp_path):
    tiny = open_clip.get_tokenizer("falip-tiny")
    key = training.tokenizer_key(tiny)
    assert len(key) == 12 and key == training.tokenizer_key(open_clip.get_tokenizer("falip-tiny"))
    # the same tokenisation (ViT-B-16's tokenizer at falip-tiny's context) is the same key: the cache is valid
    assert training.tokenizer_key(open_clip.get_tokenizer("ViT-B-16", context_length=32)) == key
    # another context length, another model's config, another cleaning: another key
    assert training.tokenizer_key(open_clip.get_tokenizer("ViT-B-16")) != key
    longer = _register_variant(tmp_path, "falip-tiny-ctx40", context_length=40)
    assert training.tokenizer_key(open_clip.get_tokenizer(longer)) != key
    canon = open_clip.get_tokenizer("falip-tiny", clean="canonicalize")
    assert canon.context_length == 32 and training.tokenizer_key(canon) != key
    cfg = _config(tmp_path)
    stem_tiny = training.cache_stem(tmp_path, cfg, 64, tiny)
    assert stem_tiny.name == f"cache_s0_n400_px64_p60_tok{key}"
    assert training.cache_stem(tmp_path, cfg, 64, canon) != stem_tiny


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"threads": 0}, "threads must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"batch_size": 500}, r"batch_size \(500\) must not exceed n_scenes \(400\)"),
        ({"p_single": 1.5}, r"p_single must be in \[0, 1\]"),
        ({"min_lr": 1.0}, "min_lr <= lr"),
        ({"stop_after": -1}, "stop_after must be an integer >= 0"),
    ],
)
def test_config_is_checked(tmp_path, kw, message):
    with pytest.raises(FalipError, match=message):
        _config(tmp_path, **kw)


def test_too_few_scenes_for_hard_batches_is_a_clear_error(tmp_path):
    with pytest.raises(FalipError, match="n_scenes=20 is too few for batch_size=16 with hard_colours=3"):
        training.train(_config(tmp_path, n_scenes=20, steps=1))


def test_a_damaged_checkpoint_is_named(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FalipError, match="checkpoint.pt: not a readable training checkpoint"):
        training.train(_config(tmp_path, steps=1))


# ------------------------------------------------------------------- the attention-pooled twin (--pool map)


def test_pool_map_trains_falip_tiny_map_and_writes_its_weights(tmp_path):
    torch.set_num_threads(1)
    summary = training.train(_config(tmp_path / "m", pool="map", steps=3, eval_every=0, ckpt_every=3))
    assert summary["complete"] is True and summary["model"] == "falip-tiny-map"
    weights = tmp_path / "m" / "falip-tiny-map.safetensors"
    assert summary["weights"] == str(weights) and not (tmp_path / "m" / "falip-tiny.safetensors").exists()
    state = load_file(str(weights))
    # SigLIP's head: a learned probe and its attention, no [CLS] token; the projection 96 -> 64 without bias
    assert state["visual.trunk.attn_pool.latent"].shape == (1, 1, 96)
    assert state["visual.head.proj.weight"].shape == (64, 96) and "visual.head.proj.bias" not in state
    assert not any("cls_token" in k or k.startswith("visual.conv1") for k in state)
    assert state["visual.trunk.pos_embed"].shape == (1, 64, 96)  # 8 x 8 patches, no prefix token
    # the text tower is falip-tiny's, key for key and shape for shape
    tiny_model = open_clip.create_model("falip-tiny")
    text = {k: tuple(v.shape) for k, v in tiny_model.state_dict().items() if not k.startswith("visual.")}
    assert {k: tuple(v.shape) for k, v in state.items() if not k.startswith("visual.")} == text
    rows = list(csv.DictReader(open(tmp_path / "m" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and all(np.isfinite(float(r["loss"])) for r in rows)
    # the weights load strictly into the config open_clip builds (as falip.load does)
    model = open_clip.create_model("falip-tiny-map")
    open_clip.load_checkpoint(model, str(weights), strict=True)
    features = model.eval().encode_image(torch.zeros(2, 3, 64, 64))
    assert features.shape == (2, 64) and torch.isfinite(features).all()


def test_pool_map_resumes_to_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    cfg = dict(pool="map", steps=4, eval_every=0, n_scenes=200)
    training.train(_config(tmp_path / "a", **cfg))
    training.train(_config(tmp_path / "b", stop_after=2, **cfg))
    training.train(_config(tmp_path / "b", **cfg))
    wa = load_file(str(tmp_path / "a" / "falip-tiny-map.safetensors"))
    wb = load_file(str(tmp_path / "b" / "falip-tiny-map.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # a [CLS] run's checkpoint is not resumed as a map run
    with pytest.raises(FalipError, match=r"other settings \(pool 'map' -> 'cls'\)"):
        training.train(_config(tmp_path / "b", steps=4, eval_every=0, n_scenes=200))


@pytest.mark.parametrize(
    ("model", "pool", "message"),
    [
        ("falip-tiny-map", "cls", "pools its image tower with 'map', not pool='cls'"),
        ("ViT-B-32", "map", "pools its image tower with 'cls', not pool='map'"),
    ],
)
def test_a_pool_the_config_does_not_have_is_refused_before_any_work(tmp_path, model, pool, message):
    with pytest.raises(FalipError, match=message):
        training.train(_config(tmp_path / "x", model=model, pool=pool))
    assert not (tmp_path / "x").exists()


def test_pool_must_be_cls_or_map():
    with pytest.raises(FalipError, match="pool must be one of cls, map, got 'avg'"):
        TrainConfig(pool="avg")
