"""``falip demo``: FALIP against image-editing prompts on synthetic scenes, offline, in seconds.

Generates seeded synthetic scenes (:mod:`falip.synthetic`), runs referring-expression
comprehension (pick the box an expression refers to) and region classification (name the
object in a box, among all colour-shape classes) with FALIP and the baselines, prints a table
and writes a PNG of the first scenes with the box each method chose.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..data import synthetic
from ..tasks.metrics import wilson_interval
from ..tasks.rec import RecItem, rec_correct, rec_predict
from ..tasks.region_cls import classify_regions
from ..prompts.registry import parse_method
from ..scoring import RegionScorer

__all__ = ["DEMO_METHODS", "configure_parser", "run", "main"]

DEMO_METHODS: tuple[str, ...] = ("falip", "none", "crop", "blur", "circle")
_LABELS = {"falip": "FALIP", "none": "whole image", "crop": "crop", "blur": "reverse blur", "circle": "red circle"}
# box colours chosen to stand apart from the scenes' object colours
_COLORS = {"falip": "#000000", "none": "#8c8c8c", "crop": "#ff69b4", "blur": "#8b4513", "circle": "#ff8c00"}


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``p``."""
    p.add_argument("--out", default="falip-demo", help="output folder for the PNG (default: ./falip-demo)")
    p.add_argument("--scenes", type=int, default=60, help="REC scenes and classification scenes to evaluate (default 60)")
    p.add_argument("--show", type=int, default=6, help="scenes drawn in the PNG (default 6)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes (default 0)")
    p.add_argument("--model", default="falip-tiny", help="model name (default: the shipped falip-tiny)")
    p.add_argument("--pretrained", default="auto",
                   help="open_clip tag or checkpoint path; 'auto' = the shipped weights (default)")
    p.add_argument("--methods", default=",".join(DEMO_METHODS),
                   help=f"comma-separated scoring methods (default {','.join(DEMO_METHODS)})")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def _load(model: str, pretrained: str) -> tuple[object, object, object, str]:
    """``(fclip, preprocess, tokenizer, note)``; falls back to random weights when none are shipped."""
    import falip

    try:
        fclip, pre, tok = falip.load(model, pretrained=pretrained)
        return fclip, pre, tok, ""
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if pretrained != "auto":
            raise
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # open_clip logs "initialized randomly"; the note below says it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(0)  # the same random model every run
                fclip, pre, tok = falip.load(model, pretrained=None)
        finally:
            root.setLevel(level)
        return fclip, pre, tok, (
            f"NOTE: no shipped weights for {model!r} ({err}); using a RANDOM-weight model, "
            "so the numbers below are meaningless (about chance)."
        )


def _rec_items(seed: int, n: int, image_size: int) -> list[RecItem]:
    items = []
    for i, ex in enumerate(synthetic.rec_examples(seed, n, image_size=image_size)):
        img = Image.fromarray(ex.scene.image)
        boxes = np.array([o.box for o in ex.scene.objects], dtype=np.float64)
        for q in ex.queries:
            items.append(RecItem(img, boxes, q.expression, boxes[q.target : q.target + 1], key=i,
                                 info={"relational": q.relational, "kind": q.kind, "target": q.target}))
    return items


