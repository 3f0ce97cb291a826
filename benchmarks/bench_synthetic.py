"""The shipped model on held-out synthetic datasets written in the real formats, through falip's harness.

Writes held-out splits with :mod:`falip.data.synthetic`'s writers (seeds never used in training):

* REC: a ReCLIP-format jsonl (2-4 object scenes, about 2 sentences per image, half of the scenes
  with a relational expression: two objects of the target's colour and shape, told apart only by
  size, position or a relation to a third object);
* region classification: every object of 2-4 object scenes among the 36 colour-shape classes (generic
  JSONL), a CUB-style folder (one labelled object per scene, the others distractors), an
  ImageNet-S-style folder (the target's mask), and a Waterbirds-style set with two backgrounds: the
  label is "yellow star" or "blue ring", the "place" is the colour of two distractors (yellow or
  blue), and the test split is balanced over the four groups;

then runs ``falip compare`` on each (every method a resumable run of the harness) and ``falip rec``
with "subtract" (P, 500 captions). A ``falip sweep --grid`` of FALIP's alpha and biased blocks on separate validation
splits picks the setting best on validation, which is then run on the test splits. 95% Wilson
intervals everywhere. Seeded; a few minutes at 1 thread::

    python benchmarks/bench_synthetic.py --out benchmarks/results/synthetic.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

WATERBIRDS_CLASSES = ("yellow star", "blue ring")
WATERBIRDS_PLACES = ("yellow", "blue")  # the distractors' colour: "land", "water"
DISTRACTOR_SHAPES = ("circle", "square", "cross", "triangle")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench_synthetic.json", help="JSON results path")
    p.add_argument("--data-dir", default=None, help="where to write datasets and runs (default: a temporary folder)")
    p.add_argument("--model", default="falip-tiny")
    p.add_argument("--pretrained", default="auto", help="open_clip tag or checkpoint; 'auto' = shipped weights")
    p.add_argument("--seed", type=int, default=0, help="base seed; the splits use seeds 1_000_000 + 10 * seed + k")
    p.add_argument("--rec-scenes", type=int, default=600, help="REC test scenes (~2 sentences each)")
    p.add_argument("--cls-scenes", type=int, default=350, help="classification test scenes per dataset")
    p.add_argument("--val-scenes", type=int, default=200, help="validation scenes for the sweep")
    p.add_argument("--relational-fraction", type=float, default=0.5)
    p.add_argument(
        "--methods", default="none,crop,blur,input-circle,falip,falip+blur+input-circle", help="methods compared"
    )
    p.add_argument("--subtract", default="falip,crop,blur,input-circle", help="methods also run with subtract (P)")
    p.add_argument("--alphas", default="0.1,0.2,0.5,1,2,5,10,20", help="sweep: alpha values")
    p.add_argument("--last-blocks", default="1,2,3,4,all", help="sweep: bias the last n blocks ('all' = every block)")
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="image-decoding workers of the harness")
    return p.parse_args(argv)


def _waterbirds_scenes(seed: int, n: int, image_size: int) -> tuple[list, list[int], list[int]]:
    """Balanced groups: label y (target's class) x place (the two distractors' colour)."""
    from falip.data import synthetic

    rng = np.random.default_rng(seed)
    scenes, ys, places = [], [], []
    for i in range(n):
        y, place = i % 2, (i // 2) % 2
        colour, shape = WATERBIRDS_CLASSES[y].split()
        shapes = rng.choice(DISTRACTOR_SHAPES, size=2, replace=False)
        specs = [(colour, shape)] + [(WATERBIRDS_PLACES[place], str(s)) for s in shapes]
        scenes.append(synthetic.random_scene(rng, 3, image_size, specs=specs))
        ys.append(y)
        places.append(place)
    return scenes, ys, places


def _write_data(root: Path, args: argparse.Namespace, image_size: int) -> dict[str, Path]:
    from falip.data import synthetic

    paths: dict[str, Path] = {}
    rf = args.relational_fraction
    paths["rec_test"] = synthetic.write_reclip_rec(
        synthetic.rec_examples(_seed(args.seed, 1), args.rec_scenes, image_size, rf), root / "rec", "synthetic_test"
    )
    paths["cls_test"] = synthetic.write_classification(
        synthetic.classification_scenes(_seed(args.seed, 3), args.cls_scenes, image_size, 2, 4),
        root / "cls",
        "synthetic_test",
        with_masks=False,
    )
    cub_scenes = synthetic.classification_scenes(_seed(args.seed, 7), args.cls_scenes, image_size, 2, 4)
    paths["cub"] = synthetic.write_cub_style(cub_scenes, root / "cub")
    inet_scenes = synthetic.classification_scenes(_seed(args.seed, 8), args.cls_scenes, image_size, 2, 4)
    paths["imagenet_s"] = synthetic.write_imagenet_s_style(inet_scenes, root / "imagenet_s")
    scenes, ys, places = _waterbirds_scenes(_seed(args.seed, 9), args.cls_scenes, image_size)
    paths["waterbirds"] = synthetic.write_waterbirds_style(scenes, ys, places, root / "waterbirds", root / "wb_cub")
    paths["waterbirds_cub"] = root / "wb_cub"
    paths["waterbirds_classes"] = root / "waterbirds_classes.txt"
    paths["waterbirds_classes"].write_text("".join(c + "\n" for c in WATERBIRDS_CLASSES))
    if not args.no_sweep:
        paths["rec_val"] = synthetic.write_reclip_rec(
            synthetic.rec_examples(_seed(args.seed, 2), args.val_scenes, image_size, rf), root / "rec", "synthetic_val"
        )
        paths["cls_val"] = synthetic.write_classification(
            synthetic.classification_scenes(_seed(args.seed, 4), args.val_scenes, image_size, 2, 4),
            root / "cls",
            "synthetic_val",
            with_masks=False,
        )
    return paths


def _seed(base: int, k: int) -> int:
    return 1_000_000 + 10 * base + k


# ----------------------------------------------------------------------------- data


# ----------------------------------------------------------------------------- evaluation


def _acc(ok: np.ndarray) -> dict[str, Any]:
    from falip.tasks.metrics import wilson_interval

    k, n = int(ok.sum()), int(ok.size)
    lo, hi = wilson_interval(k, n)
    return {"acc": k / n if n else float("nan"), "correct": k, "n": n, "ci95": [lo, hi]}


def _fmt(r: dict[str, Any]) -> str:
    if not r["n"]:
        return "-"
    lo, hi = r["ci95"]
    return f"{100 * r['acc']:5.1f} [{100 * lo:4.1f}, {100 * hi:4.1f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    from falip.tasks.metrics import format_table

    return format_table(header, rows)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cli(argv: list[str]) -> None:
    from falip.cli import main as falip_main

    _log("falip " + " ".join(argv))
    code = falip_main(argv)
    if code != 0:
        raise SystemExit(f"falip {' '.join(argv)} exited {code}")


def _kinds(path: Path) -> dict[str, tuple[bool, str]]:
    """Sentence id -> (relational, kind) from the REC file's extra keys."""
    from falip.data.reclip import iter_reclip_jsonl

    return {s.id: (bool(s.extra.get("relational")), str(s.extra.get("kind", "?"))) for s in iter_reclip_jsonl(path)}


