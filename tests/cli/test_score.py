"""`falip score` end to end on the shipped falip-tiny: table, JSON, one-line errors, checkpoint files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from falip.cli import main
from falip.cli.score import SCORE_LEGEND


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "scene.png"
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


def one_line_error(code, err):
    return code == 2 and err.startswith("falip: error: ") and len(err.strip().splitlines()) == 1


def test_table_states_its_percentage_and_negative_boxes_work(image_file, capsys):
    args = ["score", str(image_file), "--box", "-50,-50,40,40", "--box", "10,10,70,50"]
    code, out, err = run_cli(args + ["--text", "a red square", "--text", "a blue circle"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert SCORE_LEGEND in lines
    assert "softmax over the boxes, per text" in SCORE_LEGEND and "logit_scale * cosine" in SCORE_LEGEND
    rows = [line for line in lines if line.startswith("[")]
    assert rows[0].startswith("[-50, -50, 40, 40]") and len(rows) == 2
    # each text's column of percentages sums to ~100 (rounded cells)
    pct = np.array([[float(c) for c in re.findall(r"\(\s*(\d+)%\)", r)] for r in rows])
    assert pct.shape == (2, 2) and np.all(np.abs(pct.sum(axis=0) - 100) <= 1)


def test_score_json(image_file, capsys):
    args = ["score", str(image_file), "--box", "0,0,40,30", "--box", "40,30,80,60", "--text", "a red square"]
    code, out, _ = run_cli(args + ["--text", "a blue circle", "--json", "--alpha", "1.0"], capsys)
    assert code == 0
    result = json.loads(out)
    assert np.array(result["scores"]).shape == (2, 2)
    assert np.allclose(np.array(result["softmax_over_boxes"]).sum(axis=0), 1.0, atol=1e-5)
    assert result["legend"] == SCORE_LEGEND


def test_missing_image_is_one_line_error_naming_it(capsys):
    code, _, err = run_cli(["score", "/no/such.png", "--box", "1,2,3,4", "--text", "x"], capsys)
    assert one_line_error(code, err) and "/no/such.png" in err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--box", "50,10,20,40"], "inverted"),
        (["--box", "500,500,600,600"], "outside"),
        (["--box", "0,0,10,10", "--alpha", "-1"], "alpha"),
        (["--box", "0,0,10,10", "--layers", "9"], "out of range"),
        (["--box", "0,0,10,10", "--layers", "5"], "counted from 1 it is block 5 of blocks 1..4"),
        (["--box", "0,0,10,10", "--pretrained", "none-such"], "none-such"),
        (["--box", "0,0,10,10", "--model", "ViT-S-32"], "has no shipped weights"),
        (["--box", "0,0,10,10", "--method", "sparkles"], "sparkles"),
        (["--box", "0,0,10,10", "--template", "no braces"], "template"),
    ],
)
def test_bad_input_is_one_line_error(image_file, capsys, extra, message):
    code, _, err = run_cli(["score", str(image_file), "--text", "a cat"] + extra, capsys)
    assert one_line_error(code, err), err
    assert message in err


@pytest.fixture
def bad_checkpoints(tmp_path):
    import torch

    text = tmp_path / "notes.txt"
    text.write_text("hello, I am not a checkpoint\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    misfit = tmp_path / "misfit.pt"
    torch.save({"not_a_weight": torch.zeros(1)}, misfit)
    fake_st = tmp_path / "fake.safetensors"
    fake_st.write_text("hello")
    return {"text": text, "empty": empty, "misfit": misfit, "safetensors": fake_st, "folder": tmp_path}


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("text", "cannot be read as a PyTorch file"),
        ("empty", "the file is empty$"),
        ("misfit", r"its weights do not fit the model \(\d+ missing keys, 1 unexpected key\)"),
        ("safetensors", "cannot be read as a safetensors file"),
        ("folder", "is a folder, not a checkpoint file"),
    ],
)
def test_checkpoint_that_is_not_one_is_one_line_naming_the_file(image_file, bad_checkpoints, capsys, kind, reason):
    path = bad_checkpoints[kind]
    args = ["score", str(image_file), "--box", "0,0,10,10", "--text", "x", "--pretrained", str(path)]
    code, _, err = run_cli(args, capsys)
    assert one_line_error(code, err), err
    assert str(path) in err and re.search(reason, err.strip())
    if kind != "folder":
        assert "is not a checkpoint open_clip can load for falip-tiny" in err


def test_loading_errors_outside_the_checkpoint_stay_internal(image_file, tmp_path, monkeypatch, capsys):
    """Only what open_clip raises while loading the checkpoint becomes a user error."""
    import falip.models.loading as loading

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in falip.load")

    monkeypatch.setattr(loading, "load", broken)
    monkeypatch.setattr("falip.load", broken, raising=False)
    ckpt = tmp_path / "any.pt"
    ckpt.write_text("x")
    args = ["score", str(image_file), "--box", "0,0,10,10", "--text", "x", "--pretrained", str(ckpt)]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and err.startswith("falip: internal error: RuntimeError: a bug in falip.load")


def test_layers_option_is_numbered_from_1():
    """--layers takes the paper's block numbers (9-12 of 12 = 9,10,11,12) and gives Python's 0-based indices."""
    import argparse

    from falip.cli._eval import _layers

    assert _layers("9,10,11,12") == [8, 9, 10, 11]
    assert _layers("1") == [0] and _layers("-1,-2") == [-1, -2]
    with pytest.raises(argparse.ArgumentTypeError, match="numbered from 1"):
        _layers("0,1")
