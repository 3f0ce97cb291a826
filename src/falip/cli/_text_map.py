"""``falip viz --text-map``: the text-conditioned head map of Fig. 6 (Gandelsman et al., 2024).

For one image and one ``--text``: each head of ``--layer``'s per-patch vote for the text (its
per-token [CLS] terms through ln_post and the projection, dotted with the text's normalised
embedding; :mod:`falip.analysis.text_maps`), for CLIP and, with a region, FALIP. Writes the
picture (``--out``) and, with ``--json``, every head's map (``.json``, or arrays in ``.npz``).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["run_text_map"]


def run_text_map(args: argparse.Namespace, image: Any, region: Any, out: Any) -> int:
    """Compute, draw and write; returns the exit code. ``region``: one Regions or None."""
    from pathlib import Path

    import numpy as np

    from falip.analysis.text_maps import plot_text_head_maps, text_head_maps
    from falip.core.errors import FalipError
    from falip.numbering import format_blocks, head_number

    from ._eval import make_scorer

    if not args.text or len(args.text) != 1:
        raise FalipError("--text-map needs exactly one --text (the text whose votes are drawn)")
    if args.head == "rollout":
        raise FalipError("--text-map draws one head (numbered from 1) or 'mean' over the heads, not 'rollout'")
    if args.prompt is not None:
        from falip.prompts.registry import parse_method

        parse_method(args.prompt)
    scorer, _ = make_scorer(args, template=args.template)
    fclip = scorer.fclip
    if isinstance(args.head, int) and args.head >= fclip.tower.parts(0).heads:
        raise FalipError(
            f"--head {args.head + 1}: the model has heads 1..{fclip.tower.parts(0).heads} (numbered from 1)"
        )
    maps = text_head_maps(
        fclip,
        scorer.preprocess,
        image,
        args.text[0],
        scorer.tokenizer,
        region,
        layer=args.layer,
        template=args.template,
        prompt=None if args.no_prompt else args.prompt,
        unleash=args.unleash,
    )
    fig = plot_text_head_maps(maps, head=args.head, title=args.title, dpi=args.dpi, upsample=args.upsample)
    try:
        fig.savefig(out, dpi=args.dpi)
    except OSError as err:
        raise FalipError(f"--out {out}: cannot write it ({err.strerror or type(err).__name__})") from None
    pick = (lambda m: m.mean(0)) if args.head == "mean" else (lambda m: m[args.head])
    print(f"block {maps.layer + 1}, head {head_number(args.head)} (numbered from 1): votes for {args.text[0]!r}")
    width = max(len(name) for _, name, _, _ in maps.panels())
    for _, name, stack, score in maps.panels():
        grid = pick(stack)
        inside = f", {grid[maps.roa].sum():+.4f} in the region" if maps.roa is not None else ""
        print(f"{name:>{width}}: patches sum {grid.sum():+.4f}{inside}; features . text {score:+.4f}")
    if maps.unleashed_blocks:
        print(f"unleashed over blocks {format_blocks(maps.unleashed_blocks)} (numbered from 1)")
    if args.json:
        path = Path(args.json)
        if path.suffix.lower() == ".npz":
            arrays = {"clip": maps.clip, "cls_clip": maps.cls_clip, "block": np.array(maps.layer + 1)}
            if maps.falip is not None:
                arrays.update(falip=maps.falip, cls_falip=maps.cls_falip, roa=maps.roa)
            if maps.prompted is not None:
                arrays.update(prompted=maps.prompted, cls_prompted=maps.cls_prompted)
            if maps.unleashed is not None:
                arrays.update(unleashed=maps.unleashed, cls_unleashed=maps.cls_unleashed)
            np.savez(path, **arrays)
        else:
            import json

            data = {"image": str(args.image), "head_shown": head_number(args.head), **maps.to_json()}
            path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}" + (f" and {args.json}" if args.json else ""))
    return 0
