"""FALIP on an attention-pooled tower (FALIP-MAP) beside FALIP on the [CLS] tower, on synthetic scenes.

Two models trained alike (``falip train-tiny`` and ``falip train-tiny --pool map``, same data,
budget and settings): ``falip-tiny`` ([CLS] token) and ``falip-tiny-map`` (no [CLS] token;
SigLIP's attention-pool head). For each, FALIP's alpha and biased blocks are swept on the
synthetic VALIDATION splits (REC and region classification), the setting best on validation
(REC + classification accuracy) is picked, and the TEST splits report REC and region
classification for FALIP (-MAP), the whole image, crop, reverse blur and red circle.

FALIP-MAP settings (falip's own extension, ``docs/method.md`` "Towers"): the foveal profile over the ROA's patch
tokens is added to the pooling probe's logits in every head ("pool only", ``layers=()``), and
optionally to every query row of the last k blocks (``form="all"``; there is no [CLS] row).
On the [CLS] model the sweep is the paper's: the [CLS] row (``form="cls"``) of the last k blocks.

The splits are the ones of ``bench_synthetic.py`` (same seeds, in memory: REC test seed
1,000,001, validation 1,000,002; classification test 1,000,003, validation 1,000,004; 64 px),
so the [CLS] model's figures here match that benchmark's. Prompts "a photo of {expression}" and
"a photo of a {class}."; a REC answer is right when IoU > 0.5 with the gold box. Exact ties (the
whole image gives every box one score) are broken by a draw seeded per query, so the whole
image is a random pick. Block numbers in the output are 1-based.

Every method runs through falip's public API (``falip.load`` and ``RegionScorer``). When the
library cannot wrap the attention-pooled model yet, ``--map-impl naive`` (or ``auto``) uses the
plain implementation below, written from the definition on timm's modules (its alpha 0 equals
``model.encode_image``); with the library, the two are compared on the validation boxes and the
largest difference is reported. With ``--work-dir``, each setting's result is written as it
finishes (``<work-dir>/results.jsonl``) and a rerun with the same folder skips it. Seeded;
1 thread::

    OMP_NUM_THREADS=1 python benchmarks/bench_map.py --out benchmarks/results/map.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from falip.core.config import FalipConfig

REC_TEMPLATE = "a photo of {}"
CLS_TEMPLATE = "a photo of a {}."
EDITS = ("none", "crop", "blur", "circle")
LABELS = {"none": "whole image", "crop": "crop", "blur": "reverse blur", "circle": "red circle"}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench_map.json", help="JSON results path")
    p.add_argument(
        "--work-dir", default=None, help="keep each setting's result here as it finishes; a rerun skips them"
    )
    p.add_argument("--models", default="falip-tiny,falip-tiny-map", help="comma-separated model names")
    p.add_argument(
        "--pretrained",
        action="append",
        default=[],
        metavar="MODEL=PATH",
        help="weights for a model (default: its shipped weights); may be repeated",
    )
    p.add_argument(
        "--map-impl",
        choices=("auto", "library", "naive"),
        default="auto",
        help="FALIP-MAP through falip's FovealCLIP ('library'), the plain implementation here ('naive'), "
        "or the library when it can wrap the model ('auto')",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed; the splits use seeds 1_000_000 + 10 * seed + k")
    p.add_argument("--rec-scenes", type=int, default=600)
    p.add_argument("--cls-scenes", type=int, default=350)
    p.add_argument("--val-scenes", type=int, default=200)
    p.add_argument("--relational-fraction", type=float, default=0.5)
    p.add_argument("--alphas", default="0.1,0.2,0.5,1,2,5,10,20")
    p.add_argument("--sigma", type=float, default=100.0)
    p.add_argument("--last-blocks", default="1,2,3,4", help="sweep: bias the last k blocks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    return p.parse_args(argv)


def _seed(base: int, k: int) -> int:
    return 1_000_000 + 10 * base + k


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- FALIP-MAP, plainly


class NaiveMapCLIP:
    """FALIP-MAP on an open_clip CLIP whose image tower is timm's attention-pooled ViT, written
    plainly from the definition (one region per forward, timm's own modules, an additive mask).

    The face of :class:`falip.FovealCLIP` that :class:`falip.scoring.RegionScorer` uses for FALIP and
    image edits: ``encode_image(images, regions=..., alpha, sigma, layers, form)``, ``encode_text``,
    ``device``, ``dtype``, ``depth``, ``output_dim``, ``logit_scale``, ``model``.
    ``layers`` are 0-based blocks that also get the bias (every query row: form ``"all"``);
    ``()`` or None biases the pooling probe only.
    """

    def __init__(self, model: Any, alpha: float = 1.0, sigma: float = 100.0) -> None:
        trunk = model.visual.trunk
        if getattr(trunk, "attn_pool", None) is None or trunk.num_prefix_tokens != 0:
            raise ValueError("NaiveMapCLIP needs a timm ViT with an attention-pool head and no prefix tokens")
        self.clip = self.model = model
        self.trunk = trunk
        self.alpha, self.sigma = alpha, sigma
        self.grid_size = tuple(trunk.patch_embed.grid_size)
        self.patch_size = tuple(trunk.patch_embed.patch_size)

    # what RegionScorer reads of a FovealCLIP
    @property
    def device(self) -> Any:
        return next(self.clip.parameters()).device

    @property
    def dtype(self) -> Any:
        return next(self.trunk.parameters()).dtype

    @property
    def depth(self) -> int:
        return len(self.trunk.blocks)

    @property
    def output_dim(self) -> int:
        return int(self.clip.text_projection.shape[1])

    @property
    def logit_scale(self) -> Any:
        return self.clip.logit_scale

    def eval(self) -> NaiveMapCLIP:
        self.clip.eval()
        return self

    def encode_text(self, tokens: Any, normalize: bool = False) -> Any:
        return self.clip.encode_text(tokens, normalize=normalize)

    def encode_image(
        self,
        images: Any,
        regions: Sequence[Any] | None = None,
        alpha: float | None = None,
        sigma: float | None = None,
        layers: Sequence[int] | None = None,
        form: str | None = None,
    ) -> Any:
        import torch

        from falip.core.mask import foveal_profile, regions_to_roa

        if regions is None:
            return self.clip.encode_image(images)
        if form not in (None, "all"):
            raise ValueError(f"FALIP-MAP biases the blocks with form 'all', got {form!r}")
        alpha = self.alpha if alpha is None else alpha
        sigma = self.sigma if sigma is None else sigma
        biased = set(layers or ())
        out = []
        with torch.no_grad():
            for image, reg in zip(images, regions):
                if len(reg) == 0:
                    continue
                profile = foveal_profile(regions_to_roa(reg, self.grid_size, self.patch_size), alpha, sigma)
                for k in range(len(reg)):
                    mask = profile[k].to(images.dtype)[None, None, None, :]  # [1, heads, queries, keys]
                    x = self.trunk.patch_embed(image[None])
                    x = self.trunk.norm_pre(self.trunk._pos_embed(x))
                    for i, block in enumerate(self.trunk.blocks):
                        x = block(x, attn_mask=mask if i in biased else None)
                    x = self.trunk.norm(x)
                    pooled = self.trunk.attn_pool(x, attn_mask=mask)  # the probe's logits get the profile
                    pooled = self.trunk.head(self.trunk.head_drop(self.trunk.fc_norm(pooled)))
                    out.append(self.clip.visual.head(pooled))
        return torch.cat(out) if out else images.new_zeros(0, self.clip.text_projection.shape[1])


def _load(name: str, weights: str | None, map_impl: str) -> tuple[Any, Any, Any, str]:
    """``(fclip, preprocess, tokenizer, implementation)`` for ``name``."""
    import falip
    from falip.core.errors import FalipError

    pretrained = weights or "auto"
    if map_impl != "naive":
        try:
            fclip, pre, tok = falip.load(name, pretrained=pretrained)
            return fclip, pre, tok, "library"
        except FalipError as err:
            if map_impl == "library":
                raise
            _log(f"falip.load({name!r}) cannot wrap it ({err}); using the plain FALIP-MAP of this script")
    import open_clip

    from falip.core.preprocess import Preprocess
    from falip.models.loading import _resolve_pretrained, ensure_registered, load_checkpoint_file

    ensure_registered(name)
    path, _ = _resolve_pretrained(name, pretrained)
    model = open_clip.create_model(name)
    if path:
        load_checkpoint_file(model, path, name)
    model.eval()
    naive = NaiveMapCLIP(model)
    cfg = open_clip.get_model_config(name)
    pre = Preprocess(int(cfg["vision_cfg"]["image_size"]))
    return naive, pre, open_clip.get_tokenizer(name), "naive"


def _naive_of(fclip: Any) -> NaiveMapCLIP:
    """The plain FALIP-MAP on the model that the library's FovealCLIP wraps (for the cross-check)."""
    model = getattr(fclip, "model", None)
    if not hasattr(model, "visual"):  # a Tower: the library's model is inside it
        model = getattr(model, "model", model)
    return NaiveMapCLIP(model)


# ----------------------------------------------------------------------------- data and scoring


def _splits(args: argparse.Namespace, image_size: int) -> dict[str, Any]:
    from falip.data import synthetic

    rf = args.relational_fraction
    return {
        "rec_val": synthetic.rec_examples(_seed(args.seed, 2), args.val_scenes, image_size, rf),
        "cls_val": synthetic.classification_scenes(_seed(args.seed, 4), args.val_scenes, image_size, 2, 4),
        "rec_test": synthetic.rec_examples(_seed(args.seed, 1), args.rec_scenes, image_size, rf),
        "cls_test": synthetic.classification_scenes(_seed(args.seed, 3), args.cls_scenes, image_size, 2, 4),
    }


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _pick(scores: np.ndarray, rng: np.random.Generator) -> int:
    """Argmax, exact ties broken by ``rng`` (the whole image ties every box)."""
    best = np.flatnonzero(scores == scores.max())
    return int(best[0]) if len(best) == 1 else int(rng.choice(best))


def _features(scorer: Any, scenes: list, method: str) -> Any:
    from PIL import Image

    images = [Image.fromarray(s.image) for s in scenes]
    boxes = [np.array([o.box for o in s.objects], dtype=np.float64) for s in scenes]
    return scorer.features(images, boxes, method=method)


def _rec_eval(scorer: Any, examples: list, method: str, seed: int) -> dict[str, Any]:
    import torch.nn.functional as F

    feats = F.normalize(_features(scorer, [e.scene for e in examples], method).float(), dim=-1)
    texts = [q.expression for e in examples for q in e.queries]
    txt = scorer.text_features([REC_TEMPLATE.format(t) for t in texts])
    ok, rel, qi, offset = [], [], 0, 0
    for e in examples:
        k = len(e.scene.objects)
        for q in e.queries:
            s = (feats[offset : offset + k] @ txt[qi]).numpy()
            choice = _pick(s, np.random.default_rng([seed, 7, qi]))
            ok.append(_iou(e.scene.objects[choice].box, e.scene.objects[q.target].box) > 0.5)
            rel.append(q.relational)
            qi += 1
        offset += k
    ok_a, rel_a = np.array(ok), np.array(rel)
    return {"all": _acc(ok_a), "attribute": _acc(ok_a[~rel_a]), "relational": _acc(ok_a[rel_a])}


def _cls_eval(scorer: Any, scenes: list, method: str, seed: int) -> dict[str, Any]:
    import torch.nn.functional as F

    from falip.data.synthetic import CLASSES

    feats = F.normalize(_features(scorer, scenes, method).float(), dim=-1)
    txt = scorer.text_features([CLS_TEMPLATE.format(c) for c in CLASSES])
    labels = [o.label for s in scenes for o in s.objects]
    scores = (feats @ txt.T).numpy()
    ok = [CLASSES[_pick(scores[i], np.random.default_rng([seed, 11, i]))] == lab for i, lab in enumerate(labels)]
    return _acc(np.array(ok))


def _acc(ok: np.ndarray) -> dict[str, Any]:
    from falip.tasks.metrics import wilson_interval

    k, n = int(ok.sum()), int(ok.size)
    lo, hi = wilson_interval(k, n)
    return {"acc": k / n if n else float("nan"), "correct": k, "n": n, "ci95": [lo, hi]}


# ----------------------------------------------------------------------------- settings


def _settings(pooling: str, depth: int, alphas: list[float], last: list[int]) -> list[dict[str, Any]]:
    """The sweep: ``{"alpha", "layers" (0-based), "form", "label"}`` per setting."""
    out = []
    ks = sorted({min(k, depth) for k in last})
    if pooling == "map":
        groups = [((), "pool")] + [(tuple(range(depth - k, depth)), f"pool + last {k}") for k in ks]
        form = "all"
    else:
        groups = [(tuple(range(depth - k, depth)), f"last {k}") for k in ks]
        form = "cls"
    for layers, label in groups:
        for a in alphas:
            out.append({"alpha": a, "layers": list(layers), "form": form, "label": label})
    return out


def _weights_id(name: str, weights: str | None) -> str:
    """A short hash of the weights file a model is loaded from (keys of the stored results)."""
    import hashlib

    from falip.models.presets import get_preset

    path = weights or get_preset(name).weights_path
    if path is None or not Path(path).is_file():
        return "random"
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _key(model: str, split: str, setting: dict[str, Any] | str) -> str:
    if isinstance(setting, str):
        return f"{model}|{split}|{setting}"
    return f"{model}|{split}|a={setting['alpha']:g}|layers={setting['layers']}|form={setting['form']}"


def _blocks_text(layers: Sequence[int]) -> str:
    if not layers:
        return "none"
    return f"{layers[0] + 1}-{layers[-1] + 1}" if len(layers) > 1 else f"{layers[0] + 1}"


def _pooling(fclip: Any) -> tuple[str, int]:
    """``(pooling, depth)`` of a loaded model (library FovealCLIP or the plain FALIP-MAP)."""
    if isinstance(fclip, NaiveMapCLIP):
        return "map", len(fclip.trunk.blocks)
    tower = getattr(fclip, "tower", None)
    if tower is not None:
        return str(tower.pooling), int(tower.depth)
    return "cls", int(fclip.depth)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(max(1, args.threads))
    from falip.scoring import RegionScorer

    t0 = time.time()
    out_path = Path(args.out)
    store = None
    done: dict[str, Any] = {}
    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
        store = Path(args.work_dir) / "results.jsonl"
        if store.exists():
            for line in store.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    done[rec["key"]] = rec["value"]

    def cached(key: str, fn: Any, *fn_args: Any) -> Any:
        if key not in done:
            done[key] = fn(*fn_args)
            if store is None:
                return done[key]
            with open(store, "a") as fh:
                fh.write(json.dumps({"key": key, "value": done[key]}) + "\n")
        return done[key]

    weights = dict(s.split("=", 1) for s in args.pretrained)
    alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    last = [int(k) for k in args.last_blocks.split(",") if k.strip()]
    results: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "work_dir")},
        "seeds": {"rec_test": _seed(args.seed, 1), "rec_val": _seed(args.seed, 2)}
        | {"cls_test": _seed(args.seed, 3), "cls_val": _seed(args.seed, 4)},
        "blocks_note": "blocks are numbered from 1 (block 1 is the first)",
        "models": {},
    }
    splits: dict[int, dict[str, Any]] = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        fclip, pre, tok, impl = _load(name, weights.get(name), args.map_impl)
        pooling, depth = _pooling(fclip)
        size = int(pre.input_size[0])
        if size not in splits:
            splits[size] = _splits(args, size)
        data = splits[size]
        scorer = RegionScorer(fclip, pre, tok, batch_size=args.batch_size)
        # stored results are keyed by the weights and every setting of the data and the bias
        run_id = (
            f"{name}@{_weights_id(name, weights.get(name))}|seed={args.seed}|sigma={args.sigma:g}|"
            f"rf={args.relational_fraction:g}|n={args.val_scenes},{args.rec_scenes},{args.cls_scenes}"
        )
        _log(f"{name}: {pooling}-pooled, {depth} blocks, FALIP through {impl}")
        sweep = []
        for s in _settings(pooling, depth, alphas, last):
            opts = {"alpha": s["alpha"], "sigma": args.sigma, "layers": tuple(s["layers"]), "form": s["form"]}
            sc = scorer.with_options(config=FalipConfig(**opts))
            rec = cached(_key(run_id, "rec_val", s), _rec_eval, sc, data["rec_val"], "falip", args.seed)
            cls = cached(_key(run_id, "cls_val", s), _cls_eval, sc, data["cls_val"], "falip", args.seed)
            sweep.append({**s, "rec_val": rec["all"], "cls_val": cls})
            accs = f"REC {100 * rec['all']['acc']:5.1f}  cls {100 * cls['acc']:5.1f}"
            _log(f"  val {s['label']:>12} a={s['alpha']:<4g} {accs}")
        entry: dict[str, Any] = {"pooling": pooling, "depth": depth, "implementation": impl, "sweep": sweep}
        # best on validation: REC + classification (first in sweep order on an exact tie)
        best = max(sweep, key=lambda r: r["rec_val"]["acc"] + r["cls_val"]["acc"])
        picks = {"best": best}
        if pooling == "map":
            picks["best pool only"] = max(
                (r for r in sweep if not r["layers"]), key=lambda r: r["rec_val"]["acc"] + r["cls_val"]["acc"]
            )
        test: dict[str, Any] = {}
        for tag, s in picks.items():
            opts = {"alpha": s["alpha"], "sigma": args.sigma, "layers": tuple(s["layers"]), "form": s["form"]}
            sc = scorer.with_options(config=FalipConfig(**opts))
            test[tag] = {
                "setting": {k: s[k] for k in ("alpha", "layers", "form", "label")},
                "rec": cached(_key(run_id, "rec_test", s), _rec_eval, sc, data["rec_test"], "falip", args.seed),
                "cls": cached(_key(run_id, "cls_test", s), _cls_eval, sc, data["cls_test"], "falip", args.seed),
            }
        for m in EDITS:
            test[m] = {
                "rec": cached(_key(run_id, "rec_test", m), _rec_eval, scorer, data["rec_test"], m, args.seed),
                "cls": cached(_key(run_id, "cls_test", m), _cls_eval, scorer, data["cls_test"], m, args.seed),
            }
        entry["test"] = test
        if pooling == "map" and impl == "library":
            entry["library_vs_naive"] = _cross_check(fclip, scorer, data["rec_val"][:20], picks["best"], args.sigma)
        results["models"][name] = entry
    results["seconds"] = round(time.time() - t0, 1)
    _report(results)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1))
    print(f"wrote {out_path.resolve()}")
    return 0


