"""benchmarks/bench_coco.py, bench_ground.py and bench_label.py run end to end at toy sizes, so they cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_coco_smoke(tmp_path, capsys):
    out = tmp_path / "coco.json"
    assert _bench("bench_coco").main(["--scenes", "3", "--methods", "none,falip", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["table"]) == {"none", "falip"} and {"box", "mask", "panoptic", "detect"} <= set(res)
    assert "detect AP (GT boxes)" in capsys.readouterr().out


def test_bench_ground_smoke(tmp_path):
    out = tmp_path / "ground.json"
    assert _bench("bench_ground").main(["--scenes", "3", "--methods", "none,falip", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["accuracy"]["falip"]) == {"gold", "auto"} and res["sentences"] >= 3
    assert 0 <= res["auto_recall_iou50"] <= 1


def test_bench_label_smoke(tmp_path):
    out = tmp_path / "label.json"
    assert _bench("bench_label").main(["--images", "2", "--masks", "6", "--workers", "0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["images"] == 2 and res["regions"] == 12 and res["regions_per_s_model"] > 0
