"""``falip rec``: referring expression comprehension on ReCLIP-format splits (RefCOCO, RefCOCO+, RefCOCOg).

Resumable (``--resume``), sharded under ``torchrun --nproc_per_node N`` (each process takes a
disjoint share of the images; the summary is the same as one process gives), one JSON line per
sentence in ``--out``/results.jsonl, unreadable images and bad lines in skipped.jsonl.
"""

from __future__ import annotations

import argparse

from ._eval import add_model_options, add_run_options, add_task_options, run_one

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``rec`` options to ``p``: the registry's task ``rec`` (``falip compare --task rec``'s)."""
    add_task_options(p, task="rec")
    p.add_argument("--method", default="falip", help="scoring method, e.g. falip, redcircle, falip+redcircle+blur")
    add_run_options(p)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    """Run REC and print the table; returns the exit code."""
    return run_one(args)
