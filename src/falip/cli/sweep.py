"""``falip sweep``: accuracy against one FALIP or prompt parameter (or a grid of two), on any registered task.

Each value is a resumable run of the harness in ``--out``/<param>=<value>/ (like ``falip rec`` /
``falip classify`` / ``falip pointcloud``); then ``sweep.csv``, ``sweep.json`` and ``sweep.png`` (accuracy with 95%
intervals against the parameter; a heat map for ``--grid``). Parameters and values:
:mod:`falip.analysis.sweeps`.
"""

from __future__ import annotations

import argparse

from falip.defaults import SWEEP_PARAMS

from ._eval import add_model_options, add_run_options, add_task_options

__all__ = ["NEGATIVE_VALUE_OPTIONS", "configure_parser", "run"]

# options whose value may start with a minus sign (main joins "OPTION -1,..." into "OPTION=-1,...")
NEGATIVE_VALUE_OPTIONS: tuple[str, ...] = ("--values",)


_EPILOG = """values:
  alpha, sigma     numbers, e.g. --values 0,0.1,0.2,0.5,1
  blocks           1-based as the paper writes them: 1-4,5-8,9-12,all, lastK (the last K blocks),
                   last* (every lastK), a union 1-2+11-12
  form             cls,all,diag (mask forms a/b/c), feature-mask (Fig. 7a), qk-prompt (Fig. 7b: q, k
                   from the prompted image, v from the original), v-prompt (Fig. 7c: q, k from the
                   original with FALIP's bias, v from the prompted image)
  circle-scale     factors enlarging the `circle` atom's box about its centre (1 = as drawn)
  enlarge          pixels every box grows by on each side, clipped, for every method (FALIP's box
                   too): the paper's Table 14, e.g. --values 0,10,20
grid:
  --grid alpha=0.1,1,10,blocks=last1,last2   (or one --grid per parameter)"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``sweep`` options to ``p``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("param", nargs="?", choices=SWEEP_PARAMS, help="the parameter to sweep (or use --grid)")
    p.add_argument("--values", help="comma-separated values (default: a range for the parameter; see below)")
    p.add_argument(
        "--grid", action="append", metavar="P=V,..,Q=V,..", help="a 2-D grid instead of PARAM/--values (heat map)"
    )
    p.add_argument(
        "--method", help="scoring method (default falip; input-circle when sweeping circle-scale); e.g. falip+redcircle"
    )
    p.add_argument(
        "--prompt", default="input-circle", help="the visual prompt of qk-prompt / v-prompt (default input-circle)"
    )
    add_task_options(p)
    add_run_options(p)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    """Run the sweep and print its table; returns the exit code."""
    from pathlib import Path

    from falip.analysis.sweeps import DEFAULT_VALUES, parse_grid, run_sweep
    from falip.core.errors import FalipError

    from ._common import ensure_writable_dir
    from ._eval import build_task, make_scorer, settings_of

    if args.grid and (args.param or args.values):
        raise FalipError("give either PARAM with --values, or --grid, not both")
    if not args.grid and not args.param:
        raise FalipError(f"name the parameter to sweep ({', '.join(SWEEP_PARAMS)}) or give --grid")
    settings_of(args, args.task)  # every option applies to the task, the required ones given
    axes = parse_grid(args.grid) if args.grid else {args.param: args.values or DEFAULT_VALUES[args.param]}
    out = ensure_writable_dir(args.out, "--out")
    scorer, model_info = make_scorer(args)

    def make_task(point_scorer, point_model_info, method):
        return build_task(args, args.task, point_scorer, point_model_info, method)

    def announce(point, folder: Path) -> None:
        print(f"\n== {point.name} -> {folder}", flush=True)

    table = run_sweep(
        make_task,
        scorer,
        model_info,
        axes,
        out,
        method=args.method,
        prompt=args.prompt,
        resume=args.resume,
        on_point=announce,
        limit=args.limit,
        workers=args.workers,
        batch_units=args.batch,
        require_scored=True,
    )
    from falip.analysis.sweeps import metric_label, plotted
    from falip.tasks.metrics import format_table

    params = table["params"]
    header = [*params, f"{metric_label(table)} %", "95% CI", "n"]
    lines = [header]
    for r in table["rows"]:
        value = plotted(r)
        lines.append(
            [
                *(r[p] for p in params),
                "-" if value is None else f"{value:.1f}",
                "-" if r.get("ci95_low") is None else f"[{r['ci95_low']:.1f}, {r['ci95_high']:.1f}]",
                str(r["n"]),
            ]
        )
    print(f"\n{table['task']} sweep, method {table['method']}, model {args.model}")
    if "blocks" in params:
        print("(blocks numbered from 1, as in the paper)")
    print(format_table(header, lines[1:], left=len(params)))
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.json'} and {out / 'sweep.png'}")
    return 0
