"""``falip score``: score boxes of one of your images against texts, with FALIP or a baseline."""

from __future__ import annotations

import argparse
import json

from ._common import describe_model
from ._eval import add_model_options, apply_image_limit, make_scorer

__all__ = ["NEGATIVE_VALUE_OPTIONS", "SCORE_LEGEND", "configure_parser", "run"]

# options whose value may start with "-" (a negative coordinate); see _common.join_negative_values
NEGATIVE_VALUE_OPTIONS: tuple[str, ...] = ("--box",)

SCORE_LEGEND = (
    "score = logit_scale * cosine(box's image feature, text feature); "
    "% = softmax over the boxes, per text (each text's column sums to 100%)"
)


def _box(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box must be four comma-separated numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"--box must be four comma-separated numbers, got {text!r}")
    return values


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``score`` options to ``p``."""
    p.add_argument("image", help="image file (any format Pillow reads)")
    p.add_argument(
        "--box",
        type=_box,
        action="append",
        required=True,
        metavar="X0,Y0,X1,Y1",
        help="a region in original-image pixels (repeat for several); negative values work: --box -5,-5,40,40",
    )
    p.add_argument("--text", action="append", required=True, help="a text to score against (repeat for several)")
    p.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy", help="box format (default xyxy)")
    p.add_argument(
        "--method", default="falip", help="scoring method, e.g. falip, crop, redcircle, falip+redcircle (default falip)"
    )
    p.add_argument("--template", default="{}", help="text template, e.g. 'a photo of {}.' (default: verbatim)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    """Score the boxes against the texts and print a table (or JSON). Returns the exit code."""
    import numpy as np

    from falip.data.images import load_image
    from falip.prompts.registry import parse_method

    parse_method(args.method)
    apply_image_limit(args)  # --max-image-pixels, --exif-transpose: before the image is read
    image = load_image(args.image)  # FalipError naming the file if missing or unreadable
    scorer, _ = make_scorer(args, template=args.template)
    fclip = scorer.fclip
    boxes = np.asarray(args.box, dtype=np.float64)
    scores = scorer.score(image, boxes, args.text, method=args.method, box_format=args.box_format)  # [K, T]
    probs = scores.softmax(dim=0)
    best = scores.argmax(dim=0).tolist()
    if args.json:
        result = {
            "image": str(args.image),
            "method": args.method,
            "boxes": args.box,
            "box_format": args.box_format,
            "texts": args.text,
            "scores": scores.tolist(),
            "softmax_over_boxes": probs.tolist(),
            "best_box_per_text": best,
            "legend": SCORE_LEGEND,
        }
        print(json.dumps(result, indent=2))
        return 0
    width = max(16, *(len(t) for t in args.text))
    print(f"{describe_model(fclip)}; method {args.method}")
    print(SCORE_LEGEND)
    print(f"box ({args.box_format})".ljust(28) + "".join(t[:width].rjust(width + 2) for t in args.text))
    for k, box in enumerate(args.box):
        cells = "".join(f"{scores[k, t]:8.3f} ({probs[k, t]:4.0%})".rjust(width + 2) for t in range(len(args.text)))
        print(("[" + ", ".join(f"{v:g}" for v in box) + "]").ljust(28) + cells)
    for t, text in enumerate(args.text):
        print(f"best box for {text!r}: #{best[t]} {args.box[best[t]]}")
    return 0
