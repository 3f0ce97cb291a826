"""falip label at scale: 100 images with about 100 segment-anything masks each, regions per second.

The images are synthetic scenes; each gets a folder in segment-anything's ``amg.py`` layout
(``<stem>/0.png, ...`` + ``metadata.csv``) holding its objects' masks plus random ellipses and
rectangles, ``--masks`` in all (SAM's automatic generator gives tens to a hundred masks per photo).
``falip label DIR --proposals MASKS --classes ...`` then labels every mask through the harness, as a
user runs it. Reported apart: the time spent reading the proposals (the harness's loader, in
``summary.json``'s ``proposal_s``) and the model's time (``timing.json``'s ``compute_s``), so
regions per second is the model's rate on this machine.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_label.py [--images 100] [--masks 100] [--model falip-tiny]
       [--out benchmarks/results/label.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_amg_folder(folder: Path, masks: np.ndarray, scores: np.ndarray) -> None:
    """One image's masks as amg.py writes them: ``i.png`` (0/255) and ``metadata.csv`` without a last newline."""
    from PIL import Image

    folder.mkdir(parents=True)
    rows = ["id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,stability_score,"
            "crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"]  # fmt: skip
    h, w = masks.shape[1:]
    for i, (m, s) in enumerate(zip(masks, scores)):
        Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{i}.png")
        ys, xs = np.nonzero(m)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
        rows.append(",".join(str(v) for v in [i, int(m.sum()), *box, 0, 0, f"{s:.4f}", 0.95, 0, 0, w, h]))
    (folder / "metadata.csv").write_text("\n".join(rows))


def random_masks(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``n`` random ellipses and rectangles ``[n, size, size]`` bool, each at least 64 pixels."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), dtype=bool)
    for k in range(n):
        while not out[k].sum() >= 64:
            cx, cy = rng.uniform(0, size, 2)
            rx, ry = rng.uniform(size / 30, size / 4, 2)
            if rng.random() < 0.5:
                out[k] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            else:
                out[k] = (abs(xx - cx) <= rx) & (abs(yy - cy) <= ry)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--masks", type=int, default=100, help="masks per image (objects + random shapes)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--model", default="falip-tiny")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="the harness's loader processes (read the masks)")
    ap.add_argument("--seed", type=int, default=1_000_051)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="benchmarks/results/label.json")
    args = ap.parse_args(argv)

    from PIL import Image

    from falip.cli import main as falip_main
    from falip.data import synthetic

    t0, load_before = time.perf_counter(), os.getloadavg()
    tmp = tempfile.TemporaryDirectory() if args.data_dir is None else None
    root = Path(args.data_dir or tmp.name)  # type: ignore[union-attr]
    rng = np.random.default_rng(args.seed)
    scenes = synthetic.classification_scenes(args.seed, args.images, args.image_size, 2, 4)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i, sc in enumerate(scenes):
        stem = f"{i + 1:012d}"
        Image.fromarray(sc.image).save(root / "images" / f"{stem}.png")
        extra = random_masks(rng, max(0, args.masks - len(sc.objects)), args.image_size)
        masks = np.concatenate([sc.masks, extra])
        write_amg_folder(root / "masks" / stem, masks, rng.uniform(0.8, 1.0, len(masks)))
    write_s = time.perf_counter() - t0
    out = root / "run"
    argv_ = ["label", str(root / "images"), "--proposals", str(root / "masks"), "--classes",
             ",".join(synthetic.CLASSES), "--model", args.model, "--threads", str(args.threads),
             "--workers", str(args.workers), "--out", str(out)]  # fmt: skip
    print("falip " + " ".join(argv_), file=sys.stderr, flush=True)
    t1 = time.perf_counter()
    code = falip_main(argv_)
    label_s = time.perf_counter() - t1
    if code != 0:
        raise SystemExit(f"falip label exited {code}")
    summary = json.loads((out / "summary.json").read_text())
    timing = json.loads((out / "timing.json").read_text())
    n = summary["n"]
    result = {
        "images": summary["images"], "regions": n, "masks_per_image": args.masks, "image_size": args.image_size,
        "model": args.model, "threads": args.threads, "workers": args.workers,
        "label_wall_s": label_s, "model_s": timing["compute_s"], "loader_wait_s": timing["wait_s"],
        "proposal_s": summary["proposal_s"], "regions_per_s_model": n / timing["compute_s"],
        "regions_per_s_wall": n / label_s, "write_data_s": write_s,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
    }  # fmt: skip
    print(
        f"labelled {n} regions in {summary['images']} images: {result['regions_per_s_model']:.0f} regions/s in the "
        f"model ({timing['compute_s']:.1f} s), {result['regions_per_s_wall']:.0f} regions/s end to end "
        f"({label_s:.1f} s); reading the proposals took {summary['proposal_s']:.1f} s in the loader "
        f"({args.workers} worker(s)), waited on for {timing['wait_s']:.1f} s"
    )
    o = Path(args.out)
    o.parent.mkdir(parents=True, exist_ok=True)
    o.write_text(json.dumps(result, indent=2))
    print(f"wrote {o}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
