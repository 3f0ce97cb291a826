"""Measured behaviour of FALIP on held-out synthetic scenes (issue 3, part 4).

Writes a held-out REC dataset (ReCLIP jsonl + PNGs) and a region-classification dataset (generic
JSONL + PNGs) with :mod:`falip.data.synthetic`'s writers, reads them back with :mod:`falip.data`'s readers,
and evaluates the model:

* REC on 2-4 object scenes (gold boxes as candidates; correct when IoU(pred, gold) > 0.5) for FALIP,
  whole image, crop, reverse blur, red circle and a random pick, overall and on the relational
  subset (per kind: size / position / relation);
* region classification of every object among all colour-shape classes (FALIP, whole, crop, ...);
* a sweep of FALIP's alpha and biased blocks on separate validation splits, and the test accuracy
  of the setting best on validation.

Every accuracy has a 95% Wilson interval. Seeded; runs in a few minutes at 1 thread::

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


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench_synthetic.json", help="JSON results path (default ./bench_synthetic.json)")
    p.add_argument("--data-dir", default=None, help="where to write the datasets (default: a temporary folder)")
    p.add_argument("--model", default="falip-tiny")
    p.add_argument("--pretrained", default="auto", help="open_clip tag or checkpoint; 'auto' = shipped weights")
    p.add_argument("--seed", type=int, default=0, help="base seed; the splits use seeds 1_000_000 + 10 * seed + k")
    p.add_argument("--rec-scenes", type=int, default=600, help="REC test scenes (~2 queries each; default 600)")
    p.add_argument("--cls-scenes", type=int, default=350, help="classification test scenes (2-4 objects; default 350)")
    p.add_argument(
        "--val-scenes", type=int, default=200, help="scenes per validation split for the sweep (default 200)"
    )
    p.add_argument("--relational-fraction", type=float, default=0.5)
    p.add_argument(
        "--methods",
        default="falip,none,crop,blur,circle",
        help="REC/classification scoring methods (see falip.scoring), comma-separated",
    )
    p.add_argument(
        "--subtract",
        default="falip,crop,blur,circle",
        help="methods also scored with 'subtract' (P: minus the mean score of 500 split captions)",
    )
    p.add_argument("--alphas", default="0.1,0.2,0.5,1,2,5,10,20", help="sweep: alpha values")
    p.add_argument("--last-blocks", default="1,2,3,4,all", help="sweep: bias the last n blocks ('all' = every block)")
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--allow-random", action="store_true", help="run with random weights if none are shipped")
    return p.parse_args(argv)


def _seed(base: int, k: int) -> int:
    return 1_000_000 + 10 * base + k


# ----------------------------------------------------------------------------- data


def _write_data(root: Path, args: argparse.Namespace, image_size: int) -> dict[str, Path]:
    from falip.data import synthetic

    paths = {}
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


class _Images:
    """Opens each image file once."""

    def __init__(self) -> None:
        self._cache: dict[Path, Any] = {}

    def __call__(self, path: Path):
        from falip.data.images import load_image

        if path not in self._cache:
            self._cache[path] = load_image(path)
        return self._cache[path]


def _rec_items(path: Path, images: _Images) -> list:
    from falip.data.reclip import read_reclip_jsonl
    from falip.tasks.rec import RecItem

    items = []
    for s in read_reclip_jsonl(path, image_root=path.parent / "images"):
        boxes = s.boxes.astype(np.float64)
        gold = boxes[list(s.gold_indices)]
        items.append(
            RecItem(
                images(s.image_path),
                boxes,
                s.sentence,
                gold,
                key=str(s.image_path),
                info={"relational": bool(s.extra.get("relational", False)), "kind": s.extra.get("kind", "?")},
            )
        )
    return items


def _cls_groups(path: Path, images: _Images) -> tuple[list, list[np.ndarray], np.ndarray]:
    """Images, their boxes ``[K_i, 4]`` and the labels of all boxes (image-major), grouped per image."""
    from falip.data.classification import read_classification_jsonl

    groups: dict[Path, list] = defaultdict(list)
    for it in read_classification_jsonl(path):
        groups[it.image_path].append(it)
    imgs = [images(p) for p in groups]
    boxes = [np.array([it.box for it in g], dtype=np.float64) for g in groups.values()]
    labels = [it.label for g in groups.values() for it in g]
    return imgs, boxes, np.array(labels)


# ----------------------------------------------------------------------------- evaluation


def _acc(ok: np.ndarray) -> dict[str, Any]:
    from falip.tasks.metrics import wilson_interval

    k, n = int(ok.sum()), int(ok.size)
    lo, hi = wilson_interval(k, n)
    return {"acc": k / n if n else float("nan"), "correct": k, "n": n, "ci95": [lo, hi]}


def _rec_eval(scorer, items: list, method: str, seed: int, negatives: list[str] | None = None) -> np.ndarray:
    from falip.tasks.rec import rec_correct, rec_predict

    preds, _ = rec_predict(scorer, items, method, rng=np.random.default_rng(seed), negatives=negatives)
    return rec_correct(items, preds)


def _cls_eval(scorer, data, classes: Sequence[str], method: str) -> np.ndarray:
    from falip.tasks.region_cls import classify_regions

    imgs, boxes, labels = data
    preds = np.concatenate(classify_regions(scorer, imgs, boxes, classes, method))
    return np.array(classes)[preds] == labels


def _rec_summary(items: list, ok: np.ndarray) -> dict[str, Any]:
    rel = np.array([it.info["relational"] for it in items])
    kinds = np.array([it.info["kind"] for it in items])
    out = {"all": _acc(ok), "attribute": _acc(ok[~rel]), "relational": _acc(ok[rel])}
    out["by_kind"] = {k: _acc(ok[kinds == k]) for k in sorted(set(kinds.tolist()))}
    return out


def _fmt(r: dict[str, Any]) -> str:
    if not r["n"]:
        return "-"
    lo, hi = r["ci95"]
    return f"{100 * r['acc']:5.1f} [{100 * lo:4.1f}, {100 * hi:4.1f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(max(1, args.threads))
    import falip
    from falip.data import synthetic
    from falip.prompts.registry import parse_method
    from falip.scoring import RegionScorer

    t0 = time.time()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        parse_method(m)
    random_weights = False
    try:
        fclip, pre, tok = falip.load(args.model, pretrained=args.pretrained)
    except ValueError as err:
        if not (args.allow_random and args.pretrained == "auto"):
            _log(f"bench_synthetic: cannot load {args.model!r}: {err} (use --allow-random to run on random weights)")
            return 2
        torch.manual_seed(0)
        fclip, pre, tok = falip.load(args.model, pretrained=None)
        random_weights = True
        _log("bench_synthetic: RANDOM weights (no shipped weights found); the numbers are meaningless")
    scorer = RegionScorer(fclip, pre, tok)
    image_size = int(pre.input_size[0])
    classes = list(synthetic.CLASSES)

    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="falip_bench_")
        root = Path(tmp.name)
    else:
        root = Path(args.data_dir)
    _log(f"writing datasets under {root} ...")
    paths = _write_data(root, args, image_size)
    images = _Images()
    rec_test = _rec_items(paths["rec_test"], images)
    cls_test = _cls_groups(paths["cls_test"], images)
    _log(
        f"REC test: {len(rec_test)} queries ({sum(it.info['relational'] for it in rec_test)} relational); "
        f"classification test: {len(cls_test[2])} regions in {len(cls_test[0])} images  [{time.time() - t0:.0f} s]"
    )

    results: dict[str, Any] = {
        "config": {
            "model": args.model,
            "pretrained": args.pretrained,
            "random_weights": random_weights,
            "falip_defaults": {
                "alpha": fclip.alpha,
                "sigma": fclip.sigma,
                "layers": list(fclip.layers),
                "form": fclip.form,
            },
            "num_blocks": fclip.num_blocks,
            "input_size": list(pre.input_size),
            "seed": args.seed,
            "seeds": {
                "rec_test": _seed(args.seed, 1),
                "rec_val": _seed(args.seed, 2),
                "cls_test": _seed(args.seed, 3),
                "cls_val": _seed(args.seed, 4),
                "random_pick": _seed(args.seed, 5),
            },
            "rec_scenes": args.rec_scenes,
            "cls_scenes": args.cls_scenes,
            "val_scenes": args.val_scenes,
            "relational_fraction": args.relational_fraction,
            "threads": args.threads,
            "rec_template": "a photo of {}",
            "cls_template": "a photo of a {}.",
            "iou_threshold": 0.5,
        },
        "rec": {},
        "cls": {},
    }

    # REC and classification, test splits
    for m in methods:
        ok = _rec_eval(scorer, rec_test, m, _seed(args.seed, 5))
        results["rec"][m] = _rec_summary(rec_test, ok)
        results["cls"][m] = _acc(_cls_eval(scorer, cls_test, classes, m))
        _log(
            f"  {m:>8}: REC {_fmt(results['rec'][m]['all'])}  cls {_fmt(results['cls'][m])}  [{time.time() - t0:.0f} s]"
        )
    from falip.tasks.rec import negative_captions

    negatives = negative_captions(rec_test, 500, seed=_seed(args.seed, 6))
    results["config"]["subtract_captions"] = len(negatives)
    subtracted = [m.strip() for m in args.subtract.split(",") if m.strip()]
    for m in subtracted:
        ok = _rec_eval(scorer, rec_test, m, _seed(args.seed, 5), negatives)
        results["rec"][f"{m} (P)"] = _rec_summary(rec_test, ok)
        _log(f"  {m + ' (P)':>12}: REC {_fmt(results['rec'][m + ' (P)']['all'])}  [{time.time() - t0:.0f} s]")
    rng = np.random.default_rng(_seed(args.seed, 5))
    rand_pred = np.array([rng.integers(len(it.boxes)) for it in rec_test])
    from falip.tasks.rec import rec_correct

    results["rec"]["random"] = _rec_summary(rec_test, rec_correct(rec_test, rand_pred))
    results["rec"]["random"]["expected"] = float(np.mean([len(it.gold) / len(it.boxes) for it in rec_test]))
    results["cls"]["random"] = {"expected": 1 / len(classes)}

    # sweep on validation splits
    if not args.no_sweep:
        rec_val = _rec_items(paths["rec_val"], images)
        cls_val = _cls_groups(paths["cls_val"], images)
        n = fclip.num_blocks
        sweep = []
        seen: set[int] = set()
        for lb in [s.strip() for s in args.last_blocks.split(",") if s.strip()]:
            k = n if lb == "all" else min(int(lb), n)
            if k in seen:  # e.g. "4" and "all" on a 4-block tower
                continue
            seen.add(k)
            layers = list(range(n - k, n))
            for a in [float(x) for x in args.alphas.split(",") if x.strip()]:
                sc = scorer.with_options(falip_options={"alpha": a, "layers": layers})
                rec = _acc(_rec_eval(sc, rec_val, "falip", _seed(args.seed, 5)))
                cls = _acc(_cls_eval(sc, cls_val, classes, "falip"))
                sweep.append({"alpha": a, "layers": layers, "rec_val": rec, "cls_val": cls})
            _log(f"  sweep last {lb} blocks done  [{time.time() - t0:.0f} s]")
        results["sweep"] = {"rec_val_queries": len(rec_val), "cls_val_regions": len(cls_val[2]), "settings": sweep}
        best = {
            "rec": max(sweep, key=lambda r: r["rec_val"]["acc"]),
            "cls": max(sweep, key=lambda r: r["cls_val"]["acc"]),
            "mean": max(sweep, key=lambda r: r["rec_val"]["acc"] + r["cls_val"]["acc"]),
        }
        results["best_on_val"] = {}
        for name, b in best.items():
            sc = scorer.with_options(falip_options={"alpha": b["alpha"], "layers": b["layers"]})
            entry = {
                "alpha": b["alpha"],
                "layers": b["layers"],
                "rec_test": _rec_summary(rec_test, _rec_eval(sc, rec_test, "falip", _seed(args.seed, 5))),
                "cls_test": _acc(_cls_eval(sc, cls_test, classes, "falip")),
            }
            results["best_on_val"][name] = entry
    results["seconds"] = time.time() - t0

    # report
    labels = {
        "falip": "FALIP (model defaults)",
        "none": "whole image",
        "crop": "crop",
        "blur": "reverse blur",
        "circle": "red circle",
        "random": "random pick",
    }
    rows = []
    for m in methods + ["random"]:
        r = results["rec"][m]
        cls = (
            _fmt(results["cls"][m])
            if "correct" in results["cls"][m]
            else f"{100 * results['cls'][m]['expected']:5.1f} (exp.)"
        )
        rows.append([labels.get(m, m), _fmt(r["all"]), _fmt(r["attribute"]), _fmt(r["relational"]), cls])
    for m in subtracted:
        r = results["rec"][f"{m} (P)"]
        rows.append(
            [f"{labels.get(m, m)} + subtract (P)", _fmt(r["all"]), _fmt(r["attribute"]), _fmt(r["relational"]), "-"]
        )
    for name, e in results.get("best_on_val", {}).items():
        tag = f"FALIP a={e['alpha']:g} blocks {e['layers']} (best val {name})"
        rows.append(
            [
                tag,
                _fmt(e["rec_test"]["all"]),
                _fmt(e["rec_test"]["attribute"]),
                _fmt(e["rec_test"]["relational"]),
                _fmt(e["cls_test"]),
            ]
        )
    r0 = results["rec"][methods[0]]
    header = [
        "method",
        f"REC all (n={r0['all']['n']})",
        f"attribute (n={r0['attribute']['n']})",
        f"relational (n={r0['relational']['n']})",
        f"region cls (n={results['cls'][methods[0]]['n']})",
    ]
    d = results["config"]["falip_defaults"]
    print(
        f"model {args.model}{' (RANDOM WEIGHTS)' if random_weights else ''}; FALIP defaults alpha={d['alpha']:g} "
        f"sigma={d['sigma']:g} layers={d['layers']}; accuracy % [95% Wilson interval]"
    )
    print(_table(header, rows))
    kinds = sorted({k for m in methods for k in results["rec"][m]["by_kind"]})
    print()
    print("REC by query kind")
    print(
        _table(
            ["method"] + [f"{k} (n={results['rec'][methods[0]]['by_kind'][k]['n']})" for k in kinds],
            [[labels.get(m, m)] + [_fmt(results["rec"][m]["by_kind"][k]) for k in kinds] for m in methods + ["random"]],
        )
    )
    if "sweep" in results:
        print()
        print(
            f"sweep on validation (REC n={results['sweep']['rec_val_queries']}, "
            f"cls n={results['sweep']['cls_val_regions']}): "
            "REC / cls accuracy %"
        )
        alphas = sorted({s["alpha"] for s in results["sweep"]["settings"]})
        by_layers: dict[tuple, dict] = defaultdict(dict)
        for s in results["sweep"]["settings"]:
            by_layers[tuple(s["layers"])][s["alpha"]] = s
        srows = [
            [f"blocks {list(layer_set)}"]
            + [
                f"{100 * v[a]['rec_val']['acc']:4.1f} / {100 * v[a]['cls_val']['acc']:4.1f}" if a in v else "-"
                for a in alphas
            ]
            for layer_set, v in by_layers.items()
        ]
        print(_table(["layers \\ alpha"] + [f"{a:g}" for a in alphas], srows))
    print(f"\n{time.time() - t0:.0f} s")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out.resolve()}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
