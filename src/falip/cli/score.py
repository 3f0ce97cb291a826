"""``falip score``: score boxes of one of your images against texts, with FALIP or a baseline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def _box(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box must be four comma-separated numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"--box must be four comma-separated numbers, got {text!r}")
    return values


def _layers(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers must be comma-separated block indices, got {text!r}") from None


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file (any format Pillow reads)")
    p.add_argument("--box", type=_box, action="append", required=True, metavar="X0,Y0,X1,Y1",
                   help="a region in original-image pixels (repeat for several)")
    p.add_argument("--text", action="append", required=True, help="a text to score against (repeat for several)")
    p.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy", help="box format (default xyxy)")
    p.add_argument("--model", default="falip-tiny", help="open_clip model name (default: the shipped falip-tiny)")
    p.add_argument("--pretrained", default="auto", help="open_clip tag or checkpoint path ('auto': shipped weights)")
    p.add_argument("--method", default="falip", help="scoring method, e.g. falip, crop, circle, falip+circle (default falip)")
    p.add_argument("--template", default="{}", help="text template, e.g. 'a photo of {}.' (default: verbatim)")
    p.add_argument("--alpha", type=float, help="FALIP alpha (default: the model's preset)")
    p.add_argument("--sigma", type=float, help="FALIP sigma in tokens (default: the model's preset)")
    p.add_argument("--layers", type=_layers, help="comma-separated 0-based blocks to bias (default: preset)")
    p.add_argument("--form", choices=("cls", "all", "diag"), help="mask form (default: preset)")
    p.add_argument("--resize", choices=("squash", "crop"), default="squash", help="preprocessing resize mode")
    p.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def run(args: argparse.Namespace) -> int:
    import falip
    from falip.scoring import RegionScorer

    torch.set_num_threads(max(1, args.threads))
    path = Path(args.image)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        image = Image.open(path).convert("RGB")
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image Pillow can read") from None
    overrides = {k: getattr(args, k) for k in ("alpha", "sigma", "layers", "form") if getattr(args, k) is not None}
    fclip, preprocess, tokenizer = falip.load(args.model, pretrained=args.pretrained, resize_mode=args.resize, **overrides)
    scorer = RegionScorer(fclip, preprocess, tokenizer, template=args.template)
    boxes = np.asarray(args.box, dtype=np.float64)
    scores = scorer.score(image, boxes, args.text, method=args.method, box_format=args.box_format)  # [K, T]
    probs = scores.softmax(dim=0)
    if args.json:
        print(json.dumps({
            "image": str(path), "method": args.method, "boxes": args.box, "texts": args.text,
            "scores": scores.tolist(), "softmax_over_boxes": probs.tolist(),
            "best_box_per_text": scores.argmax(dim=0).tolist(),
        }, indent=2))
        return 0
    width = max(12, *(len(t) for t in args.text))
    print(f"{fclip!r}  method={args.method}")
    print("box".ljust(28) + "".join(t[:width].rjust(width + 2) for t in args.text))
    for k, box in enumerate(args.box):
        cells = "".join(f"{scores[k, t]:8.3f} ({probs[k, t]:4.0%})".rjust(width + 2) for t in range(len(args.text)))
        print(("[" + ", ".join(f"{v:g}" for v in box) + "]").ljust(28) + cells)
    for t, text in enumerate(args.text):
        print(f"best box for {text!r}: #{int(scores[:, t].argmax())} {args.box[int(scores[:, t].argmax())]}")
    return 0
