"""``falip paper table1|table2``: the paper's tables from whatever datasets you have on disk.

table1 (REC, Table 1 of the paper): splits as columns (RefCOCO, RefCOCO+, RefCOCOg files found in
``--refcoco-dir``), methods as rows: CPT, RedCircle, FALIP, their ensembles (E) and each with
"subtract" (P, Q negative captions). E is the sum of scores with reverse blur: RedCircle E =
``circle+blur``, FALIP E = ``falip+circle+blur``.

table2 (region classification, Table 2): datasets as columns (``--dogs``, ``--cub``,
``--imagenet-s``, ``--waterbirds``), methods as rows: CLIP (whole image), RedCircle, reverse blur,
crop, FALIP. Every cell is a resumable run under ``--out``; the tables go to ``table1.md`` /
``table2.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from ._common import int_at_least
from ._eval import add_model_options, add_run_options, classify_task, make_scorer, run_task
from .compare import markdown_table, method_dir

__all__ = ["configure_parser", "run", "TABLE1_SPLITS", "TABLE1_ROWS", "TABLE2_ROWS"]

TABLE1_SPLITS = (
    "refcoco_val",
    "refcoco_testa",
    "refcoco_testb",
    "refcoco+_val",
    "refcoco+_testa",
    "refcoco+_testb",
    "refcocog_val",
    "refcocog_test",
)
TABLE1_ROWS = (("CPT", "cpt"), ("RedCircle", "circle"), ("FALIP", "falip"), ("RedCircle E", "circle+blur"),
               ("FALIP E", "falip+circle+blur"))  # fmt: skip
TABLE2_ROWS = (("CLIP", "none"), ("RedCircle", "circle"), ("Blur", "blur"), ("Crop", "crop"), ("FALIP", "falip"))
TABLE2_DATASETS = (("dogs", "Stanford Dogs"), ("cub", "CUB-200-2011"), ("imagenet_s", "ImageNet-S"),
                   ("waterbirds", "Waterbirds"))  # fmt: skip


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``paper`` options to ``p``."""
    p.add_argument("table", choices=("table1", "table2"), help="which table")
    g = p.add_argument_group("table1 (REC)")
    g.add_argument("--refcoco-dir", help="folder with the ReCLIP split files (refcoco_testa.jsonl, ...)")
    g.add_argument("--coco-images", help="COCO train2014 image folder")
    g.add_argument("--detector-file", help="detector proposals (default: gold boxes)")
    g.add_argument("--subtract-q", type=int, default=500, help="Q negative captions of the P rows (default 500)")
    g.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the negative captions and tie-breaks")
    h = p.add_argument_group("table2 (region classification)")
    h.add_argument("--dogs", help="Stanford Dogs folder")
    h.add_argument("--cub", help="CUB-200-2011 folder (also Waterbirds' boxes)")
    h.add_argument("--imagenet-s", dest="imagenet_s", help="ImageNet-S folder")
    h.add_argument("--classnames", help="ImageNet-S class names file")
    h.add_argument("--waterbirds", help="Waterbirds folder (needs --cub for the boxes)")
    add_run_options(p)
    add_model_options(p)


def _table1(args: argparse.Namespace, out: Path) -> str:
    from falip.core.errors import FalipError
    from falip.tasks.rec import RecSettings, RecTask

    if not args.refcoco_dir:
        raise FalipError("table1 needs --refcoco-dir (the folder of refcoco_testa.jsonl, ...)")
    folder = Path(args.refcoco_dir)
    splits = [folder / f"{name}.jsonl" for name in TABLE1_SPLITS if (folder / f"{name}.jsonl").is_file()]
    if not splits:
        raise FalipError(f"--refcoco-dir {folder} holds none of {', '.join(n + '.jsonl' for n in TABLE1_SPLITS)}")
    scorer, model = make_scorer(args)
    rows: dict[str, dict[str, str]] = {}
    summaries = {}
    for with_p in (False, True):
        for name, method in TABLE1_ROWS:
            q = args.subtract_q if with_p else 0
            label = f"{name} + P" if with_p else name
            settings = RecSettings(
                data=tuple(str(s) for s in splits),
                images=args.coco_images,
                detector_file=args.detector_file,
                method=method,
                subtract_q=q,
                seed=args.seed,
            )
            print(f"\n== {label}")
            summary = run_task(
                RecTask(scorer, settings, model), args, out / (method_dir(method) + (f"-P{q}" if q else ""))
            )
            summaries[label] = summary
            by = summary.get("by_split", {})
            rows[label] = {s.stem: f"{by[s.name]['accuracy']:.1f}" if s.name in by else "-" for s in splits}
    text = "REC accuracy % (IoU > 0.5), model " + args.model + "\n\n" + markdown_table(rows) + "\n"
    (out / "table1.md").write_text(text, encoding="utf-8")
    (out / "table1.json").write_text(json.dumps(summaries, indent=2), encoding="utf-8")
    return text


def _table2(args: argparse.Namespace, out: Path) -> str:
    from falip.core.errors import FalipError

    given = [(key, title) for key, title in TABLE2_DATASETS if getattr(args, key)]
    if not given:
        raise FalipError("table2 needs at least one of --dogs, --cub, --imagenet-s, --waterbirds")
    if args.waterbirds and not args.cub:
        raise FalipError("--waterbirds needs --cub (the bird boxes come from CUB's bounding_boxes.txt)")
    scorer, model = make_scorer(args)
    rows: dict[str, dict[str, str]] = {name: {} for name, _ in TABLE2_ROWS}
    summaries: dict[str, dict] = {}
    for key, title in given:
        ns = copy.copy(args)
        ns.dataset = key.replace("_", "-")
        ns.root = getattr(args, key)
        ns.split, ns.cub_root, ns.region, ns.template, ns.templates, ns.top_k = "test", args.cub, "mask", None, None, 5
        for name, method in TABLE2_ROWS:
            print(f"\n== {title}: {name}")
            summary = run_task(classify_task(ns, scorer, model, method), args, out / key / method_dir(method))
            summaries[f"{title}/{name}"] = summary
            cell = summary.get("worst_group_accuracy") if key == "waterbirds" else None
            rows[name][title] = f"{summary['accuracy']:.1f}" + (f" (worst {cell:.1f})" if cell is not None else "")
    text = "Region classification top-1 accuracy %, model " + args.model + "\n\n" + markdown_table(rows) + "\n"
    (out / "table2.md").write_text(text, encoding="utf-8")
    (out / "table2.json").write_text(json.dumps(summaries, indent=2), encoding="utf-8")
    return text


def run(args: argparse.Namespace) -> int:
    """Build the table; returns the exit code."""
    from ._common import ensure_writable_dir

    out = ensure_writable_dir(args.out, "--out")
    text = _table1(args, out) if args.table == "table1" else _table2(args, out)
    print("\n" + text)
    print(f"wrote {out / (args.table + '.md')} and {out / (args.table + '.json')}")
    return 0
