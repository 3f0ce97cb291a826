"""The evaluation harness (falip.runner): results/summary files, resume (after a real kill -9), skips,
limit, workers, progress, timing, and a 2-process torchrun run against 1 process on the same units.

The task is the toy of ``support/runner_toy.py``: no model, units are small text files.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import falip
from falip.core.errors import FalipError
from falip.runner import Unit, device_for_rank, read_results, run
from support.runner_toy import ToyTask, make_data

SCRIPT = Path(__file__).parent / "support" / "runner_toy.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SIZES = [2, 3, 1, 2, 3, 1, 2, 2, 3, 1, 2, 3]  # records per unit


def _json(path: Path):
    return json.loads(path.read_text())


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _records(out: Path) -> list[dict]:
    return sorted(read_results(out)[0], key=lambda r: r["id"])


def _reference(tmp_path: Path, data: Path, **kw) -> dict:
    """The summary of an uninterrupted single-process run."""
    return run(ToyTask(data), tmp_path / "reference", **kw)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """12 units; u001 is a Skip from units(), u004 fails to load (FalipError), u006's file is missing (OSError)."""
    return make_data(tmp_path / "data", SIZES, skip={1}, bad={4}, missing={6})


def test_results_summary_and_run_files(tmp_path, data, capsys):
    out = tmp_path / "out"
    summary = run(ToyTask(data), out, batch_units=3)
    rows = _lines(out / "results.jsonl")
    ran = [i for i in range(len(SIZES)) if i not in (1, 4, 6)]
    assert [r["id"] for r in rows] == [f"u{i:03d}/{j}" for i in ran for j in range(SIZES[i])]  # units() order
    assert all(r["unit"] == r["id"].split("/")[0] and r["unit_size"] == SIZES[int(r["unit"][1:])] for r in rows)
    assert summary == _json(out / "summary.json")
    n = sum(SIZES[i] for i in ran)
    correct = sum(r["correct"] for r in rows)
    assert (summary["n"], summary["skipped"], summary["correct"]) == (n, 3, correct)
    assert summary["accuracy"] == pytest.approx(100 * correct / n)
    assert _json(out / "run.json") == {
        "task": "toy",
        "config": {"data": str(data), "seed": 0},
        "falip_version": falip.__version__,
    }
    timing = _json(out / "timing.json")
    assert timing["units"] == len(SIZES) - 1  # the Skip from units() is not loaded
    assert 0 <= timing["wait_s"] <= timing["total_s"] and 0 <= timing["compute_s"] <= timing["total_s"]
    assert capsys.readouterr().out == ""  # the library prints nothing; the command line prints the table


def test_skips_are_written_with_their_source_counted_and_warned(tmp_path, data, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="falip.runner"):
        summary = run(ToyTask(data), out)
    skipped = {s["id"]: s for s in _lines(out / "skipped.jsonl")}
    index = data / "index.txt"
    assert skipped["u001"] == {"id": "u001", "source": f"{index}:2", "reason": "marked skip in the index"}
    assert skipped["u004"] == {"id": "u004", "source": f"{index}:5", "reason": f"{data / 'u004.txt'}: not numbers"}
    assert skipped["u006"]["source"] == f"{index}:7"
    assert skipped["u006"]["reason"].startswith("FileNotFoundError:") and "u006.txt" in skipped["u006"]["reason"]
    assert len(skipped) == 3 and summary["skipped"] == 3 and summary["skipped_ids"] == ["u001", "u004", "u006"]
    warned = [r.getMessage() for r in caplog.records if r.name == "falip.runner"]
    assert len(warned) == 3 and all("\n" not in w for w in warned)
    assert warned[1] == f"skipped u004 ({index}:5): {data / 'u004.txt'}: not numbers"


