"""The shipped falip-tiny config and weights load through open_clip and give finite features."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from safetensors import safe_open

import falip  # noqa: F401  (registers the config with open_clip)
from falip.data import synthetic
from falip.models.presets import CONFIG_DIR, WEIGHTS_DIR
from falip.train.tiny import to_model_input, zero_shot_accuracy

CONFIG = CONFIG_DIR / "falip-tiny.json"
WEIGHTS = WEIGHTS_DIR / "falip-tiny.safetensors"


def test_config_is_a_cls_pooled_vit_with_the_standard_tokenizer():
    cfg = json.loads(CONFIG.read_text())
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    assert v["patch_size"] == 8 and 48 <= v["image_size"] <= 64 and v["image_size"] % v["patch_size"] == 0
    assert v.get("pool_type", "tok") == "tok" and not v.get("attentional_pool", False)
    assert t["vocab_size"] == 49408 and not t.get("hf_tokenizer_name")
    assert open_clip.get_model_config("falip-tiny") == cfg


def test_weights_are_small_fp16_safetensors():
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size <= 10 * 1024 * 1024
    with safe_open(str(WEIGHTS), framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F16"}


def test_weights_load_through_open_clip_and_give_finite_features():
    torch.set_num_threads(1)
    model = open_clip.create_model("falip-tiny", pretrained=str(WEIGHTS)).eval()
    tok = open_clip.get_tokenizer("falip-tiny")
    rng = np.random.default_rng(0)
    imgs = np.stack([synthetic.random_scene(rng, 1).image for _ in range(4)])
    with torch.no_grad():
        fi = model.encode_image(to_model_input(imgs), normalize=True)
        ft = model.encode_text(tok(["a photo of a red square.", "a photo of a blue star."]), normalize=True)
    assert fi.shape == (4, 64) and ft.shape == (2, 64)
    assert torch.isfinite(fi).all() and torch.isfinite(ft).all()
    assert float(model.logit_scale.detach().exp()) > 5.0  # trained, not the 1/0.07 initial value only
    # weights are not random: a trained model separates colours of single objects
    fresh = open_clip.create_model("falip-tiny").eval()
    assert not torch.equal(fresh.visual.conv1.weight, model.visual.conv1.weight)


@pytest.mark.parametrize("n", [36])
def test_shipped_model_recognises_single_objects(n):
    torch.set_num_threads(1)
    model = open_clip.create_model("falip-tiny", pretrained=str(WEIGHTS)).eval()
    tok = open_clip.get_tokenizer("falip-tiny")
    scenes = synthetic.classification_scenes(4242, 4 * n, 64, 1, 1)
    acc = zero_shot_accuracy(model, tok, np.stack([s.image for s in scenes]), [s.objects[0].label for s in scenes])
    assert acc >= 0.7, acc  # 98.75% on 720 held-out scenes at the end of training; chance is 1/36
