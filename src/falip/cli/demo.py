"""``falip demo``: FALIP against image-editing prompts on synthetic scenes, offline, in seconds.

Generates seeded synthetic scenes (:mod:`falip.data.synthetic`), runs referring-expression
comprehension (pick the box an expression refers to) and region classification (name the
object in a box, among all colour-shape classes) with FALIP and the baselines, prints a table
and writes a PNG of one query per scene with the box each method chose.

The demo uses the model's shipped weights (or the ``--pretrained`` given); it never falls back
to a random-weight model, whose numbers would be meaningless.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import add_activation_option, describe_model, ensure_writable_dir, int_at_least, load_model, set_threads

__all__ = ["DEMO_METHODS", "Panel", "configure_parser", "run", "draw_panels", "box_edges", "method_outlines"]

DEMO_METHODS: tuple[str, ...] = ("falip", "none", "crop", "blur", "input-circle")
_LABELS = {
    "falip": "FALIP",
    "none": "whole image",
    "crop": "crop",
    "blur": "reverse blur",
    "input-circle": "red circle",
}
# Okabe-Ito (colour-blind safe) colours, picked away from the scenes' object hues (red, yellow,
# green, cyan, blue, purple) and from the white gold box; each method also has its own dash
# pattern, so a method stays identifiable where colours are hard to tell apart.
_STYLES: dict[str, tuple[str, Any]] = {
    "falip": ("#E69F00", "solid"),  # orange
    "none": ("#000000", (0, (1, 1))),  # black, dotted
    "crop": ("#CC79A7", (0, (4, 1.5))),  # reddish purple, dashed
    "blur": ("#8C510A", (0, (4, 1.5, 1, 1.5))),  # brown, dash-dot
    "input-circle": ("#56B4E9", (0, (7, 2))),  # sky blue, long dashes
}
_EXTRA_STYLES: tuple[tuple[str, Any], ...] = (
    ("#D55E00", (0, (2, 2))),
    ("#009E73", (0, (6, 1.5, 1, 1.5, 1, 1.5))),
    ("#0072B2", (0, (3, 1))),
    ("#999999", "solid"),
)
_METHOD_LW = 2.0  # points
_GOLD_LW = 2.0
_RING_STEP = 1.5  # distance between the methods' outlines, in line widths


def _style(methods: Sequence[str], m: str) -> tuple[str, Any]:
    if m in _STYLES:
        return _STYLES[m]
    extra = [x for x in methods if x not in _STYLES]
    return _EXTRA_STYLES[extra.index(m) % len(_EXTRA_STYLES)]


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``p``."""
    p.add_argument("--out", default="falip-demo", help="output folder for the PNG (default: ./falip-demo)")
    p.add_argument(
        "--scenes",
        type=int_at_least(1),
        default=60,
        help="REC scenes and classification scenes to evaluate, >= 1 (default 60)",
    )
    p.add_argument(
        "--show", type=int_at_least(0), default=6, help="scenes drawn in the PNG, >= 0; 0: no PNG (default 6)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes (default 0)")
    p.add_argument("--model", default="falip-tiny", help="model name (default: the shipped falip-tiny)")
    p.add_argument(
        "--pretrained", default="auto", help="open_clip tag or checkpoint path; 'auto' = the shipped weights (default)"
    )
    add_activation_option(p)
    p.add_argument(
        "--methods",
        default=",".join(DEMO_METHODS),
        help=f"comma-separated scoring methods (default {','.join(DEMO_METHODS)})",
    )
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch CPU threads, >= 1 (default 1)")


