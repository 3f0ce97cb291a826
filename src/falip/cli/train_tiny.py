"""``falip train-tiny``: reproducible, resumable training of the shipped falip-tiny model.

The options map one to one onto :class:`falip.train.tiny.TrainConfig` (``--no-resume`` and
``--no-progress`` set ``resume`` and ``progress`` to False); the training itself is
:func:`falip.train.tiny.train`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import ensure_writable_dir, int_at_least

__all__ = ["configure_parser", "config_from_args", "run"]

# dests of the options below that are not TrainConfig fields as such
if TYPE_CHECKING:
    from falip.train.tiny import TrainConfig

_NEGATED = {"no_resume": "resume", "no_progress": "progress"}
_SUMMARY_KEYS = ("final_step", "zero_shot_top1_heldout", "train_seconds", "weights", "weights_bytes")


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``train-tiny`` options to ``p``."""
    p.add_argument("--out-dir", default="falip-tiny-run", help="checkpoints, logs and cache go here")
    p.add_argument(
        "--output", default=None, help="final fp16 safetensors path (default: <out-dir>/<model>.safetensors)"
    )
    p.add_argument("--model", default="falip-tiny", help="open_clip model config name")
    p.add_argument(
        "--pool",
        choices=("cls", "map"),
        default="cls",
        help="image-tower pooling: 'cls' ([CLS] token) or 'map' (SigLIP-style attention pool, no [CLS]; "
        "with --model falip-tiny it trains falip-tiny-map)",
    )
    p.add_argument("--steps", type=int, default=1800, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--min-lr", type=float, default=1e-5, help="cosine floor")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--n-scenes", type=int, default=150_000, help="distinct cached training scenes")
    p.add_argument("--p-single", type=float, default=0.6, help="fraction of single-object scenes")
    p.add_argument(
        "--hard-colours",
        type=int,
        default=3,
        help="if > 0, each batch's single-object scenes share this many random colours, so "
        "in-batch negatives differ by shape (sampling with replacement, seeded per step)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch CPU threads (>= 1)")
    p.add_argument("--eval-every", type=int, default=300, help="zero-shot eval period in steps (0: only at the end)")
    p.add_argument("--eval-scenes", type=int, default=720, help="held-out single-object scenes for zero-shot eval")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in out-dir")
    p.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="checkpoint and exit after this many steps of this invocation (0: run to --steps); "
        "rerun the same command to continue",
    )
    p.add_argument("--no-progress", action="store_true", help="disable the tqdm bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`~falip.train.tiny.TrainConfig` for parsed ``args`` (every option, nothing else)."""
    from dataclasses import fields

    from falip.train.tiny import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    parser = argparse.ArgumentParser(add_help=False)
    configure_parser(parser)
    kwargs = {}
    for dest in vars(parser.parse_args([])):  # every option's dest
        if dest in _NEGATED:
            kwargs[_NEGATED[dest]] = not getattr(args, dest)
        else:
            kwargs[dest] = getattr(args, dest)
    missing = sorted(set(kwargs) - names)
    if missing:  # the options and TrainConfig have drifted apart: a bug, not a user error
        raise TypeError(f"TrainConfig has no field(s) {', '.join(missing)} for train-tiny's options")
    return TrainConfig(**kwargs)


def run(args: argparse.Namespace) -> int:
    """Check the settings and output locations, then train (or resume); prints the outcome."""
    config = config_from_args(args)  # FalipError for out-of-range settings, before any work
    ensure_writable_dir(config.out_dir, "--out-dir")
    if config.output:
        ensure_writable_dir(Path(config.output).parent, "--output's folder")
    from falip.train.tiny import train

    summary = train(config)
    resumed = summary.get("resumed_from_step")
    if resumed:
        print(f"resumed from step {resumed}")
    if not summary.get("complete", True):
        print(
            f"stopped at step {summary['final_step']} of {summary['steps']}; checkpoint {summary['checkpoint']} "
            "(rerun the same command to continue)"
        )
        return 0
    print(json.dumps({k: summary[k] for k in _SUMMARY_KEYS if k in summary}, default=str))
    return 0
