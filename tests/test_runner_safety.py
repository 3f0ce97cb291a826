"""The runner against misuse (issue 16): one writer per folder, skips that are items not results,
runs that score nothing, a torn last line that ends in a newline, and no DataLoader workers left
behind by a ``kill -9``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from falip.core.errors import FalipError
from falip.runner import LOCK_NAME, FolderInUse, NothingScored, Skip, read_results, run
from support.runner_toy import ToyTask, make_data

SCRIPT = Path(__file__).parent / "support" / "runner_toy.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
SIZES = [2, 3, 1, 2, 3, 1, 2, 2, 3, 1, 2, 3]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait_for(check, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _toy(data: Path, out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, str(SCRIPT), str(data), str(out), *args]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ------------------------------------------------------------------------------ one writer
def test_a_second_run_on_a_busy_folder_is_refused_naming_the_holder(tmp_path):
    data = make_data(tmp_path / "data", SIZES)
    out = tmp_path / "out"
    first = _toy(data, out, "--sleep", "0.4")  # 6 batches of 2 units: ~2.5 s
    try:
        _wait_for(lambda: (out / LOCK_NAME).is_file() and (out / LOCK_NAME).read_text().strip(), what="the lock")
        with pytest.raises(FolderInUse) as err:
            run(ToyTask(data), out, resume=True)
        message = str(err.value)
        assert "\n" not in message and "in use by another falip run" in message
        assert f"pid {first.pid} on {socket.gethostname()}" in message
    finally:
        assert first.wait(120) == 0, first.stderr.read()
    # the first run was not disturbed: each id once, and the lock is gone with it
    rows = _lines(out / "results.jsonl")
    assert len(rows) == sum(SIZES) == len({r["id"] for r in rows})
    assert json.loads((out / "summary.json").read_text())["n"] == sum(SIZES)
    assert not (out / LOCK_NAME).exists()


def test_two_resumes_at_once_never_write_twice(tmp_path):
    """The newcomer's case: two `--resume` runs on one folder; one runs, the other is refused."""
    data = make_data(tmp_path / "data", SIZES)
    out = tmp_path / "out"
    run(ToyTask(data), out, limit=2)
    procs = [_toy(data, out, "--resume", "--sleep", "0.3") for _ in range(2)]
    codes = [p.wait(120) for p in procs]
    errors = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 1], errors  # the toy script lets the FalipError propagate: exit 1
    assert any("FolderInUse" in e and "in use by another falip run" in e for e in errors)
    rows = _lines(out / "results.jsonl")
    assert len(rows) == sum(SIZES) == len({r["id"] for r in rows})


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    data = make_data(tmp_path / "data", SIZES)
    out = tmp_path / "out"
    first = _toy(data, out, "--sleep", "5")
    _wait_for(lambda: (out / LOCK_NAME).is_file() and (out / LOCK_NAME).read_text().strip(), what="the lock")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == first.pid  # the stale file is still there
    with caplog.at_level(logging.WARNING, logger="falip.runner"):
        summary = run(ToyTask(data), out, resume=True)
    assert summary["n"] == sum(SIZES)
    assert any("taking over the lock" in r.getMessage() and str(first.pid) in r.getMessage() for r in caplog.records)
    assert not (out / LOCK_NAME).exists()


def test_a_refused_run_leaves_the_lock_free(tmp_path):
    data = make_data(tmp_path / "data", SIZES)
    out = tmp_path / "out"
    run(ToyTask(data), out, limit=1)
    with pytest.raises(FalipError, match="already holds results"):
        run(ToyTask(data), out)
    assert not (out / LOCK_NAME).exists()
    assert run(ToyTask(data), out, resume=True)["n"] == sum(SIZES)


# ------------------------------------------------------------------------------ skips
class ItemSkips(ToyTask):
    """Values of 10 are items that cannot be scored: a Skip among the unit's records."""

    def run(self, loaded):
        out = super().run(loaded)
        return [
            [
                Skip(r["id"], f"{r['id'].split('/')[0]}.txt", "value 10 cannot be scored") if r["value"] == 10 else r
                for r in recs
            ]  # fmt: skip
            for recs in out
        ]


