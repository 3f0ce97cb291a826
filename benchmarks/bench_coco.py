"""COCO region recognition and detection AP on synthetic scenes written as COCO files (the shipped model).

Held-out synthetic scenes (our generator) are written by our own writers as COCO instances JSON
(compressed RLE masks, category ids 1, 3, 5, ...) and as COCO panoptic (PNG + JSON), then run through
``falip compare`` exactly as a user would run it on val2017:

* region recognition (``--task classify``) over the ground-truth regions: ``--dataset coco --region
  box``, ``--region mask``, and ``--dataset coco-panoptic`` (masks): top-1, top-5, mean per class;
* detection by region recognition (``--task detect``, ground-truth boxes as the regions, the 5 best
  classes per region, softmax scores): pycocotools' AP, AP50, AP75, and region top-1;

each for the whole image (``none``), crop, blur (reverse blur), falip's red circle (input-circle) and FALIP.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_coco.py [--scenes 300] [--out benchmarks/results/coco.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

METHODS = "none,crop,blur,input-circle,falip"


def _cli(argv: list[str]) -> None:
    from falip.cli import main as falip_main

    print("falip " + " ".join(argv), file=sys.stderr, flush=True)
    code = falip_main(argv)
    if code != 0:
        raise SystemExit(f"falip {' '.join(argv)} exited {code}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=300, help="test scenes (2-4 objects each)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=1_000_031, help="seed of the scenes (held out from training)")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None, help="where to write data and runs (default: a temporary folder)")
    ap.add_argument("--out", default="benchmarks/results/coco.json")
    args = ap.parse_args(argv)

    import torch

    from falip.data import synthetic

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    tmp = tempfile.TemporaryDirectory() if args.data_dir is None else None
    root = Path(args.data_dir or tmp.name)  # type: ignore[union-attr]
    scenes = synthetic.classification_scenes(args.seed, args.scenes, args.image_size, 2, 4)
    inst = synthetic.write_coco_instances(scenes, root / "coco", rle="compressed")
    pan = synthetic.write_coco_panoptic(scenes, root / "coco")
    images = root / "coco" / "instances_synthetic"
    common = ["--methods", args.methods, "--workers", "0", "--threads", str(args.threads)]
    runs = {
        "box": ["--task", "classify", "--dataset", "coco", "--root", str(inst), "--images", str(images),
                "--region", "box"],
        "mask": ["--task", "classify", "--dataset", "coco", "--root", str(inst), "--images", str(images),
                 "--region", "mask"],
        "panoptic": ["--task", "classify", "--dataset", "coco-panoptic", "--root", str(pan), "--images",
                     str(root / "coco" / "panoptic_synthetic")],
        "detect": ["--task", "detect", "--dataset", "coco", "--root", str(inst), "--images", str(images)],
    }  # fmt: skip
    result: dict = {"scenes": args.scenes, "image_size": args.image_size, "seed": args.seed, "threads": args.threads}
    for name, task_args in runs.items():
        out = root / "runs" / name
        _cli(["compare", *task_args, *common, "--out", str(out)])
        result[name] = json.loads((out / "compare.json").read_text())
    rows = []
    methods = args.methods.split(",")
    for m in methods:
        cells = [m]
        for name in ("box", "mask", "panoptic"):
            s = json.loads((root / "runs" / name / m / "summary.json").read_text())
            cells.append(f"{s['accuracy']:.1f} / {s['mean_per_class_accuracy']:.1f}")
        d = json.loads((root / "runs" / "detect" / m / "summary.json").read_text())
        cells.append(f"{d['AP']:.1f} / {d['AP50']:.1f}")
        rows.append(cells)
        result.setdefault("table", {})[m] = cells[1:]
    from falip.tasks.metrics import format_table

    n = json.loads((root / "runs" / "box" / "falip" / "summary.json").read_text())["n"]
    print(f"\nCOCO-format synthetic scenes: {args.scenes} images, {n} regions (top-1 / mean per class %; AP / AP50)")
    print(format_table(["method", "boxes", "masks", "panoptic masks", "detect AP (GT boxes)"], rows))
    result["load_average_before"] = load_before
    result["load_average_after"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
