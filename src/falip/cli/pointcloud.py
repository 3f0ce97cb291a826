"""``falip pointcloud``: zero-shot 3D classification of point clouds (PointCLIP's projections, FALIP per view).

ModelNet40 (PointNet's h5 release), ScanObjectNN (h5, its variants) or a folder of point files
(one subfolder per class). Resumable and sharded like ``falip rec``; summary with top-1, accuracy
per class and their mean. View weights: equal, ``--view-weights``, or searched (seeded) on another
split with ``--search-weights-on train`` (never on the split reported: the summary says where the
weights came from).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from falip.defaults import POINTCLOUD_METHODS, POINTCLOUD_TEMPLATE, PROJECTIONS, PROMPTS_HELP

from ._common import int_at_least
from ._eval import add_model_options, add_run_options, make_scorer, run_task

__all__ = ["configure_parser", "run"]


def _weights(text: str) -> tuple[float, ...] | str:
    if text.strip().startswith("v2-"):  # a preset name, checked against the list when the command runs
        return text.strip()
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be finite non-negative numbers, one per view, got {text!r}")
    if not any(values):
        raise argparse.ArgumentTypeError(f"must weigh at least one view above 0, got {text!r}")
    return values


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``pointcloud`` options to ``p``."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, choices=("modelnet40", "scanobjectnn", "folder"))
    g.add_argument("--root", required=True, help="dataset folder")
    g.add_argument("--split", default="test", help="split (default test)")
    g.add_argument("--variant", help="ScanObjectNN: main_split (default), main_split_nobg, ...+augmentedrot_scale75")
    g.add_argument("--points", type=int_at_least(4), default=1024, help="folder: points sampled per file")
    g.add_argument("--seed", type=int_at_least(0), default=0, help="seed of sampling and of the weight search")
    m = p.add_argument_group("method")
    m.add_argument("--method", choices=POINTCLOUD_METHODS, default="falip", help="FALIP per view, or plain CLIP")
    m.add_argument("--projection", choices=PROJECTIONS, default="v1", help="PointCLIP V1 (6 views) or V2 (10 views)")
    m.add_argument("--template", default=POINTCLOUD_TEMPLATE, help="text template")
    w = m.add_mutually_exclusive_group()
    w.add_argument(
        "--view-weights",
        type=_weights,
        help="one weight per view, e.g. 1,1,1,1,0.5,0.5, or a PointCLIP V2 preset: v2-<modelnet40|scanobjectnn>-"
        "<rn50|rn101|vit-b16|vit-b32> (its own test-split search)",
    )
    w.add_argument("--search-weights-on", metavar="SPLIT", help="search the view weights on this split first")
    m.add_argument("--search-trials", type=int_at_least(1), default=500, help="random weight vectors tried")
    m.add_argument(
        "--post-search",
        action="store_true",
        help="also PointCLIP's own post-search: the grid {0.25,0.5,0.75,1}^V on the reported split, "
        "labelled as optimistic",
    )
    m.add_argument("--prompts", metavar="FILE", help=PROMPTS_HELP)
    add_run_options(p)
    add_model_options(p)


def _task(args: argparse.Namespace, fclip, tokenizer, model_info: dict, split: str, weights, weights_from: str):
    from falip.tasks.pointcloud import PointCloudSettings, PointCloudTask, open_pointcloud_dataset, read_prompts

    items, classes, options = open_pointcloud_dataset(
        args.dataset, args.root, split=split, variant=args.variant, n_points=args.points, seed=args.seed
    )
    prompts = read_prompts(args.prompts, classes, args.dataset, args.model) if args.prompts else None
    settings = PointCloudSettings(
        dataset=args.dataset,
        source=str(Path(args.root)),
        method=args.method,
        projection=args.projection,
        template=args.template,
        view_weights=weights,
        weights_from=weights_from,
        options=tuple(sorted(options.items())),
        projected_points=None if args.dataset == "folder" else 1024,  # a folder's clouds: every point loaded
        prompts=prompts,
    )
    return PointCloudTask(fclip, tokenizer, settings, items, classes, model_info)


def run(args: argparse.Namespace) -> int:
    """Classify the clouds and print the table; returns the exit code."""
    import numpy as np

    from falip.core.errors import FalipError
    from falip.runner import read_results
    from falip.scoring import check_template
    from falip.tasks.pointcloud import (
        POST_SEARCH_LABEL,
        VIEW_WEIGHT_PRESETS,
        post_search_view_weights,
        search_view_weights,
    )

    check_template(args.template)
    weights, source = args.view_weights, "given" if args.view_weights else "equal"
    if isinstance(weights, str):
        if weights not in VIEW_WEIGHT_PRESETS:
            raise FalipError(f"--view-weights {weights}: no such preset; one of {', '.join(VIEW_WEIGHT_PRESETS)}")
        source = f"preset {weights} (PointCLIP V2's best_param.py, searched by its authors on the test split)"
        weights = VIEW_WEIGHT_PRESETS[weights]
    scorer, model_info = make_scorer(args)
    fclip, tokenizer = scorer.fclip, scorer.tokenizer
    if args.search_weights_on:
        if args.search_weights_on == args.split:
            raise FalipError(f"--search-weights-on {args.split} is the split reported; name another (e.g. train)")
        out = Path(args.out) / f"weight_search_{args.search_weights_on}"
        run_task(_task(args, fclip, tokenizer, model_info, args.search_weights_on, None, "equal"), args, out)
        records, _ = read_results(out)
        cos = np.array([r["view_cosines"] for r in records])
        labels = np.array([r["label"] for r in records])
        weights, acc = search_view_weights(cos, labels, trials=args.search_trials, seed=args.seed)
        source = (
            f"searched on {args.search_weights_on} ({len(records)} clouds, {args.search_trials} seeded trials, "
            f"seed {args.seed}: {acc:.1f}% there)"
        )
        print(f"view weights {list(weights)}: {source}")
    run_task(_task(args, fclip, tokenizer, model_info, args.split, weights, source), args, args.out)
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