def test_an_items_skip_keeps_the_units_other_records_and_counts_items(tmp_path):
    data = make_data(tmp_path / "data", SIZES, bad={4})
    out = tmp_path / "out"
    reference = run(ToyTask(data), tmp_path / "ref")
    summary = run(ItemSkips(data), out)
    tens = [r["id"] for r in read_results(tmp_path / "ref")[0] if r["value"] == 10]
    assert tens  # the toy's data has some
    entries = _lines(out / "skipped.jsonl")
    items = [e for e in entries if "unit" in e]
    assert sorted(e["id"] for e in items) == sorted(tens)
    assert all(e["unit"] == e["id"].split("/")[0] and e["reason"] == "value 10 cannot be scored" for e in items)
    assert summary["n"] == reference["n"] - len(tens)
    assert summary["skipped"] == reference["skipped"] + len(tens)  # items, the unit n counts
    rows = _lines(out / "results.jsonl")
    assert all(r["unit_size"] == sum(q["unit"] == r["unit"] for q in rows) for r in rows)
    # resume: units with a skipped item run again (a skip is not a result), nothing is doubled
    again = run(ItemSkips(data), out, resume=True)
    assert again == summary
    assert len(_lines(out / "skipped.jsonl")) == len(entries)
    assert sorted(r["id"] for r in _lines(out / "results.jsonl")) == sorted(r["id"] for r in rows)


def test_a_unit_that_fails_counts_all_its_items(tmp_path):
    from falip.runner import Unit

    class Sized(ToyTask):
        def units(self):
            for u in super().units():
                if isinstance(u, Unit):
                    yield Unit(u.id, u.payload, u.source, items=SIZES[int(u.id[1:])])
                else:
                    yield u

    data = make_data(tmp_path / "data", SIZES, skip={1}, bad={4}, missing={6})
    summary = run(Sized(data), tmp_path / "out")
    assert summary["skipped"] == 1 + SIZES[4] + SIZES[6]
    entries = {e["id"]: e for e in _lines(tmp_path / "out" / "skipped.jsonl")}
    assert entries["u004"]["items"] == SIZES[4] and "items" not in entries["u001"]


def test_a_skip_reason_does_not_repeat_its_source(tmp_path):
    class Prefixed(ToyTask):
        def load(self, unit):
            if unit.id == "u002":
                raise FalipError(f"{unit.source}: the box (1, 2, 3, 4) lies outside the image")
            return super().load(unit)

    data = make_data(tmp_path / "data", SIZES)
    run(Prefixed(data), tmp_path / "out")
    (entry,) = _lines(tmp_path / "out" / "skipped.jsonl")
    assert entry["source"] == f"{data / 'index.txt'}:3"
    assert entry["reason"] == "the box (1, 2, 3, 4) lies outside the image"


# ------------------------------------------------------------------------------ nothing scored
def test_a_run_that_scores_nothing_is_an_error_not_zero_percent(tmp_path):
    data = make_data(tmp_path / "data", [2, 3, 1], bad={0, 1}, missing={2})
    with pytest.raises(NothingScored) as err:
        run(ToyTask(data), tmp_path / "out", require_scored=True)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"0 of 3 items could be scored; first reason: {data / 'index.txt'}:1: ")
    assert "not numbers" in message
    assert err.value.summary["n"] == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n"] == 0  # the files are written
    assert run(ToyTask(data), tmp_path / "lib")["n"] == 0  # the library's default: a summary, no error
    empty = make_data(tmp_path / "empty", [])
    (empty / "index.txt").write_text("")
    with pytest.raises(NothingScored, match="nothing to score: the data gave no items"):
        run(ToyTask(empty), tmp_path / "out2", require_scored=True)


# ------------------------------------------------------------------------------ torn last line
def test_a_torn_last_line_that_ends_in_a_newline_is_repaired(tmp_path):
    data = make_data(tmp_path / "data", SIZES)
    out = tmp_path / "out"
    reference = run(ToyTask(data), tmp_path / "ref")
    run(ToyTask(data), out)
    text = (out / "results.jsonl").read_text()
    cut = text.index('{"id": "u008/1"') + 20
    (out / "results.jsonl").write_text(text[:cut] + "\n")  # the torn write happened to end in a newline
    (out / "skipped.jsonl").write_text('{"id": "u0\n')
    assert run(ToyTask(data), out, resume=True) == reference
    rows = _lines(out / "results.jsonl")
    assert len(rows) == reference["n"] == len({r["id"] for r in rows})
    # inside the file (not the last line) it is still another program's file
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    lines[2] = "not json\n"
    (out / "results.jsonl").write_text("".join(lines))
    with pytest.raises(FalipError, match=r"results.jsonl:3: not a JSON line"):
        run(ToyTask(data), out, resume=True)


# ------------------------------------------------------------------------------ orphans
def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_workers_end_when_their_run_is_killed(tmp_path):
    """A real kill -9 of the run: its DataLoader workers (busy in a 60 s load) go with it."""
    data = make_data(tmp_path / "data", SIZES)
    parent = _toy(data, tmp_path / "out", "--workers", "2", "--load-sleep", "60")
    try:
        _wait_for(lambda: len(_children(parent.pid)) >= 2, what="two workers")
        time.sleep(1.0)  # the workers are inside their (long) load now
        workers = _children(parent.pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
    try:
        _wait_for(lambda: not any(_alive(w) for w in workers), timeout=10, what="the workers to end")
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
