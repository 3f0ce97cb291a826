"""`falip demo`: table and PNG on a tiny setup, --show 0, option checks, no random-weight fallback."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from PIL import Image

import falip.cli.demo as demo
from falip.cli import main


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _hex(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def _has_colour(png, colour: str, tol: int = 12) -> bool:
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return bool((np.abs(pixels - np.array(_hex(colour))).max(axis=-1) <= tol).any())


def test_demo_writes_table_and_png(tmp_path, capsys):
    out_dir = tmp_path / "new" / "out"  # created by the demo
    code, out, err = run_cli(["demo", "--out", str(out_dir), "--scenes", "2", "--show", "2", "--seed", "3"], capsys)
    assert code == 0, err
    assert "accuracy %" in out and "REC all" in out and "region cls" in out
    for label in ("FALIP", "whole image", "crop", "reverse blur", "red circle", "chance"):
        assert label in out
    png = out_dir / "falip_demo_seed3.png"
    assert png.is_file() and str(png.resolve()) in out
    n_queries = int(re.search(r"REC all \(n=(\d+)\)", out).group(1))
    assert f"showing 2 of {n_queries} queries (one per scene)" in out
    with Image.open(png) as im:
        assert im.size[0] > 600 and im.size[1] > 400
    for m in ("falip", "crop", "blur", "input-circle"):  # every method's outline is drawn
        assert _has_colour(png, demo._STYLES[m][0]), m


def test_demo_show_0_writes_no_png(tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(["demo", "--out", str(out_dir), "--scenes", "1", "--show", "0"], capsys)
    assert code == 0, err
    assert "no picture written (--show 0)" in out and "accuracy %" in out
    assert not list(tmp_path.rglob("*.png"))


def test_coinciding_choices_stay_visible(tmp_path):
    """All methods choose the same box: every method's colour still shows in the picture."""
    from falip.data import synthetic

    ex = synthetic.rec_examples(0, 1, image_size=64)[0]
    boxes = np.array([o.box for o in ex.scene.objects], dtype=np.float64)
    target = ex.queries[0].target
    methods = list(demo.DEMO_METHODS)
    panel = demo.Panel(
        Image.fromarray(ex.scene.image),
        boxes,
        boxes[target],
        ex.queries[0].expression,
        chosen={m: target for m in methods},
        right={m: True for m in methods},
    )
    png = tmp_path / "p.png"
    demo.draw_panels([panel], methods, png, "title", "showing 1 of 1 queries")
    for m in methods:
        colour = demo._STYLES[m][0]
        assert _has_colour(png, colour), f"{m}'s outline ({colour}) is hidden"


@pytest.mark.parametrize("lw", [0.3, 1.0])
def test_method_outlines_sit_on_the_box_and_never_overlap(lw):
    box = (10, 20, 30, 50)  # pixels 10..29 x 20..49
    edge = demo.box_edges(box)
    assert edge == (9.5, 19.5, 29.5, 49.5)
    rings = demo.method_outlines(box, 5, lw)
    # the first outline is on the box: its inner side touches the edge from outside (not inset)
    assert edge[0] - lw <= rings[0][0] + lw / 2 <= edge[0] and edge[2] <= rings[0][2] - lw / 2 <= edge[2] + lw
    assert edge[1] - lw <= rings[0][1] + lw / 2 <= edge[1] and edge[3] <= rings[0][3] - lw / 2 <= edge[3] + lw
    for inner, outer in zip(rings, rings[1:]):  # each next one lies wholly outside the previous
        assert outer[0] + lw / 2 <= inner[0] - lw / 2 and outer[1] + lw / 2 <= inner[1] - lw / 2
        assert outer[2] - lw / 2 >= inner[2] + lw / 2 and outer[3] - lw / 2 >= inner[3] + lw / 2


def test_method_colours_are_distinct_and_not_the_scene_colours():
    from falip.data.synthetic import COLOURS

    colours = [np.array(_hex(c)) for c, _ in demo._STYLES.values()]
    dashes = [str(d) for _, d in demo._STYLES.values()]
    assert len(set(dashes)) == len(dashes)
    refs = colours + [np.array(v) for v in COLOURS.values()] + [np.array((255, 255, 255))]
    for i, c in enumerate(colours):
        others = [r for j, r in enumerate(refs) if j != i]
        assert min(np.abs(c - r).sum() for r in others) > 60


def test_unwritable_out_is_rejected_before_any_work(tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("the demo started work before checking --out")

    monkeypatch.setattr(demo, "load_model", no_work)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for bad in (blocker / "sub", blocker):
        code, out, err = run_cli(["demo", "--out", str(bad), "--scenes", "1"], capsys)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert err.startswith(f"falip: error: --out {bad}")


def test_demo_without_shipped_weights_is_an_error(tmp_path, monkeypatch, capsys):
    from falip.models import presets

    missing = dataclasses.replace(presets.PRESETS["falip-tiny"], weights="no-such-weights.safetensors")
    monkeypatch.setitem(presets.PRESETS, "falip-tiny", missing)
    code, out, err = run_cli(["demo", "--out", str(tmp_path), "--scenes", "1"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(missing.weights_path) in err and "missing" in err
    assert "accuracy" not in out and not list(tmp_path.rglob("*.png"))


def test_demo_model_without_weights_is_an_error(tmp_path, capsys):
    code, out, err = run_cli(["demo", "--out", str(tmp_path), "--scenes", "1", "--model", "ViT-S-32"], capsys)
    assert code == 2 and "ViT-S-32 has no shipped weights" in err and "--pretrained" in err
    assert "accuracy" not in out


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--scenes", "0"], "argument --scenes: must be an integer >= 1, got 0"),
        (["--show", "-1"], "argument --show: must be an integer >= 0, got -1"),
        (["--threads", "0"], "argument --threads: must be an integer >= 1, got 0"),
    ],
)
def test_demo_option_ranges(tmp_path, capsys, extra, message):
    code, _, err = run_cli(["demo", "--out", str(tmp_path)] + extra, capsys)
    assert code == 2 and message in err


def test_demo_rejects_unknown_method(tmp_path, capsys):
    code, _, err = run_cli(["demo", "--out", str(tmp_path), "--scenes", "1", "--methods", "falip,bogus"], capsys)
    assert code == 2 and err.startswith("falip: error: ") and "bogus" in err
