"""`falip train-tiny`: options map one to one onto TrainConfig; outputs are checked before training."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

import falip.train.tiny as tiny
from falip.cli import main
from falip.cli import train_tiny as cmd


def parse(argv):
    p = argparse.ArgumentParser()
    cmd.configure_parser(p)
    return p.parse_args(argv)


def test_defaults_are_trainconfig_defaults():
    assert cmd.config_from_args(parse([])) == tiny.TrainConfig()


def test_every_option_reaches_its_field():
    argv = [
        "--out-dir", "o", "--output", "w.safetensors", "--model", "m", "--pool", "map", "--steps", "7",
        "--batch-size", "3",
        "--lr", "0.5", "--min-lr", "0.25", "--warmup", "2", "--weight-decay", "0.3", "--n-scenes", "11",
        "--p-single", "0.2", "--hard-colours", "0", "--seed", "5", "--threads", "2", "--eval-every", "4",
        "--eval-scenes", "6", "--log-every", "8", "--ckpt-every", "9", "--no-resume", "--stop-after", "1",
        "--no-progress",
    ]  # fmt: skip
    config = cmd.config_from_args(parse(argv))
    expected = tiny.TrainConfig(
        out_dir="o", output="w.safetensors", model="m", pool="map", steps=7, batch_size=3, lr=0.5, min_lr=0.25,
        warmup=2,
        weight_decay=0.3, n_scenes=11, p_single=0.2, hard_colours=0, seed=5, threads=2, eval_every=4,
        eval_scenes=6, log_every=8, ckpt_every=9, resume=False, stop_after=1, progress=False,
    )  # fmt: skip
    assert config == expected
    # and no field is left without an option: every one differs from its default above
    defaults = tiny.TrainConfig()
    assert all(getattr(config, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(config))


@pytest.fixture
def fake_train(monkeypatch):
    calls = []

    def train(config):
        calls.append(config)
        if config.stop_after:
            return {"complete": False, "final_step": 3, "steps": config.steps, "checkpoint": "c.pt",
                    "resumed_from_step": 1}  # fmt: skip
        return {"complete": True, "final_step": config.steps, "zero_shot_top1_heldout": 0.5, "weights": "w",
                "weights_bytes": 10, "train_seconds": 1.0, "resumed_from_step": None, "parameters": 3}  # fmt: skip

    monkeypatch.setattr(tiny, "train", train)
    return calls


def test_run_trains_and_prints_the_summary(tmp_path, fake_train, capsys):
    assert main(["train-tiny", "--out-dir", str(tmp_path / "run"), "--steps", "5", "--no-progress"]) == 0
    (config,) = fake_train
    assert config.steps == 5 and config.progress is False and (tmp_path / "run").is_dir()
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"final_step": 5, "zero_shot_top1_heldout": 0.5, "train_seconds": 1.0, "weights": "w",
                       "weights_bytes": 10}  # fmt: skip


def test_run_says_where_it_stopped(tmp_path, fake_train, capsys):
    assert main(["train-tiny", "--out-dir", str(tmp_path), "--stop-after", "2"]) == 0
    out = capsys.readouterr().out
    assert "resumed from step 1" in out and "stopped at step 3 of 1800; checkpoint c.pt" in out


@pytest.mark.parametrize("option", ["--out-dir", "--output"])
def test_unwritable_outputs_are_rejected_before_training(tmp_path, fake_train, capsys, option):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    bad = blocker / "sub" / ("w.safetensors" if option == "--output" else "")
    code = main(["train-tiny", "--out-dir", str(tmp_path / "ok"), option, str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("falip: error: ") and len(err.strip().splitlines()) == 1
    assert str(blocker) in err and fake_train == []


def test_out_of_range_settings_are_one_line_errors_before_training(tmp_path, fake_train, capsys):
    code = main(["train-tiny", "--out-dir", str(tmp_path), "--steps", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("falip: error: steps must be") and fake_train == []


def test_pool_is_cls_or_map(tmp_path, fake_train, capsys):
    assert main(["train-tiny", "--out-dir", str(tmp_path), "--pool", "map"]) == 0
    assert fake_train[0].pool == "map"
    assert main(["train-tiny", "--out-dir", str(tmp_path), "--pool", "avg"]) == 2
    assert "argument --pool: invalid choice: 'avg'" in capsys.readouterr().err and len(fake_train) == 1
