"""Sweeps: value parsing, points and their settings, and a sweep through the harness (Python API)."""

from __future__ import annotations

import csv
import json

import pytest

import falip
from falip.analysis.sweeps import (
    parse_blocks,
    parse_grid,
    parse_values,
    point_method,
    point_model_info,
    point_scorer,
    run_sweep,
    sweep_points,
)
from falip.core.errors import FalipError
from falip.data import synthetic
from falip.scoring import RegionScorer
from falip.tasks.rec import RecSettings, RecTask


def test_parse_blocks_one_based_as_the_paper_writes_them():
    assert parse_blocks("1-4", 12) == (0, 1, 2, 3)
    assert parse_blocks("9-12", 12) == (8, 9, 10, 11)
    assert parse_blocks("7", 12) == (6,)
    assert parse_blocks("1-2+11-12", 12) == (0, 1, 10, 11)
    assert parse_blocks("all", 4) == (0, 1, 2, 3)
    assert parse_blocks("last1", 12) == (11,)
    assert parse_blocks("LAST3", 4) == (1, 2, 3)
    for bad, match in (("9-12", "out of range"), ("0-2", "out of range"), ("last5", "last5 needs"), ("x", "1-based")):
        with pytest.raises(FalipError, match=match):
            parse_blocks(bad, 4)


def test_parse_values():
    assert parse_values("alpha", "0, 0.10,1e1", 4) == [("0", 0.0), ("0.1", 0.1), ("10", 10.0)]
    assert [lab for lab, _ in parse_values("blocks", "last*,all", 4)] == ["last1", "last2", "last3", "last4", "all"]
    assert parse_values("form", ["cls", "v-prompt"], 4) == [("cls", "cls"), ("v-prompt", "v-prompt")]
    assert parse_values("circle-scale", "1,1.5", 4) == [("1", 1.0), ("1.5", 1.5)]
    for param, values, match in (
        ("alpha", "-1", ">= 0"),
        ("sigma", "0", "> 0"),
        ("alpha", "a", "not a number"),
        ("form", "cls,dag", "not one of"),
        ("alpha", "0.1,0.10", "repeat"),
        ("alpha", "", "no values"),
        ("beta", "1", "unknown sweep parameter"),
    ):
        with pytest.raises(FalipError, match=match):
            parse_values(param, values, 4)


def test_parse_grid_one_spec_or_one_per_parameter():
    expected = {"alpha": "0.1,1", "blocks": "last1,last2"}
    assert parse_grid(["alpha=0.1,1,blocks=last1,last2"]) == expected
    assert parse_grid(["alpha=0.1,1", "blocks=last1,last2"]) == expected
    for specs, match in ((["0.1,alpha=1"], "must start"), (["alpha=1,alpha=2"], "twice"), (["alpha="], "no values")):
        with pytest.raises(FalipError, match=match):
            parse_grid(specs)


def test_points_names_and_settings():
    axes = {"alpha": parse_values("alpha", "0.5,2", 4), "blocks": parse_values("blocks", "last1,1-2", 4)}
    points = sweep_points(axes)
    assert [p.name for p in points] == ["alpha=0.5,blocks=last1", "alpha=0.5,blocks=1-2", "alpha=2,blocks=last1",
                                        "alpha=2,blocks=1-2"]  # fmt: skip
    assert points[1].settings() == {"alpha": 0.5, "layers": [0, 1]}
    form = sweep_points({"form": parse_values("form", "diag,qk-prompt", 4)})
    assert form[0].settings() == {"form": "diag"} and form[1].settings() == {"variant": "qk-prompt"}
    assert point_model_info({"model": "m", "form": "cls"}, form[1]) == {
        "model": "m", "form": "cls", "variant": "qk-prompt", "prompt": "input-circle"
    }  # fmt: skip
    scale = sweep_points({"circle-scale": parse_values("circle-scale", "2", 4)})[0]
    assert scale.settings() == {"circle_scale": 2.0}


@pytest.fixture(scope="module")
def shipped():
    fclip, pre, tok = falip.load("falip-tiny")
    return RegionScorer(fclip, pre, tok)


def test_point_scorer(shipped):
    points = sweep_points({"alpha": parse_values("alpha", "3", 4), "form": parse_values("form", "all,feature-mask", 4)})
    plain = point_scorer(shipped, points[0])
    assert type(plain) is RegionScorer and plain.config == shipped.config.override(alpha=3.0, form="all")
    ablation = point_scorer(shipped, points[1], prompt="blur")
    assert point_method("falip+circle", points[1]) == "feature-mask+circle"
    assert point_method("falip&circle", points[1]) == "falip&circle" and point_method("falip", points[0]) == "falip"
    assert ablation.params.swap_prompt == "blur" and shipped.params.swap_prompt == "input-circle"
    assert ablation.falip_settings()["alpha"] == 3.0 and ablation._text_cache is shipped._text_cache


@pytest.fixture(scope="module")
def rec_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    return synthetic.write_reclip_rec(synthetic.rec_examples(21, 3), root, "synthetic_val")


