"""``falip rec``: referring expression comprehension on ReCLIP-format splits (RefCOCO, RefCOCO+, RefCOCOg).

Resumable (``--resume``), sharded under ``torchrun --nproc_per_node N`` (each process takes a
disjoint share of the images; the summary is the same as one process gives), one JSON line per
sentence in ``--out``/results.jsonl, unreadable images and bad lines in skipped.jsonl.
"""

from __future__ import annotations

import argparse

from ._eval import add_model_options, add_rec_options, add_run_options, make_scorer, rec_task, run_task

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``rec`` options to ``p``."""
    add_rec_options(p)
    p.add_argument("--method", default="falip", help="scoring method, e.g. falip, circle, falip+blur+circle")
    add_run_options(p)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    """Run REC and print the table; returns the exit code."""
    scorer, model = make_scorer(args)
    task = rec_task(args, scorer, model, args.method)
    run_task(task, args, args.out)
    return 0
