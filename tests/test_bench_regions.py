"""benchmarks/bench_regions.py runs end to end on tiny towers (one round), so it cannot rot."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from support.tiny import make_tiny_clip
from support.tiny_towers import make_hf_clip

ROOT = Path(__file__).resolve().parents[1]


def test_bench_regions_smoke(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_regions", ROOT / "benchmarks" / "bench_regions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert [c.name for c in mod.CASES] == ["open_clip ViT-B-16", "HF CLIPModel B/16"]
    monkeypatch.setattr(mod, "CASES", [mod.Case("tiny ViT", lambda: make_tiny_clip(layers=5)),
                                       mod.Case("tiny HF", lambda: make_hf_clip(attn="sdpa"))])  # fmt: skip
    out = tmp_path / "regions.json"
    assert mod.main(["--rounds", "1", "--ks", "3,10", "--chunk", "4", "--no-memory", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [t["tower"] for t in res["towers"]] == ["tiny ViT", "tiny HF"]
    for t in res["towers"]:
        assert [r["regions"] for r in t["rows"]] == [3, 10]
        for r in t["rows"]:
            # the loop and the batched pass (in chunks of 4) compute the same features
            assert r["max_abs_diff_vs_loop"] <= 1e-4 * max(1.0, r["max_abs_feature"])
            assert r["speedup"] > 0 and r["forwards"] > 0
    assert "K=10" in capsys.readouterr().out
    sys.modules.pop("bench_towers", None)
