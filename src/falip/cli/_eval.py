"""Options and set-up shared by the evaluation commands (``rec``, ``classify``, ``compare``, ``paper``).

Standard library only at module level; torch and falip's model code load inside the functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from falip.defaults import CLS_TEMPLATE, FORMS, PRECISIONS, REC_TEMPLATE, RESIZE_MODES, TIES

from ._common import (
    check_device,
    check_model_name,
    ensure_writable_dir,
    int_at_least,
    load_model,
    need_file,
    need_folder,
    set_threads,
)

__all__ = [
    "add_model_options",
    "add_run_options",
    "add_rec_options",
    "add_classify_options",
    "make_scorer",
    "rec_task",
    "classify_task",
    "run_task",
    "read_templates",
    "check_inputs",
]

DATASETS = ("cub", "dogs", "waterbirds", "imagenet-s", "jsonl", "csv")


def _layers(text: str) -> list[int]:
    """Blocks numbered from 1 as in the paper (``9,10,11,12``; negative counts from the end) -> 0-based."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated block numbers (from 1), got {text!r}") from None
    if 0 in values:
        raise argparse.ArgumentTypeError(f"blocks are numbered from 1 (-1 is the last), got 0 in {text!r}")
    return [v - 1 if v > 0 else v for v in values]


def add_model_options(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--pretrained``, FALIP settings, ``--device``, ``--threads``."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="falip-tiny",
        help="open_clip model name, or hf:<hub id or folder> for a Hugging Face CLIP/SigLIP "
        "(default: the shipped falip-tiny)",
    )
    g.add_argument(
        "--pretrained",
        default="auto",
        help="open_clip tag (e.g. openai) or checkpoint file; 'auto' = shipped weights (falip-tiny only)",
    )
    g.add_argument("--alpha", type=float, help="FALIP alpha (default: the model's preset)")
    g.add_argument("--sigma", type=float, help="FALIP sigma in tokens (default: the model's preset)")
    g.add_argument(
        "--layers",
        type=_layers,
        help="comma-separated blocks to bias, numbered from 1 as in the paper (9,10,11,12; -1: the last) "
        "(default: preset)",
    )
    g.add_argument("--form", choices=FORMS, help="mask form (default: preset)")
    g.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        help="preprocessing resize mode (default: the model's own: squash for open_clip models, the image "
        "processor's for hf: models)",
    )
    g.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:1, mps (default auto: cuda when available); checked before the model loads",
    )
    g.add_argument("--precision", default=PRECISIONS[0], choices=PRECISIONS, help="model precision")
    g.add_argument("--threads", type=int_at_least(1), default=1, help="torch CPU threads, >= 1 (default 1)")
    g.add_argument(
        "--max-image-pixels",
        type=int_at_least(0),
        help="Pillow's pixel limit for the images read (default about 89 million; a file over twice it is "
        "skipped as a possible decompression bomb); 0: no limit. Same as FALIP_MAX_IMAGE_PIXELS=N",
    )


