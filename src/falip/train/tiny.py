"""Reproducible training of the shipped ``falip-tiny`` CLIP on synthetic scenes (``falip train-tiny``).

A plain CLIP is trained with open_clip's contrastive ``ClipLoss`` on :mod:`falip.synthetic`
image-caption pairs; the foveal bias is never used in training (FALIP is training-free). Scenes are
pre-generated into a uint8 numpy cache (``[N, H, W, 3]`` images plus ``[N, context_length]`` token
ids), keyed by seed, count and image size, so data generation runs once. The batch order is a
deterministic function of the seed and the epoch, and checkpoints hold the model, optimizer, step
and RNG state, so an interrupted run resumes to the same result. Every ``--log-every`` steps a row
(step, loss, lr, logit scale, elapsed seconds, and held-out single-object zero-shot top-1 when
evaluated) goes to ``train_log.csv``; ``train_summary.json`` holds the arguments and final numbers.
The final weights are written as fp16 safetensors.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np

CONFIG_DIR = Path(__file__).resolve().parent.parent / "models" / "model_configs"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "falip-tiny.safetensors"


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``train-tiny`` options to ``p``."""
    p.add_argument("--out-dir", default="falip-tiny-run", help="checkpoints, logs and cache go here")
    p.add_argument("--output", default=None, help="final fp16 safetensors path (default: <out-dir>/falip-tiny.safetensors)")
    p.add_argument("--model", default="falip-tiny", help="open_clip model config name")
    p.add_argument("--steps", type=int, default=1800, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--min-lr", type=float, default=1e-5, help="cosine floor")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--n-scenes", type=int, default=150_000, help="distinct cached training scenes")
    p.add_argument("--p-single", type=float, default=0.6, help="fraction of single-object scenes")
    p.add_argument("--hard-colours", type=int, default=3,
                   help="if > 0, each batch's single-object scenes share this many random colours, so "
                        "in-batch negatives differ by shape (sampling with replacement, seeded per step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--eval-every", type=int, default=300, help="zero-shot eval period in steps (0: only at the end)")
    p.add_argument("--eval-scenes", type=int, default=720, help="held-out single-object scenes for zero-shot eval")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in out-dir")
    p.add_argument("--stop-after", type=int, default=0,
                   help="checkpoint and exit after this many steps of this invocation (0: run to --steps); "
                        "rerun the same command to continue")
    p.add_argument("--no-progress", action="store_true", help="disable the tqdm bar")