def _rec_items(seed: int, n: int, image_size: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    from falip.data import synthetic
    from falip.tasks.rec import RecItem

    items = []
    for i, ex in enumerate(synthetic.rec_examples(seed, n, image_size=image_size)):
        img = Image.fromarray(ex.scene.image)
        boxes = np.array([o.box for o in ex.scene.objects], dtype=np.float64)
        for q in ex.queries:
            info = {"relational": q.relational, "kind": q.kind, "target": q.target}
            items.append(RecItem(img, boxes, q.expression, boxes[q.target : q.target + 1], key=i, info=info))
    return items


def _fmt(k: int, n: int) -> str:
    from falip.tasks.metrics import wilson_interval

    if n == 0:
        return "-"
    lo, hi = wilson_interval(k, n)
    return f"{100 * k / n:5.1f} [{100 * lo:4.1f}-{100 * hi:4.1f}]"


@dataclass
class Panel:
    """One query to draw: the image, candidate boxes ``[K, 4]`` (xyxy px, exclusive x1/y1), the
    gold box, the expression, and per method the chosen box index and whether it was right."""

    image: Any
    boxes: Any
    gold: Any
    expression: str
    chosen: dict[str, int]
    right: dict[str, bool]


def _set_limits(ax: Any, w: int, h: int, margin: float) -> None:
    ax.set_xlim(-0.5 - margin, w - 0.5 + margin)
    ax.set_ylim(h - 0.5 + margin, -0.5 - margin)


def draw_panels(panels: Sequence[Panel], methods: Sequence[str], path: Path, title: str, caption: str) -> None:
    """Write a PNG with one panel per query (three per row), a title, a caption and a legend.

    Candidate boxes are dotted white, the gold box solid white just inside its edge; each method's
    choice is an outline on the chosen object's box, one line width further out per method (in
    the order of ``methods``), so that choices of several methods on one box stay visible.
    """
    import matplotlib.patches as mpatches
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    n = len(panels)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    dpi = 150
    # layout in inches: header, then rows of (panel title, square image), then the legend
    cell_w, side, title_h, gap, header_h, footer_h = 3.6, 3.2, 0.45, 0.2, 0.75, 0.55
    row_h = title_h + side + gap
    fig_w, fig_h = cell_w * cols, header_h + rows * row_h + footer_h
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    data_per_pt = []
    for k, pan in enumerate(panels):
        r, c = divmod(k, cols)
        left = c * cell_w + (cell_w - side) / 2
        bottom = fig_h - header_h - r * row_h - title_h - side
        ax = fig.add_axes((left / fig_w, bottom / fig_h, side / fig_w, side / fig_h))
        ax.axis("off")
        image = np.asarray(pan.image)
        h, w = image.shape[:2]
        ax.imshow(image, interpolation="nearest")
        right = [_LABELS.get(m, m) for m in methods if pan.right[m]]
        ax.set_title(f'"{pan.expression}"\nright: {", ".join(right) if right else "none"}', fontsize=8)
        # data pixels per point: the image (plus the outlines' margin) fills the square axes
        per_pt = max(w, h) / (side * 72.0)
        margin = (len(methods) + 0.5) * _RING_STEP * _METHOD_LW * per_pt
        per_pt = (max(w, h) + 2 * margin) / (side * 72.0)
        data_per_pt.append(per_pt)
        _draw_boxes(ax, pan, methods, per_pt, mpatches)
        _set_limits(ax, w, h, (len(methods) + 0.5) * _RING_STEP * _METHOD_LW * per_pt)
    fig.suptitle(f"{title}\n{caption}", fontsize=10, y=1 - 0.12 / fig_h, va="top")
    handles = [Line2D([], [], color="white", lw=_GOLD_LW, label="gold box (white)")]
    handles += [
        Line2D([], [], color=_style(methods, m)[0], ls=_style(methods, m)[1], lw=_METHOD_LW, label=_LABELS.get(m, m))
        for m in methods
    ]
    legend = fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.1 / fig_h),
        ncol=min(6, len(handles)),
        fontsize=8,
        handlelength=4,
    )
    legend.get_frame().set_facecolor("#9a9a9a")  # grey, so the white gold entry shows
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)


def box_edges(box: Any, grow: float = 0.0) -> tuple[float, float, float, float]:
    """The outer pixel edges ``(x0, y0, x1, y1)`` of ``box`` in imshow coordinates, grown by ``grow``.

    Pixel ``x`` covers ``[x - 0.5, x + 0.5]`` and boxes are exclusive at ``x1``/``y1``.
    """
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    return x0 - 0.5 - grow, y0 - 0.5 - grow, x1 - 0.5 + grow, y1 - 0.5 + grow


def method_outlines(box: Any, n_methods: int, line_width: float) -> list[tuple[float, float, float, float]]:
    """Centre lines of the methods' outlines around ``box`` (``line_width`` in data units).

    The first lies on the box's edge (its inner side touches the edge from outside); each next one
    is ``_RING_STEP`` line widths further out, so outlines on the same box never overlap.
    """
    step = _RING_STEP * line_width
    return [box_edges(box, (i + 0.5) * step) for i in range(n_methods)]


