"""``falip detect``: COCO detection by region recognition, scored by pycocotools' AP.

Every region of a COCO instances file (its ground-truth boxes or masks, or ``--proposals``: a COCO
results file of class-agnostic boxes) is named among the file's categories; each region's best
classes become detections (softmax over the vocabulary). ``--out`` holds ``detections.json`` (COCO
results), ``summary.json`` (AP, AP50, AP75, AP small/medium/large; ``segm`` too with masks) and the
harness's files: resumable, sharded (``--workers``, torchrun) like every evaluation.
"""

from __future__ import annotations

import argparse

from ._eval import add_model_options, add_run_options, add_task_options, run_one

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``detect`` options to ``p``: the registry's task ``detect`` (``falip compare --task detect``'s)."""
    add_task_options(p, task="detect")
    p.add_argument("--method", default="falip", help="scoring method, e.g. falip, none, crop, circle, blur")
    add_run_options(p)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    """Run the detection and print the AP table; returns the exit code."""
    return run_one(args)
