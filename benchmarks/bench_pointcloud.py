"""Point-cloud pipeline speed: projection + FALIP encoding of clouds x views, batched vs per cloud.

Side by side in one run, ViT-B-16 with random weights (speed does not depend on the weights), PointCLIP
V1's 6 views, FALIP on each view's foreground, at a fixed thread count:

* batched: ``PointCloudTask.view_features`` on batches of clouds, projected together, their views
  through the image tower ``--view-chunk`` at a time ("auto": the task's choice for the device, one
  cloud's views a call on a CPU; "all": every view of the batch in one call);
* per cloud: project one cloud, encode its six views, the next cloud (the reference code's loop);

interleaved chunk by chunk, the side that goes first alternating.

Same outputs checked; prints clouds per second and the share of the time spent projecting.

Usage: python benchmarks/bench_pointcloud.py [--clouds 256] [--batch 32] [--view-chunk auto|all|N]
       [--threads 1] [--out FILE]
(256 clouds take ~20 min at one thread; ``--clouds 64`` ~5 min.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def _clouds(n: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):  # boxes and spheres of random size in the unit sphere
        pts = rng.normal(size=(2048, 3)) * rng.uniform(0.1, 0.4, size=3)
        pts += rng.uniform(-0.3, 0.3, size=3)
        out.append((pts / max(1.0, float(np.linalg.norm(pts, axis=1).max()))).astype(np.float32))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clouds", type=int, default=256)
    p.add_argument("--batch", type=int, default=32, help="clouds per batch in the batched pipeline")
    p.add_argument("--view-chunk", default="auto", help="views per image-tower call: auto, all or a number")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", default="ViT-B-16")
    p.add_argument("--out", default="benchmarks/results/pointcloud.json")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import logging

    import numpy as np
    import open_clip
    import torch

    import falip
    from falip.tasks.pointcloud import PointCloudSettings, PointCloudTask
    from falip.tasks.projection import project_v1

    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = open_clip.create_model(args.model, pretrained=None).eval()
    fclip = falip.FovealCLIP(model)
    tokenizer = open_clip.get_tokenizer(args.model)
    chunk = {"auto": "auto", "all": None}.get(args.view_chunk, args.view_chunk)
    chunk = chunk if chunk in ("auto", None) else int(chunk)
    task = PointCloudTask(fclip, tokenizer, PointCloudSettings("bench", "-"), [], ["a", "b"], view_chunk=chunk)
    clouds = _clouds(args.clouds, 0)
    size = int(fclip.image_size[0])
    load_before = os.getloadavg()[0]

    # the two sides interleaved chunk by chunk, so that a change in the machine's load hits both alike
    t_batched = t_loop = t_project = 0.0
    batched_parts, loop_parts = [], []
    for k, i in enumerate(range(0, len(clouds), args.batch)):
        chunk = clouds[i : i + args.batch]

        def batched_side(chunk=chunk) -> float:
            t0 = time.perf_counter()
            batched_parts.append(task.view_features(chunk))
            return time.perf_counter() - t0

        def loop_side(chunk=chunk) -> float:
            t0 = time.perf_counter()
            loop_parts.extend(task.view_features([c]) for c in chunk)
            return time.perf_counter() - t0

        if k % 2 == 0:  # which side goes first alternates, so that neither gets the warm caches every time
            t_batched, t_loop = t_batched + batched_side(), t_loop + loop_side()
        else:
            t_loop, t_batched = t_loop + loop_side(), t_batched + batched_side()
        t0 = time.perf_counter()
        project_v1(torch.from_numpy(np.stack(chunk)), size=size)  # projection alone, to report its share
        t_project += time.perf_counter() - t0
    batched, loop = torch.cat(batched_parts), torch.cat(loop_parts)
    diff = float((batched - loop).abs().max())
    result = {
        "model": args.model,
        "clouds": args.clouds,
        "views": 6,
        "batch": args.batch,
        "view_chunk": task.view_chunk,
        "threads": args.threads,
        "batched_s": t_batched,
        "per_cloud_s": t_loop,
        "speedup": t_loop / t_batched,
        "batched_clouds_per_s": args.clouds / t_batched,
        "per_cloud_clouds_per_s": args.clouds / t_loop,
        "projection_share_batched": t_project / t_batched,
        "max_abs_diff": diff,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(f"{args.clouds} clouds x 6 views, {args.model} random weights, FALIP per view, {args.threads} thread(s)")
    calls = "all views" if task.view_chunk is None else f"{task.view_chunk} views"
    rate = result["batched_clouds_per_s"]
    print(f"  batched ({args.batch} clouds, {calls} a call): {t_batched:8.1f} s  {rate:.2f} clouds/s")
    print(f"  per cloud:                   {t_loop:8.1f} s  {result['per_cloud_clouds_per_s']:.2f} clouds/s")
    share = 100 * result["projection_share_batched"]
    print(f"  speed-up x{result['speedup']:.2f}; projection {share:.1f}% of the batched time")
    print(f"  largest |difference| of the view features: {diff:.1e}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
