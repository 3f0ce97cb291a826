"""``falip classify``: region-guided classification (CUB, Stanford Dogs, Waterbirds, ImageNet-S, your files).

Resumable and sharded like ``falip rec``; one JSON line per region in ``--out``/results.jsonl with
the top-k classes; summary with top-1, top-k and, for Waterbirds, accuracy per group, their mean
and the worst group.
"""

from __future__ import annotations

import argparse

from ._eval import add_model_options, add_run_options, add_task_options, run_one

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``classify`` options to ``p``: the registry's task ``classify`` (``falip compare --task classify``'s)."""
    add_task_options(p, task="classify")
    p.add_argument("--method", default="falip", help="scoring method, e.g. falip, none, crop, redcircle, blur")
    add_run_options(p)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    """Run the classification and print the table; returns the exit code."""
    return run_one(args)
