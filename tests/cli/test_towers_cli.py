"""`falip score`, `rec`, `classify` and `viz` on each tower: a saved tiny HF CLIP and SigLIP
(``--model hf:<dir>``) and tiny open_clip timm towers (a ViT with a map head, an EVA)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from falip.cli import main
from falip.data import synthetic
from support.tiny_towers import register_timm_open_clip, save_hf_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    out = {
        "hf-clip": ["--model", f"hf:{save_hf_model(root / 'clip', 'clip')}"],
        "hf-siglip": ["--model", f"hf:{save_hf_model(root / 'siglip', 'siglip')}"],
    }
    for kind, pool in (("vit", "map"), ("eva", "token")):
        name = f"falip-cli-{kind}-{pool}"
        ckpt = register_timm_open_clip(root / "timm", name, kind, pool)
        out[f"timm-{kind}-{pool}"] = ["--model", name, "--pretrained", str(ckpt)]
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synthetic.write_reclip_rec(synthetic.rec_examples(seed=41, n_scenes=3), root, split="rec")
    scenes = synthetic.classification_scenes(seed=7, n_scenes=3, min_objects=1, max_objects=2)
    image = root / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(image)
    return {
        "rec": root / "rec.jsonl",
        "images": root / "images",
        "cls": synthetic.write_classification(scenes, root / "cls"),
        "image": image,
    }


TOWER_NAMES = ["hf-clip", "hf-siglip", "timm-vit-map", "timm-eva-token"]


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("tower", TOWER_NAMES)
def test_score_runs_on_each_tower(models, data, tower, capsys):
    argv = ["score", str(data["image"]), "--box", "0,0,40,30", "--box", "30,20,80,60", "--text", "a red square",
            "--text", "a blue circle", "--json", *models[tower]]  # fmt: skip
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert "scores" in json.loads(out) or json.loads(out)


@pytest.mark.parametrize("tower", TOWER_NAMES)
def test_rec_and_classify_run_on_each_tower(models, data, tower, tmp_path, capsys):
    argv = ["rec", "--data", str(data["rec"]), "--images", str(data["images"]), "--out", str(tmp_path / "rec"),
            "--workers", "0", *models[tower]]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "rec" / "summary.json").read_text())
    assert summary["n"] > 0
    argv = ["classify", "--dataset", "jsonl", "--root", str(data["cls"]), "--out", str(tmp_path / "cls"),
            "--workers", "0", *models[tower]]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "cls" / "summary.json").read_text())["n"] > 0


@pytest.mark.parametrize("tower", TOWER_NAMES)
def test_viz_runs_on_each_tower(models, data, tower, tmp_path, capsys):
    png = tmp_path / "viz.png"
    argv = ["viz", str(data["image"]), "--box", "10,10,50,40", "--text", "a red square", "--out", str(png),
            *models[tower]]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert png.stat().st_size > 0