def _draw_boxes(ax: Any, pan: Panel, methods: Sequence[str], data_per_pt: float, mpatches: Any) -> None:
    def rect(edges: tuple[float, float, float, float], **kw: Any) -> Any:
        x0, y0, x1, y1 = edges
        return mpatches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, **kw)

    for b in pan.boxes:
        ax.add_patch(rect(box_edges(b), ec="white", lw=0.7, ls=(0, (1, 2)), alpha=0.9))
    ax.add_patch(rect(box_edges(pan.gold, -0.5 * _GOLD_LW * data_per_pt), ec="white", lw=_GOLD_LW))
    for i, m in enumerate(methods):
        colour, dash = _style(methods, m)
        edges = method_outlines(pan.boxes[pan.chosen[m]], len(methods), _METHOD_LW * data_per_pt)[i]
        ax.add_patch(rect(edges, ec=colour, lw=_METHOD_LW, ls=dash, joinstyle="miter"))


def _one_per_scene(keys: Sequence[Any]) -> list[int]:
    """Index of the first query of each scene, in scene order."""
    seen: dict[Any, int] = {}
    for i, k in enumerate(keys):
        seen.setdefault(k, i)
    return list(seen.values())


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints the table and the PNG path. Returns the exit code."""
    from falip.core.errors import FalipError

    t0 = time.time()
    out = ensure_writable_dir(args.out, "--out") if args.show > 0 else None
    methods = list(dict.fromkeys(m.strip() for m in str(args.methods).split(",") if m.strip()))
    if not methods:
        raise FalipError("--methods names no method")

    import numpy as np
    from PIL import Image

    from falip.data import synthetic
    from falip.prompts.registry import parse_method
    from falip.scoring import RegionScorer
    from falip.tasks.metrics import format_table
    from falip.tasks.rec import rec_correct, rec_predict
    from falip.tasks.region_cls import classify_regions

    for m in methods:
        parse_method(m)
    set_threads(args.threads)
    fclip, pre, tok = load_model(args.model, args.pretrained, activation=args.activation)
    scorer = RegionScorer(fclip, pre, tok)
    size = int(pre.input_size[0])
    print(
        f"falip demo: model {args.model} ({describe_model(fclip)}), {args.scenes} REC + {args.scenes} "
        f"classification scenes, seed {args.seed}"
    )

    # REC: 2-4 objects, half of the scenes with a relational expression
    items = _rec_items(args.seed, args.scenes, size)
    rel = np.array([it.info["relational"] for it in items])
    n_boxes = np.array([len(it.boxes) for it in items])
    rec_preds, rec_ok = {}, {}
    for m in methods:
        rec_preds[m], _ = rec_predict(scorer, items, m, ties="random", seed=args.seed)
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

    header = [
        "method",
        f"REC all (n={len(items)})",
        f"REC relational (n={int(rel.sum())})",
        f"region cls (n={len(labels)})",
    ]
    rows = []
    for m in methods:
        rows.append(
            [
                _LABELS.get(m, m),
                _fmt(int(rec_ok[m].sum()), len(items)),
                _fmt(int(rec_ok[m][rel].sum()), int(rel.sum())),
                _fmt(int(cls_ok[m].sum()), len(labels)),
            ]
        )
    rows.append(
        [
            "chance",
            f"{100 * np.mean(1 / n_boxes):5.1f}",
            f"{100 * np.mean(1 / n_boxes[rel]):5.1f}" if rel.any() else "-",
            f"{100 / len(synthetic.CLASSES):5.1f}",
        ]
    )
    print()
    print("accuracy % [95% Wilson interval]")
    print(format_table(header, rows))
    print()

    if out is None:
        print("no picture written (--show 0)")
    else:
        png = out / f"falip_demo_seed{args.seed}.png"
        shown = _one_per_scene([it.key for it in items])[: args.show]  # one query per scene: different images
        panels = [
            Panel(
                image=items[i].image,
                boxes=items[i].boxes,
                gold=items[i].gold[0],
                expression=items[i].expression,
                chosen={m: int(rec_preds[m][i]) for m in methods},
                right={m: bool(rec_ok[m][i]) for m in methods},
            )
            for i in shown
        ]
        if args.pretrained == "auto":
            weights = "shipped weights"
        else:
            weights = f"weights {Path(str(args.pretrained)).name}"
        caption = f"showing {len(panels)} of {len(items)} queries (one per scene)"
        draw_panels(panels, methods, png, f"{args.model} ({weights}): the box each method picks", caption)
        print(f"wrote {png.resolve()}: {caption}")
    print(f"done in {time.time() - t0:.1f} s")
    return 0
