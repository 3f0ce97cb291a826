"""`falip demo` runs offline on a small setup and writes its table and PNG."""

from __future__ import annotations

import argparse

from PIL import Image

from falip.cli import demo


def test_demo_writes_table_and_png(tmp_path, capsys):
    p = argparse.ArgumentParser()
    demo.configure_parser(p)
    args = p.parse_args(["--out", str(tmp_path / "out"), "--scenes", "4", "--show", "2", "--seed", "3"])
    assert demo.run(args) == 0
    out = capsys.readouterr().out
    assert "accuracy %" in out and "REC all" in out and "region cls" in out
    for label in ("FALIP", "whole image", "crop", "reverse blur", "red circle", "chance"):
        assert label in out
    png = tmp_path / "out" / "falip_demo_seed3.png"
    assert png.is_file() and str(png.resolve()) in out
    with Image.open(png) as im:
        assert im.size[0] > 200 and im.size[1] > 200


def test_demo_rejects_unknown_method(tmp_path, capsys):
    p = argparse.ArgumentParser()
    demo.configure_parser(p)
    args = p.parse_args(["--out", str(tmp_path), "--scenes", "2", "--methods", "falip,bogus"])
    assert demo.run(args) == 2
    assert "bogus" in capsys.readouterr().err
