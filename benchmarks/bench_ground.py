"""Grounding from the image alone: weight-free proposals against the gold boxes, on the synthetic REC scenes.

Held-out synthetic REC scenes (the generator's, as ``bench_synthetic.py`` writes them). For each
image, every sentence of it is grounded (:func:`falip.tasks.ground.ground`, REC's template and tie
rule) among two proposal sets:

* ``gold``: the scene's own objects' boxes, what ``falip rec`` scores (so its accuracy is REC's);
* ``auto``: :mod:`falip.proposals.auto` (Felzenszwalb segments grouped as selective search does),
  regions as masks, nothing known about the scene.

A sentence is right when the chosen region's box has IoU >= 0.5 with the gold box. Methods side by
side: the whole image (``none``), crop, reverse blur, falip's red circle (``input-circle``) and FALIP.
Also reported: the proposals' recall (gold objects with a proposal of IoU >= 0.5, the ceiling of ``auto``), their
number per image, and the time spent proposing.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_ground.py [--scenes 200] [--out benchmarks/results/ground.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

METHODS = "none,crop,blur,input-circle,falip"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=200, help="test scenes (about 2 sentences each)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=1_000_041, help="seed of the scenes (held out from training)")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/ground.json")
    args = ap.parse_args(argv)

    import torch
    from PIL import Image

    import falip
    from falip.core.regions import box_iou
    from falip.data import synthetic
    from falip.defaults import REC_TEMPLATE
    from falip.proposals import Proposals, open_proposals
    from falip.proposals.base import visible_proposals
    from falip.scoring import RegionScorer
    from falip.tasks.ground import ground
    from falip.tasks.metrics import format_table, wilson_interval

    torch.set_num_threads(args.threads)
    t0, load_before = time.perf_counter(), os.getloadavg()
    examples = [e for e in synthetic.rec_examples(args.seed, args.scenes, args.image_size, 0.5) if e.queries]
    scorer = RegionScorer(*falip.load("falip-tiny"))
    geometry = getattr(scorer.preprocess, "geometry", None)
    source = open_proposals("auto")
    methods = args.methods.split(",")
    hits = {(m, s): [] for m in methods for s in ("gold", "auto")}
    recall, counts, propose_s = [], [], 0.0
    for ex in examples:
        image = Image.fromarray(ex.scene.image)
        gold = np.array([o.box for o in ex.scene.objects], dtype=np.float64)
        t = time.perf_counter()
        auto = visible_proposals(source.propose(image), geometry)
        propose_s += time.perf_counter() - t
        counts.append(len(auto))
        recall += (box_iou(gold, auto.boxes).max(axis=1) >= 0.5).tolist() if len(auto) else [False] * len(gold)
        sets = {"gold": Proposals(gold, image.size, source="gold"), "auto": auto}
        texts = [q.expression for q in ex.queries]
        targets = gold[[q.target for q in ex.queries]]
        for m in methods:
            for name, props in sets.items():
                if len(props) == 0:
                    hits[(m, name)] += [False] * len(texts)
                    continue
                found = ground(scorer, image, texts, props, m, REC_TEMPLATE)
                chosen = np.array([g.box for g in found])
                hits[(m, name)] += (np.diag(box_iou(chosen, targets)) >= 0.5).tolist()
    n = len(hits[(methods[0], "gold")])
    result: dict = {
        "scenes": len(examples), "sentences": n, "image_size": args.image_size, "seed": args.seed,
        "threads": args.threads, "model": "falip-tiny (shipped)", "template": REC_TEMPLATE,
        "proposals_per_image": float(np.mean(counts)), "auto_recall_iou50": float(np.mean(recall)),
        "propose_s_per_image": propose_s / len(examples), "accuracy": {},
    }  # fmt: skip
    rows = []
    for m in methods:
        cells = [m]
        for name in ("gold", "auto"):
            k = int(np.sum(hits[(m, name)]))
            lo, hi = wilson_interval(k, n)
            result["accuracy"].setdefault(m, {})[name] = {"acc": 100 * k / n, "correct": k, "n": n,
                                                          "ci95": [100 * lo, 100 * hi]}  # fmt: skip
            cells.append(f"{100 * k / n:5.1f} [{100 * lo:4.1f}, {100 * hi:4.1f}]")
        rows.append(cells)
    print(
        f"grounding on {len(examples)} synthetic scenes, {n} sentences (IoU >= 0.5 with the gold box, %, 95% CI); "
        f"auto: {result['proposals_per_image']:.1f} proposals per image, recall "
        f"{100 * result['auto_recall_iou50']:.1f}%, {1e3 * result['propose_s_per_image']:.0f} ms per image"
    )
    print(format_table(["method", "gold boxes as proposals (= REC)", "auto proposals"], rows))
    result["load_average_before"], result["load_average_after"] = load_before, os.getloadavg()
    result["wall_s"] = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
