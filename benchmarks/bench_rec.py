"""REC harness speed: ``falip rec`` (the runner) against scoring each line on its own, side by side.

On a ReCLIP-format split written by the synthetic writers (about 2 sentences per image, like
RefCOCO's 2.5 lines per image), with the shipped model at a fixed thread count:

(a) the runner (``RecTask`` + ``falip.runner.run``: every image encoded once for all its sentences,
    images decoded in ``--workers`` processes) against the authors' loop: one
    ``RegionScorer.score`` call per sentence, the image opened each time. Same predictions checked.
(b) the share of the runner's time spent waiting for images (``timing.json``).
(c) peak resident memory of ``falip rec`` on the split and on one 4x larger (fresh processes).

Usage: python benchmarks/bench_rec.py [--scenes 160] [--threads 1] [--workers 2] [--out FILE]
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_split(root: Path, scenes: int, seed: int) -> Path:
    from falip.data import synthetic

    return synthetic.write_reclip_rec(synthetic.rec_examples(seed=seed, n_scenes=scenes), root, "synthetic_testa")


def runner_pass(split: Path, out: Path, workers: int, batch: int) -> tuple[float, dict, dict]:
    import falip
    from falip.runner import read_results, run
    from falip.scoring import RegionScorer
    from falip.tasks.rec import RecSettings, RecTask

    fclip, pre, tok = falip.load("falip-tiny")
    scorer = RegionScorer(fclip, pre, tok)
    task = RecTask(scorer, RecSettings(data=(str(split),), images=str(split.parent / "images")))
    t0 = time.perf_counter()
    run(task, out, workers=workers, batch_units=batch, progress=False)
    elapsed = time.perf_counter() - t0
    records, _ = read_results(out)
    timing = json.loads((out / "timing.json").read_text())
    return elapsed, {r["id"]: r["pred"] for r in records}, timing


def line_by_line(split: Path) -> tuple[float, dict]:
    import falip
    from falip.data.images import load_image
    from falip.data.reclip import iter_reclip_jsonl
    from falip.scoring import RegionScorer
    from falip.tasks.rec import REC_TEMPLATE, pick_region

    fclip, pre, tok = falip.load("falip-tiny")
    scorer = RegionScorer(fclip, pre, tok)
    preds = {}
    t0 = time.perf_counter()
    for s in iter_reclip_jsonl(split, image_root=split.parent / "images"):
        image = load_image(s.image_path)
        scores = scorer.score(image, s.boxes, [s.sentence.lower()], template=REC_TEMPLATE)[:, 0]
        preds[s.id] = pick_region(scores, s.id, 0)
    return time.perf_counter() - t0, preds


def peak_rss_mib(split: Path, out: Path, threads: int, workers: int) -> float:
    """Peak RSS (MiB) of a fresh ``falip rec`` process over ``split`` (children included)."""
    cmd = [sys.executable, "-m", "falip.cli", "rec", "--data", str(split), "--images", str(split.parent / "images"),
           "--out", str(out), "--threads", str(threads), "--workers", str(workers)]  # fmt: skip
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 0))"
    )
    kib = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True).stdout
    return int(kib.strip().splitlines()[-1]) / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=160, help="images in the split (default 160, ~320 lines)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=424242)
    p.add_argument("--out", default="benchmarks/results/rec.json")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        split = write_split(root / "small", args.scenes, args.seed)
        lines = sum(1 for _ in open(split, encoding="utf-8"))
        # warm both paths once (model load, first-call allocations), then time them interleaved
        runner_pass(split, root / "warm", 0, args.batch)
        t_loop, preds_loop = line_by_line(split)
        t_run, preds_run, timing = runner_pass(split, root / "run", args.workers, args.batch)
        t_loop2, _ = line_by_line(split)
        t_run2, _, timing2 = runner_pass(split, root / "run2", args.workers, args.batch)
        same = preds_loop == preds_run
        big = write_split(root / "big", 4 * args.scenes, args.seed + 1)
        big_lines = sum(1 for _ in open(big, encoding="utf-8"))
        t_big, _, timing_big = runner_pass(big, root / "run_big", args.workers, args.batch)
        rss_small = peak_rss_mib(split, root / "rss1", args.threads, args.workers)
        rss_big = peak_rss_mib(big, root / "rss4", args.threads, args.workers)
    loop_s, run_s = min(t_loop, t_loop2), min(t_run, t_run2)
    result = {
        "images": args.scenes,
        "lines": lines,
        "sentences": len(preds_loop),
        "threads": args.threads,
        "workers": args.workers,
        "line_by_line_s": [t_loop, t_loop2],
        "runner_s": [t_run, t_run2],
        "speedup": loop_s / run_s,
        "same_predictions": same,
        "wait_fraction": [timing["wait_fraction"], timing2["wait_fraction"]],
        "runner_4x_s": t_big,
        "wait_fraction_4x": timing_big["wait_fraction"],
        "timing_4x": timing_big,
        "peak_rss_mib": {"1x": rss_small, "4x": rss_big, "4x_lines": big_lines},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(
        f"REC harness on {lines} lines / {args.scenes} images ({len(preds_loop)} sentences), {args.threads} thread(s)"
    )
    print(f"  line by line (RegionScorer.score per sentence): {t_loop:7.2f} s, {t_loop2:7.2f} s")
    print(f"  falip rec (runner, workers={args.workers}):          {t_run:7.2f} s, {t_run2:7.2f} s")
    print(f"  speed-up (best of two each): x{result['speedup']:.2f}; same predictions: {same}")
    waits = ", ".join(f"{100 * w:.1f}%" for w in result["wait_fraction"])
    print(f"  time waiting for images: {waits} of the runner's time (worker start-up included)")
    print(f"  on the 4x split ({big_lines} lines): {t_big:.2f} s, waiting {100 * timing_big['wait_fraction']:.1f}%")
    print(f"  peak RSS of falip rec: {rss_small:.0f} MiB ({lines} lines), {rss_big:.0f} MiB ({big_lines} lines)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
