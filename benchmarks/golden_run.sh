#!/usr/bin/env bash
# The golden run of issue 19: results that a refactor must leave unchanged.
# usage: bash benchmarks/golden_run.sh OUTDIR   (from a checkout, falip installed; about a minute at 1 thread)
# compare two runs: python benchmarks/golden_compare.py OUTDIR_BEFORE OUTDIR_AFTER
set -euo pipefail
OUT=$1; rm -rf "$OUT"; mkdir -p "$OUT"
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD/src
python - "$OUT" <<'PY'
import sys
from pathlib import Path
import h5py, numpy as np
from falip.data import synthetic
root = Path(sys.argv[1]) / "data"
synthetic.write_reclip_rec(synthetic.rec_examples(1000011, 40, 224, 0.5), root / "rec", "synthetic_test")
synthetic.write_classification(synthetic.classification_scenes(1000013, 30, 224, 2, 4), root / "cls", "synthetic_test", with_masks=False)
mn = root / "mn40"; mn.mkdir(parents=True)
rng = np.random.default_rng(0)
(mn / "shape_names.txt").write_text("box\nball\n")
labels = np.arange(8) % 2
clouds = []
for k in labels:
    if k == 0:
        pts = rng.uniform(-1, 1, size=(2048, 3)) * np.array([0.6, 0.3, 0.1])
    else:
        v = rng.normal(size=(2048, 3)); pts = 0.5 * v / np.linalg.norm(v, axis=1, keepdims=True)
    clouds.append(pts.astype(np.float32))
with h5py.File(mn / "ply_data_test0.h5", "w") as f:
    f["data"] = np.stack(clouds); f["label"] = labels.astype(np.uint8)[:, None]
(mn / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
PY
D=$OUT/data
falip compare --task rec --data $D/rec/synthetic_test.jsonl --images $D/rec/images --methods none,crop,blur,circle,falip --workers 0 --out $OUT/rec
falip compare --task classify --dataset jsonl --root $D/cls/synthetic_test.jsonl --methods none,crop,blur,circle,falip --workers 0 --out $OUT/cls
falip pointcloud --dataset modelnet40 --root $D/mn40 --workers 0 --out $OUT/pc
falip sweep alpha --task rec --data $D/rec/synthetic_test.jsonl --images $D/rec/images --values 0,0.5,2 --workers 0 --out $OUT/sweep
find $OUT -name results.jsonl | sort
