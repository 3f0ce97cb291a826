"""``falip label``: name every proposed region of your images among your classes (open-vocabulary labels).

Resumable and sharded like every evaluation (``--resume``, ``--workers``, torchrun): one JSON line per
proposal in ``--out``/results.jsonl, then ``labels.json``, ``labels_coco.json`` (COCO results) and
``overlays/`` with the regions coloured by class.
"""

from __future__ import annotations

import argparse

from ._eval import add_model_options, add_run_options, add_template_options, make_scorer, read_templates, run_task
from ._proposals import add_proposal_options, source_options

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``label`` options to ``p``."""
    p.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="image files and/or folders (searched recursively)")
    p.add_argument("--classes", required=True, help="class names, comma-separated (a,b,c), or a file with one a line")
    p.add_argument("--method", default="falip", help="scoring method: falip (default) or a baseline (crop, blur, ...)")
    p.add_argument("--top-k", type=int, default=5, help="classes kept per region in the records (default 5)")
    add_template_options(p.add_argument_group("text"))
    add_proposal_options(p)
    add_run_options(p)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    """Label the proposals of every image and print the per-class counts; returns the exit code."""
    from falip.core.errors import FalipError
    from falip.prompts.registry import parse_method
    from falip.proposals import open_proposals
    from falip.tasks.label import LabelSettings, LabelTask, find_images, read_classes

    classes = read_classes(args.classes)
    parse_method(args.method)
    if args.top_k < 1:
        raise FalipError(f"--top-k must be >= 1, got {args.top_k}")
    images = find_images(args.inputs)
    source = open_proposals(args.proposals, single=len(images) == 1, **source_options(args))
    if not getattr(source, "in_workers", True):
        args.workers = 0  # the source holds a model: it proposes in this process
    scorer, model_info = make_scorer(args)
    settings = LabelSettings(
        images=tuple(str(p) for p in images), classes=tuple(classes), proposals=args.proposals,
        min_area=args.min_area, nms=args.nms, top=args.top, method=args.method,
        templates=read_templates(args), top_k=args.top_k,
    )  # fmt: skip
    run_task(LabelTask(scorer, settings, source, model_info), args, args.out)
    return 0