def _rec_breakdown(run_dir: Path, kinds: dict[str, tuple[bool, str]]) -> dict[str, Any]:
    from falip.runner import read_results

    records, _ = read_results(run_dir)
    ok = np.array([r["correct"] for r in records])
    rel = np.array([kinds[r["id"]][0] for r in records])
    kind = np.array([kinds[r["id"]][1] for r in records])
    out = {"all": _acc(ok), "attribute": _acc(ok[~rel]), "relational": _acc(ok[rel])}
    out["by_kind"] = {k: _acc(ok[kind == k]) for k in sorted(set(kind.tolist()))}
    return out


def _cls_cell(summary: dict) -> dict[str, Any]:
    from falip.tasks.metrics import wilson_interval

    lo, hi = wilson_interval(summary["correct"], summary["n"])
    out = {"acc": summary["correct"] / summary["n"], "correct": summary["correct"], "n": summary["n"], "ci95": [lo, hi]}
    if "worst_group_accuracy" in summary:
        out["group_mean"] = summary["group_mean_accuracy"] / 100
        out["worst_group"] = summary["worst_group_accuracy"] / 100
        out["by_group"] = {g: row["accuracy"] / 100 for g, row in summary["by_group"].items()}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(max(1, args.threads))
    import falip
    from falip.cli.compare import method_dir
    from falip.prompts.registry import parse_method

    t0 = time.time()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    subtracted = [m.strip() for m in args.subtract.split(",") if m.strip()]
    for m in methods + subtracted:
        parse_method(m)
    fclip, pre, tok = falip.load(args.model, pretrained=args.pretrained)
    image_size = int(pre.input_size[0])
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="falip_bench_")
        root = Path(tmp.name)
    else:
        root = Path(args.data_dir)
    _log(f"writing datasets under {root} ...")
    paths = _write_data(root, args, image_size)
    runs = root / "runs"
    common = [
        "--resume",  # a second run on the same --data-dir reuses the finished runs
        "--model",
        args.model,
        "--pretrained",
        args.pretrained,
        "--threads",
        str(args.threads),
        "--workers",
        str(args.workers),
    ]
    rec_args = ["--task", "rec", "--data", str(paths["rec_test"]), "--images", str(paths["rec_test"].parent / "images")]
    d = {"alpha": fclip.alpha, "sigma": fclip.sigma, "layers": list(fclip.layers), "form": fclip.form}
    results: dict[str, Any] = {
        "config": {
            "model": args.model,
            "pretrained": args.pretrained,
            "falip_defaults": d,
            "num_blocks": fclip.depth,
            "input_size": list(pre.input_size),
            "seed": args.seed,
            "seeds": {
                k: _seed(args.seed, i)
                for k, i in (
                    ("rec_test", 1),
                    ("rec_val", 2),
                    ("cls_test", 3),
                    ("cls_val", 4),
                    ("cub", 7),
                    ("imagenet_s", 8),
                    ("waterbirds", 9),
                    ("subtract", 6),
                )
            },
            "rec_scenes": args.rec_scenes,
            "cls_scenes": args.cls_scenes,
            "val_scenes": args.val_scenes,
            "threads": args.threads,
            "workers": args.workers,
            "waterbirds_classes": list(WATERBIRDS_CLASSES),
        },
        "commands": [],
    }

    # REC on the test split: every method, then subtract (P) with 500 captions of the split
    _cli(["compare", *rec_args, "--methods", ",".join(methods), "--out", str(runs / "rec"), *common])
    _cli(
        [
            "compare",
            *rec_args,
            "--methods",
            ",".join(subtracted),
            "--subtract-q",
            "500",
            "--seed",
            str(_seed(args.seed, 6)),
            "--out",
            str(runs / "rec_P"),
            *common,
        ]
    )
    kinds = _kinds(paths["rec_test"])
    results["rec"] = {m: _rec_breakdown(runs / "rec" / method_dir(m), kinds) for m in methods}
    for m in subtracted:
        results["rec"][f"{m} (P)"] = _rec_breakdown(runs / "rec_P" / f"{method_dir(m)}-P500", kinds)
    boxes_per_query = [len(json.loads(line)["anns"]) for line in open(paths["rec_test"], encoding="utf-8")]
    results["rec_chance"] = float(np.mean([1 / k for k in boxes_per_query]))

    # region classification: four datasets in the real formats
    datasets = {
        "all objects": ["--dataset", "jsonl", "--root", str(paths["cls_test"])],
        "CUB-style": ["--dataset", "cub", "--root", str(paths["cub"])],
        "ImageNet-S-style": ["--dataset", "imagenet-s", "--root", str(paths["imagenet_s"])],
        "Waterbirds-style": [
            "--dataset",
            "waterbirds",
            "--root",
            str(paths["waterbirds"]),
            "--cub-root",
            str(paths["waterbirds_cub"]),
            "--classnames",
            str(paths["waterbirds_classes"]),
        ],
    }
    results["cls"] = {}
    for name, ds in datasets.items():
        out = runs / ("cls_" + name.split()[0].split("-")[0].lower())
        _cli(["compare", "--task", "classify", *ds, "--methods", ",".join(methods), "--out", str(out), *common])
        summaries = json.loads((out / "compare.json").read_text())
        results["cls"][name] = {m: _cls_cell(summaries[m]) for m in methods}
    _log(f"test splits done [{time.time() - t0:.0f} s]")

    # the tuning sweep on the validation splits with falip sweep, then the best setting on the test splits
    if not args.no_sweep:
        n = fclip.depth
        ks = sorted({n if lb == "all" else min(int(lb), n) for lb in args.last_blocks.split(",") if lb.strip()})
        grid = f"alpha={args.alphas},blocks=" + ",".join(f"last{k}" for k in ks)
        val_rec = [
            "--task",
            "rec",
            "--data",
            str(paths["rec_val"]),
            "--images",
            str(paths["rec_val"].parent / "images"),
        ]
        val_cls = ["--task", "classify", "--dataset", "jsonl", "--root", str(paths["cls_val"])]
        _cli(["sweep", "--grid", grid, *val_rec, "--out", str(runs / "sweep_rec"), *common])
        _cli(["sweep", "--grid", grid, *val_cls, "--out", str(runs / "sweep_cls"), *common])
        tables = {t: json.loads((runs / f"sweep_{t}" / "sweep.json").read_text()) for t in ("rec", "cls")}

        def cell(row: dict) -> dict:
            lo, hi = row["ci95_low"] / 100, row["ci95_high"] / 100
            return {"acc": row["correct"] / row["n"], "correct": row["correct"], "n": row["n"], "ci95": [lo, hi]}

        cls_rows = {(r["alpha"], r["blocks"]): r for r in tables["cls"]["rows"]}
        sweep = []
        for r in tables["rec"]["rows"]:
            k = int(r["blocks"].removeprefix("last"))
            layers = list(range(n - k, n))
            sweep.append(
                {
                    "alpha": float(r["alpha"]),
                    "layers": layers,
                    "rec_val": cell(r),
                    "cls_val": cell(cls_rows[(r["alpha"], r["blocks"])]),
                }
            )
        results["sweep"] = {
            "rec_val_queries": sweep[0]["rec_val"]["n"],
            "cls_val_regions": sweep[0]["cls_val"]["n"],
            "settings": sweep,
            "commands": ["falip sweep --grid " + grid + " (REC and classification validation splits)"],
        }
        best = max(sweep, key=lambda r: r["rec_val"]["acc"] + r["cls_val"]["acc"])
        # the CLI numbers blocks from 1; results.json keeps Python's 0-based "layers"
        setting = ["--alpha", f"{best['alpha']:g}", "--layers", ",".join(str(i + 1) for i in best["layers"])]
        _cli(["compare", *rec_args, "--methods", "falip", "--out", str(runs / "rec_best"), *common, *setting])
        _cli(
            [
                "compare",
                "--task",
                "classify",
                *datasets["all objects"],
                "--methods",
                "falip",
                "--out",
                str(runs / "cls_best"),
                *common,
                *setting,
            ]
        )
        results["best_on_val"] = {
            "alpha": best["alpha"],
            "layers": best["layers"],
            "rec_test": _rec_breakdown(runs / "rec_best" / "falip", kinds),
            "cls_test": _cls_cell(json.loads((runs / "cls_best" / "compare.json").read_text())["falip"]),
        }
    results["seconds"] = time.time() - t0
    _report(results, methods, subtracted, args)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1))
    print(f"wrote {out_path.resolve()}")
    if tmp is not None:
        tmp.cleanup()
    return 0