def _build_cache(path: Path, n: int, seed: int, image_size: int, context_length: int, p_single: float, desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate (or load) ``n`` training pairs.

    Returns images ``[n, H, W, 3]`` uint8, tokens ``[n, L]`` int32 and, per scene, the colour index
    (into ``synthetic.COLOURS``) of a single-object scene or -1 for a multi-object one ``[n]`` int8.
    """
    from open_clip import get_tokenizer
    from tqdm import tqdm

    from falip.data import synthetic

    img_path, tok_path = Path(f"{path}.images.npy"), Path(f"{path}.tokens.npy")
    col_path = Path(f"{path}.colour.npy")
    if img_path.exists() and tok_path.exists() and col_path.exists():
        imgs, toks, cols = np.load(img_path), np.load(tok_path), np.load(col_path)
        if imgs.shape == (n, image_size, image_size, 3) and toks.shape == (n, context_length) and cols.shape == (n,):
            return imgs, toks, cols
    tokenizer = get_tokenizer("ViT-B-16", context_length=context_length)
    rng = np.random.default_rng(seed)
    imgs = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    cols = np.full(n, -1, dtype=np.int8)
    colour_names = list(synthetic.COLOURS)
    caps: list[str] = []
    for i in tqdm(range(n), desc=desc, mininterval=5, leave=False):
        scene = synthetic.training_scene(rng, image_size, p_single)
        imgs[i] = scene.image
        caps.append(synthetic.caption(scene, rng))
        if len(scene.objects) == 1:
            cols[i] = colour_names.index(scene.objects[0].colour)
    toks = np.concatenate([tokenizer(caps[i : i + 4096]).numpy().astype(np.int32) for i in range(0, n, 4096)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(img_path, imgs)
    np.save(tok_path, toks)
    np.save(col_path, cols)
    return imgs, toks, cols


def to_model_input(images: np.ndarray):
    """uint8 ``[N, H, W, 3]`` -> float tensor ``[N, 3, H, W]`` with OpenAI CLIP mean/std (open_clip's default)."""
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def zero_shot_accuracy(model, tokenizer, images: np.ndarray, labels: list[str], batch: int = 256) -> float:
    """Top-1 over all :data:`falip.synthetic.CLASSES` with prompts "a photo of a {class}." (images uint8)."""
    import torch

    from falip.data.synthetic import CLASSES

    model.eval()
    with torch.no_grad():
        t = model.encode_text(tokenizer([f"a photo of a {c}." for c in CLASSES]))
        t = t / t.norm(dim=-1, keepdim=True)
        correct = 0
        for i in range(0, len(images), batch):
            f = model.encode_image(to_model_input(images[i : i + batch]))
            f = f / f.norm(dim=-1, keepdim=True)
            pred = (f @ t.T).argmax(-1).tolist()
            correct += sum(CLASSES[p] == labels[i + k] for k, p in enumerate(pred))
    model.train()
    return correct / len(images)


def _hard_batch(step: int, args: argparse.Namespace, cols: np.ndarray, pools: dict[int, np.ndarray]) -> np.ndarray:
    """Indices of one composed batch: multi-object scenes at their cache share, single-object scenes
    only of ``args.hard_colours`` colours drawn for this step (deterministic in seed and step)."""
    rng = np.random.default_rng([args.seed, 1_000_003, step])
    n_single = int(round(args.batch_size * float((cols >= 0).mean())))
    colours = rng.choice(len(pools) - 1, size=min(args.hard_colours, len(pools) - 1), replace=False)
    single_pool = np.concatenate([pools[int(c)] for c in colours])
    idx = np.concatenate([rng.choice(single_pool, n_single, replace=False),
                          rng.choice(pools[-1], args.batch_size - n_single, replace=False)])
    return np.sort(idx)


def _lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    prog = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * min(1.0, prog)))


