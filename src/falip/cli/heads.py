"""``falip heads``: which attention heads respond to a visual prompt (Fig. 6 right of the paper).

Over a dataset's regions, each (block, head) is ranked by the mean norm of ``G'_h - G_h``, its
[CLS] output on the prompted image minus on the original image (no bias): ``--prompt circle``,
``blur&circle``, ... or ``falip`` (FALIP's bias on the region). REC splits: the region of each line is
its gold box (the referred object), once per line. Classification datasets: each labelled region.
Point clouds: each depth view with FALIP's bias on its foreground (the point-cloud task's views and
region of attention), ``--prompt falip`` only (the default there).
Any registered task that declares its images' regions (:attr:`falip.tasks.TaskSpec.samples`) works.
Writes ``heads.json`` (the mean deltas, the original heads' mean norms, the ranking) and
``heads.png`` (a blocks x heads heat map) in ``--out``, and prints the top heads.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import int_at_least
from ._eval import add_model_options, add_task_options

__all__ = ["configure_parser", "run"]

# options of the shared groups that have no meaning here, with their defaults
_UNUSED = {
    "detector_file": (None, "--detector-file: falip heads analyses each REC line's gold box, not proposals"),
    "subtract_q": (None, "--subtract-q: falip heads uses no text"),
    "template": (None, "--template: falip heads uses no text"),
    "templates": (None, "--templates: falip heads uses no text"),
}


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``heads`` options to ``p``."""
    p.add_argument(
        "--prompt",
        help="edits and/or falip joined by '&': input-circle, redcircle, blur&input-circle, falip, ... "
        "(default input-circle; "
        "falip for a task that takes no edits, e.g. pointcloud, whose depth views go to the model as they are)",
    )
    p.add_argument("--out", required=True, help="output folder: heads.json, heads.png")
    p.add_argument("--limit", type=int_at_least(1), help="only the first N images (point clouds: clouds)")
    p.add_argument("--top", type=int_at_least(1), default=10, help="how many heads to print (default 10)")
    p.add_argument("--batch", type=int_at_least(1), default=32, help="regions per forward (default 32)")
    add_task_options(p)
    add_model_options(p)


def _check(args: argparse.Namespace) -> None:
    from falip.core.errors import FalipError
    from falip.prompts.registry import parse_prompt

    from ._eval import settings_of, task_of

    spec = task_of(args)
    if spec.samples is None:
        raise FalipError(f"falip heads analyses regions of images; task {spec.name} declares none")
    settings_of(args, spec)
    for name, (default, reason) in _UNUSED.items():
        if getattr(args, name, default) != default:
            raise FalipError(f"{reason}; leave it out")
    takes = _prompts_taken(spec)
    if args.prompt is None:
        args.prompt = "input-circle" if takes is None or "input-circle" in takes else "falip"
    atoms = parse_prompt(args.prompt, f"--prompt {args.prompt!r}")
    refused = [a for a in atoms if takes is not None and a not in takes]
    if refused:
        raise FalipError(
            f"--prompt {args.prompt!r}: --task {spec.name} takes the prompt {' or '.join(takes)} only "
            f"({', '.join(refused)}: image edits; its samples go to the model as they are, "
            "e.g. depth views, where an edit of an image's pixels means nothing)"
        )


def _prompts_taken(spec: Any) -> tuple[str, ...] | None:
    """The prompt atoms a task's samples take: those of its methods (None: any), 'none' aside."""
    return None if spec.methods is None else tuple(m for m in spec.methods if m != "none")


def run(args: argparse.Namespace) -> int:
    """Measure, write ``heads.json`` and ``heads.png``, print the top heads; returns the exit code."""
    _check(args)
    from ._common import ensure_writable_dir

    out = ensure_writable_dir(args.out, "--out")
    from falip.analysis.heads import head_sensitivity, load_samples
    from falip.core.errors import FalipError
    from falip.data.registry import resolve
    from falip.numbering import NUMBERING_NOTE

    from ._eval import model_from_options, settings_of, task_of

    fclip, preprocess, _ = model_from_options(args)
    spec = task_of(args)
    entries = resolve(spec.samples)(image_size=int(fclip.image_size[0]), **settings_of(args, spec))
    skipped: list[tuple[str, str]] = []
    samples = load_samples(entries, args.limit, on_skip=lambda source, reason: skipped.append((source, reason)))
    try:
        result = head_sensitivity(fclip, preprocess, samples, args.prompt, batch_size=args.batch, model_name=args.model)
    except FalipError as err:
        if not skipped:
            raise
        source, reason = skipped[0]
        raise FalipError(f"{err}; {len(skipped)} skipped, the first: {source}: {reason}") from None
    result.skipped = len(skipped)
    json_path = result.save_json(out / "heads.json")
    png_path = result.save_heatmap(out / "heads.png")
    for source, reason in skipped[:5]:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    if len(skipped) > 5:
        print(f"... and {len(skipped) - 5} more skipped", file=sys.stderr)
    print(
        f"prompt {args.prompt!r} on {args.model}: {result.regions} regions of {result.images} images"
        + (f" ({len(skipped)} skipped)" if skipped else "")
        + (f"; {result.empty_views} views without a region left out" if result.empty_views else "")
    )
    print("mean ||G'_h - G_h|| (prompted minus original image; relative: over the original head's mean norm)")
    print(f"({NUMBERING_NOTE})")
    print(f"{'rank':>4}  {'block':>5}  {'head':>4}  {'delta':>9}  {'relative':>8}")
    for rank, row in enumerate(result.ranking()[: args.top], 1):
        print(f"{rank:>4}  {row['layer'] + 1:>5}  {row['head'] + 1:>4}  {row['delta']:>9.4f}  {row['relative']:>8.3f}")
    print(f"wrote {json_path} and {png_path}")
    return 0
