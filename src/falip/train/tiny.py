"""Reproducible training of the shipped ``falip-tiny`` CLIP on synthetic scenes.

A plain CLIP is trained with open_clip's contrastive ``ClipLoss`` on :mod:`falip.data.synthetic`
image-caption pairs; the foveal bias is never used in training (FALIP is training-free). Captions
are tokenised with the trained model's own tokenizer (``open_clip.get_tokenizer(config.model)``).
Scenes are pre-generated into a numpy cache (``[N, H, W, 3]`` uint8 images, ``[N, context_length]``
int32 token ids, ``[N]`` int8 colour of single-object scenes), keyed by seed, count, image size,
single-object share and the tokenizer (:func:`tokenizer_key`), so data generation runs once and a
cache made with one tokenizer is never read with another. The batch order is a deterministic
function of the seed and the step, and checkpoints hold the model, optimizer, step and RNG state,
so an interrupted run resumes to the same result. Every ``log_every`` steps a row (step, loss, lr,
logit scale, elapsed seconds, and held-out single-object zero-shot top-1 when evaluated) goes to
``train_log.csv``; ``train_summary.json`` holds the config and final numbers. The final weights
are written as fp16 safetensors.

This module parses no arguments and prints nothing (``falip train-tiny`` in :mod:`falip.cli` does
both); it logs resumption through :mod:`logging` and shows a tqdm bar when ``config.progress``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FalipError
from ..models.presets import CONFIG_DIR

__all__ = [
    "TrainConfig",
    "cache_stem",
    "save_fp16_safetensors",
    "to_model_input",
    "tokenizer_key",
    "train",
    "zero_shot_accuracy",
]

logger = logging.getLogger(__name__)

# Config fields a checkpoint must agree on to be resumed to the same result.
_RESUME_FIELDS = (
    "model",
    "pool",
    "steps",
    "batch_size",
    "lr",
    "min_lr",
    "warmup",
    "weight_decay",
    "n_scenes",
    "p_single",
    "hard_colours",
    "seed",
)


@dataclass
class TrainConfig:
    """Every setting of a training run (the options of ``falip train-tiny``, one field each).

    Attributes:
        out_dir: checkpoints, logs and cache go here.
        output: final fp16 safetensors path (None: ``<out_dir>/<model trained>.safetensors``).
        model: open_clip model config name (falip's shipped configs are registered).
        pool: how the image tower pools its tokens: ``"cls"`` (a [CLS] token, open_clip's
            VisionTransformer) or ``"map"`` (no [CLS] token; SigLIP's attention-pool head, a timm
            tower). With ``model="falip-tiny"``, ``"map"`` trains ``falip-tiny-map`` (the same text
            tower and tower shape); any other model's config must pool as ``pool`` says.
        steps: optimizer steps.
        batch_size: pairs per step.
        lr: peak AdamW learning rate.
        min_lr: cosine floor.
        warmup: linear warmup steps.
        weight_decay: AdamW weight decay (matrices only; not embeddings or the logit scale).
        n_scenes: distinct cached training scenes.
        p_single: fraction of single-object scenes.
        hard_colours: if > 0, each batch's single-object scenes share this many random colours,
            so in-batch negatives differ by shape (colours drawn per step from the seed).
        seed: seeds the model init, the scenes and the batch order.
        threads: torch CPU threads while training (restored afterwards).
        eval_every: zero-shot eval period in steps (0: only at the end).
        eval_scenes: held-out single-object scenes for the zero-shot eval.
        log_every: a ``train_log.csv`` row every this many steps.
        ckpt_every: a checkpoint every this many steps.
        resume: continue from ``<out_dir>/checkpoint.pt`` if there is one.
        stop_after: checkpoint and return after this many steps of this call (0: run to ``steps``);
            call again with the same config to continue.
        progress: show a tqdm bar.
    """

    out_dir: str = "falip-tiny-run"
    output: str | None = None
    model: str = "falip-tiny"
    pool: str = "cls"
    steps: int = 1800
    batch_size: int = 256
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup: int = 100
    weight_decay: float = 0.1
    n_scenes: int = 150_000
    p_single: float = 0.6
    hard_colours: int = 3
    seed: int = 0
    threads: int = 1
    eval_every: int = 300
    eval_scenes: int = 720
    log_every: int = 20
    ckpt_every: int = 100
    resume: bool = True
    stop_after: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "n_scenes", "threads", "eval_scenes", "log_every", "ckpt_every")
        at_least = {
            **dict.fromkeys(positive, 1),
            **dict.fromkeys(("warmup", "eval_every", "stop_after", "hard_colours"), 0),
        }
        for name, low in at_least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise FalipError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.batch_size > self.n_scenes:
            raise FalipError(f"batch_size ({self.batch_size}) must not exceed n_scenes ({self.n_scenes})")
        if not 0.0 <= self.p_single <= 1.0:
            raise FalipError(f"p_single must be in [0, 1], got {self.p_single!r}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise FalipError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr!r}, min_lr={self.min_lr!r}")
        if self.pool not in POOLS:
            raise FalipError(f"pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if not self.weight_decay >= 0:
            raise FalipError(f"weight_decay must be >= 0, got {self.weight_decay!r}")


POOLS = ("cls", "map")
# falip's [CLS] configs and their attention-pooled twins (``--pool map``).
_MAP_TWINS = {"falip-tiny": "falip-tiny-map"}


def config_pool(cfg: dict) -> str:
    """How an open_clip model config's image tower pools: ``"map"`` (a timm attention-pool head),
    ``"cls"`` (open_clip's VisionTransformer with its [CLS] token), or another word for other
    poolings (e.g. ``"avg"``), which :class:`TrainConfig` does not train."""
    vision = cfg.get("vision_cfg", {})
    if vision.get("timm_model_name"):
        return str(vision.get("timm_pool") or "timm default")
    if vision.get("attentional_pool"):
        return "attentional"
    pool = vision.get("pool_type", "tok")
    return "cls" if pool == "tok" else str(pool)


def model_name(config: TrainConfig) -> str:
    """The open_clip config that ``config`` trains: ``config.model``, or its attention-pooled twin
    for ``pool="map"`` (``falip-tiny`` -> ``falip-tiny-map``)."""
    if config.pool == "map":
        return _MAP_TWINS.get(config.model, config.model)
    return config.model


# Every word and mark the synthetic captions use, plus case and punctuation a tokenizer may treat
# differently: the ids a tokenizer gives these are its fingerprint for :func:`tokenizer_key`.
_PROBE_WORDS = (
    "a photo of an and the , . little large big small larger smaller left right of above below on at top "
    "bottom circles squares triangles stars crosses rings A Photo OF: Red, SQUARE! 'x' 123"
)


def tokenizer_key(tokenizer: Any) -> str:
    """A short hash (12 hex digits) of a tokenizer's identity, for naming caches of its token ids.

    Built from the tokenizer's class, its context length, its name if it has one (HF tokenizers),
    and the ids it gives every word of the synthetic captions (and some case and punctuation), so
    two tokenizers that could tokenise a caption differently never share a key.
    """
    from falip.data import synthetic

    words = _PROBE_WORDS.split() + list(synthetic.COLOURS) + list(synthetic.SHAPES)
    ids = tokenizer([" ".join(words)] + words)
    ids = np.asarray(ids.numpy() if hasattr(ids, "numpy") else ids, dtype=np.int64)
    kind = type(tokenizer)
    ident = "|".join(
        (
            f"{kind.__module__}.{kind.__qualname__}",
            str(getattr(tokenizer, "context_length", "")),
            str(getattr(tokenizer, "tokenizer_name", "")),
            str(ids.shape),
        )
    )
    return hashlib.sha256(ident.encode() + ids.tobytes()).hexdigest()[:12]


def cache_stem(out_dir: str | os.PathLike, config: TrainConfig, image_size: int, tokenizer: Any) -> Path:
    """``<out_dir>/cache_s<seed>_n<n>_px<size>_p<percent>_tok<tokenizer_key>``: the scene cache's path stem."""
    return Path(out_dir) / (
        f"cache_s{config.seed}_n{config.n_scenes}_px{image_size}_p{round(config.p_single * 100)}"
        f"_tok{tokenizer_key(tokenizer)}"
    )


def _build_cache(
    stem: Path, n: int, seed: int, image_size: int, tokenizer: Any, p_single: float, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate (or load) ``n`` training pairs tokenised with ``tokenizer``.

    Returns images ``[n, H, W, 3]`` uint8, tokens ``[n, L]`` int32 and, per scene, the colour index
    (into ``synthetic.COLOURS``) of a single-object scene or -1 for a multi-object one ``[n]`` int8.
    """
    from tqdm import tqdm

    from falip.data import synthetic

    context_length = int(tokenizer.context_length)
    img_path, tok_path, col_path = (Path(f"{stem}.{part}.npy") for part in ("images", "tokens", "colour"))
    if img_path.exists() and tok_path.exists() and col_path.exists():
        imgs, toks, cols = np.load(img_path), np.load(tok_path), np.load(col_path)
        if imgs.shape == (n, image_size, image_size, 3) and toks.shape == (n, context_length) and cols.shape == (n,):
            return imgs, toks, cols
    rng = np.random.default_rng(seed)
    imgs = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    cols = np.full(n, -1, dtype=np.int8)
    colour_names = list(synthetic.COLOURS)
    caps: list[str] = []
    for i in tqdm(range(n), desc="generating scenes", mininterval=5, leave=False, disable=not progress):
        scene = synthetic.training_scene(rng, image_size, p_single)
        imgs[i] = scene.image
        caps.append(synthetic.caption(scene, rng))
        if len(scene.objects) == 1:
            cols[i] = colour_names.index(scene.objects[0].colour)
    toks = np.concatenate([tokenizer(caps[i : i + 4096]).numpy().astype(np.int32) for i in range(0, n, 4096)])
    stem.parent.mkdir(parents=True, exist_ok=True)
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


def zero_shot_accuracy(model: Any, tokenizer: Any, images: np.ndarray, labels: list[str], batch: int = 256) -> float:
    """Top-1 (a fraction in [0, 1]) over all :data:`falip.data.synthetic.CLASSES` with prompts
    "a photo of a {class}."; ``images`` uint8 ``[N, H, W, 3]``, ``labels`` N class names.

    Runs the model in eval mode and puts it back in the mode it was in.
    """
    import torch

    from falip.data.synthetic import CLASSES

    was_training = model.training
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
    model.train(was_training)
    return correct / len(images)


def _hard_batch(step: int, config: TrainConfig, cols: np.ndarray, pools: dict[int, np.ndarray]) -> np.ndarray:
    """Indices of one composed batch: multi-object scenes at their cache share, single-object scenes
    only of ``config.hard_colours`` colours drawn for this step (deterministic in seed and step)."""
    rng = np.random.default_rng([config.seed, 1_000_003, step])
    n_single = int(round(config.batch_size * float((cols >= 0).mean())))
    colours = rng.choice(len(pools) - 1, size=min(config.hard_colours, len(pools) - 1), replace=False)
    single_pool = np.concatenate([pools[int(c)] for c in colours])
    idx = np.concatenate(
        [
            rng.choice(single_pool, n_single, replace=False),
            rng.choice(pools[-1], config.batch_size - n_single, replace=False),
        ]
    )
    return np.sort(idx)


def _lr_at(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    prog = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(1.0, prog)))


def save_fp16_safetensors(model: Any, path: str | os.PathLike) -> None:
    """Write ``model.state_dict()`` as fp16 safetensors (loadable with open_clip's ``pretrained=path``)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().to("cpu").half().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))


def _check_resumable(saved: dict | None, config: TrainConfig, ckpt_path: Path) -> None:
    if saved is None:  # checkpoints written before the config was stored
        return
    defaults = asdict(TrainConfig())  # fields added later read as their defaults
    diff = [
        f"{k} {saved.get(k, defaults[k])!r} -> {getattr(config, k)!r}"
        for k in _RESUME_FIELDS
        if saved.get(k, defaults[k]) != getattr(config, k)
    ]
    if diff:
        raise FalipError(
            f"{ckpt_path} was written by a run with other settings ({'; '.join(diff)}); "
            "resuming would not reproduce either run: use another out_dir, or resume=False to start over"
        )


def train(config: TrainConfig) -> dict:
    """Train (or resume) per ``config``; returns the summary (also written to ``train_summary.json``).

    The summary holds ``complete`` (False when ``stop_after`` ended this call early; then it is not
    written to disk and holds only ``final_step``, ``steps``, ``checkpoint`` and
    ``resumed_from_step``), ``config``, ``final_step``, ``final_loss``, ``zero_shot_top1_heldout``
    (fraction), ``eval_scenes``, ``train_seconds``, ``wall_seconds_this_invocation``, ``weights``
    (path), ``weights_bytes``, ``parameters`` and ``tokenizer_key``.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train expects a TrainConfig, got {type(config).__name__}")
    os.environ.setdefault("OMP_NUM_THREADS", str(config.threads))
    import open_clip
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        open_clip.add_model_config(CONFIG_DIR)
        name = model_name(config)
        if name not in open_clip.list_models():
            raise FalipError(f"unknown model config {name!r}; open_clip knows e.g. falip-tiny, ViT-B-16")
        pool = config_pool(open_clip.get_model_config(name))
        if pool != config.pool:
            raise FalipError(
                f"model config {name!r} pools its image tower with {pool!r}, not pool={config.pool!r}; "
                f"pool='map' trains {', '.join(_MAP_TWINS.values())} from {', '.join(_MAP_TWINS)}, "
                "or pass a map-pooled config"
            )
        from ..models.loading import ensure_registered

        ensure_registered(name)
        return _train(config)
    finally:
        torch.set_num_threads(threads_before)


def _train(config: TrainConfig) -> dict:
    import open_clip
    import torch
    from tqdm import tqdm

    from falip.data import synthetic

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    ckpt_path = out / "checkpoint.pt"
    log_path = out / "train_log.csv"
    ck = None
    if ckpt_path.exists() and config.resume:
        try:
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception as e:  # torch raises many types for a damaged or foreign file
            raise FalipError(
                f"{ckpt_path}: not a readable training checkpoint ({type(e).__name__}); "
                "delete it, or use resume=False to start over"
            ) from None
        if not isinstance(ck, dict) or not {"model", "opt", "step", "torch_rng"} <= set(ck):
            raise FalipError(f"{ckpt_path}: not a falip-tiny training checkpoint; use resume=False to start over")
        _check_resumable(ck.get("config"), config, ckpt_path)

    name = model_name(config)
    torch.manual_seed(config.seed)
    model = open_clip.create_model(name, output_dict=True)
    cfg = open_clip.get_model_config(name)
    image_size = int(cfg["vision_cfg"]["image_size"])
    tokenizer = open_clip.get_tokenizer(name)

    stem = cache_stem(out, config, image_size, tokenizer)
    imgs, toks, cols = _build_cache(
        stem, config.n_scenes, config.seed, image_size, tokenizer, config.p_single, config.progress
    )
    eval_scenes = synthetic.classification_scenes(10_000 + config.seed, config.eval_scenes, image_size, 1, 1)
    eval_imgs = np.stack([s.image for s in eval_scenes])
    eval_labels = [s.objects[0].label for s in eval_scenes]

    def decays(name: str, p: Any) -> bool:
        return p.ndim >= 2 and "embedding" not in name and "logit_scale" not in name

    decay = [p for n, p in model.named_parameters() if decays(n, p)]
    no_decay = [p for n, p in model.named_parameters() if not decays(n, p)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    loss_fn = open_clip.ClipLoss()

    step = 0
    elapsed_before = 0.0
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        torch.set_rng_state(ck["torch_rng"])
        step = int(ck["step"])
        elapsed_before = float(ck.get("elapsed", 0.0))
        logger.info("resumed from %s at step %d", ckpt_path, step)
    elif log_path.exists():
        log_path.unlink()
    resumed_from = step

    n = len(imgs)
    per_epoch = n // config.batch_size
    pools = {c: np.flatnonzero(cols == c) for c in range(-1, len(synthetic.COLOURS))}
    if config.hard_colours > 0:
        n_single = int(round(config.batch_size * float((cols >= 0).mean())))
        smallest = sum(sorted(len(pools[c]) for c in range(len(synthetic.COLOURS)))[: config.hard_colours])
        if smallest < n_single or len(pools[-1]) < config.batch_size - n_single:
            raise FalipError(
                f"n_scenes={config.n_scenes} is too few for batch_size={config.batch_size} with "
                f"hard_colours={config.hard_colours}: a batch needs {n_single} single-object scenes of "
                f"{config.hard_colours} colours (the rarest have {smallest}); use more scenes or hard_colours=0"
            )
    fields_ = ["step", "loss", "lr", "logit_scale", "elapsed_s", "zero_shot_top1"]
    new_log = not log_path.exists()
    log_fh = open(log_path, "a", newline="")
    writer = csv.DictWriter(log_fh, fieldnames=fields_)
    if new_log:
        writer.writeheader()

    t_run = time.time()

    def save_ckpt() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        state = {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "step": step,
            "torch_rng": torch.get_rng_state(),
            "elapsed": elapsed_before + time.time() - t_run,
            "config": asdict(config),
        }
        torch.save(state, tmp)
        os.replace(tmp, ckpt_path)

    model.train()
    perm_epoch, perm = -1, None
    bar = tqdm(total=config.steps, initial=step, desc="train-tiny", disable=not config.progress, mininterval=10)
    zs = float("nan")
    loss_val = float("nan")
    stop_at = min(config.steps, step + config.stop_after) if config.stop_after > 0 else config.steps
    try:
        while step < stop_at:
            if config.hard_colours > 0:
                idx = _hard_batch(step, config, cols, pools)
            else:
                epoch, k = divmod(step, per_epoch)
                if epoch != perm_epoch:
                    perm = np.random.default_rng([config.seed, epoch]).permutation(n)
                    perm_epoch = epoch
                idx = np.sort(perm[k * config.batch_size : (k + 1) * config.batch_size])
            x = to_model_input(imgs[idx])
            t = torch.from_numpy(toks[idx].astype(np.int64))
            lr = _lr_at(step, config)
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
            do_eval = step == config.steps or (config.eval_every > 0 and step % config.eval_every == 0)
            if do_eval:
                zs = zero_shot_accuracy(model, tokenizer, eval_imgs, eval_labels)
            if step % config.log_every == 0 or do_eval:
                row = {
                    "step": step,
                    "loss": round(loss_val, 5),
                    "lr": lr,
                    "logit_scale": round(float(model.logit_scale.detach().exp()), 3),
                    "elapsed_s": round(elapsed_before + time.time() - t_run, 1),
                    "zero_shot_top1": round(zs, 4) if do_eval else "",
                }
                writer.writerow(row)
                log_fh.flush()
            if step % config.ckpt_every == 0 or step == stop_at:
                save_ckpt()
    finally:
        bar.close()
        log_fh.close()
    if step < config.steps:
        return {
            "complete": False,
            "final_step": step,
            "steps": config.steps,
            "checkpoint": str(ckpt_path),
            "resumed_from_step": resumed_from,
        }

    if math.isnan(zs):
        zs = zero_shot_accuracy(model, tokenizer, eval_imgs, eval_labels)
    output = Path(config.output) if config.output else out / f"{name}.safetensors"
    model.eval()
    save_fp16_safetensors(model, output)
    summary = {
        "complete": True,
        "config": asdict(config),
        "model": name,
        "final_step": step,
        "resumed_from_step": resumed_from,
        "final_loss": loss_val,
        "zero_shot_top1_heldout": zs,
        "eval_scenes": config.eval_scenes,
        "train_seconds": round(elapsed_before + time.time() - t_run, 1),
        "wall_seconds_this_invocation": round(time.time() - t_start, 1),
        "weights": str(output),
        "weights_bytes": output.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer_key": tokenizer_key(tokenizer),
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
