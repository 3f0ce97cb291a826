"""falip train-tiny: a tiny run is reproducible, resumes to the same weights, and writes its log."""

from __future__ import annotations

import argparse
import csv
import json

import torch
from safetensors.torch import load_file

from falip.train import tiny as training


def _args(out, **kw):
    p = argparse.ArgumentParser()
    training.configure_parser(p)
    argv = ["--out-dir", str(out), "--steps", "6", "--batch-size", "16", "--n-scenes", "400", "--warmup", "2",
            "--eval-scenes", "36", "--eval-every", "3", "--log-every", "1", "--ckpt-every", "2", "--no-progress"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return p.parse_args(argv)


def test_resume_gives_identical_weights(tmp_path):
    torch.set_num_threads(1)
    assert training.run(_args(tmp_path / "a")) == 0
    assert training.run(_args(tmp_path / "b", stop_after=4)) == 0
    assert not (tmp_path / "b" / "falip-tiny.safetensors").exists()
    assert training.run(_args(tmp_path / "b")) == 0  # resumes at step 4
    wa = load_file(str(tmp_path / "a" / "falip-tiny.safetensors"))
    wb = load_file(str(tmp_path / "b" / "falip-tiny.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert all(v.dtype == torch.float16 for v in wa.values())
    rows = list(csv.DictReader(open(tmp_path / "b" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert rows[2]["zero_shot_top1"] != "" and rows[0]["zero_shot_top1"] == ""
    summary = json.loads((tmp_path / "b" / "train_summary.json").read_text())
    assert summary["final_step"] == 6 and 0.0 <= summary["zero_shot_top1_heldout"] <= 1.0
