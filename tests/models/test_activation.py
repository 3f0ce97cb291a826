"""QuickGELU or GELU: files that do not say which (state dicts), OpenAI's TorchScript archives, and the user's choice.

References: open_clip loaded OpenAI's released ``.pt`` files (TorchScript archives) with
``torch.jit.load`` and built them with QuickGELU (mlfoundations/open_clip@cc1b4f5
src/open_clip/openai.py:62-73, model.py:717-719 ``quick_gelu=True``), taking the archive's
``state_dict()`` without ``input_resolution``/``context_length``/``vocab_size`` (factory.py:170-173).
A state dict does not record the activation: falip builds the config's and warns once, naming
``<model>-quickgelu`` (issue 20 item 4, issue 21 item 8: a GELU ViT-B-16 on OpenAI's weights is off
by 2.6e-2 without a word).
"""

from __future__ import annotations

import json
import warnings

import open_clip
import pytest
import torch

import falip
from falip.cli import build_parser
from falip.core.errors import FalipError
from falip.models import loading

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny QuickGELU-trained model (random weights) saved as a state dict and as a TorchScript archive."""
    root = tmp_path_factory.mktemp("act")
    (root / "configs").mkdir()
    (root / "configs" / "act-tiny.json").write_text(json.dumps(TINY))
    (root / "configs" / "act-tiny-quickgelu.json").write_text(json.dumps({**TINY, "quick_gelu": True}))
    open_clip.add_model_config(root / "configs")
    torch.manual_seed(3)
    ref = open_clip.create_model("act-tiny-quickgelu").eval()
    with torch.no_grad():  # as OpenAI's archives: fp16 weights (rounded once, here, for the reference too)
        for p in ref.parameters():
            p.copy_(p.half().float() * 4)  # larger weights: the activations differ clearly
    torch.save(ref.state_dict(), root / "state.pt")
    jit = open_clip.create_model("act-tiny-quickgelu").eval()
    jit.load_state_dict(ref.state_dict())
    jit.half()
    jit.register_buffer("input_resolution", torch.tensor(32))  # OpenAI's archives carry it (not a weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notes
        torch.jit.save(torch.jit.script(jit), root / "openai.pt")
    return root, ref


def _features(fclip):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        return fclip.model.encode_image(x)


def _ref_features(ref):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        return ref.encode_image(x)


def test_openai_torchscript_archive_loads_with_quickgelu(files):
    """Before: open_clip 3's weights_only torch.load refused the archive (an error naming the file)."""
    root, ref = files
    assert loading.is_torchscript_archive(root / "openai.pt") and not loading.is_torchscript_archive(root / "state.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fclip, _, _ = falip.load("act-tiny", pretrained=str(root / "openai.pt"))
    assert loading.model_activation(fclip.model) == "quickgelu"
    torch.testing.assert_close(_features(fclip), _ref_features(ref), rtol=0, atol=1e-5)


def test_a_state_dict_into_a_gelu_config_warns_once_naming_the_quickgelu_model(files):
    root, ref = files
    path = str(root / "state.pt")
    loading._WARNED_ACTIVATION.clear()
    with pytest.warns(UserWarning, match=r"load it as act-tiny-quickgelu .*--activation quickgelu"):
        fclip, _, _ = falip.load("act-tiny", pretrained=path)
    assert loading.model_activation(fclip.model) == "gelu"
    gap = (_features(fclip) - _ref_features(ref)).abs().max().item()
    assert gap > 1e-3  # the silent difference the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        falip.load("act-tiny", pretrained=path)  # once
        for name, kw in (("act-tiny-quickgelu", {}), ("act-tiny", {"activation": "quickgelu"})):
            loading._WARNED_ACTIVATION.clear()
            fclip, _, _ = falip.load(name, pretrained=path, **kw)  # the user chose: no warning
            assert loading.model_activation(fclip.model) == "quickgelu"
            torch.testing.assert_close(_features(fclip), _ref_features(ref), rtol=0, atol=1e-5)
        loading._WARNED_ACTIVATION.clear()
        fclip, _, _ = falip.load("act-tiny", pretrained=path, activation="gelu")
        assert loading.model_activation(fclip.model) == "gelu"
        # a model that never comes QuickGELU-trained has nothing to warn about
        falip.load("falip-tiny", pretrained=str(loading.get_preset("falip-tiny").weights_path))


def test_activation_choices_that_cannot_hold(files):
    root, _ = files
    with pytest.raises(FalipError, match="activation 'gelu' contradicts the model name 'act-tiny-quickgelu'"):
        falip.load("act-tiny-quickgelu", pretrained=str(root / "state.pt"), activation="gelu")
    with pytest.raises(FalipError, match="activation must be one of"):
        falip.load("act-tiny", pretrained=str(root / "state.pt"), activation="relu")
    with pytest.raises(FalipError, match="activation='quickgelu' is for open_clip names"):
        falip.load("hf:some/folder", activation="quickgelu")


def test_every_command_that_loads_a_model_takes_activation():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    loaders = [
        name
        for name, p in sub.choices.items()
        if any(a.dest == "model" for a in p._actions) and name != "train-tiny"  # it trains a new model
    ]
    assert {"rec", "classify", "pointcloud", "score", "viz", "demo", "app", "paper"} <= set(loaders)
    for name in loaders:
        dests = {a.dest: a for a in sub.choices[name]._actions}
        assert "activation" in dests, name
        assert dests["activation"].choices == ("gelu", "quickgelu"), name


def test_the_command_line_passes_activation_to_the_loader(files, tmp_path, capsys):
    from PIL import Image

    from falip.cli import main

    root, _ = files
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
    argv = ["score", str(image), "--box", "2,2,20,20", "--text", "a red square", "--model", "act-tiny"]
    argv += ["--pretrained", str(root / "state.pt"), "--json"]
    loading._WARNED_ACTIVATION.clear()
    with pytest.warns(UserWarning, match="act-tiny-quickgelu"):
        assert main(argv) == 0
    loading._WARNED_ACTIVATION.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert main([*argv, "--activation", "quickgelu"]) == 0
    capsys.readouterr()
    assert main([*argv, "--activation", "gelu", "--model", "act-tiny-quickgelu"]) == 2
    assert "contradicts the model name 'act-tiny-quickgelu'" in capsys.readouterr().err