def test_the_runner_sets_n_and_skipped_only_where_the_task_did_not(tmp_path, data):
    class Counts(ToyTask):
        def summarize(self, records, skipped):
            return {**super().summarize(records, skipped), "n": "task's own", "accuracy": 0.0}

    summary = run(Counts(data), tmp_path / "out")
    assert summary["n"] == "task's own" and summary["skipped"] == 3


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bug_in_load_propagates(tmp_path, workers):
    data = make_data(tmp_path / "data", [1, 2, 1], bug={1})
    with pytest.raises(RuntimeError, match="a bug in load"):
        run(ToyTask(data), tmp_path / "out", workers=workers)


def test_a_failing_model_propagates(tmp_path):
    data = make_data(tmp_path / "data", [1, 2, 1])
    (data / "u002.txt").write_text("3 -1")
    with pytest.raises(ValueError, match="the model failed"):
        run(ToyTask(data), tmp_path / "out", batch_units=2)
    assert len(_lines(tmp_path / "out" / "results.jsonl")) == 3  # the first batch was written
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize(
    "output, match",
    [
        (lambda loaded: [], "0 record lists for 2 units"),
        (lambda loaded: [[], []], "not a non-empty list"),
        (lambda loaded: [[{"value": 1}]] * len(loaded), "not a dict with an 'id'"),
        (lambda loaded: [[{"id": "x", "unit": "y"}]] * len(loaded), "may not set"),
    ],
)
def test_malformed_records_are_a_bug_of_the_task(tmp_path, output, match):
    data = make_data(tmp_path / "data", [1, 1])
    task = ToyTask(data)
    task.run = output
    with pytest.raises(TypeError, match=match):
        run(task, tmp_path / "out")
    assert (tmp_path / "out" / "results.jsonl").read_text() == ""  # nothing half-written


