"""``falip views``: a point file -> a contact sheet of its projections with the FALIP ROA outlined."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from falip.analysis.views import _outline_segments, grid_shape
from falip.cli import main


def box_cloud(n: int = 1500, seed: int = 0) -> np.ndarray:
    """Points on the surface of a box 1.2 x 0.6 x 0.4 (a simple shape with distinct views)."""
    rng = np.random.default_rng(seed)
    half = np.array([0.6, 0.3, 0.2])
    p = rng.uniform(-1, 1, (n, 3)) * half
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = np.sign(rng.uniform(-1, 1, n)) * half[axis]
    return p.astype(np.float32)


@pytest.fixture
def cloud_file(tmp_path):
    path = tmp_path / "box.npy"
    np.save(path, box_cloud())
    return path


def _frame_lines(rgb: np.ndarray, axis: int, min_length: int = 150) -> int:
    """How many panel-frame lines (the #999999 spines) run along ``axis`` (0: vertical lines)."""
    frame = (rgb == 153).all(axis=-1)
    long = np.concatenate([[False], frame.sum(axis=axis) >= min_length, [False]])
    return int((~long[:-1] & long[1:]).sum())  # adjacent columns (or rows) are one line


@pytest.mark.parametrize("projection,n_views", [("v1", 6), ("v2", 10)])
def test_views_writes_one_panel_per_view(cloud_file, tmp_path, capsys, projection, n_views):
    out = tmp_path / f"sheet_{projection}.png"
    code = main(["views", str(cloud_file), "--out", str(out), "--projection", projection])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"wrote {out}: {n_views} views of box.npy" in captured.out
    with Image.open(out) as im:
        assert im.format == "PNG"
        names = im.text["Description"].removeprefix("views: ").split("; ")
        gray = np.asarray(im.convert("L"))
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert len(names) == n_views and names[0].startswith("from ")
    rows, cols = grid_shape(n_views)
    assert (rows, cols) == ((2, 3) if n_views == 6 else (2, 5))
    assert gray.shape[1] > gray.shape[0] and abs(gray.shape[1] / gray.shape[0] - (cols * 2.3 + 0.9) / 5.65) < 0.02
    # one frame per panel: a left and a right edge per column of panels, a top and a bottom per row
    assert _frame_lines(rgb, axis=0) == 2 * cols and _frame_lines(rgb, axis=1) == 2 * rows
    # the outline is drawn: pure-ish red pixels
    assert ((rgb[..., 0] > 200) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)).sum() > 200
    if projection == "v1":  # the background of a V1 map is black, of V2 white
        assert (gray == 0).mean() > 0.3
    else:
        assert (gray == 0).mean() < 0.05


def test_views_options_patch_points_seed_and_no_normalize(cloud_file, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    argv = ["views", str(cloud_file), "--out", str(out), "--points", "200", "--seed", "3", "--patch", "1"]
    assert main(argv + ["--no-normalize"]) == 0
    assert "(200 points, projection v1)" in capsys.readouterr().out
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize(
    "argv_tail,message",
    [
        (["missing.npy", "--out", "{tmp}/a.png"], "no such file"),
        (["{bad}", "--out", "{tmp}/a.png"], "bad.npy"),
        (["{cloud}", "--out", "{tmp}/a.jpg"], "--out"),
        (["{cloud}", "--out", "{tmp}/nowhere/a.png"], "does not exist"),
        (["{cloud}", "--out", "{tmp}/a.png", "--patch", "300"], "--patch 300"),
    ],
    ids=["missing", "unreadable", "format", "folder", "patch"],
)
def test_views_user_errors_are_one_line_exit_2(cloud_file, tmp_path, capsys, argv_tail, message):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a numpy file")
    args = [a.format(tmp=tmp_path, cloud=cloud_file, bad=bad) for a in argv_tail]
    code = main(["views", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("falip: error:") and message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.png"))


def test_outline_segments_trace_the_cell_borders():
    cells = np.zeros((4, 4), dtype=bool)
    cells[1, 1] = cells[1, 2] = True  # a 1 x 2 block of 16-px cells: 6 unit edges
    segments = _outline_segments(cells, 16)
    assert len(segments) == 6
    xs = {x for seg in segments for x, _ in seg}
    ys = {y for seg in segments for _, y in seg}
    assert xs == {15.5, 31.5, 47.5} and ys == {15.5, 31.5}  # pixel centres at integers: edges at k * 16 - 0.5


_PROBE = """
import sys, contextlib, io
from falip.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(["views", "--help"])
heavy = sorted(m for m in ("torch", "open_clip", "matplotlib") if m in sys.modules)
print(code, ",".join(heavy) or "-", len(out.getvalue()))
"""


def test_views_help_imports_neither_torch_nor_open_clip():
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    code, heavy, printed = proc.stdout.split()
    assert code == "0" and int(printed) > 0
    assert heavy == "-", f"falip views --help imported {heavy}"
