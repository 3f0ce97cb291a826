"""``falip compare``: several methods on the same data of any registered task, side by side.

Each method runs into ``--out``/<method>/ (resumable on its own, like ``falip rec``); the table
(markdown in ``compare.md``, numbers in ``compare.json``) has one row per method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._eval import add_model_options, add_run_options, add_task_options, build_task, make_scorer, run_task, task_of

__all__ = ["configure_parser", "run", "method_dir", "markdown_table", "compare_methods"]

DEFAULT_METHODS = (
    "none,crop,input-circle,blur,falip,falip+blur+input-circle"  # the image tasks'; each task declares its own
)


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``compare`` options to ``p``."""
    p.add_argument(
        "--methods", help=f"comma-separated methods (default: the task's, {DEFAULT_METHODS} for rec and classify)"
    )
    add_task_options(p)
    add_run_options(p)
    add_model_options(p)


def method_dir(method: str) -> str:
    """A folder name, valid on every OS, for a method string: ``falip+blur&circle`` ->
    ``falip-plus-blur-and-circle``, ``unleash:circle`` -> ``unleash-on-circle``."""
    name = method.replace("+", "-plus-").replace("&", "-and-").replace(":", "-on-")
    return "".join("-" if c in '<>"/\\|?*' or ord(c) < 32 else c for c in name)


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
        task = build_task(args, args.task, scorer, model, method, **({} if q is None else {"subtract_q": q}))
        folder = method_dir(method) + (f"-P{q}" if q else "")
        print(f"\n== {name} -> {out / folder}")
        summaries[name] = run_task(task, args, out / folder)
    return summaries


def write_comparison(summaries: dict[str, dict], task: str, out: Path, title: str) -> str:
    """Write ``compare.md`` and ``compare.json`` in ``out``; returns the markdown."""
    from falip.tasks import summary_columns

    rows = {name: summary_columns(task, s) for name, s in summaries.items()}
    text = f"{title}\n\n{markdown_table(rows)}\n"
    (out / "compare.md").write_text(text, encoding="utf-8")
    (out / "compare.json").write_text(json.dumps(summaries, indent=2), encoding="utf-8")
    return text


def _check(args: argparse.Namespace) -> list[str]:
    from falip.core.errors import FalipError
    from falip.prompts.registry import parse_method

    from ._eval import settings_of

    spec = task_of(args)
    settings_of(args, spec)  # every option applies to the task, the required ones given
    methods = [m.strip() for m in (args.methods or spec.default_methods).split(",") if m.strip()]
    if not methods:
        raise FalipError("--methods names no method")
    seen: dict[str, str] = {}
    for m in methods:
        parse_method(m)
        if spec.methods is not None and m not in spec.methods:
            raise FalipError(f"--task {spec.name} takes the methods {', '.join(spec.methods)}, not {m!r}")
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
    q = getattr(args, "subtract_q", None)
    summaries = compare_methods(args, [(m, m, q or None) for m in methods], out, scorer, model)
    spec = task_of(args)
    what = f"{spec.title}" + (f" ({args.dataset})" if args.dataset else "") + " accuracy %"
    print("\n" + write_comparison(summaries, args.task, out, f"{what}, model {args.model}"))
    print(f"wrote {out / 'compare.md'} and {out / 'compare.json'}")
    return 0