def _cross_check(fclip: Any, scorer: Any, examples: list, best: dict[str, Any], sigma: float) -> dict[str, Any]:
    """Largest difference between the library's FALIP-MAP features and the plain ones (float32)."""
    naive = _naive_of(fclip)
    naive_scorer = type(scorer)(naive, scorer.preprocess, scorer.tokenizer)
    out = {}
    for layers in ((), tuple(best["layers"])):
        opts = {"alpha": best["alpha"], "sigma": sigma, "layers": layers, "form": "all"}
        a = _features(scorer.with_options(config=FalipConfig(**opts)), [e.scene for e in examples], "falip")
        b = _features(naive_scorer.with_options(config=FalipConfig(**opts)), [e.scene for e in examples], "falip")
        out[f"layers={list(layers)}"] = float((a.float() - b.float()).abs().max())
    return out


def _fmt(r: dict[str, Any]) -> str:
    lo, hi = r["ci95"]
    return f"{100 * r['acc']:5.1f} [{100 * lo:4.1f}, {100 * hi:4.1f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def _report(results: dict[str, Any]) -> None:
    print("accuracy % [95% Wilson interval] on the synthetic TEST splits; " + results["blocks_note"])
    rows = []
    for name, e in results["models"].items():
        for tag, t in e["test"].items():
            if "setting" in t:
                s = t["setting"]
                what = "pool" + (f" + blocks {_blocks_text(s['layers'])}" if s["layers"] else " only")
                if e["pooling"] != "map":
                    what = f"blocks {_blocks_text(s['layers'])}"
                label = f"FALIP{'-MAP' if e['pooling'] == 'map' else ''} ({tag} on val: a={s['alpha']:g}, {what})"
            else:
                label = LABELS[tag]
            rows.append([name, label, _fmt(t["rec"]["all"]), _fmt(t["rec"]["relational"]), _fmt(t["cls"])])
    first = next(iter(results["models"].values()))["test"]["none"]
    header = [
        "model",
        "method",
        f"REC all (n={first['rec']['all']['n']})",
        f"relational (n={first['rec']['relational']['n']})",
        f"region cls (n={first['cls']['n']})",
    ]
    print(_table(header, rows))
    for name, e in results["models"].items():
        kind = f"{e['pooling']}-pooled, FALIP through {e['implementation']}"
        print(f"\n{name}: validation sweep, REC / region classification % ({kind})")
        alphas = sorted({s["alpha"] for s in e["sweep"]})
        labels = list(dict.fromkeys(s["label"] for s in e["sweep"]))
        cell = {(s["label"], s["alpha"]): s for s in e["sweep"]}

        def pair(s: dict[str, Any]) -> str:
            return f"{100 * s['rec_val']['acc']:4.1f} / {100 * s['cls_val']['acc']:4.1f}"

        srows = [[lab] + [pair(cell[lab, a]) for a in alphas] for lab in labels]
        print(_table(["biased \\ alpha"] + [f"{a:g}" for a in alphas], srows))
        if "library_vs_naive" in e:
            print(f"library vs plain FALIP-MAP, largest feature difference: {e['library_vs_naive']}")
    print(f"\n{results['seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