def test_run_sweep_grid_writes_tables_and_heat_map_and_resumes(shipped, rec_file, tmp_path):
    def make_task(scorer, model_info, method):
        return RecTask(
            scorer,
            RecSettings(data=(str(rec_file),), images=str(rec_file.parent / "images"), method=method),
            model_info,
        )

    axes = {"alpha": "0,10", "blocks": "last1,all"}
    model_info = {"model": "falip-tiny"}
    table = run_sweep(make_task, shipped, model_info, axes, tmp_path / "sweep", progress=False)
    assert table["params"] == ["alpha", "blocks"] and table["method"] == "falip" and len(table["rows"]) == 4
    assert "numbered from 1" in table["numbering"]
    for row in table["rows"]:
        run = json.loads((tmp_path / "sweep" / row["run"] / "run.json").read_text())
        assert run["config"]["alpha"] == float(row["alpha"])
        assert run["config"]["blocks"] == ([4] if row["blocks"] == "last1" else [1, 2, 3, 4])  # numbered from 1
        assert "numbered from 1" in run["config"]["numbering"]
        assert row["n"] > 0
    zero = [r["accuracy"] for r in table["rows"] if r["alpha"] == "0"]
    assert zero[0] == zero[1]  # alpha 0 is CLIP, whatever the blocks
    with open(tmp_path / "sweep" / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == [r["run"] for r in table["rows"]]
    assert (tmp_path / "sweep" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FalipError, match="already holds results"):
        run_sweep(make_task, shipped, model_info, axes, tmp_path / "sweep", progress=False)
    again = run_sweep(make_task, shipped, model_info, axes, tmp_path / "sweep", resume=True, progress=False)
    assert again["rows"] == table["rows"]
    with pytest.raises(FalipError, match="other settings"):  # a resumed point must keep its settings
        run_sweep(make_task, shipped, {"model": "other"}, axes, tmp_path / "sweep", resume=True, progress=False)


def test_run_sweep_checks_the_method(shipped, tmp_path):
    def never(*_):
        raise AssertionError("no task should be made")

    cases = (
        ({"alpha": "1"}, "circle", "needs a method with FALIP"),
        ({"circle-scale": "2"}, "falip", "draws the red circle"),
        ({"form": "feature-mask"}, "falip&circle", "plain 'falip' term"),
        ({"alpha": "1", "sigma": "1", "form": "cls"}, "falip", "one parameter or a grid of two"),
    )
    for axes, method, match in cases:
        with pytest.raises(FalipError, match=match):
            run_sweep(never, shipped, {}, axes, tmp_path / "x", method=method)


def test_enlarge_is_a_sweep_parameter_for_every_method(shipped, rec_file, tmp_path):
    """``falip sweep enlarge``: the executors' enlarge_boxes (pumpkin805/FALIP @ 583df71 executor.py:139-144,
    FALIP's box; 157-162, the circle) per point; each point's run.json records its pixels, and a point
    scores as the boxes grown by hand."""
    assert parse_values("enlarge", "0,10,2.5", 4) == [("0", 0.0), ("10", 10.0), ("2.5", 2.5)]
    with pytest.raises(FalipError, match=">= 0"):
        parse_values("enlarge", "-1", 4)
    point = sweep_points({"enlarge": parse_values("enlarge", "20", 4)})[0]
    assert point.settings() == {"enlarge": 20.0} and point_scorer(shipped, point).params.enlarge == 20.0
    assert shipped.params.enlarge == 0.0 and point_model_info({"model": "m"}, point) == {"model": "m", "enlarge": 20.0}

    def make_task(scorer, model_info, method):
        return RecTask(
            scorer,
            RecSettings(data=(str(rec_file),), images=str(rec_file.parent / "images"), method=method),
            model_info,
        )

    table = run_sweep(make_task, shipped, {"model": "falip-tiny"}, {"enlarge": "0,30"}, tmp_path / "s",
                      method="falip+redcircle", progress=False)  # fmt: skip
    assert [r["enlarge"] for r in table["rows"]] == ["0", "30"]
    runs = [json.loads((tmp_path / "s" / r["run"] / "run.json").read_text())["config"] for r in table["rows"]]
    assert runs[0]["enlarge"] == 0.0 and runs[1]["enlarge"] == 30.0 and runs[1]["method"] == "falip+redcircle"
    from falip.runner import read_results

    records, _ = read_results(tmp_path / "s" / "enlarge=30")
    first = records[0]
    from falip.data.reclip import read_reclip_jsonl
    from falip.tasks.rec import REC_TEMPLATE

    sample = next(s for s in read_reclip_jsonl(rec_file, image_root=rec_file.parent / "images") if s.id == first["id"])
    from PIL import Image

    with Image.open(sample.image_path) as im:
        image = im.convert("RGB")
    w, h = image.size
    grown = [[max(a - 30, 0), max(b - 30, 0), min(c + 30, w), min(d + 30, h)] for a, b, c, d in sample.boxes.tolist()]
    want = shipped.score(image, grown, [sample.sentence.lower()], "falip+redcircle", template=REC_TEMPLATE)[:, 0]
    assert first["scores"] == pytest.approx(want.tolist(), rel=1e-5, abs=1e-4)
