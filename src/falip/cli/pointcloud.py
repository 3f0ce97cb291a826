"""``falip pointcloud``: zero-shot 3D classification of point clouds (PointCLIP's projections, FALIP per view).

ModelNet40 (PointNet's h5 release), ScanObjectNN (h5, its variants) or a folder of point files
(one subfolder per class). Resumable and sharded like ``falip rec``; summary with top-1, accuracy
per class and their mean. View weights: equal, ``--view-weights``, or searched (seeded) on another
split with ``--search-weights-on train`` (never on the split reported: the summary says where the
weights came from).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from falip.defaults import POINTCLOUD_METHODS

from ._common import int_at_least
from ._eval import add_model_options, add_run_options, add_task_options, build_task, make_scorer, run_task

__all__ = ["NEGATIVE_VALUE_OPTIONS", "configure_parser", "run"]

# options whose value may start with a minus sign (main joins "OPTION -1,..." into "OPTION=-1,...")
NEGATIVE_VALUE_OPTIONS: tuple[str, ...] = ("--view-weights",)


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``pointcloud`` options to ``p``: the registry's task ``pointcloud``, and the weight search."""
    add_task_options(p, task="pointcloud")
    m = p.add_argument_group("method")
    m.add_argument("--method", choices=POINTCLOUD_METHODS, default="falip", help="FALIP per view, or plain CLIP")
    m.add_argument(
        "--search-weights-on",
        metavar="SPLIT",
        help="search the view weights on this split first (not with --view-weights)",
    )
    m.add_argument("--search-trials", type=int_at_least(1), default=500, help="random weight vectors tried")
    m.add_argument(
        "--post-search",
        action="store_true",
        help="also PointCLIP's own post-search: the grid {0.25,0.5,0.75,1}^V on the reported split, "
        "labelled as optimistic",
    )
    add_run_options(p)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    """Classify the clouds and print the table; returns the exit code."""
    import dataclasses

    import numpy as np

    from falip.core.errors import FalipError
    from falip.data.registry import get_dataset
    from falip.runner import read_results
    from falip.tasks.pointcloud import POST_SEARCH_LABEL, post_search_view_weights, search_view_weights

    from ._eval import settings_of

    if args.search_weights_on and args.view_weights is not None:
        raise FalipError("give --view-weights or --search-weights-on, not both")
    taken = {s.name for s in get_dataset(args.dataset, "pointcloud").settings}
    seed = args.seed if args.seed is not None else 0  # the weight search's; the dataset's too where it takes one
    given = {"seed": args.seed if "seed" in taken else None}
    split = settings_of(args, "pointcloud", **given).get("split")
    if args.search_weights_on:
        if "split" not in taken:
            raise FalipError(f"--search-weights-on: --dataset {args.dataset} has no splits to search on")
        if args.search_weights_on == split:
            raise FalipError(f"--search-weights-on {split} is the split reported; name another (e.g. train)")
    scorer, model_info = make_scorer(args)
    weights, source = args.view_weights, None
    if args.search_weights_on:
        out = Path(args.out) / f"weight_search_{args.search_weights_on}"
        run_task(
            build_task(args, "pointcloud", scorer, model_info, args.method, split=args.search_weights_on, **given),
            args,
            out,
        )
        records, _ = read_results(out)
        cos = np.array([r["view_cosines"] for r in records])
        labels = np.array([r["label"] for r in records])
        weights, acc = search_view_weights(cos, labels, trials=args.search_trials, seed=seed)
        source = (
            f"searched on {args.search_weights_on} ({len(records)} clouds, {args.search_trials} seeded trials, "
            f"seed {seed}: {acc:.1f}% there)"
        )
        print(f"view weights {list(weights)}: {source}")
    task = build_task(args, "pointcloud", scorer, model_info, args.method, view_weights=weights, **given)
    if source is not None:  # where searched weights came from, for run.json and the summary
        task.settings = dataclasses.replace(task.settings, weights_from=source)
    run_task(task, args, args.out)
    if args.post_search:
        import json

        records, _ = read_results(args.out)
        cos = np.array([r["view_cosines"] for r in records])
        labels = np.array([r["label"] for r in records])
        best, acc = post_search_view_weights(cos, labels)
        result = {"label": POST_SEARCH_LABEL, "view_weights": list(best), "accuracy": acc, "n": len(records)}
        (Path(args.out) / "post_search.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"{POST_SEARCH_LABEL}: {acc:.1f}% with view weights {list(best)} ({len(records)} clouds)")
    return 0
