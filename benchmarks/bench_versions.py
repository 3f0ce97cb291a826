"""Time two checkouts of falip on the same inputs, in alternating fresh processes.

Used to check that a change costs no speed:

    git worktree add /tmp/before <commit>
    OMP_NUM_THREADS=1 python benchmarks/bench_versions.py /tmp/before/src src --rounds 2

Each round runs every source tree once, in its own process (the package name is the same, so two
versions cannot share one process): ViT-B-16 with random weights, 1 thread, medians of 5 calls of
(8 images with one box each) and (one image with 16 boxes). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, logging, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
import open_clip, falip
logging.getLogger().setLevel(logging.ERROR)
torch.manual_seed(0)
model = open_clip.create_model("ViT-B-16", pretrained=None).eval()
fclip = falip.FovealCLIP(model)
g = torch.Generator().manual_seed(0)
images = torch.randn(8, 3, 224, 224, generator=g)
boxes = [torch.tensor([[20.0, 30.0, 150.0, 170.0]]) for _ in range(8)]
one = torch.randn(1, 3, 224, 224, generator=g)
b16 = [torch.tensor([[10.0 + i, 20.0, 120.0 + 5 * i, 200.0] for i in range(16)])]
with torch.no_grad():
    fclip.encode_image(images, boxes=boxes)
    t8, t16 = [], []
    for _ in range(5):
        t0 = time.perf_counter(); fclip.encode_image(images, boxes=boxes); t8.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); fclip.encode_image(one, boxes=b16); t16.append(time.perf_counter() - t0)
ms = {"batch8_one_box_ms": statistics.median(t8), "one_image_16_boxes_ms": statistics.median(t16)}
print(json.dumps({k: 1e3 * v for k, v in ms.items()}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="src/ folders of the falip checkouts to compare")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/versions.json")
    args = parser.parse_args()
    runs = []
    for r in range(args.rounds):
        for src in args.sources:
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(Path(src).resolve())], check=True, capture_output=True, text=True
            ).stdout
            row = {"round": r, "source": src, **json.loads(out.strip().splitlines()[-1])}
            runs.append(row)
            print(
                f"round {r}  {src:<24} 8 images x 1 box {row['batch8_one_box_ms']:7.0f} ms   "
                f"1 image x 16 boxes {row['one_image_16_boxes_ms']:7.0f} ms"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
