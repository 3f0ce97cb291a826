"""``falip compare``: several methods on the same REC or classification data, side by side.

Each method runs into ``--out``/<method>/ (resumable on its own, like ``falip rec``); the table
(markdown in ``compare.md``, numbers in ``compare.json``) has one row per method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._eval import (
    add_classify_options,
    add_model_options,
    add_rec_options,
    add_run_options,
    classify_task,
    make_scorer,
    rec_task,
    run_task,
)

__all__ = ["configure_parser", "run", "method_dir", "markdown_table", "compare_methods"]

DEFAULT_METHODS = "none,crop,circle,blur,falip,falip+blur+circle"


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``compare`` options to ``p``."""
    p.add_argument("--task", required=True, choices=("rec", "classify"), help="which task")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated methods (default {DEFAULT_METHODS})")
    add_rec_options(p, standalone=False)
    add_classify_options(p, standalone=False)
    add_run_options(p)
    add_model_options(p)


def method_dir(method: str) -> str:
    """A folder name, valid on every OS, for a method string: ``falip+blur&circle`` ->
    ``falip-plus-blur-and-circle``, ``unleash:circle`` -> ``unleash-on-circle``."""
    name = method.replace("+", "-plus-").replace("&", "-and-").replace(":", "-on-")
    return "".join("-" if c in '<>"/\\|?*' or ord(c) < 32 else c for c in name)


def _columns(summary: dict, task: str) -> dict[str, str]:
    """The cells of one method's row: per split (REC) or top-1/top-k/groups (classification)."""
    cells: dict[str, str] = {}
    if task == "rec":
        for split, row in summary.get("by_split", {}).items():
            cells[split] = f"{row['accuracy']:.1f}"
        cells["all"] = f"{summary['accuracy']:.1f}"
    else:
        from falip.tasks.metrics import Summary

        for label, value in Summary.from_dict(summary).columns().items():  # top-1, top-k, group mean, ...
            cells[label] = "-" if value is None else f"{value:.1f}"
    cells["n"] = str(summary["n"])
    if summary.get("skipped"):
        cells["skipped"] = str(summary["skipped"])
    return cells


def markdown_table(rows: dict[str, dict[str, str]], first: str = "method") -> str:
    """A markdown table from ``{row name: {column: cell}}`` (columns in first-seen order)."""
    from falip.tasks.metrics import format_table

    columns: list[str] = []
    for cells in rows.values():
        columns += [c for c in cells if c not in columns]
    body = [[name] + [cells.get(c, "-") for c in columns] for name, cells in rows.items()]
    return format_table([first, *columns], body, markdown=True)


def compare_methods(
    args: argparse.Namespace, methods: list[tuple[str, str, int | None]], out: Path, scorer: Any, model: dict
) -> dict[str, dict]:
    """Run each ``(row name, method, subtract_q or None)`` into ``out/<dir>``; returns the summaries."""
    summaries: dict[str, dict] = {}
    for name, method, q in methods:
        if args.task == "rec":
            task = rec_task(args, scorer, model, method, subtract_q=q)
        else:
            task = classify_task(args, scorer, model, method)
        folder = method_dir(method) + (f"-P{q}" if q else "")
        print(f"\n== {name} -> {out / folder}")
        summaries[name] = run_task(task, args, out / folder)
    return summaries


def write_comparison(summaries: dict[str, dict], task: str, out: Path, title: str) -> str:
    """Write ``compare.md`` and ``compare.json`` in ``out``; returns the markdown."""
    rows = {name: _columns(s, task) for name, s in summaries.items()}
    text = f"{title}\n\n{markdown_table(rows)}\n"
    (out / "compare.md").write_text(text, encoding="utf-8")
    (out / "compare.json").write_text(json.dumps(summaries, indent=2), encoding="utf-8")
    return text


def _check(args: argparse.Namespace) -> list[str]:
    from falip.core.errors import FalipError
    from falip.prompts.registry import parse_method

    if args.task == "rec" and not args.data:
        raise FalipError("--task rec needs --data (a ReCLIP-format split file)")
    if args.task == "classify" and not (args.dataset and args.root):
        raise FalipError("--task classify needs --dataset and --root")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise FalipError("--methods names no method")
    seen: dict[str, str] = {}
    for m in methods:
        parse_method(m)
        folder = method_dir(m)
        if folder in seen:
            same = "twice" if seen[folder] == m else f"and {seen[folder]!r}, which share the folder {folder}"
            raise FalipError(f"--methods names {m!r} {same}; name each method once")
        seen[folder] = m
    return methods


def run(args: argparse.Namespace) -> int:
    """Run every method and print the comparison table; returns the exit code."""
    from ._common import ensure_writable_dir

    methods = _check(args)
    out = ensure_writable_dir(args.out, "--out")
    scorer, model = make_scorer(args)
    q = args.subtract_q if args.task == "rec" else None
    summaries = compare_methods(args, [(m, m, q or None) for m in methods], out, scorer, model)
    what = "REC accuracy %" if args.task == "rec" else f"region classification ({args.dataset}) accuracy %"
    print("\n" + write_comparison(summaries, args.task, out, f"{what}, model {args.model}"))
    print(f"wrote {out / 'compare.md'} and {out / 'compare.json'}")
    return 0
