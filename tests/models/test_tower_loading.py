"""falip.load for Hugging Face models ("hf:<folder>", saved tiny random models + a tokenizer built
here) and for open_clip's timm towers (tiny configs registered here); preprocessing follows each
model's config; the libraries are imported only when a model of theirs is loaded."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import falip
from falip.core.errors import FalipError
from support.tiny_towers import register_timm_open_clip, save_hf_model


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {
        "clip": save_hf_model(root / "clip", "clip"),
        "siglip": save_hf_model(root / "siglip", "siglip"),
        "clip-vision": save_hf_model(root / "clip-vision", "clip", cls_name="CLIPVisionModel"),
    }


def _image(seed=0, size=(50, 70)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8))


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_folder_loads_with_its_processor_tokenizer_and_text_tower(hf_dirs, kind):
    import transformers

    folder = hf_dirs[kind]
    fclip, pre, tok = falip.load(f"hf:{folder}", alpha=0.0)
    assert fclip.preprocess is pre and type(fclip.tower).__name__ == (
        "HFCLIPTower" if kind == "clip" else "HFSiglipTower"
    )
    # CLIP: shortest side + centre crop, bicubic, OpenAI mean/std; SigLIP: squash, bilinear, 0.5
    assert (pre.mode, pre.interpolation) == (("crop", "bicubic") if kind == "clip" else ("squash", "bilinear"))
    mean = (0.48145466, 0.4578275, 0.40821073) if kind == "clip" else (0.5, 0.5, 0.5)
    assert torch.allclose(pre.mean.flatten(), torch.tensor(mean))
    # the pixels are the processor's up to one grey level of resampling
    processor = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    image = _image()
    ours, theirs = pre(image), processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert ours.shape == theirs.shape == (3, 32, 32)
    assert (ours - theirs).abs().max() <= 2.5 / 255 / min(pre.std.flatten())
    # tokenizer: list of texts -> [T, context], padded to the text tower's length
    ids = tok(["a photo of a cat", "red square"])
    context = 16 if kind == "clip" else 12
    assert ids.dtype == torch.long and ids.shape == (2, context)
    with torch.no_grad():
        got = fclip.encode_text(ids, normalize=True)
        out = fclip.tower.model.get_text_features(input_ids=ids)
        want = torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1)
        assert torch.allclose(got, want, atol=1e-5)
        images = torch.stack([pre(_image(1)), pre(_image(2))])
        assert torch.allclose(fclip.encode_image(images), fclip.tower.forward_features(images), atol=1e-5)


def test_hf_resize_mode_can_be_overridden_and_regions_follow_it(hf_dirs):
    _, pre, _ = falip.load(f"hf:{hf_dirs['clip']}", resize_mode="squash")
    assert pre.mode == "squash"
    _, crop, _ = falip.load(f"hf:{hf_dirs['clip']}")
    # a 70x50 image: shortest side 50 -> 32, width 70 -> 44, centre crop 6 px from the left
    box = crop.map_boxes([[10.0, 0.0, 30.0, 50.0]], orig_size=(70, 50))
    assert torch.allclose(box, torch.tensor([[10 * 44 / 70 - 6, 0.0, 30 * 44 / 70 - 6, 32.0]]), atol=1e-4)


def test_hf_vision_only_and_bad_folders_are_clear_errors(hf_dirs, tmp_path):
    fclip, _, tok = falip.load(f"hf:{hf_dirs['clip-vision']}")
    assert fclip.tower.pooling == "cls"
    with pytest.raises(FalipError, match="vision-only model"):
        tok(["a cat"])
    with pytest.raises(FalipError, match="no such folder"):
        falip.load(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(FalipError, match="could not be loaded"):
        falip.load(f"hf:{tmp_path}")
    with pytest.raises(FalipError, match="takes its weights from the Hugging Face hub or its folder"):
        falip.load(f"hf:{hf_dirs['clip']}", pretrained="openai")


@pytest.mark.parametrize("kind,pool", [("vit", "map"), ("eva", "token"), ("vit", "token")])
def test_open_clip_timm_towers_load_by_name(tmp_path, kind, pool):
    name = f"falip-test-{kind}-{pool}"
    ckpt = register_timm_open_clip(tmp_path, name, kind, pool)
    fclip, pre, tok = falip.load(name, pretrained=str(ckpt), alpha=0.0)
    assert type(fclip.tower).__name__ == "OpenClipTimmTower"
    assert fclip.tower.pooling == ("map" if pool == "map" else "cls")
    assert pre.mode == "squash" and pre.input_size == (32, 32)
    images = torch.stack([pre(_image(3))])
    with torch.no_grad():
        assert torch.allclose(fclip.encode_image(images), fclip.tower.model.encode_image(images), atol=1e-5)
    assert tok(["a red square"]).shape == (1, 16)
    with pytest.warns(UserWarning, match="random weights"):
        falip.load(name)


def test_open_clip_interpolation_follows_the_models_preprocess_config(tmp_path, monkeypatch):
    import open_clip

    name = "falip-test-bilinear"
    register_timm_open_clip(tmp_path, name, "vit", "token")
    real = open_clip.create_model

    def create(*args, **kwargs):
        model = real(*args, **kwargs)
        model.visual.preprocess_cfg = dict(model.visual.preprocess_cfg, interpolation="bilinear", mean=(0.5,) * 3)
        return model

    monkeypatch.setattr(open_clip, "create_model", create)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, pre, _ = falip.load(name, pretrained=None)
    assert pre.interpolation == "bilinear" and torch.allclose(pre.mean.flatten(), torch.full((3,), 0.5))


def test_loading_falip_tiny_loads_no_other_adapter():
    """``import falip`` imports no library; loading falip-tiny imports open_clip (which itself imports
    timm and transformers when installed) but none of falip's timm/HF adapters or HF loading."""
    code = (
        "import sys, falip\n"
        "heavy = [m for m in ('open_clip', 'transformers', 'timm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "falip.load('falip-tiny')\n"
        "mods = ('falip.towers.open_clip_timm', 'falip.towers.hf_clip', 'falip.towers.hf_siglip', 'falip.models.hf')\n"
        "loaded = [m for m in mods if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


def test_loading_an_hf_model_imports_no_open_clip(hf_dirs):
    code = (
        "import sys, falip\n"
        f"falip.load('hf:{hf_dirs['siglip']}')\n"
        "heavy = [m for m in ('open_clip', 'timm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), capture_output=True)


def _env():
    import os
    from pathlib import Path

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(falip.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _copy_without_tokenizer(folder, dest):
    import shutil

    dest.mkdir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(folder / name, dest / name)
    return dest


@pytest.mark.parametrize(
    "kind,files",
    [("clip", "tokenizer.json or vocab.json \\+ merges.txt"), ("siglip", "tokenizer.json or spiece.model")],
)
def test_hf_folder_without_tokenizer_is_refused_not_scored_alike(hf_dirs, tmp_path, kind, files):
    """Issue 21 item 1: transformers built an empty 2-token CLIP tokenizer for such a folder, so every
    text scored the same (exit 0); a folder needs the files its model family's tokenizer reads."""
    bare = _copy_without_tokenizer(hf_dirs[kind], tmp_path / "bare")
    with pytest.raises(FalipError, match=f"^no tokenizer in {bare} \\({files}\\)$"):
        falip.load(f"hf:{bare}")


def test_hf_tokenizer_files_each_family_reads(tmp_path):
    from falip.models.hf import _check_tokenizer_folder

    (tmp_path / "spiece.model").write_bytes(b"")  # SigLIP's sentencepiece model
    _check_tokenizer_folder(str(tmp_path), "siglip")
    with pytest.raises(FalipError, match="no tokenizer"):
        _check_tokenizer_folder(str(tmp_path), "clip")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(FalipError, match="no tokenizer"):  # CLIP's BPE needs its merges too
        _check_tokenizer_folder(str(tmp_path), "clip")
    (tmp_path / "merges.txt").write_text("")
    _check_tokenizer_folder(str(tmp_path), "clip")


def test_hf_tokenizer_with_ids_beyond_the_text_vocabulary_is_refused(hf_dirs, tmp_path):
    """Issue 21 item 1: ids past the text embedding crashed with "internal error: IndexError"."""
    import transformers

    other = _copy_without_tokenizer(hf_dirs["clip"], tmp_path / "other")
    tok = transformers.AutoTokenizer.from_pretrained(hf_dirs["clip"], local_files_only=True)
    tok.add_tokens(["zebra", "giraffe"])
    tok.save_pretrained(other)
    with pytest.raises(FalipError, match=r"its tokenizer has 18 tokens \(ids up to 17\) but the text model's vocab"):
        falip.load(f"hf:{other}")


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_tokenizers_warn_only_about_texts_that_are_really_cut(hf_dirs, tmp_path, kind):
    """Issue 21 item 5: the check took any non-zero id after the context for a token, but OpenAI's CLIP
    tokenizer pads with <|endoftext|> and SigLIP's with id 1, so every text was "truncated"."""
    import transformers

    folder = hf_dirs[kind]
    if kind == "siglip":  # pad with </s> (id 1), as google/siglip-* do
        folder = _copy_without_tokenizer(folder, tmp_path / "pad1")
        tok = transformers.AutoTokenizer.from_pretrained(hf_dirs[kind], local_files_only=True)
        tok.pad_token = "</s>"
        tok.save_pretrained(folder)
    fclip, pre, tok = falip.load(f"hf:{folder}")
    assert int(tok(["a"])[0, -1]) != 0  # the pad id is not 0
    scorer = falip.RegionScorer(fclip, pre, tok)
    context = tok.context_length
    fits = " ".join(["cat"] * (context - tok.tokenizer.num_special_tokens_to_add()))  # exactly the context
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scorer.text_features(["a red square", fits])
    with pytest.warns(UserWarning, match=r"^1 text\(s\) are longer than the model's"):
        scorer.text_features([fits + " cat"])
