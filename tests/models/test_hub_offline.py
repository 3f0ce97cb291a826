"""Models and tokenizers from the Hugging Face hub without a network (issue 21 item 7): not cached ->
one clear line at once, before any hub library retries; cached -> read from the cache only.

Offline is simulated two ways: HF_HUB_OFFLINE=1, and an endpoint that refuses connections
(HF_ENDPOINT=http://127.0.0.1:9). The hub libraries are replaced by ones that fail the test if they
are asked, so "at once" is checked without timing anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import falip
from falip.core.errors import FalipError
from support.tiny_towers import _word_level_tokenizer, make_timm_clip, save_hf_model, timm_clip_config

OFFLINE = [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}]


@pytest.fixture
def no_network(monkeypatch):
    def setup(env: dict) -> None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return setup


def _snapshot(cache: Path, repo_id: str, files: Path, absent: tuple[str, ...] = ()) -> None:
    """``files`` as the cached snapshot of hub repo ``repo_id`` (the hub cache's layout); ``absent``: files
    the hub said the repo lacks (the cache's ``.no_exist`` markers, as an online download leaves them)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(files, repo / "snapshots" / revision)
    for name in absent:
        (repo / ".no_exist" / revision).mkdir(parents=True, exist_ok=True)
        (repo / ".no_exist" / revision / name).touch()


@pytest.fixture(scope="module")
def hub_tokenizer_model(tmp_path_factory):
    """An open_clip model whose text config names a hub tokenizer (as SigLIP's do), and its weights file."""
    import open_clip

    folder = tmp_path_factory.mktemp("hubtok")
    cfg = dict(timm_clip_config("vit", "token"), custom_text=True)
    cfg["text_cfg"]["hf_tokenizer_name"] = "falip-test/hub-tokenizer"
    (folder / "falip-test-hubtok.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    torch.save(make_timm_clip("vit", "token").state_dict(), folder / "local.pt")
    return "falip-test-hubtok", str(folder / "local.pt")


def _forbid(monkeypatch, module, *names):
    for name in names:
        monkeypatch.setattr(module, name, _asked(f"{module.__name__}.{name}"))


def _asked(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was asked")

    return fail


@pytest.mark.parametrize("env", OFFLINE)
def test_a_hub_tokenizer_not_cached_fails_at_once_saying_where_it_goes(
    hub_tokenizer_model, tmp_path, monkeypatch, no_network, env
):
    import open_clip

    no_network(env)
    _forbid(monkeypatch, open_clip, "get_tokenizer", "create_model")  # neither the hub nor the weights
    name, weights = hub_tokenizer_model
    with pytest.raises(FalipError) as err:
        falip.load(name, pretrained=weights, cache_dir=str(tmp_path))
    message = str(err.value)
    assert message.startswith(f"the tokenizer of {name} (falip-test/hub-tokenizer on the Hugging Face hub) is not")
    assert ("HF_HUB_OFFLINE is set" if "HF_HUB_OFFLINE" in env else "cannot reach 127.0.0.1") in message
    assert f"download it once with a network into {tmp_path}" in message


@pytest.mark.parametrize("env", OFFLINE)
def test_a_cached_hub_tokenizer_is_read_from_the_cache_without_the_hub(hub_tokenizer_model, tmp_path, no_network, env):
    tok, _ = _word_level_tokenizer("clip")
    tok.save_pretrained(tmp_path / "files")
    _snapshot(tmp_path / "cache", "falip-test/hub-tokenizer", tmp_path / "files", absent=("config.json",))
    no_network(env)
    name, weights = hub_tokenizer_model
    _, _, tokenizer = falip.load(name, pretrained=weights, cache_dir=str(tmp_path / "cache"))
    assert tokenizer(["a red square"]).shape == (1, 16)


@pytest.mark.parametrize("env", OFFLINE)
def test_a_missing_hf_folder_is_not_taken_for_a_hub_id_to_retry(tmp_path, monkeypatch, no_network, env):
    import transformers

    no_network(env)
    _forbid(monkeypatch, transformers.AutoConfig, "from_pretrained")
    with pytest.raises(FalipError, match=r"^hf:relative/dir: no such folder, or a hub id that cannot be reached"):
        falip.load("hf:relative/dir", cache_dir=str(tmp_path))


def test_a_cached_hf_hub_model_loads_without_the_hub(tmp_path, no_network):
    _snapshot(tmp_path / "cache", "falip-test/tiny-clip", save_hf_model(tmp_path / "files", "clip"))
    no_network({"HF_ENDPOINT": "http://127.0.0.1:9"})
    fclip, _, tokenizer = falip.load("hf:falip-test/tiny-clip", cache_dir=str(tmp_path / "cache"))
    assert type(fclip.tower).__name__ == "HFCLIPTower" and tokenizer(["a cat"]).shape == (1, 16)
