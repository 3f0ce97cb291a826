"""Core speed benchmark: FALIP batched regions vs. the authors' one-box-per-forward loop.

Measured side by side in one run on ViT-B-16 with random weights (speed does not depend on the
weights), at a fixed thread count:

(a) one image with B boxes: ``FovealCLIP.encode_image(image, boxes=[B boxes])`` vs. a loop that,
    like the authors' code, runs the whole ViT once per box with that box's mask in the last 4
    blocks (open_clip's own blocks, ``attn_mask`` per block);
(b) one box per image on a batch of 8 vs. plain ``open_clip`` ``encode_image`` on the same batch;
(c) peak memory (resident-set growth during the call, in a fresh process) for B = 32.

Usage: python benchmarks/bench_core.py [--threads 1] [--repeats 5] [--device cpu] [--out FILE]
Prints a table and writes JSON. Timings are medians over repeats, the two sides interleaved.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

MODEL = "ViT-B-16"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load_model(device: str, dtype: torch.dtype):
    import logging

    import open_clip

    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = open_clip.create_model(MODEL, pretrained=None).eval().to(device=device, dtype=dtype)
    return model


def authors_loop(model, image: torch.Tensor, boxes: torch.Tensor, layers, alpha=0.2, sigma=100.0) -> torch.Tensor:
    """One full forward per box, the box's mask added in ``layers`` (the authors' scheme)."""
    from falip.core.mask import foveal_profile, full_mask, regions_to_roa
    from falip.core.regions import Regions

    v = model.visual
    heads = v.transformer.resblocks[0].attn.num_heads
    out = []
    for box in boxes:
        region = Regions(box[None].cpu(), image_size=tuple(v.image_size)[::-1], frame="input")
        roa = regions_to_roa(region, v.grid_size, v.patch_size)
        m = full_mask(foveal_profile(roa, alpha, sigma), "cls").to(image.device, image.dtype)  # [1, L, L]
        m = m.expand(heads, -1, -1)  # nn.MultiheadAttention: [N * heads, L, L]
        x = v._embeds(image)
        for i, block in enumerate(v.transformer.resblocks):
            x = block(x, attn_mask=m if i in layers else None)
        out.append(v.ln_post(x[:, 0]) @ v.proj)
    return torch.cat(out)


def random_boxes(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * (size - 40)
    wh = 16 + torch.rand(n, 2, generator=generator) * (size / 2)
    return torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)


def timed(fn, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def bench_boxes(fclip, model, device, dtype, counts, repeats) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 224, 224, generator=g).to(device, dtype)
    rows = []
    for b in counts:
        boxes = random_boxes(b, 224, g).to(device)
        with torch.no_grad():
            ours = fclip.encode_image(image, boxes=[boxes])
            ref = authors_loop(model, image, boxes, set(fclip.layers))
            max_diff = (ours.float() - ref.float()).abs().max().item()
            t_ours, t_loop = [], []
            for _ in range(repeats):
                t_loop.append(timed(lambda b=boxes: authors_loop(model, image, b, set(fclip.layers)), device))
                t_ours.append(timed(lambda b=boxes: fclip.encode_image(image, boxes=[b]), device))
        lo, ou = statistics.median(t_loop), statistics.median(t_ours)
        rows.append({"boxes": b, "loop_s": lo, "falip_s": ou, "speedup": lo / ou, "max_abs_diff": max_diff})
        print(
            f"  (a) B={b:>3}: loop {lo * 1e3:9.1f} ms   falip {ou * 1e3:9.1f} ms   "
            f"x{lo / ou:5.2f}   |diff| {max_diff:.1e}",
            flush=True,
        )
    return rows


def bench_overhead(fclip, model, device, dtype, repeats, batch=8) -> dict:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(batch, 3, 224, 224, generator=g).to(device, dtype)
    boxes = [random_boxes(1, 224, g).to(device) for _ in range(batch)]
    t_plain, t_ours = [], []
    with torch.no_grad():
        fclip.encode_image(images, boxes=boxes)
        model.encode_image(images)
        for _ in range(repeats):
            t_plain.append(timed(lambda: model.encode_image(images), device))
            t_ours.append(timed(lambda: fclip.encode_image(images, boxes=boxes), device))
    pl, ou = statistics.median(t_plain), statistics.median(t_ours)
    print(
        f"  (b) batch {batch}, one box each: plain {pl * 1e3:.1f} ms   falip {ou * 1e3:.1f} ms   "
        f"overhead {100 * (ou / pl - 1):+.1f}%",
        flush=True,
    )
    return {"batch": batch, "plain_s": pl, "falip_s": ou, "overhead_pct": 100 * (ou / pl - 1)}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_growth(fn) -> float:
    """Peak resident-set growth (MiB) while ``fn`` runs, sampled every 0.5 ms by a thread.

    Free heap memory is first returned to the OS (malloc_trim), so that memory freed earlier
    (model creation) cannot hide the call's own allocations.
    """
    import ctypes
    import threading

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    fn()
    done.set()
    t.join()
    peak[0] = max(peak[0], _rss_bytes())
    return (peak[0] - base) / 2**20


def _memory_child(kind: str, threads: int, boxes_n: int, chunk: int, queue) -> None:
    torch.set_num_threads(threads)
    import falip

    model = load_model("cpu", torch.float32)
    fclip = falip.FovealCLIP(model, batch_size=chunk)
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 224, 224, generator=g)
    boxes = random_boxes(boxes_n, 224, g)
    calls = {
        "plain": lambda: model.encode_image(image),
        "loop": lambda: authors_loop(model, image, boxes, set(fclip.layers)),
        "falip": lambda: fclip.encode_image(image, boxes=[boxes]),
    }
    with torch.no_grad():
        queue.put(_peak_rss_growth(calls[kind]))


def bench_memory(threads: int, boxes_n: int = 32) -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    for kind, chunk in (("plain", 64), ("loop", 64), ("falip", 64), ("falip", 8)):
        q = ctx.Queue()
        p = ctx.Process(target=_memory_child, args=(kind, threads, boxes_n, chunk, q))
        p.start()
        mib = q.get()
        p.join()
        label = {
            "plain": "plain encode_image, 1 image",
            "loop": "authors' loop",
            "falip": f"falip batched (batch_size={chunk})",
        }[kind]
        rows.append({"kind": kind, "batch_size": chunk, "peak_growth_mib": mib, "label": label})
        print(f"  (c) B={boxes_n}: {label:<32} peak RSS growth {mib:7.1f} MiB", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    ap.add_argument("--counts", default="1,4,16,32")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/core.json")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    import falip

    dtype = getattr(torch, args.dtype)
    load_before = os.getloadavg()
    print(
        f"bench_core: {MODEL} random weights, device={args.device}, dtype={args.dtype}, threads={args.threads}, "
        f"load average before: {load_before[0]:.2f}",
        flush=True,
    )
    model = load_model(args.device, dtype)
    fclip = falip.FovealCLIP(model)
    counts = [int(c) for c in args.counts.split(",")]
    result = {
        "model": MODEL,
        "device": args.device,
        "dtype": args.dtype,
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_before": load_before,
        "boxes": bench_boxes(fclip, model, args.device, dtype, counts, args.repeats),
        "overhead": bench_overhead(fclip, model, args.device, dtype, args.repeats),
    }
    if not args.no_memory and args.device == "cpu":
        result["memory"] = bench_memory(args.threads)
    result["load_average_after"] = os.getloadavg()
    print(
        f"load average after: {result['load_average_after'][0]:.2f} (this run uses {args.threads} thread(s); "
        f"above that is other load)"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
