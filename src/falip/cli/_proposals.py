"""The proposal options every command that starts from the image shares (``ground``, ``label``)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_proposal_options", "dropped_text", "proposal_filter", "source_options"]


def _number(kind: type, low: float, high: float | None, what: str) -> Any:
    """An argparse type: ``kind`` (int or float) in ``[low, high]`` (``low`` exclusive for floats), said as ``what``."""

    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        bad = v < low or (kind is float and v == low and high is not None) or (high is not None and v > high)
        if bad:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    return parse


_fraction = _number(float, 0.0, 1.0, "a number in (0, 1]")
_non_negative = _number(float, 0.0, None, "a number of pixels >= 0")
_positive_int = _number(int, 1, None, "a whole number >= 1")


def add_proposal_options(p: argparse.ArgumentParser) -> None:
    """``--proposals``, ``--min-area``, ``--nms``, ``--top``."""
    from falip.proposals import SOURCES  # torch-free

    g = p.add_argument_group("proposals (where the regions come from)")
    names = ", ".join(("auto" if n == "auto" else f"{n}:...") for n in SOURCES)
    g.add_argument(
        "--proposals",
        default="auto",
        metavar="SRC",
        help="auto (weight-free, default), hf:<model>, a COCO results / detector JSON (matched by the image id "
        "in each file name, or taken whole for one image), a segment-anything amg.py folder or JSON, or "
        f"NAME:ARG of a registered source ({names})",
    )
    g.add_argument("--min-area", type=_non_negative, default=0.0, help="drop proposals under this many pixels")
    g.add_argument(
        "--nms", type=_fraction, default=None, metavar="IOU", help="drop a proposal overlapping a better one above IOU"
    )
    g.add_argument("--top", type=_positive_int, default=None, metavar="N", help="keep the N best by the source's score")
    g.add_argument(
        "--proposal-option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the source (repeat): auto: min_fraction, max_fraction, max_side, sigma, min_size, masks; "
        "hf: the pipeline's keywords (points_per_batch, pred_iou_thresh, threshold, ...)",
    )


def _option(text: str) -> tuple[str, Any]:
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), parsed


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--proposal-option`` pairs as keywords of the source's opener."""
    return dict(args.proposal_option or [])


def proposal_filter(args: argparse.Namespace) -> dict[str, Any]:
    """The filter keywords of :func:`falip.proposals.filter_proposals` from the options."""
    return {"min_area": args.min_area, "nms": args.nms, "top": args.top}


def dropped_text(dropped: dict[str, int]) -> str:
    """``"12 under min area, 3 duplicate"`` (or ``"none"``)."""
    return ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items())) or "none"
