"""Options and set-up shared by the evaluation commands (``rec``, ``classify``, ``compare``, ``paper``).

Standard library only at module level; torch and falip's model code load inside the functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from falip.defaults import BLOCKS_NOTE, CLS_TEMPLATE, FORMS, PRECISIONS, RESIZE_MODES

from ._common import (
    add_activation_option,
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
    "make_scorer",
    "run_task",
    "run_one",
    "add_template_options",
    "read_templates",
    "check_inputs",
    "add_setting",
    "add_task_options",
    "task_of",
    "settings_of",
    "build_task",
]


def _dataset_names(kind: str | None = None) -> tuple[str, ...]:
    from falip.data.registry import dataset_names

    return dataset_names(kind)


def _dataset_help(kind: str | None = None) -> str:
    """One line per dataset of the registry (of one kind): name, what it is."""
    from falip.data.registry import DATASETS

    return "; ".join(f"{n}: {s.description}" for n, s in DATASETS.items() if kind is None or s.kind == kind)


def _layers(text: str) -> Any:
    """Blocks numbered from 1 as in the paper (:mod:`falip.numbering`: ``9-12``, ``9,10,11,12``, ``last 4``,
    ``-1`` the last) -> 0-based indices (negative from the end); ``all``: the parsed set, resolved once the
    model's depth is known (:func:`make_scorer`)."""
    from falip.core.errors import FalipError
    from falip.numbering import parse_set

    try:
        blocks = parse_set(text, "blocks")
        return blocks if blocks.needs_depth else blocks.indices()
    except FalipError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _pixels(text: str) -> float:
    """A number of pixels >= 0 (``--enlarge``)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of pixels >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of pixels >= 0, got {text!r}")
    return value


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
    add_activation_option(g)
    g.add_argument("--alpha", type=float, help="FALIP alpha (default: the model's preset)")
    g.add_argument("--sigma", type=float, help="FALIP sigma in tokens (default: the model's preset)")
    g.add_argument(
        "--layers",
        type=_layers,
        help="blocks to bias, numbered from 1 as in the paper: 9-12, 9,10,11,12, 1-2,11-12, last 4, all "
        "(-1: the last) (default: preset)",
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
    g.add_argument(
        "--logits",
        choices=("fp32", "fp16"),
        default="fp32",
        help="how scores are computed: fp32 (default: cosines and logits in float32 whatever --precision) or "
        "fp16, the authors' numerics (clip.load on CUDA: fp16 features and logits, so near-ties at logit scale "
        "100 merge and go to the first box; emulated on any device)",
    )
    g.add_argument(
        "--enlarge",
        type=_pixels,
        default=0.0,
        metavar="N",
        help="grow every region's box by N pixels of the image on each side, clipped to the image, for every "
        "method, FALIP's box included (the executors' enlarge_boxes, the paper's Table 14; default 0)",
    )
    g.add_argument("--threads", type=int_at_least(1), default=1, help="torch CPU threads, >= 1 (default 1)")
    g.add_argument(
        "--max-image-pixels",
        type=int_at_least(0),
        help="Pillow's pixel limit for the images read (default about 89 million; a file over twice it is "
        "skipped as a possible decompression bomb); 0: no limit. Same as FALIP_MAX_IMAGE_PIXELS=N",
    )
    g.add_argument(
        "--exif-transpose",
        action="store_true",
        default=None,
        help="turn photos upright by their EXIF orientation tag (as a phone shows them); boxes and masks then "
        "refer to the upright image. Default: the pixels as stored, as COCO and the other datasets give their "
        "boxes. Same as FALIP_EXIF_TRANSPOSE=1",
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


def add_template_options(g: Any, default_text: str | None = None) -> None:
    """``--template`` / ``--templates FILE`` (mutually exclusive), for a command without a registered task."""
    from falip.data.registry import TEMPLATES

    t = g.add_mutually_exclusive_group()
    t.add_argument("--template", help=f"one text template (default {default_text or repr(CLS_TEMPLATE)})")
    add_setting(t, TEMPLATES)


def read_templates(args: argparse.Namespace, default: str = CLS_TEMPLATE) -> tuple[str, ...]:
    """The templates of ``--template`` / ``--templates FILE`` (else ``default``, the paper's)."""
    from falip.core.errors import FalipError
    from falip.tasks import read_templates as read

    need_file(getattr(args, "templates", None), "--templates")
    try:
        return read({"template": args.template, "templates": getattr(args, "templates", None)}, default)
    except FalipError as err:
        raise FalipError(str(err).replace("templates file ", "--templates ", 1)) from None


_FOLDERS = ("refcoco_dir", "coco_images", "dogs", "cub", "imagenet_s", "waterbirds")  # paper's own folders


def _flag(dest: str) -> str:
    return "--" + {"imagenet_s": "imagenet-s"}.get(dest, dest.replace("_", "-"))


def check_inputs(args: argparse.Namespace) -> None:
    """Every path, method name, model name and device of the evaluation options, before any work.

    A folder where a file is expected (and the reverse) says so, naming the option; the model
    loads, and the first cell of ``paper``/``compare`` runs, only after this.
    """
    from falip.core.errors import FalipError

    for name, (s, _) in _all_settings().items():  # the settings that name files or folders, if given
        value = getattr(args, name, None)
        if s.type == "files":
            for path in value or ():
                need_file(path, s.option)
        elif s.type in ("file", "folder") and isinstance(value, (str, Path)):
            (need_file if s.type == "file" else need_folder)(value, s.option)
    for dest in _FOLDERS:
        need_folder(getattr(args, dest, None), _flag(dest))
    dataset, root = getattr(args, "dataset", None), getattr(args, "root", None)
    if root is not None and dataset is not None:
        from falip.data.registry import get_dataset

        (need_file if get_dataset(dataset).root == "file" else need_folder)(root, "--root")
    if isinstance(getattr(args, "template", None), str):
        from falip.scoring import check_template

        check_template(args.template)
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
    """``--max-image-pixels``, ``--exif-transpose`` -> the environment settings every image reader (and worker) uses."""
    import os

    value = getattr(args, "max_image_pixels", None)
    if value is not None:
        from falip.data.images import MAX_PIXELS_ENV

        os.environ[MAX_PIXELS_ENV] = str(value)
    if getattr(args, "exif_transpose", None):
        from falip.data.images import EXIF_TRANSPOSE_ENV

        os.environ[EXIF_TRANSPOSE_ENV] = "1"


def model_from_options(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(FovealCLIP, preprocess, tokenizer)`` from the model options (threads set, device resolved:
    ``auto`` is ``cuda:LOCAL_RANK`` under torchrun), the FALIP settings given overriding the preset."""
    from falip.runner import device_for_rank

    set_threads(args.threads)
    device = str(device_for_rank()) if args.device == "auto" else args.device
    overrides = {k: getattr(args, k) for k in ("alpha", "sigma", "layers", "form") if getattr(args, k) is not None}
    return load_model(
        args.model,
        args.pretrained,
        resize_mode=args.resize,
        device=device,
        precision=args.precision,
        activation=args.activation,
        **overrides,
    )


def make_scorer(args: argparse.Namespace, template: str = "{}") -> tuple[Any, dict]:
    """``(RegionScorer, model description for run.json)`` from the model options (inputs checked first)."""
    from falip.scoring import RegionScorer

    check_inputs(args)
    apply_image_limit(args)

    fclip, preprocess, tokenizer = model_from_options(args)
    from falip.prompts.registry import PromptParams

    enlarge = float(getattr(args, "enlarge", 0.0) or 0.0)
    scorer = RegionScorer(
        fclip,
        preprocess,
        tokenizer,
        params=PromptParams(enlarge=enlarge),
        template=template,
        batch_size=max(64, getattr(args, "batch", 64)),
        logits=getattr(args, "logits", "fp32"),
    )
    model_info = {
        "model": args.model,
        "pretrained": args.pretrained,
        "alpha": fclip.alpha,
        "sigma": fclip.sigma,
        "blocks": [i + 1 for i in fclip.layers],
        "numbering": BLOCKS_NOTE,
        "form": fclip.form,
        "resize": preprocess.mode,
        "precision": args.precision,
    }
    if getattr(args, "logits", "fp32") != "fp32":  # run.json keeps today's keys for the default
        model_info["logits"] = args.logits
    if args.activation is not None:  # the user's choice (run.json has no key when falip decided)
        model_info["activation"] = args.activation
    if enlarge:  # only when set, so runs started before the option resume
        model_info["enlarge"] = enlarge
    if getattr(args, "exif_transpose", None):  # boxes refer to upright images: a resume must do the same
        model_info["exif_transpose"] = True
    return scorer, model_info


# ------------------------------------------------------------------------ any registered task
def _setting_type(s: Any) -> Any:
    if s.type == "int":
        return int_at_least(s.minimum) if s.minimum is not None else int
    if s.type == "float":
        return float
    if s.type == "floats":
        return _floats
    if s.type == "weights":
        return _weights
    return str


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"must name at least one number, got {text!r}")
    return values


def _weights(text: str) -> tuple[float, ...] | str:
    """Weights (finite, >= 0, one above 0), or a name the task checks (e.g. a view-weight preset)."""
    import math

    try:
        values = _floats(text)
    except argparse.ArgumentTypeError:
        if "," in text or not text.strip():
            raise
        return text.strip()
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be finite non-negative numbers, one per view, got {text!r}")
    if not any(values):
        raise argparse.ArgumentTypeError(f"must weigh at least one view above 0, got {text!r}")
    return values


def _same_option(a: Any, b: Any) -> bool:
    """Two declarations of one setting make the same option (a template is a text option)."""
    kind = {"template": "str"}
    return kind.get(a.type, a.type) == kind.get(b.type, b.type) and a.option == b.option


def _all_settings(task: str | None = None) -> dict[str, tuple[Any, list[str]]]:
    """Every setting of every registered task and dataset (``task``: of that task and the datasets of
    its kind): name -> (the first declaration, who takes it)."""
    from falip.data.registry import DATASETS
    from falip.tasks import TASKS

    out: dict[str, tuple[Any, list[str]]] = {}
    tasks = {task: TASKS[task]} if task is not None else TASKS
    kinds = {spec.dataset_kind for spec in tasks.values()}
    owners = [(f"--task {t}", spec.settings) for t, spec in tasks.items()]
    owners += [(f"--dataset {d}", spec.settings) for d, spec in DATASETS.items() if task is None or spec.kind in kinds]
    for owner, settings in owners:
        for s in settings:
            if s.hidden:
                continue
            first, users = out.setdefault(s.name, (s, []))
            if not _same_option(first, s):
                raise ValueError(f"setting {s.name!r} is declared twice with different types or flags ({owner})")
            users.append(owner)
    return out


def add_setting(g: Any, s: Any, *, help: str | None = None, **argparse_options: Any) -> Any:
    """The argparse option of one :class:`~falip.data.registry.Setting` (its flag, type, choices, help).

    ``argparse_options`` override (e.g. a command's own ``default``); the default shown in the help
    is the setting's unless ``help`` is given.
    """
    options: dict[str, Any] = {"action": "append"} if s.type == "files" else {"type": _setting_type(s)}
    options.update(dest=s.name, metavar=None if s.choices else s.name.upper(), choices=s.choices)
    options.update(argparse_options)
    return g.add_argument(s.option, help=s.help if help is None else help, **options)


def add_task_options(p: argparse.ArgumentParser, run_options: bool = True, task: str | None = None) -> None:
    """``--task`` (any registered task), ``--dataset``, and every task's and dataset's settings.

    The choices and help come from the registries (:mod:`falip.tasks`, :mod:`falip.data.registry`);
    options default to None here and get the task's own default when the command runs. ``task``:
    the options of that one task (``falip rec``, ``classify``, ``pointcloud``: no ``--task``; its
    required settings are required, its own settings show their defaults, and ``--dataset`` takes
    the datasets of its kind).
    """
    from falip.tasks import TASKS, get_task

    if task is None:
        tasks = "; ".join(f"{n}: {s.description or s.title}" for n, s in TASKS.items())
        p.add_argument("--task", required=True, choices=tuple(TASKS), help=tasks)
        g = p.add_argument_group("task and dataset settings (each applies to the tasks or datasets named)")
        spec = None
    else:
        spec = get_task(task)
        p.set_defaults(task=task)
        g = p.add_argument_group(f"{spec.title} settings (a dataset's apply to that dataset)")
    templates = None
    for name, (s, users) in _all_settings(task).items():
        if name == "dataset":
            kind = None if spec is None else spec.dataset_kind
            g.add_argument(
                "--dataset", choices=_dataset_names(kind), required=spec is not None and name in spec.required,
                help=_dataset_help(kind),
            )  # fmt: skip
            continue
        own = spec is not None and f"--task {task}" in users
        shown = s.default is not None and len(users) == 1 and "default" not in s.help
        default = f"; default {s.default}" if shown else ""
        extra: dict[str, Any] = {}
        if own:
            extra["required"] = name in spec.required
            if s.type != "template" and s.default is not None:
                extra["default"] = s.default
        where = "" if own else f" [{', '.join(users)}]"
        into = g
        if name in ("template", "templates"):  # --template or --templates FILE, not both
            templates = templates or g.add_mutually_exclusive_group()
            into = templates
        add_setting(into, s, help=f"{s.help}{default}{where}", **extra)


def task_of(args: argparse.Namespace) -> Any:
    """The :class:`falip.tasks.TaskSpec` of ``--task``."""
    from falip.tasks import get_task

    return get_task(args.task)


def settings_of(args: argparse.Namespace, task: Any, **override: Any) -> dict[str, Any]:
    """The task's settings from the options (``override`` wins), checked in the command line's terms."""
    from falip.core.errors import FalipError
    from falip.data.registry import Setting
    from falip.tasks import get_task, task_settings

    spec = get_task(task)
    every = _all_settings()
    given = {name: getattr(args, name, None) for name in every}
    given.update(override)
    dataset = given.get("dataset") or spec.default_dataset
    if dataset is not None and spec.dataset_kind is not None:
        from falip.data.registry import get_dataset

        try:
            get_dataset(dataset, spec.dataset_kind)
        except FalipError as err:
            raise FalipError(f"--task {spec.name}: --dataset {err}".replace("--dataset unknown ", "unknown ")) from None
    known = {s.name for s in spec.all_settings(dataset)}
    extra = [every[n][0].option if n in every else n for n, v in given.items() if v is not None and n not in known]
    if extra:
        where = f"--task {spec.name}" + (f" --dataset {dataset}" if spec.dataset_kind and dataset else "")
        raise FalipError(f"{', '.join(extra)} does not apply to {where}; leave it out")
    missing = [n for n in spec.required if given.get(n) in (None, [], ())]
    if missing:
        flags = [every[n][0].option if n in every else Setting(n).option for n in missing]
        raise FalipError(f"--task {spec.name} needs {' and '.join(flags)}")
    if given.get("template") and given.get("templates"):
        raise FalipError("give --template or --templates, not both")
    return task_settings(spec, **given)


def build_task(args: argparse.Namespace, task: Any, scorer: Any, model_info: dict, method: str, **override: Any) -> Any:
    """The harness task of ``task`` (a registered name) from the options, for ``method``."""
    from falip.tasks import make_task

    settings = settings_of(args, task, **override)
    if settings.get("templates"):
        need_file(settings["templates"], "--templates")
    return make_task(task, scorer, method=method, model_info=model_info, **settings)


def run_one(args: argparse.Namespace) -> int:
    """``falip rec``, ``classify`` (any one registered task): run ``--method`` into ``--out``, print the table."""
    scorer, model = make_scorer(args)
    run_task(build_task(args, args.task, scorer, model, args.method), args, args.out)
    return 0


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
