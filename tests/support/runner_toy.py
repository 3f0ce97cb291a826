"""A toy task for the runner's tests (no model), and a script that runs it.

Data folder: ``index.txt`` lists one unit per line (``name`` or ``name skip``); ``name.txt`` holds
the unit's integers (one record each). ``bad ...`` in a file is a FalipError in ``load()``, a
missing file an OSError, ``bug`` a RuntimeError (a bug), a value of -1 makes ``run()`` fail.

    python tests/support/runner_toy.py DATA OUT [--resume] [--limit N] [--workers W] [--sleep S] [--load-sleep S]

runs it with :func:`falip.runner.run` (under torchrun too) and writes the summary that ``run``
returned on this rank to ``OUT/returned.rank{RANK}.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from falip.core.errors import FalipError
from falip.runner import Skip, Unit, run

__all__ = ["ToyTask", "make_data", "main"]


def make_data(folder: Path, sizes: list[int], *, skip=(), bad=(), missing=(), bug=()) -> Path:
    """Write units ``u000``, ``u001``, ... with ``sizes[i]`` values each; the named indices misbehave."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, size in enumerate(sizes):
        name = f"u{i:03d}"
        lines.append(f"{name} skip" if i in skip else name)
        if i in missing:
            continue
        if i in bad:
            text = "bad numbers"
        elif i in bug:
            text = "bug"
        else:
            text = " ".join(str((7 * i + 3 * j) % 11) for j in range(size))
        (folder / f"{name}.txt").write_text(text)
    (folder / "index.txt").write_text("\n".join(lines) + "\n")
    return folder


class ToyTask:
    """Units listed in ``index.txt``; one record per integer, ``correct`` when ``(v + seed) % 3 != 0``."""

    name = "toy"

    def __init__(self, data: str | Path, *, seed: int = 0, sleep_s: float = 0.0, load_sleep_s: float = 0.0) -> None:
        self.data = Path(data)
        self.seed = seed
        self.sleep_s = sleep_s
        self.load_sleep_s = load_sleep_s
        self.runs = 0  # calls of run() in this process

    def config(self) -> dict:
        return {"data": str(self.data), "seed": self.seed}

    def units(self):
        index = self.data / "index.txt"
        for i, line in enumerate(index.read_text().splitlines(), 1):
            name, _, flag = line.partition(" ")
            if flag == "skip":
                yield Skip(name, f"{index}:{i}", "marked skip in the index")
            else:
                yield Unit(name, str(self.data / f"{name}.txt"), source=f"{index}:{i}")

    def load(self, unit: Unit) -> dict:
        text = Path(unit.payload).read_text()
        if text.startswith("bad"):
            raise FalipError(f"{unit.payload}: not numbers")
        if text.startswith("bug"):
            raise RuntimeError("a bug in load")
        time.sleep(self.load_sleep_s)
        return {"name": unit.id, "values": torch.tensor([int(v) for v in text.split()])}

    def run(self, loaded: list[dict]) -> list[list[dict]]:
        self.runs += 1
        time.sleep(self.sleep_s)
        out = []
        for item in loaded:
            values = item["values"]
            if (values == -1).any():
                raise ValueError("the model failed")
            doubled = (values * 2).tolist()
            out.append(
                [
                    {
                        "id": f"{item['name']}/{j}",
                        "value": int(v),
                        "double": d,
                        "correct": (int(v) + self.seed) % 3 != 0,
                    }
                    for j, (v, d) in enumerate(zip(values.tolist(), doubled))
                ]
            )
        return out

    def summarize(self, records: list[dict], skipped: list[dict]) -> dict:
        rows = sorted((r["id"], r["value"], r["double"], r["correct"]) for r in records)
        n, correct = len(rows), sum(r[3] for r in rows)
        return {
            "correct": correct,
            "accuracy": 100.0 * correct / n if n else 0.0,
            "total": sum(r[1] for r in rows),
            "digest": hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16],
            "skipped_ids": sorted(s["id"] for s in skipped),
        }

    def table(self, summary: dict) -> str:
        return f"toy  n={summary['n']}  accuracy={summary['accuracy']:.2f}%  skipped={summary['skipped']}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--batch-units", type=int, default=2)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--load-sleep", type=float, default=0.0)
    a = p.parse_args()
    task = ToyTask(a.data, sleep_s=a.sleep, load_sleep_s=a.load_sleep)
    summary = run(task, a.out, resume=a.resume, limit=a.limit, workers=a.workers, batch_units=a.batch_units)
    rank = os.environ.get("RANK", "0")
    (Path(a.out) / f"returned.rank{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
