"""``falip views --attention``: Fig. 5 (right), the [CLS] attention of CLIP and FALIP on each depth view."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["run_attention"]


def run_attention(args: argparse.Namespace, points: Any, out: Path) -> int:
    """Load the model, compute the maps of every view, write the picture (and ``--json``); exit code."""
    import json

    import numpy as np

    from falip.analysis.view_attention import cloud_view_attention, plot_view_attention
    from falip.core.errors import FalipError

    from ._eval import model_from_options

    fclip, _, _ = model_from_options(args)
    va = cloud_view_attention(fclip, points, args.projection)
    fig = plot_view_attention(va, title=None)
    try:
        fig.savefig(out)
        if args.json:
            path = Path(args.json)
            if path.suffix.lower() == ".npz":
                np.savez(path, clip=va.clip, falip=va.falip, roa=va.roa, depth=va.depth)
            else:
                path.write_text(json.dumps({"cloud": str(args.cloud), **va.to_json()}) + "\n", encoding="utf-8")
    except OSError as err:
        raise FalipError(f"cannot write {err.filename or out} ({err.strerror or type(err).__name__})") from None
    print(f"[CLS] attention at block {va.layer + 1} (numbered from 1), mean over heads; share on the foreground:")
    print(f"{'view':>10}  {'CLIP':>6}  {'FALIP':>6}")
    for name, a, b in zip(va.views, va.share_clip, va.share_falip):
        print(f"{name:>10}  {100 * a:5.1f}%  {100 * b:5.1f}%")
    print(f"wrote {out}" + (f" and {args.json}" if args.json else ""))
    return 0
