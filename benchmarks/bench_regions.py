"""Many regions of one image (COCO-style region recognition): FALIP's batched pass against one forward per region.

One image with K = 16, 64, 128, 256 random boxes, on two towers at ViT-B/16 size with random weights
(speed does not depend on the weights; built from configs, no network): open_clip ``ViT-B-16`` and
Hugging Face ``CLIPModel`` with a B/16 vision config. Per tower and K, side by side in rounds (the
order reversed every other round, medians):

* ``loop``: the authors' scheme, one full forward per region through the library's own blocks and
  head (``bench_towers.per_box_loop``), K forwards;
* ``falip``: ``FovealCLIP.encode_image(image, boxes=[K boxes])`` at the default settings, regions in
  chunks of ``--chunk`` (FovealCLIP's ``batch_size``);
* ``own1``: the library's own forward of the one image, the unit costs are counted in.

Reported: ``speedup`` = loop / falip, and ``per_extra_region`` = (falip(K) - own1) / (K * own1), the
cost of each region in forwards. Peak memory: each (tower, K) is also run in a fresh subprocess that
builds the model, runs ``falip`` once and prints its peak RSS (``ru_maxrss``), with the chunk and with
every region in one chunk, so the table shows that the chunk bounds memory as K grows.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_regions.py [--threads 1] [--rounds 3] [--ks 16,64,128,256]
       [--chunk 64] [--towers ...] [--out benchmarks/results/regions.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_towers import Case, _hf_clip, _open_clip, own_forward, per_box_loop, random_boxes, timed  # noqa: E402

CASES: list[Case] = [Case("open_clip ViT-B-16", _open_clip("ViT-B-16")), Case("HF CLIPModel B/16", _hf_clip)]


def _setup(case: Case, chunk: int) -> tuple[Any, Any, Any]:
    import falip

    torch.manual_seed(0)
    model = case.build().eval()
    return model, falip.FovealCLIP(model, batch_size=chunk), own_forward(model)[1]


def bench_case(case: Case, ks: list[int], rounds: int, chunk: int) -> dict:
    model, fclip, own = _setup(case, chunk)
    tower = fclip.tower
    h, w = tower.image_size
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, h, w, generator=g)
    layers, alpha, sigma, form = set(fclip.layers), fclip.alpha, fclip.sigma, fclip.form
    rows = []
    with torch.no_grad():
        own(image)  # warm-up
        for k in ks:
            boxes = random_boxes(k, min(h, w), g)
            calls = {
                "own1": lambda: own(image),
                "falip": lambda b=boxes: fclip.encode_image(image, boxes=[b]),
                "loop": lambda b=boxes: per_box_loop(tower, image, b, layers, alpha, sigma, form),
            }
            ours, ref = calls["falip"](), calls["loop"]()  # warm-up, and the two agree
            diff = (ours - ref).abs().max().item()
            times: dict[str, list[float]] = {n: [] for n in calls}
            for r in range(rounds):
                for name in list(calls) if r % 2 == 0 else list(calls)[::-1]:
                    times[name].append(timed(calls[name]))
            med = {n: statistics.median(t) for n, t in times.items()}
            rows.append({
                "regions": k, "median_s": med, "times_s": times,
                "speedup": med["loop"] / med["falip"],
                "forwards": med["falip"] / med["own1"],
                "per_extra_region": (med["falip"] - med["own1"]) / (k * med["own1"]),
                "max_abs_diff_vs_loop": diff, "max_abs_feature": ref.abs().max().item(),
            })  # fmt: skip
            print(
                f"  {case.name:<20} K={k:<4} loop {1e3 * med['loop']:8.0f} ms  falip {1e3 * med['falip']:7.0f} ms  "
                f"x{rows[-1]['speedup']:5.2f}  = {rows[-1]['forwards']:5.2f} forwards "
                f"({rows[-1]['per_extra_region']:.3f} per region)  |diff| {diff:.1e}",
                flush=True,
            )
    return {"tower": case.name, "library": tower.library, "chunk": chunk, "rows": rows}


def peak_rss_mib(case_name: str, k: int, chunk: int, threads: int) -> float:
    """Peak RSS (MiB) of a fresh process that builds ``case_name`` and runs FALIP on one image with ``k`` boxes."""
    cmd = [sys.executable, __file__, "--rss-child", case_name, "--ks", str(k), "--chunk", str(chunk)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _rss_child(case_name: str, k: int, chunk: int) -> None:
    case = {c.name: c for c in CASES}[case_name]
    _, fclip, _ = _setup(case, chunk)
    h, w = fclip.tower.image_size
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, h, w, generator=g)
    boxes = random_boxes(k, min(h, w), g)
    with torch.no_grad():
        fclip.encode_image(image, boxes=[boxes])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ks", default="16,64,128,256", help="regions per image, comma-separated")
    ap.add_argument("--chunk", type=int, default=64, help="regions per chunk (FovealCLIP batch_size)")
    ap.add_argument("--towers", default=None, help="comma-separated subset of the tower names")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--out", default="benchmarks/results/regions.json")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    ks = [int(v) for v in args.ks.split(",") if v.strip()]
    torch.set_num_threads(args.threads)
    if args.rss_child:
        _rss_child(args.rss_child, ks[0], args.chunk)
        return 0
    cases = CASES if not args.towers else [c for c in CASES if c.name in args.towers.split(",")]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    print(f"bench_regions: K={ks}, chunk {args.chunk}, threads={args.threads}, {args.rounds} rounds, "
          f"load before {load_before[0]:.2f}", flush=True)  # fmt: skip
    towers = [bench_case(c, ks, args.rounds, args.chunk) for c in cases]
    memory = []
    if not args.no_memory:
        for c in cases:
            for k in ks:
                row = {"tower": c.name, "regions": k, "chunk": args.chunk}
                row["peak_rss_mib"] = peak_rss_mib(c.name, k, args.chunk, args.threads)
                row["peak_rss_mib_one_chunk"] = peak_rss_mib(c.name, k, max(k, 1), args.threads)
                memory.append(row)
                print(f"  {c.name:<20} K={k:<4} peak RSS {row['peak_rss_mib']:7.0f} MiB (chunk {args.chunk}), "
                      f"{row['peak_rss_mib_one_chunk']:7.0f} MiB (all {k} in one chunk)", flush=True)  # fmt: skip
    result = {
        "threads": args.threads, "rounds": args.rounds, "ks": ks, "chunk": args.chunk, "dtype": "float32",
        "device": "cpu", "python": platform.python_version(), "torch": torch.__version__,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "wall_s": time.perf_counter() - t0, "towers": towers, "memory": memory,
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"load after {result['load_average_after'][0]:.2f}; {result['wall_s']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
