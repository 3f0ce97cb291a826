"""``falip viz``: where CLIP's [CLS] token looks, for vanilla CLIP, FALIP and a visual prompt, side by side.

One PNG: the [CLS] attention of one block (one head, the head mean, or attention rollout) overlaid
on the image for vanilla CLIP, FALIP looking at the region and the prompted image (red circle by
default), the region drawn on each, the share of [CLS]'s attention inside the region in the
titles and, with ``--text``, each panel's score. Definitions: :mod:`falip.analysis.maps`.
"""

from __future__ import annotations

import argparse

from ._common import int_between
from ._eval import add_model_options
from .score import _box

__all__ = ["NEGATIVE_VALUE_OPTIONS", "configure_parser", "run"]

# options whose value may start with "-" (a negative coordinate); see _common.join_negative_values
NEGATIVE_VALUE_OPTIONS: tuple[str, ...] = ("--box",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def _head(text: str) -> int | str:
    """A head numbered from 1 (:mod:`falip.numbering`), 'mean' or 'rollout' -> the 0-based index or the word."""
    from falip.core.errors import FalipError
    from falip.numbering import parse_head

    try:
        return parse_head(text, words=("mean", "rollout"))
    except FalipError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _block(text: str) -> int:
    """A block numbered from 1 (negative counts from the end: -1 is the last) -> the 0-based index."""
    from falip.core.errors import FalipError
    from falip.numbering import parse_block

    try:
        return parse_block(text)
    except FalipError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``viz`` options to ``p``."""
    p.add_argument("image", help="image file (any format Pillow reads)")
    p.add_argument(
        "--box",
        type=_box,
        metavar="X0,Y0,X1,Y1",
        help="the region in original-image pixels (negative values work: --box -5,-5,40,40); "
        "with --mask, the box the prompt is drawn on (default: the mask's bounding box)",
    )
    p.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy", help="box format (default xyxy)")
    p.add_argument("--mask", help="a mask image of the region, the image's size (non-zero pixels are the region)")
    p.add_argument("--text", action="append", help="a text to score each panel against (repeat for several)")
    p.add_argument("--template", default="{}", help="text template, e.g. 'a photo of {}.' (default: verbatim)")
    p.add_argument(
        "--layer",
        type=_block,
        default=-1,
        help="block, numbered from 1 as in the paper; negative counts from the end (default -1: the last)",
    )
    p.add_argument(
        "--head",
        type=_head,
        default="mean",
        help="a head, numbered from 1 (head 1 is the first), 'mean' (default) or 'rollout'",
    )
    p.add_argument(
        "--prompt",
        help="the visual prompt's edits, e.g. input-circle, redcircle, blur&input-circle (default: input-circle "
        "for attention maps, "
        "none for --text-map)",
    )
    p.add_argument("--no-prompt", action="store_true", help="vanilla and FALIP panels only")
    p.add_argument(
        "--text-map",
        action="store_true",
        help="instead of attention: the text-conditioned head map of Fig. 6 (which patches make --head of "
        "--layer vote for the one --text; Gandelsman et al. 2024), CLIP and, with a region, FALIP; with "
        "--prompt also the prompted image (Fig. 6, middle: --prompt circle)",
    )
    p.add_argument(
        "--unleash",
        action="store_true",
        help="with --text-map --prompt: also the unleashed prompt's maps (Eq. 6, the last 4 blocks; Fig. 6, middle)",
    )
    p.add_argument("--upsample", choices=("nearest", "bilinear"), default=None, help="map to image (default nearest)")
    p.add_argument("--title", help="the figure's title (default: what is shown and FALIP's settings)")
    p.add_argument("--dpi", type=int_between(30, 600), default=120, help="resolution of the PNG, 30..600 (default 120)")
    p.add_argument("--json", help="also write the maps' numbers (rows, in-region shares, scores) to this JSON file")
    p.add_argument(
        "--out",
        required=True,
        help=f"the picture to write ({', '.join(IMAGE_SUFFIXES)}); drawn at most "
        "a few thousand pixels wide whatever the image's size",
    )
    add_model_options(p)


def _read_mask(path: str, size: tuple[int, int]):

    from falip.core.errors import FalipError
    from falip.data.classification import load_mask

    mask = load_mask(path)  # the readers' rule: any nonzero colour channel
    if (mask.shape[1], mask.shape[0]) != size:
        raise FalipError(
            f"--mask {path} is {mask.shape[1]}x{mask.shape[0]} but the image is {size[0]}x{size[1]}; "
            "a mask has the image's size"
        )
    return mask[None]


def run(args: argparse.Namespace) -> int:
    """Write the side-by-side PNG; returns the exit code."""
    import json
    from pathlib import Path

    from falip.core.errors import FalipError
    from falip.core.regions import Regions
    from falip.data.images import load_image

    from ._common import ensure_writable_dir, need_file
    from ._eval import apply_image_limit, make_scorer

    if args.box is None and args.mask is None and not args.text_map:
        raise FalipError("give the region: --box X0,Y0,X1,Y1 and/or --mask FILE")
    # never ignore a flag: one that does not apply to the chosen mode is an error naming it
    if args.prompt is not None and args.no_prompt:
        raise FalipError(f"--prompt {args.prompt} and --no-prompt contradict each other; give one")
    if args.unleash and not args.text_map:
        raise FalipError("--unleash applies to --text-map (with --prompt), not to attention maps")
    if args.unleash and args.prompt is None:
        raise FalipError("--unleash needs the prompt to unleash: add --prompt circle (or another edit)")
    if args.text_map and args.prompt is not None and args.box is None and args.mask is None:
        raise FalipError(f"--prompt {args.prompt} is drawn on a region: give --box X0,Y0,X1,Y1 and/or --mask FILE")
    if getattr(args, "enlarge", 0.0):
        raise FalipError(f"--enlarge {args.enlarge:g} applies to scoring commands; viz draws the region as given")
    if args.text_map and getattr(args, "logits", "fp32") != "fp32":
        raise FalipError(f"--logits {args.logits} applies to scores; --text-map draws votes (features . text)")
    if not args.text_map and getattr(args, "logits", "fp32") != "fp32" and not args.text:
        raise FalipError(f"--logits {args.logits} applies to the panels' scores: add --text")
    args.upsample = args.upsample or "nearest"
    out = Path(args.out)
    if out.is_dir():
        raise FalipError(f"--out {out} is a folder; give the picture's file name, e.g. {out / 'viz.png'}")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise FalipError(f"--out {out}: the file name must end in one of {', '.join(IMAGE_SUFFIXES)}")
    if args.json:
        if Path(args.json).is_dir():
            raise FalipError(f"--json {args.json} is a folder; give a file name, e.g. {Path(args.json) / 'viz.json'}")
        ensure_writable_dir(Path(args.json).parent if str(Path(args.json).parent) else ".", "--json")
    need_file(args.image, "image")
    need_file(args.mask, "--mask")
    ensure_writable_dir(out.parent if str(out.parent) else ".", "--out")
    apply_image_limit(args)
    image = load_image(args.image)
    masks = _read_mask(args.mask, image.size) if args.mask else None
    boxes = None if args.box is None else [args.box]
    if args.text_map:
        from ._text_map import run_text_map

        given = boxes is not None or masks is not None
        region = Regions(boxes, masks, image_size=image.size, box_format=args.box_format) if given else None
        return run_text_map(args, image, region, out)
    region = Regions(boxes, masks, image_size=image.size, box_format=args.box_format)

    from falip.analysis.maps import attention_maps, plot_attention_maps
    from falip.numbering import NUMBERING_NOTE, head_number
    from falip.prompts.registry import parse_method

    prompt = None if args.no_prompt else args.prompt or "input-circle"
    if prompt is not None:
        parse_method(prompt)
    scorer, _ = make_scorer(args, template=args.template)
    if isinstance(args.head, int):  # the person's head number, checked against the model's (from 1)
        tower = scorer.fclip.tower
        heads = (
            tower.pool_parts().heads
            if tower.pooling == "map"
            else tower.parts(tower.resolve_layers([args.layer])[0]).heads
        )
        if args.head >= heads:
            raise FalipError(f"--head {args.head + 1}: the model has heads 1..{heads} (numbered from 1)")
    maps = attention_maps(
        scorer.fclip,
        scorer.preprocess,
        image,
        region,
        layer=args.layer,
        head=args.head,
        prompt=prompt,
        texts=args.text,
        tokenizer=scorer.tokenizer,
        template=args.template,
        upsample=args.upsample,
        logits=getattr(args, "logits", "fp32"),
    )
    plot_attention_maps(maps, out, title=args.title, dpi=args.dpi)
    for m in maps.maps.values():
        scores = "  ".join(f"{t!r}: {s:.3f}" for t, s in m.scores.items())
        print(
            f"{m.title:>14}: {100 * m.in_region:5.1f}% of {maps.query} attention in the region"
            + (f"  {scores}" if scores else "")
        )
    if args.json:
        data = {
            "image": str(args.image),
            "box": [float(v) for v in region.boxes[0]],
            "numbering": NUMBERING_NOTE,
            "block": maps.layer + 1,
            "head": head_number(maps.head),
            "settings": maps.settings,
            "grid": list(maps.roa.shape),
            "roa": maps.roa.astype(int).tolist(),
            "maps": {
                name: {"cls_row": m.row.tolist(), "in_region": m.in_region, "scores": m.scores}
                for name, m in maps.maps.items()
            },
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0
