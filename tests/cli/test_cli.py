"""The falip command line: one-line errors, non-zero exit codes, the score command end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from falip.cli import main


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


def test_missing_image_is_one_line_error(capsys):
    code, _, err = run_cli(["score", "/no/such.png", "--box", "1,2,3,4", "--text", "x"], capsys)
    assert code == 2
    assert err.strip() == "falip: error: image not found: /no/such.png"


@pytest.fixture
def tiny_checkpoint(tmp_path):
    import open_clip
    import torch

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model("falip-tiny", pretrained=None).state_dict(), path)
    return path


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--box", "50,10,20,40"], "is inverted or empty"),
        (["--box", "500,500,600,600"], "wholly outside"),
        (["--box", "0,0,10,10", "--alpha", "-1"], "alpha must be"),
        (["--box", "0,0,10,10", "--layers", "9"], "out of range"),
        (["--box", "0,0,10,10", "--pretrained", "none-such"], "neither a file nor a known open_clip tag"),
    ],
)
def test_bad_input_is_one_line_error(image_file, tiny_checkpoint, capsys, extra, message):
    args = ["score", str(image_file), "--text", "a cat", "--pretrained", str(tiny_checkpoint)] + extra
    if "--pretrained" in extra:
        args = ["score", str(image_file), "--text", "a cat"] + extra
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.startswith("falip: error: ") and len(err.strip().splitlines()) == 1
    assert message in err


def test_bad_box_syntax_is_rejected_by_argparse(image_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["score", str(image_file), "--box", "1,2,3", "--text", "x"])
    assert exc.value.code == 2
    assert "--box must be four comma-separated numbers" in capsys.readouterr().err


def test_score_json(image_file, tiny_checkpoint, capsys):
    ckpt = tiny_checkpoint
    code, out, _ = run_cli(
        ["score", str(image_file), "--box", "0,0,40,30", "--box", "40,30,80,60", "--text", "a red square",
         "--text", "a blue circle", "--pretrained", str(ckpt), "--json", "--alpha", "1.0"],
        capsys,
    )
    assert code == 0
    result = json.loads(out)
    assert np.array(result["scores"]).shape == (2, 2)
    assert np.allclose(np.array(result["softmax_over_boxes"]).sum(axis=0), 1.0, atol=1e-5)
    code, _, err = run_cli(
        ["score", str(image_file), "--box", "0,0,40,30", "--text", "x", "--pretrained", str(ckpt), "--method", "sparkles"],
        capsys,
    )
    assert code == 2 and "sparkles" in err


def test_console_script_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "falip.cli", "models"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "falip-tiny" in proc.stdout


def test_checkpoint_that_does_not_fit_is_one_line_error(image_file, tmp_path, capsys):
    import torch

    bad = tmp_path / "bad.pt"
    torch.save({"not_a_weight": torch.zeros(1)}, bad)
    code, _, err = run_cli(["score", str(image_file), "--box", "0,0,10,10", "--text", "x", "--pretrained", str(bad)], capsys)
    assert code == 2 and err.startswith("falip: error: ") and len(err.strip().splitlines()) == 1
