"""`falip viz --text-map` (Fig. 6's text head maps) and `falip views --attention` (Fig. 5 right), end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from falip.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((48, 72, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_viz_text_map_writes_the_picture_and_every_heads_map(image, tmp_path, capsys):
    out, js = tmp_path / "map.png", tmp_path / "map.json"
    argv = ["viz", str(image), "--text-map", "--text", "a dog", "--layer", "3", "--head", "1"]
    code = main([*argv, "--box", "10,5,40,30", "--out", str(out), "--json", str(js)])
    printed = capsys.readouterr().out
    assert code == 0 and out.read_bytes()[:8] == PNG
    assert "block 3, head 1 (numbered from 1)" in printed and "FALIP" in printed
    data = json.loads(js.read_text())
    assert data["block"] == 3 and data["head_shown"] == 1 and data["text"] == "a dog"
    heads, gh, gw = np.asarray(data["clip"]["maps"]).shape
    assert (heads, gh, gw) == (3, 8, 8) and np.asarray(data["falip"]["maps"]).shape == (3, 8, 8)
    assert np.asarray(data["roa"]).shape == (8, 8) and data["box"] == [10.0, 5.0, 40.0, 30.0]
    assert not np.allclose(data["clip"]["maps"], data["falip"]["maps"])  # block 3 is biased in the preset
    # no region: CLIP only; arrays as .npz
    npz = tmp_path / "map.npz"
    assert main(["viz", str(image), "--text-map", "--text", "a dog", "--out", str(out), "--json", str(npz)]) == 0
    with np.load(npz) as arrays:
        assert arrays["clip"].shape == (3, 8, 8) and int(arrays["block"]) == 4 and "falip" not in arrays


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "exactly one --text"),
        (["--text", "a", "--text", "b"], "exactly one --text"),
        (["--text", "a", "--head", "7"], "heads 1..3"),
        (["--text", "a", "--head", "0"], "heads are numbered from 1"),
        (["--text", "a", "--head", "rollout"], "not 'rollout'"),
        (["--text", "a", "--layer", "9"], "out of range"),
    ],
)
def test_viz_text_map_errors_name_the_option(image, tmp_path, capsys, extra, message):
    code = main(["viz", str(image), "--text-map", *extra, "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_views_attention_writes_the_maps_of_clip_and_falip(tmp_path, capsys):
    cloud = tmp_path / "box.npy"
    points = np.random.default_rng(0).uniform(-1, 1, (1500, 3)).astype(np.float32)
    points[:, 2] *= 0.3
    np.save(cloud, points)
    out, js = tmp_path / "views.png", tmp_path / "views.json"
    assert main(["views", str(cloud), "--attention", "--out", str(out), "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    assert out.read_bytes()[:8] == PNG and "share on the foreground" in printed
    data = json.loads(js.read_text())
    assert data["block"] == 4 and len(data["views"]) == 6
    assert all(f > c for c, f in zip(data["share_clip"], data["share_falip"]))
    assert np.asarray(data["falip"]).shape == (6, 8, 8)
    code = main(["views", str(cloud), "--out", str(out), "--json", str(js)])
    assert code == 2 and "--json is for --attention" in capsys.readouterr().err


def test_viz_text_map_prompt_and_unleash_fig6_middle(image, tmp_path, capsys):
    """Fig. 6, middle column (the original image, RedCircle, the unleashed RedCircle): ``--prompt``
    used to be ignored silently under --text-map; now it adds the prompted image's maps and
    ``--unleash`` the unleashed prompt's."""
    out, js = tmp_path / "m.png", tmp_path / "m.json"
    argv = ["viz", str(image), "--text-map", "--text", "a red circle", "--box", "10,5,40,30", "--out", str(out)]
    assert main([*argv, "--prompt", "circle", "--unleash", "--json", str(js), "--upsample", "bilinear"]) == 0
    printed = capsys.readouterr().out
    assert "RedCircle: patches sum" in printed and "unleashed RedCircle: patches sum" in printed
    assert "unleashed over blocks 1-4 (numbered from 1)" in printed  # falip.numbering.format_blocks
    data = json.loads(js.read_text())
    assert data["prompt"] == "circle" and np.asarray(data["prompted"]["maps"]).shape == (3, 8, 8)
    assert data["unleashed"]["blocks"] == [1, 2, 3, 4]
    assert not np.allclose(data["prompted"]["maps"], data["clip"]["maps"])
    assert not np.allclose(data["unleashed"]["maps"], data["prompted"]["maps"])
    assert main([*argv, "--prompt", "circle", "--json", str(js)]) == 0
    assert "prompted" in json.loads(js.read_text()) and "unleashed" not in json.loads(js.read_text())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text-map", "--text", "a", "--unleash"], "--unleash needs the prompt"),
        (["--box", "1,1,9,9", "--unleash"], "--unleash applies to --text-map"),
        (["--box", "1,1,9,9", "--prompt", "circle", "--no-prompt"], "--prompt circle and --no-prompt contradict"),
        (["--text-map", "--text", "a", "--prompt", "circle"], "--prompt circle is drawn on a region"),
        (["--text-map", "--text", "a", "--box", "1,1,9,9", "--prompt", "sparkles"], "sparkles"),
        (["--box", "1,1,9,9", "--enlarge", "4"], "--enlarge 4 applies to scoring commands"),
        (["--text-map", "--text", "a", "--logits", "fp16"], "--logits fp16 applies to scores; --text-map"),
        (["--box", "1,1,9,9", "--logits", "fp16"], "--logits fp16 applies to the panels' scores: add --text"),
    ],
)
def test_viz_flags_that_do_not_apply_are_errors(image, tmp_path, capsys, extra, message):
    code = main(["viz", str(image), *extra, "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_viz_scores_follow_logits(image, tmp_path, capsys):
    """--logits fp16 (the authors' numerics) reaches the attention panels' scores; it used to be ignored."""
    js = tmp_path / "v.json"
    argv = ["viz", str(image), "--box", "10,5,40,30", "--text", "a dog", "--out", str(tmp_path / "v.png")]
    assert main([*argv, "--json", str(js), "--logits", "fp16"]) == 0
    scores = [v for m in json.loads(js.read_text())["maps"].values() for v in m["scores"].values()]
    assert scores and all(float(np.float16(v)) == v for v in scores)
    assert main([*argv, "--json", str(js)]) == 0
    scores = [v for m in json.loads(js.read_text())["maps"].values() for v in m["scores"].values()]
    assert any(float(np.float16(v)) != v for v in scores)
