"""benchmarks/bench_towers.py runs end to end on tiny towers of every library (one round), so it cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from support.tiny import make_tiny_clip
from support.tiny_towers import make_hf_clip, make_hf_siglip, make_timm_clip

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_towers", ROOT / "benchmarks" / "bench_towers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_towers_smoke(tmp_path, capsys, monkeypatch):
    mod = _bench()
    # the real cases are ViT-B/16 models; same libraries and classes here, tiny configs
    assert [c.name for c in mod.CASES] == [
        "open_clip ViT-B-16",
        "open_clip EVA02-B-16",
        "open_clip ViT-B-16-SigLIP",
        "HF CLIPModel B/16",
        "HF SiglipModel B/16",
    ]
    tiny = [
        mod.Case("open_clip ViT", lambda: make_tiny_clip(layers=5)),
        mod.Case("open_clip EVA", lambda: make_timm_clip("eva")),
        mod.Case("open_clip SigLIP", lambda: make_timm_clip("vit", pool="map")),
        mod.Case("HF CLIP", lambda: make_hf_clip(attn="sdpa")),
        mod.Case("HF SigLIP", lambda: make_hf_siglip(attn="sdpa")),
    ]
    monkeypatch.setattr(mod, "CASES", tiny)
    out = tmp_path / "towers.json"
    assert mod.main(["--rounds", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["rounds"] == 1 and res["threads"] == 1 and len(res["load_average_before"]) == 3
    rows = {r["tower"]: r for r in res["towers"]}
    assert list(rows) == [c.name for c in tiny]
    assert [rows[n]["pooling"] for n in rows] == ["cls", "cls", "map", "cls", "map"]
    for row in rows.values():
        # the loop and falip's batched pass compute the same features
        assert row["max_abs_diff_vs_loop"] <= 1e-5 * max(1.0, row["max_abs_feature"]), row["tower"]
        assert row["max_abs_feature"] > 0
        assert all(len(ts) == 1 and ts[0] > 0 for ts in row["times_s"].values())
        assert row["loop_speedup"] == pytest.approx(row["median_s"]["loop16"] / row["median_s"]["falip16"])
        assert row["own_forward"] in ("open_clip encode_image", "transformers get_image_features")
        if row["pooling"] == "map":
            assert row["biased_blocks"] == [] and row["blocks_variant"]["form"] == "all"
            assert row["boxes_vs_one_forward"] > 0 and set(row["targets"]) == {"overhead_le_5pct"}
        else:
            assert row["biased_blocks"][-1] == row["depth"]  # 1-based: the last block is block `depth`
            assert set(row["targets"]) == {"loop_ge_4x", "overhead_le_5pct"}
    assert rows["open_clip ViT"]["biased_blocks"] == [2, 3, 4, 5]
    printed = capsys.readouterr().out
    assert "blocks numbered from 1" in printed and "HF SigLIP" in printed and "forwards" in printed


def test_bench_towers_rejects_unknown_tower(capsys):
    with pytest.raises(SystemExit):
        _bench().main(["--towers", "no such tower", "--out", "unused.json"])
    assert "unknown towers" in capsys.readouterr().err
