"""``falip ground``: find what each text names in your image, among proposed regions (no boxes needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import describe_model
from ._eval import add_model_options, add_setting, make_scorer
from ._proposals import add_proposal_options, dropped_text, proposal_filter, source_options

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``ground`` options to ``p``."""
    from falip.tasks import get_task

    rec = {s.name: s for s in get_task("rec").settings}  # REC's settings, declared once (falip.tasks.settings)
    p.add_argument("image", help="image file (any format Pillow reads)")
    p.add_argument("--text", action="append", required=True, help="what to find (repeat for several)")
    p.add_argument("--method", default="falip", help="scoring method: falip (default) or a baseline (crop, blur, ...)")
    add_setting(p, rec["template"], default=rec["template"].default, metavar="TEMPLATE")
    add_setting(p, rec["ties"], default=rec["ties"].default, help="exact ties: the first proposal (default) or a draw")
    add_setting(p, rec["seed"], default=rec["seed"].default, help="seed of --ties random")
    p.add_argument("--json", action="store_true", help="print a JSON list of {text, box, score, margin, ...}")
    p.add_argument("--out", default=None, help="folder for ground.json and overlay.png")
    add_proposal_options(p)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    """Ground each text in the image and print the result (table or JSON). Returns the exit code."""
    from falip.core.errors import FalipError
    from falip.data.images import load_image
    from falip.prompts.registry import parse_method
    from falip.proposals import filter_proposals, open_proposals
    from falip.proposals.base import visible_proposals
    from falip.tasks.ground import check_texts, ground
    from falip.tasks.overlay import draw_regions

    check_texts(args.text)
    parse_method(args.method)
    if args.seed < 0:
        raise FalipError(f"--seed must be >= 0, got {args.seed}")
    image = load_image(args.image)
    source = open_proposals(args.proposals, single=True, **source_options(args))
    proposals = filter_proposals(source.propose(image, Path(args.image)), **proposal_filter(args))
    scorer, _ = make_scorer(args, template=args.template)
    proposals = visible_proposals(proposals, getattr(scorer.preprocess, "geometry", None))
    if len(proposals) == 0:
        raise FalipError(
            f"{args.image}: no proposals from {args.proposals} (dropped: {dropped_text(proposals.dropped)}); "
            "nothing to ground"
        )
    found = ground(scorer, image, args.text, proposals, args.method, args.template, args.ties, args.seed)
    result = [g.to_dict() for g in found]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "image": str(args.image), "method": args.method, "template": args.template, "ties": args.ties,
            "proposals": args.proposals, "proposal_count": len(proposals), "dropped": proposals.dropped,
            "boxes": "xyxy, image pixels", "results": result,
        }  # fmt: skip
        (out / "ground.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        masks = None
        if all(g.mask is not None for g in found):
            import numpy as np

            masks = np.stack([g.mask for g in found])
        overlay = draw_regions(
            image, [g.box for g in found], [f"{k + 1}: {g.text}" for k, g in enumerate(found)], range(len(found)), masks
        )
        overlay.save(out / "overlay.png")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{describe_model(scorer.fclip)}; method {args.method}")
    print(f"{len(proposals)} proposals from {args.proposals} (dropped: {dropped_text(proposals.dropped)})")
    width = max(8, *(len(g.text) for g in found))
    print(f"{'text'.ljust(width)}  proposal  box (x0, y0, x1, y1)             score   margin")
    for g in found:
        box = "(" + ", ".join(f"{v:g}" for v in g.box) + ")"
        margin = "-" if g.margin is None else f"{g.margin:.3f}"
        print(f"{g.text.ljust(width)}  {g.index + 1:>8}  {box:<30} {g.score:7.3f} {margin:>8}")
    if args.out:
        print(f"wrote {Path(args.out) / 'ground.json'} and {Path(args.out) / 'overlay.png'}")
    return 0