def test_an_out_dir_with_results_needs_resume(tmp_path, data):
    out = tmp_path / "out"
    run(ToyTask(data), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    task = ToyTask(data)
    task.units = None  # "before any work": units() is not even called
    # in the library's terms; the command line says --resume and --out (tests/cli/test_eval_commands.py)
    with pytest.raises(FalipError, match="a run; pass resume=True to continue it, or choose another out_dir"):
        run(task, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "summary.json").unlink()
    (out / "results.jsonl").unlink()
    # skipped.jsonl / run.json alone count too, said as what they are (issue 21 item 15)
    with pytest.raises(FalipError, match="holds a run that scored nothing yet .*; pass resume=True to try its items"):
        run(task, out)


def test_resume_with_other_settings_names_the_keys(tmp_path, data):
    out = tmp_path / "out"
    run(ToyTask(data), out, limit=2)
    with pytest.raises(FalipError, match=r"other settings: seed \(0 there, 1 here\); resume with the same"):
        run(ToyTask(data, seed=1), out, resume=True)

    class Other(ToyTask):
        name = "other"

    with pytest.raises(FalipError, match="holds a 'toy' run, not 'other'"):
        run(Other(data), out, resume=True)
    assert len(_lines(out / "results.jsonl")) == SIZES[0] + SIZES[2]  # untouched


def test_resume_of_a_finished_run_recomputes_nothing_but_retries_skips(tmp_path, data):
    out = tmp_path / "out"
    first = run(ToyTask(data), out)
    task = ToyTask(data)
    assert run(task, out, resume=True) == first
    # a skip is not a result: u004 and u006 are loaded again (and skipped again); nothing is scored again
    assert task.runs == 0 and _json(out / "timing.json")["units"] == 2
    assert len(_lines(out / "skipped.jsonl")) == 3  # each skip once, not twice
    (data / "u006.txt").write_text("5 6")  # the missing file appears: resume scores it
    summary = run(ToyTask(data), out, resume=True)
    assert summary["n"] == first["n"] + 2 and summary["skipped_ids"] == ["u001", "u004"]
    assert sorted(s["id"] for s in _lines(out / "skipped.jsonl")) == ["u001", "u004"]


def test_resume_after_a_truncated_last_line(tmp_path, data):
    reference = _reference(tmp_path, data)
    out = tmp_path / "out"
    run(ToyTask(data), out)
    text = (out / "results.jsonl").read_text()
    # cut inside u008's 2nd of 3 lines: u008 is incomplete (1 line + a partial one), u009.. are gone
    cut = text.index('{"id": "u008/1"') + 20
    (out / "results.jsonl").write_text(text[:cut])
    (out / "summary.json").unlink()
    task = ToyTask(data)
    assert run(task, out, resume=True) == reference
    assert _json(out / "timing.json")["units"] == 6  # u008..u011, and the skipped u004, u006 again
    rows = _lines(out / "results.jsonl")  # rewritten without the partial line and u008/0, then appended
    assert len(rows) == reference["n"] and len({r["id"] for r in rows}) == len(rows)
    assert _records(out) == _records(tmp_path / "reference")


def test_a_corrupt_line_inside_a_results_file_is_an_error(tmp_path, data):
    out = tmp_path / "out"
    run(ToyTask(data), out)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    lines[3] = "not json\n"
    (out / "results.jsonl").write_text("".join(lines))
    with pytest.raises(FalipError, match=r"results.jsonl:4: not a JSON line"):
        run(ToyTask(data), out, resume=True)


def test_resume_after_kill_9(tmp_path):
    data = make_data(tmp_path / "data", SIZES * 2, skip={5}, bad={9})
    out = tmp_path / "out"
    results = out / "results.jsonl"
    cmd = [sys.executable, str(SCRIPT), str(data), str(out), "--sleep", "0.15", "--batch-units", "2"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (results.exists() and results.read_text().count("\n") >= 6):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the toy run wrote nothing"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out / "summary.json").exists()
    text = results.read_bytes()
    if text.endswith(b"\n"):  # the kill landed between writes: make it land inside one
        results.write_bytes(text[: text.rindex(b"\n", 0, len(text) - 1) + 25])
    assert not results.read_bytes().endswith(b"\n")
    done = len(read_results(out)[0])
    assert 0 < done < 20

    reference = _reference(tmp_path, data)
    assert run(ToyTask(data), out, resume=True) == reference
    assert 0 < _json(out / "timing.json")["units"] < len(SIZES) * 2 - 1  # only the rest was run
    assert _records(out) == _records(tmp_path / "reference")
    assert len(_lines(results)) == reference["n"]
    assert sorted(s["id"] for s in _lines(out / "skipped.jsonl")) == ["u005", "u009"]


def test_resume_from_files_of_another_world_size(tmp_path, data):
    """Rank files of a 2-process run (one cut by a kill) are resumed by one process: same summary."""
    reference = _reference(tmp_path, data)
    out = tmp_path / "out"
    out.mkdir()
    ref = tmp_path / "reference"
    (out / "run.json").write_bytes((ref / "run.json").read_bytes())
    lines = (ref / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.rank0.jsonl").write_text("".join(lines[:6]))
    (out / "results.rank1.jsonl").write_text("".join(lines[9:14]) + lines[14][:10])
    (out / "skipped.rank1.jsonl").write_text((ref / "skipped.jsonl").read_text().splitlines(keepends=True)[1])
    assert run(ToyTask(data), out, resume=True) == reference
    assert _records(out) == _records(ref)
    assert sorted(s["id"] for s in read_results(out)[1]) == ["u001", "u004", "u006"]


def test_limit_counts_units_not_skips_and_resume_can_extend_it(tmp_path, data):
    out = tmp_path / "out"
    summary = run(ToyTask(data), out, limit=3)
    assert sorted({r["unit"] for r in _lines(out / "results.jsonl")}) == ["u000", "u002", "u003"]
    assert summary["skipped_ids"] == ["u001"] and summary["n"] == SIZES[0] + SIZES[2] + SIZES[3]
    assert run(ToyTask(data), tmp_path / "zero", limit=0)["n"] == 0
    # a larger limit continues the run; the summary is that of an uninterrupted run with it
    assert run(ToyTask(data), out, resume=True, limit=6) == _reference(tmp_path, data, limit=6)
    # a smaller one reports its own units only; the other records stay in the file
    assert run(ToyTask(data), out, resume=True, limit=3) == summary
    assert len({r["unit"] for r in _lines(out / "results.jsonl")}) == 4  # u000 u002 u003 u005 (u004, u006 skipped)


def test_duplicate_unit_ids_are_an_error(tmp_path, data):
    class Twice(ToyTask):
        def units(self):
            yield from super().units()
            yield Unit("u003", "x", source="extra.txt:9")

    with pytest.raises(FalipError, match=r"two units have the id 'u003' \(.*index.txt:4 and extra.txt:9\)"):
        run(Twice(data), tmp_path / "out")


def test_workers_give_the_same_results(tmp_path, data):
    a = run(ToyTask(data), tmp_path / "w0", workers=0, batch_units=2)
    b = run(ToyTask(data), tmp_path / "w2", workers=2, batch_units=2)
    assert a == b
    for name in ("results.jsonl", "skipped.jsonl"):
        assert (tmp_path / "w0" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


def test_timing_measures_the_wait_for_data(tmp_path):
    data = make_data(tmp_path / "data", [1] * 6)
    run(ToyTask(data, load_sleep_s=0.05, sleep_s=0.01), tmp_path / "out", batch_units=2)
    timing = _json(tmp_path / "out" / "timing.json")
    assert timing["wait_s"] >= 0.3 and 0.03 <= timing["compute_s"] < 0.3
    assert timing["wait_s"] + timing["compute_s"] + timing["write_s"] <= timing["total_s"]
    assert timing["wait_fraction"] == pytest.approx(timing["wait_s"] / timing["total_s"])


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, capsys):
    data = make_data(tmp_path / "data", [1, 2, 1, 2])
    run(ToyTask(data), tmp_path / "quiet")  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    run(ToyTask(data), tmp_path / "bar", progress=True, batch_units=1)
    err = capsys.readouterr().err
    assert "4/4" in err and "unit/s" in err and "<00:00" in err  # count, rate, ETA


def test_bad_options_are_user_errors(tmp_path, data):
    for kw in ({"limit": -1}, {"workers": -2}, {"batch_units": 0}):
        with pytest.raises(FalipError):
            run(ToyTask(data), tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_device_for_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for_rank() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert device_for_rank() == torch.device("cuda", 1)


def _torchrun(*args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    cmd += ["--monitor-interval", "0.1", str(SCRIPT), *args]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_two_processes_match_one(tmp_path, data):
    """torchrun, 2 CPU processes (gloo), one launch: a 1-process partial run resumed by 2 with --limit."""
    out = tmp_path / "two"
    run(ToyTask(data), out, limit=3)
    first = {r["unit"] for r in _lines(out / "results.jsonl")}
    _torchrun(str(data), str(out), "--resume", "--limit", "10")
    reference = _reference(tmp_path, data, limit=10)
    assert _json(out / "summary.json") == reference
    assert _json(out / "returned.rank0.json") == _json(out / "returned.rank1.json") == reference
    rank_files = sorted(p.name for p in out.glob("results.rank*.jsonl"))
    assert rank_files == ["results.rank0.jsonl", "results.rank1.jsonl"]
    assert (out / "results.jsonl").is_file()  # the 1-process records are kept, not redone
    units = [{r["unit"] for r in _lines(out / name)} for name in rank_files]
    assert units[0] and units[1] and not units[0] & units[1] and not (units[0] | units[1]) & first
    assert _records(out) == _records(tmp_path / "reference")
    timing = _json(out / "timing.json")
    assert len(timing["ranks"]) == 2
    assert timing["units"] == 7, timing  # the 10 - 3 left; u004, u006 failed to load but were tried
