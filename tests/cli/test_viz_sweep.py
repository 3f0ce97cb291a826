"""`falip viz` and `falip sweep` end to end on synthetic files; their --help stays light."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from falip.cli import main
from falip.data import synthetic

PNG = b"\x89PNG\r\n\x1a\n"


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


_PROBE = """
import sys, contextlib, io
from falip.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main({argv!r})
heavy = sorted(m for m in ("torch", "open_clip", "matplotlib") if m in sys.modules)
print(code, ",".join(heavy) or "-", len(out.getvalue()))
"""


@pytest.mark.parametrize("command", ["viz", "sweep"])
def test_help_imports_neither_torch_nor_open_clip(command):
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=[command, "--help"])], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    code, heavy, printed = proc.stdout.split()
    assert code == "0" and int(printed) > 0
    assert heavy == "-", f"falip {command} --help imported {heavy}"


# ----------------------------------------------------------------------------------- viz


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz")
    example = synthetic.rec_examples(3, 1, image_size=96)[0]
    path = root / "scene.png"
    Image.fromarray(example.scene.image).save(path)
    target = example.scene.objects[example.queries[0].target]
    mask = root / "mask.png"
    Image.fromarray((example.scene.masks[example.queries[0].target] * 255).astype(np.uint8)).save(mask)
    return path, target.box, example.queries[0].expression, mask


def test_viz_writes_the_png_with_scores(scene_file, tmp_path, capsys):
    image, box, text, _ = scene_file
    out = tmp_path / "viz.png"
    argv = ["viz", str(image), "--box", ",".join(str(v) for v in box), "--text", text, "--out", str(out),
            "--json", str(tmp_path / "viz.json")]  # fmt: skip
    code, printed, err = _run(argv, capsys)
    assert code == 0, err
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 5000
    assert "FALIP" in printed and "RedCircle" in printed and "% of [CLS] attention in the region" in printed
    data = json.loads((tmp_path / "viz.json").read_text())
    assert set(data["maps"]) == {"vanilla", "falip", "input-circle"}  # the default prompt, by its name
    for m in data["maps"].values():
        assert sum(m["cls_row"]) == pytest.approx(1.0, abs=1e-5) and text in m["scores"]
    assert data["maps"]["falip"]["in_region"] > data["maps"]["vanilla"]["in_region"]
    assert data["block"] == 4 and "numbered from 1" in data["numbering"]  # the last of falip-tiny's 4 blocks


def test_viz_layer_is_numbered_from_1(scene_file, tmp_path, capsys):
    from falip.analysis.maps import cls_attention  # noqa: F401  (the Python API stays 0-based)

    image, box, _, _ = scene_file
    argv = ["viz", str(image), "--box", ",".join(str(v) for v in box), "--no-prompt", "--layer", "1",
            "--out", str(tmp_path / "v.png"), "--json", str(tmp_path / "v.json")]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "v.json").read_text())["block"] == 1
    code, _, err = _run(argv[:-4] + ["--layer", "0", "--out", str(tmp_path / "w.png")], capsys)
    assert code == 2 and "numbered from 1" in err


def test_viz_negative_box_mask_rollout_and_head(scene_file, tmp_path, capsys):
    image, _, _, mask = scene_file
    out = tmp_path / "neg.png"
    code, _, err = _run(["viz", str(image), "--box", "-10,-10,40,40", "--head", "rollout", "--out", str(out)], capsys)
    assert code == 0, err
    assert out.read_bytes()[:8] == PNG
    out = tmp_path / "mask.png"
    argv = ["viz", str(image), "--mask", str(mask), "--head", "1", "--layer", "2", "--prompt", "blur&circle",
            "--out", str(out)]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert out.read_bytes()[:8] == PNG


def test_viz_head_is_numbered_from_1(scene_file, tmp_path, capsys):
    """--head 2 is the second head: the JSON says head 2, and the map is the Python API's head index 1."""
    import falip
    from falip.analysis.maps import attention_maps
    from falip.core.regions import Regions

    image, box, _, _ = scene_file
    js = tmp_path / "h.json"
    argv = ["viz", str(image), "--box", ",".join(str(v) for v in box), "--no-prompt", "--head", "2", "--layer", "3",
            "--out", str(tmp_path / "h.png"), "--json", str(js)]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    data = json.loads(js.read_text())
    assert data["head"] == 2 and data["block"] == 3 and "heads are numbered from 1" in data["numbering"]
    fclip, preprocess, _ = falip.load("falip-tiny")
    pil = Image.open(image)
    region = Regions([box], image_size=pil.size)
    for head in (1, 0):
        maps = attention_maps(fclip, preprocess, pil, region, layer=2, head=head, prompt=None)
        same = np.allclose(maps.maps["falip"].row, data["maps"]["falip"]["cls_row"], atol=1e-6)
        assert same == (head == 1)


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "give the region"),
        (["--box", "0,0,10,10", "--layer", "9"], "out of range"),
        (["--box", "0,0,10,10", "--head", "4"], "--head 4: the model has heads 1..3"),  # heads from 1
        (["--box", "0,0,10,10", "--head", "0"], "heads are numbered from 1"),
        (["--box", "0,0,10,10", "--prompt", "falip"], "image edits"),
        (["--box", "500,500,600,600"], "outside"),
    ],
)
def test_viz_bad_input_is_one_line(scene_file, tmp_path, capsys, extra, message):
    image = scene_file[0]
    code, _, err = _run(["viz", str(image), "--out", str(tmp_path / "x.png"), *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


# --------------------------------------------------------------------------------- sweep


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_data")
    rec = synthetic.write_reclip_rec(synthetic.rec_examples(31, 3), root / "rec", "synthetic_val")
    scenes = synthetic.classification_scenes(32, 3, min_objects=1, max_objects=2)
    cls = synthetic.write_classification(scenes, root / "cls", "synthetic_val")
    return {
        "rec": ["--task", "rec", "--data", str(rec), "--images", str(rec.parent / "images")],
        "classify": ["--task", "classify", "--dataset", "jsonl", "--root", str(cls)],
    }


SWEEPS = [
    ("rec", ["alpha", "--values", "0,0.2,10"], ["alpha"], 3),
    ("classify", ["sigma", "--values", "1,100"], ["sigma"], 2),
    ("rec", ["blocks", "--values", "1-2,last1,all"], ["blocks"], 3),
    ("classify", ["form"], ["form"], 6),
    ("rec", ["circle-scale", "--values", "1,2"], ["circle-scale"], 2),
    ("rec", ["enlarge", "--values", "0,10,20"], ["enlarge"], 3),
    ("classify", ["--grid", "alpha=0.2,10,blocks=last1,last2"], ["alpha", "blocks"], 4),
]


@pytest.mark.parametrize("task,argv,params,points", SWEEPS, ids=[" ".join(s[1][:1]) + "-" + s[0] for s in SWEEPS])
def test_sweep_writes_table_and_plot_and_resumes(data, tmp_path, capsys, task, argv, params, points):
    out = tmp_path / "sweep"
    command = ["sweep", *argv, *data[task], "--out", str(out), "--workers", "0"]
    code, printed, err = _run(command, capsys)
    assert code == 0, err
    table = json.loads((out / "sweep.json").read_text())
    assert table["params"] == params and len(table["rows"]) == points
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == points and all(float(r["n"]) > 0 for r in rows)
    assert list(rows[0])[: len(params)] == params
    for row in table["rows"]:
        assert (out / row["run"] / "summary.json").is_file()
        assert row["run"] == ",".join(f"{p}={row[p]}" for p in params)
    assert (out / "sweep.png").read_bytes()[:8] == PNG and (out / "sweep.png").stat().st_size > 5000
    assert "wrote" in printed
    code, _, err = _run(command, capsys)
    assert code == 2 and "already holds results" in err
    code, _, err = _run([*command, "--resume"], capsys)
    assert code == 0, err
    assert json.loads((out / "sweep.json").read_text())["rows"] == table["rows"]


def test_sweep_resumes_a_point_cut_short(data, tmp_path, capsys):
    out = tmp_path / "sweep"
    command = ["sweep", "alpha", "--values", "0.2,10", *data["rec"], "--out", str(out), "--workers", "0"]
    assert _run(command, capsys)[0] == 0
    table = json.loads((out / "sweep.json").read_text())
    results = out / "alpha=10" / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:1]) + lines[1][:10])  # one record kept, then a partial line
    code, _, err = _run([*command, "--resume"], capsys)
    assert code == 0, err
    assert json.loads((out / "sweep.json").read_text())["rows"] == table["rows"]
    assert len(results.read_text().splitlines()) == len(lines)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["alpha", "--values", "-1"], ">= 0"),
        (["blocks", "--values", "9-12"], "out of range"),
        (["form", "--values", "dag"], "not one of"),
        (["alpha", "--grid", "alpha=1,blocks=all"], "not both"),
        ([], "name the parameter"),
        (["circle-scale", "--method", "falip"], "red circle"),
    ],
)
def test_sweep_bad_input_is_one_line(data, tmp_path, capsys, argv, message):
    code, _, err = _run(["sweep", *argv, *data["rec"], "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