def add_run_options(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    """``--out``, ``--resume``, ``--limit``, ``--workers``, ``--batch``."""
    g = p.add_argument_group("run")
    g.add_argument("--out", required=out_required, help="output folder: results.jsonl, skipped.jsonl, summary.json")
    g.add_argument("--resume", action="store_true", help="continue the run in --out (finished items are kept)")
    g.add_argument("--limit", type=int_at_least(1), help="only the first N images (units of work)")
    g.add_argument(
        "--workers", type=int_at_least(0), default=2, help="image-decoding worker processes (default 2; 0: inline)"
    )
    g.add_argument("--batch", type=int_at_least(1), default=16, help="images per model call (default 16)")


def add_rec_options(p: argparse.ArgumentParser, standalone: bool = True) -> None:
    """REC options; ``standalone=False`` (``compare``): nothing required, no ``--template``."""
    g = p.add_argument_group("REC data")
    g.add_argument(
        "--data", action="append", required=standalone, help="a ReCLIP-format split .jsonl (repeat for several)"
    )
    g.add_argument("--images", help="image folder (e.g. COCO train2014/; default: each split file's folder)")
    g.add_argument("--detector-file", help="detector proposals (the 'prop' setting; default: gold boxes)")
    if standalone:
        add_template_options(g, repr(REC_TEMPLATE))
    g.add_argument(
        "--subtract-q", type=int_at_least(0), default=0, help="'subtract' with Q negative captions (default 0: off)"
    )
    g.add_argument(
        "--seed", type=int_at_least(0), default=0, help="seed of the negative captions and of random tie-breaks (>= 0)"
    )
    g.add_argument(
        "--ties",
        choices=TIES,
        default=TIES[0],
        help="exact ties between boxes: the first box in annotation order (np.argmax, the authors' rule; "
        "default) or a draw seeded by --seed",
    )


def add_classify_options(p: argparse.ArgumentParser, standalone: bool = True) -> None:
    """Classification options; ``standalone=False`` (``compare``): nothing required."""
    g = p.add_argument_group("classification data")
    g.add_argument("--dataset", required=standalone, choices=DATASETS, help="dataset format")
    g.add_argument("--root", required=standalone, help="dataset folder (for jsonl/csv: the file)")
    g.add_argument("--split", default="test", help="split (default test)")
    g.add_argument("--cub-root", help="Waterbirds: the CUB-200-2011 folder (for the bird boxes)")
    g.add_argument("--region", choices=("mask", "box"), default="mask", help="ImageNet-S: the mask or its box")
    g.add_argument("--classnames", help="a file of class names (ImageNet-S; one per line)")
    g.add_argument(
        "--objects",
        choices=("all", "first"),
        default="all",
        help="Stanford Dogs: every annotated dog (default) or the first of each image (one region per image)",
    )
    add_template_options(g, f"{CLS_TEMPLATE!r} (classify), {REC_TEMPLATE!r} (rec)" if not standalone else None)
    g.add_argument("--top-k", type=int_at_least(1), default=5, help="the second accuracy reported (default top-5)")


def add_template_options(g: Any, default_text: str | None = None) -> None:
    """``--template`` / ``--templates FILE`` (mutually exclusive)."""
    t = g.add_mutually_exclusive_group()
    t.add_argument("--template", help=f"one text template (default {default_text or repr(CLS_TEMPLATE)})")
    t.add_argument("--templates", help="a file of templates, one per line, averaged in feature space")


def read_templates(args: argparse.Namespace, default: str = CLS_TEMPLATE) -> tuple[str, ...]:
    """The templates of ``--template`` / ``--templates FILE`` (else ``default``, the paper's)."""
    from falip.core.errors import FalipError

    if getattr(args, "templates", None):
        path = Path(args.templates)
        need_file(path, "--templates")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise FalipError(f"--templates {path}: not UTF-8 text (one template a line)") from None
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise FalipError(f"--templates {path} holds no template")
        return tuple(lines)
    return (args.template or default,)


_FILES = ("detector_file", "templates", "classnames")  # options that name a file, if given
_FOLDERS = ("images", "cub_root", "refcoco_dir", "coco_images", "dogs", "cub", "imagenet_s", "waterbirds")


def _flag(dest: str) -> str:
    return "--" + {"imagenet_s": "imagenet-s"}.get(dest, dest.replace("_", "-"))


def check_inputs(args: argparse.Namespace) -> None:
    """Every path, method name, model name and device of the evaluation options, before any work.

    A folder where a file is expected (and the reverse) says so, naming the option; the model
    loads, and the first cell of ``paper``/``compare`` runs, only after this.
    """
    from falip.core.errors import FalipError

    for path in getattr(args, "data", None) or ():
        need_file(path, "--data")
    for dest in _FILES:
        need_file(getattr(args, dest, None), _flag(dest))
    for dest in _FOLDERS:
        need_folder(getattr(args, dest, None), _flag(dest))
    dataset, root = getattr(args, "dataset", None), getattr(args, "root", None)
    if root is not None and dataset is not None:
        (need_file if dataset in ("jsonl", "csv") else need_folder)(root, "--root")
    method = getattr(args, "method", None)
    if isinstance(method, str):
        from falip.prompts.registry import parse_method

        parse_method(method)
    pretrained = getattr(args, "pretrained", None)
    if isinstance(pretrained, str) and Path(pretrained).is_dir():
        raise FalipError(f"--pretrained {pretrained} is a folder, not a checkpoint file")
    if getattr(args, "model", None):
        check_model_name(args.model)
    if getattr(args, "device", None):
        check_device(args.device)


def apply_image_limit(args: argparse.Namespace) -> None:
    """``--max-image-pixels`` -> the environment setting every image reader (and worker) uses."""
    import os

    value = getattr(args, "max_image_pixels", None)
    if value is not None:
        from falip.data.images import MAX_PIXELS_ENV

        os.environ[MAX_PIXELS_ENV] = str(value)


def make_scorer(args: argparse.Namespace, template: str = "{}") -> tuple[Any, dict]:
    """``(RegionScorer, model description for run.json)`` from the model options (inputs checked first)."""
    from falip.scoring import RegionScorer

    check_inputs(args)
    apply_image_limit(args)

    set_threads(args.threads)
    from falip.runner import device_for_rank

    device = str(device_for_rank()) if args.device == "auto" else args.device  # cuda:LOCAL_RANK under torchrun
    overrides = {k: getattr(args, k) for k in ("alpha", "sigma", "layers", "form") if getattr(args, k) is not None}
    fclip, preprocess, tokenizer = load_model(
        args.model, args.pretrained, resize_mode=args.resize, device=device, precision=args.precision, **overrides
    )
    scorer = RegionScorer(
        fclip, preprocess, tokenizer, template=template, batch_size=max(64, getattr(args, "batch", 64))
    )
    model = {
        "model": args.model,
        "pretrained": args.pretrained,
        "alpha": fclip.alpha,
        "sigma": fclip.sigma,
        "blocks": [i + 1 for i in fclip.layers],
        "numbering": "blocks are numbered from 1 (block 1 is the first), as in the paper",
        "form": fclip.form,
        "resize": preprocess.mode,
        "precision": args.precision,
    }
    return scorer, model


def rec_task(args: argparse.Namespace, scorer: Any, model: dict, method: str, subtract_q: int | None = None) -> Any:
    from falip.tasks.rec import RecSettings, RecTask

    templates = read_templates(args, REC_TEMPLATE)
    settings = RecSettings(
        data=tuple(str(Path(d)) for d in args.data),
        images=args.images,
        detector_file=args.detector_file,
        method=method,
        template=templates[0] if len(templates) == 1 else templates,
        subtract_q=args.subtract_q if subtract_q is None else subtract_q,
        seed=args.seed,
        ties=getattr(args, "ties", "first"),
    )
    return RecTask(scorer, settings, model)


def classify_task(args: argparse.Namespace, scorer: Any, model: dict, method: str) -> Any:
    from falip.tasks.region_cls import ClassifySettings, ClassifyTask, open_dataset

    items, classes, options = open_dataset(
        args.dataset,
        args.root,
        split=args.split,
        cub_root=args.cub_root,
        region=args.region,
        classnames=args.classnames,
        objects=getattr(args, "objects", "all"),
    )
    settings = ClassifySettings(
        dataset=args.dataset,
        source=str(Path(args.root)),
        method=method,
        templates=read_templates(args),
        top_k=args.top_k,
        options=tuple(sorted(options.items())),
    )
    return ClassifyTask(scorer, settings, items, classes, model)


def run_task(task: Any, args: argparse.Namespace, out: str | Path) -> dict:
    """Run ``task`` into ``out`` with the run options; prints the table (once); returns the summary."""
    from falip.runner import is_main_process, run

    ensure_writable_dir(out, "--out")
    summary = run(
        task,
        out,
        resume=args.resume,
        limit=args.limit,
        workers=args.workers,
        batch_units=args.batch,
        require_scored=True,  # nothing scored is an error, not 0%
    )
    if is_main_process():
        print(task.table(summary), flush=True)
    return summary
