"""benchmarks/bench_synthetic.py runs end to end on a tiny setup (writers -> readers -> scoring -> JSON)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_synthetic", ROOT / "benchmarks" / "bench_synthetic.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_synthetic_smoke(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = _bench().main(
        [
            "--rec-scenes",
            "12",
            "--cls-scenes",
            "6",
            "--val-scenes",
            "6",
            "--alphas",
            "0.2,2",
            "--last-blocks",
            "1,all",
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--workers",
            "0",  # inline decoding, no worker processes to start (workers: tests/test_runner.py)
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    for m in ("falip", "none", "crop", "blur", "input-circle", "falip+blur+input-circle", "falip (P)"):
        r = res["rec"][m]["all"]
        assert r["n"] >= 12 and 0 <= r["ci95"][0] <= r["acc"] <= r["ci95"][1] <= 1
    for name in ("all objects", "CUB-style", "ImageNet-S-style", "Waterbirds-style"):
        assert res["cls"][name]["falip"]["n"] >= 6
    wb = res["cls"]["Waterbirds-style"]["falip"]
    assert set(wb["by_group"]) == {"yellow star/land", "yellow star/water", "blue ring/land", "blue ring/water"}
    assert len(res["sweep"]["settings"]) == 4
    assert {"alpha", "layers", "rec_test", "cls_test"} == set(res["best_on_val"])
    assert (tmp_path / "data" / "runs" / "rec" / "compare.md").is_file()
    assert (tmp_path / "data" / "rec" / "synthetic_test.jsonl").is_file()
    assert "REC all" in capsys.readouterr().out


def test_bench_help_smoke(tmp_path, capsys):
    """benchmarks/bench_help.py times `falip --help` in fresh processes and records whether torch came along."""
    spec = importlib.util.spec_from_file_location("bench_help", ROOT / "benchmarks" / "bench_help.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "help.json"
    assert mod.main(["--rounds", "1", "--no-plugin", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["command"] for r in rows] == ["falip --help", "falip compare --help"]
    assert all(r["min_s"] > 0 and r["imports_torch"] is False for r in rows)