def _fmt(k: int, n: int) -> str:
    if n == 0:
        return "-"
    lo, hi = wilson_interval(k, n)
    return f"{100 * k / n:5.1f} [{100 * lo:4.1f}-{100 * hi:4.1f}]"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _draw(items: list[RecItem], preds: dict[str, np.ndarray], ok: dict[str, np.ndarray], methods: Sequence[str],
          path: Path, title: str) -> None:
    """One panel per query: candidate boxes (dotted), gold (white), each method's choice (coloured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    n = len(items)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 4.1 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for q, (ax, it) in enumerate(zip(axes.flat, items)):
        ax.imshow(np.asarray(it.image), interpolation="nearest")
        for b in it.boxes:
            ax.add_patch(mpatches.Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False,
                                            ec="white", lw=0.8, ls=":"))
        g = it.gold[0]
        ax.add_patch(mpatches.Rectangle((g[0] - 0.5, g[1] - 0.5), g[2] - g[0], g[3] - g[1], fill=False, ec="white", lw=2.2))
        # each method's choice, inset a little per method so coinciding choices stay visible
        for m_i, m in enumerate(methods):
            b = it.boxes[preds[m][q]]
            d = 0.9 * (m_i + 1)
            ax.add_patch(mpatches.Rectangle((b[0] - 0.5 + d, b[1] - 0.5 + d), max(b[2] - b[0] - 2 * d, 1),
                                            max(b[3] - b[1] - 2 * d, 1), fill=False, ec=_COLORS.get(m, "black"), lw=1.4))
        right = [_LABELS.get(m, m) for m in methods if ok[m][q]]
        ax.set_title(f'"{it.expression}"\nright: {", ".join(right) if right else "none"}', fontsize=8)
    handles = [mpatches.Patch(fc="white", ec="#555555", label="gold box (white)")]
    handles += [mpatches.Patch(color=_COLORS.get(m, "black"), label=_LABELS.get(m, m)) for m in methods]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints the table and the PNG path. Returns the exit code."""
    t0 = time.time()
    torch.set_num_threads(max(1, int(args.threads)))
    methods = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    if args.scenes < 1:
        print("falip demo: --scenes must be >= 1", file=sys.stderr)
        return 2
    try:
        for m in methods:
            parse_method(m)
    except ValueError as err:
        print(f"falip demo: {err}", file=sys.stderr)
        return 2
    fclip, pre, tok, note = _load(args.model, args.pretrained)
    scorer = RegionScorer(fclip, pre, tok)
    size = int(pre.input_size[0])
    print(f"falip demo: model {args.model} ({fclip!r}), {args.scenes} REC + {args.scenes} classification scenes, seed {args.seed}")
    if note:
        print(note)

    # REC: 2-4 objects, half of the scenes with a relational expression
    items = _rec_items(args.seed, args.scenes, size)
    rel = np.array([it.info["relational"] for it in items])
    n_boxes = np.array([len(it.boxes) for it in items])
    rec_preds, rec_ok = {}, {}
    for m in methods:
        rec_preds[m], _ = rec_predict(scorer, items, m, rng=np.random.default_rng(args.seed))
        rec_ok[m] = rec_correct(items, rec_preds[m])

    # region classification: every object of 2-4 object scenes, among all colour-shape classes
    scenes = synthetic.classification_scenes(args.seed + 1, args.scenes, image_size=size, min_objects=2, max_objects=4)
    images = [Image.fromarray(s.image) for s in scenes]
    boxes = [np.array([o.box for o in s.objects], dtype=np.float64) for s in scenes]
    labels = np.concatenate([[synthetic.CLASSES.index(o.label) for o in s.objects] for s in scenes])
    cls_ok = {}
    for m in methods:
        preds = classify_regions(scorer, images, boxes, synthetic.CLASSES, m)
        cls_ok[m] = np.concatenate(preds) == labels

    header = ["method", f"REC all (n={len(items)})", f"REC relational (n={int(rel.sum())})",
              f"region cls (n={len(labels)})"]
    rows = []
    for m in methods:
        rows.append([_LABELS.get(m, m), _fmt(int(rec_ok[m].sum()), len(items)),
                     _fmt(int(rec_ok[m][rel].sum()), int(rel.sum())), _fmt(int(cls_ok[m].sum()), len(labels))])
    rows.append(["chance", f"{100 * np.mean(1 / n_boxes):5.1f}", f"{100 * np.mean(1 / n_boxes[rel]):5.1f}" if rel.any() else "-",
                 f"{100 / len(synthetic.CLASSES):5.1f}"])
    print()
    print("accuracy % [95% Wilson interval]")
    print(_table(rows, header))

    out = Path(args.out)
    png = out / f"falip_demo_seed{args.seed}.png"
    # one query per scene, so the panels show different images
    first = list({it.key: i for i, it in reversed(list(enumerate(items)))}.values())[::-1]
    shown = first[: max(1, min(args.show, len(first)))]
    if note:
        weights = "random weights"
    elif args.pretrained == "auto":
        weights = "shipped weights"
    else:
        weights = f"weights {Path(str(args.pretrained)).name}"
    _draw([items[i] for i in shown], {m: rec_preds[m][shown] for m in methods}, {m: rec_ok[m][shown] for m in methods},
          methods, png, f"{args.model} ({weights}): the box each method picks")
    print()
    print(f"wrote {png.resolve()}")
    print(f"done in {time.time() - t0:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m falip.demo [options]``."""
    p = argparse.ArgumentParser(prog="falip demo", description=__doc__.splitlines()[0])
    configure_parser(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
