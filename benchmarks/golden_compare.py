"""Compare two golden runs (benchmarks/golden_run.sh): every results.jsonl line and every run.json config.

A line counts as identical when every key it had in the first run has the same value in the second
(the run folder's own path mapped); keys only the second run has are listed, as are run.json configs
that differ. Exit 1 when anything differs.

Usage: python benchmarks/golden_compare.py BEFORE AFTER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(line: str, root: Path) -> dict:
    return json.loads(line.replace(str(root), "<RUN>"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    before, after = Path(args[0]), Path(args[1])
    total = same = 0
    added: dict[str, int] = {}
    configs_differ = []
    for f in sorted(before.rglob("results.jsonl")):
        rel = f.relative_to(before)
        b_lines, a_lines = f.read_text().splitlines(), (after / rel).read_text().splitlines()
        if len(a_lines) != len(b_lines):
            print(f"{rel}: {len(b_lines)} lines before, {len(a_lines)} after")
            return 1
        ok = 0
        for bl, al in zip(b_lines, a_lines):
            b, a = _load(bl, before), _load(al, after)
            for k in set(a) - set(b):
                added[k] = added.get(k, 0) + 1
            ok += all(k in a and a[k] == v for k, v in b.items())
        total, same = total + len(b_lines), same + ok
        print(f"{rel}: {ok} of {len(b_lines)} lines identical on every key they had")
    for f in sorted(before.rglob("run.json")):
        rel = f.relative_to(before)
        cb = _load(f.read_text(), before)["config"]
        ca = _load((after / rel).read_text(), after)["config"]
        if cb != ca:
            configs_differ.append(str(rel))
    print(f"total: {same} of {total} lines identical; keys added: {added or 'none'}; "
          f"run.json configs that differ: {configs_differ or 'none'}")  # fmt: skip
    return 0 if same == total and not configs_differ else 1


if __name__ == "__main__":
    sys.exit(main())