def save_fp16_safetensors(model, path: str | os.PathLike) -> None:
    """Write ``model.state_dict()`` as fp16 safetensors (loadable with open_clip's ``pretrained=path``)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().to("cpu").half().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))


def run(args: argparse.Namespace) -> int:
    """Train (or resume) per ``args`` from :func:`configure_parser`; returns a process exit code."""
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import open_clip
    import torch
    from tqdm import tqdm

    from falip.data import synthetic

    torch.set_num_threads(args.threads)
    open_clip.add_model_config(CONFIG_DIR)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    torch.manual_seed(args.seed)
    model = open_clip.create_model(args.model, output_dict=True)
    cfg = open_clip.get_model_config(args.model)
    image_size = int(cfg["vision_cfg"]["image_size"])
    ctx = int(cfg["text_cfg"]["context_length"])
    tokenizer = open_clip.get_tokenizer(args.model)

    imgs, toks, cols = _build_cache(out / f"cache_s{args.seed}_n{args.n_scenes}_px{image_size}_p{round(args.p_single * 100)}", args.n_scenes,
                              args.seed, image_size, ctx, args.p_single, "generating scenes")
    eval_scenes = synthetic.classification_scenes(10_000 + args.seed, args.eval_scenes, image_size, 1, 1)
    eval_imgs = np.stack([s.image for s in eval_scenes])
    eval_labels = [s.objects[0].label for s in eval_scenes]

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n and "logit_scale" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n and "logit_scale" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.ClipLoss()

    ckpt_path = out / "checkpoint.pt"
    log_path = out / "train_log.csv"
    step = 0
    elapsed_before = 0.0
    if ckpt_path.exists() and not args.no_resume:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        torch.set_rng_state(ck["torch_rng"])
        step = int(ck["step"])
        elapsed_before = float(ck.get("elapsed", 0.0))
        print(f"resumed from {ckpt_path} at step {step}")
    elif log_path.exists():
        log_path.unlink()

    n = len(imgs)
    per_epoch = n // args.batch_size
    pools = {c: np.flatnonzero(cols == c) for c in range(-1, len(synthetic.COLOURS))}
    fields = ["step", "loss", "lr", "logit_scale", "elapsed_s", "zero_shot_top1"]
    new_log = not log_path.exists()
    log_fh = open(log_path, "a", newline="")
    writer = csv.DictWriter(log_fh, fieldnames=fields)
    if new_log:
        writer.writeheader()

    def save_ckpt() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "torch_rng": torch.get_rng_state(), "elapsed": elapsed_before + time.time() - t_run}, tmp)
        os.replace(tmp, ckpt_path)

    model.train()
    t_run = time.time()
    perm_epoch, perm = -1, None
    bar = tqdm(total=args.steps, initial=step, desc="train-tiny", disable=args.no_progress, mininterval=10)
    zs = float("nan")
    loss_val = float("nan")
    stop_at = min(args.steps, step + args.stop_after) if args.stop_after > 0 else args.steps
    while step < stop_at:
        if args.hard_colours > 0:
            idx = _hard_batch(step, args, cols, pools)
        else:
            epoch, k = divmod(step, per_epoch)
            if epoch != perm_epoch:
                perm = np.random.default_rng([args.seed, epoch]).permutation(n)
                perm_epoch = epoch
            idx = np.sort(perm[k * args.batch_size : (k + 1) * args.batch_size])
        x = to_model_input(imgs[idx])
        t = torch.from_numpy(toks[idx].astype(np.int64))
        lr = _lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        outd = model(x, t)
        loss = loss_fn(outd["image_features"], outd["text_features"], outd["logit_scale"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        loss_val = float(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{loss_val:.3f}", zs=f"{zs:.3f}")
        do_eval = step == args.steps or (args.eval_every > 0 and step % args.eval_every == 0)
        if do_eval:
            zs = zero_shot_accuracy(model, tokenizer, eval_imgs, eval_labels)
        if step % args.log_every == 0 or do_eval:
            writer.writerow({"step": step, "loss": round(loss_val, 5), "lr": lr,
                             "logit_scale": round(float(model.logit_scale.detach().exp()), 3),
                             "elapsed_s": round(elapsed_before + time.time() - t_run, 1),
                             "zero_shot_top1": round(zs, 4) if do_eval else ""})
            log_fh.flush()
        if step % args.ckpt_every == 0 or step == stop_at:
            save_ckpt()
    bar.close()
    log_fh.close()
    if step < args.steps:
        print(f"stopped at step {step} of {args.steps}; checkpoint {ckpt_path} (rerun to resume)")
        return 0

    if math.isnan(zs):
        zs = zero_shot_accuracy(model, tokenizer, eval_imgs, eval_labels)
    output = Path(args.output) if args.output else out / "falip-tiny.safetensors"
    model.eval()
    save_fp16_safetensors(model, output)
    summary = {"args": vars(args), "final_step": step, "final_loss": loss_val,
               "zero_shot_top1_heldout": zs, "eval_scenes": args.eval_scenes,
               "train_seconds": round(elapsed_before + time.time() - t_run, 1),
               "wall_seconds_this_invocation": round(time.time() - t_start, 1),
               "weights": str(output), "weights_bytes": output.stat().st_size,
               "parameters": sum(p.numel() for p in model.parameters())}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: summary[k] for k in ("final_step", "zero_shot_top1_heldout", "train_seconds", "weights", "weights_bytes")}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m falip.training --out-dir ...``."""
    p = argparse.ArgumentParser(prog="falip train-tiny", description=__doc__.splitlines()[0])
    configure_parser(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