LABELS = {
    "falip": "FALIP", "none": "whole image", "crop": "crop", "blur": "reverse blur", "circle": "red circle",
    "input-circle": "red circle", "redcircle": "RedCircle (authors')", "redcircle-blur": "RedCircle+Blur (authors')",
}  # fmt: skip


def _blocks(layers) -> list[int]:
    """0-based layer indices as a person reads them (numbered from 1)."""
    return [int(i) + 1 for i in layers]


def _report(results: dict, methods: list[str], subtracted: list[str], args: argparse.Namespace) -> None:
    d = results["config"]["falip_defaults"]
    print(
        f"model {args.model}; FALIP preset alpha={d['alpha']:g} sigma={d['sigma']:g} blocks={_blocks(d['layers'])}; "
        "accuracy % [95% Wilson interval]; blocks numbered from 1"
    )
    r0 = results["rec"][methods[0]]
    header = [
        "method",
        f"REC all (n={r0['all']['n']})",
        f"attribute (n={r0['attribute']['n']})",
        f"relational (n={r0['relational']['n']})",
    ]
    rows = [
        [
            LABELS.get(m, m),
            _fmt(results["rec"][m]["all"]),
            _fmt(results["rec"][m]["attribute"]),
            _fmt(results["rec"][m]["relational"]),
        ]
        for m in methods
    ]
    rows += [
        [
            f"{LABELS.get(m, m)} + subtract (P)",
            _fmt(results["rec"][f"{m} (P)"]["all"]),
            _fmt(results["rec"][f"{m} (P)"]["attribute"]),
            _fmt(results["rec"][f"{m} (P)"]["relational"]),
        ]
        for m in subtracted
    ]
    if "best_on_val" in results:
        b = results["best_on_val"]
        rows.append(
            [
                f"FALIP a={b['alpha']:g} blocks {_blocks(b['layers'])} (best on val)",
                _fmt(b["rec_test"]["all"]),
                _fmt(b["rec_test"]["attribute"]),
                _fmt(b["rec_test"]["relational"]),
            ]
        )
    rows.append(["chance", f"{100 * results['rec_chance']:5.1f}", "", ""])
    print(_table(header, rows))
    kinds = sorted(r0["by_kind"])
    print("\nREC by query kind")
    print(
        _table(
            ["method"] + [f"{k} (n={r0['by_kind'][k]['n']})" for k in kinds],
            [[LABELS.get(m, m)] + [_fmt(results["rec"][m]["by_kind"][k]) for k in kinds] for m in methods],
        )
    )
    names = list(results["cls"])
    header = ["method"] + [f"{n} (n={results['cls'][n][methods[0]]['n']})" for n in names] + ["Waterbirds worst group"]
    rows = []
    for m in methods:
        cells = [_fmt(results["cls"][n][m]) for n in names]
        wb = results["cls"]["Waterbirds-style"][m]
        rows.append([LABELS.get(m, m), *cells, f"{100 * wb['worst_group']:5.1f} (mean {100 * wb['group_mean']:.1f})"])
    if "best_on_val" in results:
        b = results["best_on_val"]
        rows.append(
            [f"FALIP a={b['alpha']:g} blocks {_blocks(b['layers'])}", _fmt(b["cls_test"])] + ["-"] * (len(names))
        )
    print("\nregion classification, top-1")
    print(_table(header, rows))
    if "sweep" in results:
        sw = results["sweep"]
        print(f"\nsweep on validation (REC n={sw['rec_val_queries']}, cls n={sw['cls_val_regions']}): REC / cls %")
        alphas = sorted({s["alpha"] for s in sw["settings"]})
        by_layers: dict[tuple, dict] = defaultdict(dict)
        for s in sw["settings"]:
            by_layers[tuple(s["layers"])][s["alpha"]] = s
        srows = [
            [f"blocks {_blocks(k)}"]
            + [
                f"{100 * v[a]['rec_val']['acc']:4.1f} / {100 * v[a]['cls_val']['acc']:4.1f}" if a in v else "-"
                for a in alphas
            ]
            for k, v in by_layers.items()
        ]
        print(_table(["blocks (from 1) \\ alpha"] + [f"{a:g}" for a in alphas], srows))
    print(f"\n{results['seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
