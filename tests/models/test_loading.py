"""falip.load: name/tag/path resolution, presets, open_clip registration (no network)."""

from __future__ import annotations

import warnings

import open_clip
import pytest
import torch

import falip
from falip.models.loading import _resolve_pretrained
from falip.models.presets import PAPER_PRESET, get_preset


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'ViT-Z-99'"):
        falip.load("ViT-Z-99", pretrained=None)


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"neither a file nor a known open_clip tag.*openai"):
        falip.load("ViT-B-16-quickgelu", pretrained="no-such-tag")


def test_openai_tag_on_gelu_config_is_built_with_quickgelu():
    # resolved without downloading anything
    assert _resolve_pretrained("ViT-B-16", "openai") == ("openai", True)
    assert _resolve_pretrained("ViT-B-16-quickgelu", "openai") == ("openai", False)


def test_local_checkpoint_path_and_preset_overrides(tmp_path):
    torch.manual_seed(0)
    model = open_clip.create_model("falip-tiny", pretrained=None)
    path = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), path)
    fclip, pre, tok = falip.load("falip-tiny", pretrained=str(path), alpha=0.7, layers=[0])
    assert fclip.alpha == 0.7 and fclip.layers == (0,)
    assert fclip.sigma == get_preset("falip-tiny").sigma
    assert fclip.preprocess is pre and pre.input_size == fclip.image_size
    for a, b in zip(model.state_dict().values(), fclip.model.state_dict().values()):
        assert torch.equal(a, b)
    assert tok(["a red square"]).shape[0] == 1


def test_random_weights_warn_only_when_implicit():
    with pytest.warns(UserWarning, match="random weights"):
        _resolve_pretrained("ViT-B-16", "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _resolve_pretrained("ViT-B-16", None) == (None, False)


def test_models_without_preset_get_paper_defaults():
    assert get_preset("ViT-L-14") is PAPER_PRESET
    assert PAPER_PRESET.settings() == {"alpha": 0.2, "sigma": 100.0, "layers": None, "form": "cls"}


def test_shipped_config_is_registered_with_open_clip():
    assert "falip-tiny" in open_clip.list_models()


def test_a_file_that_is_not_a_checkpoint_is_one_error_naming_it(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    misfit = tmp_path / "misfit.pt"
    torch.save({"visual.proj": torch.zeros(3, 3), "extra": torch.zeros(1)}, misfit)
    cases = {
        text: "cannot be read as a PyTorch file",
        empty: "the file is empty",
        misfit: r"its weights do not fit the model \(\d+ missing keys, 1 unexpected key, 1 size mismatch\)",
        tmp_path: "is a folder, not a checkpoint file",
    }
    for path, reason in cases.items():
        with pytest.raises(falip.FalipError, match=reason) as info:
            falip.load("falip-tiny", pretrained=str(path))
        assert str(path) in str(info.value)


def test_loading_a_checkpoint_file_does_not_log_random_initialisation(caplog):
    with caplog.at_level("WARNING"):
        falip.load("falip-tiny")
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]
    with caplog.at_level("WARNING"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        falip.load("falip-tiny", pretrained=None)  # really random: open_clip's line stays
    assert [r for r in caplog.records if "initialized randomly" in r.getMessage()]
