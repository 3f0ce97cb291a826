"""``falip paper table1|table2|table3|table4``: the paper's tables, run as the authors ran them, from the data on disk.

table1 (REC, Table 1 of the paper): the ReCLIP split files found in ``--refcoco-dir`` as columns
("gold": the annotations' boxes; with ``--detector-file`` also "prop": the detector's proposals,
in the same run), methods as rows (:data:`TABLE1_ROWS`): CPT, RedCircle as the authors draw it
(``redcircle``: the red ellipse alone; their released branch with blur, ``redcircle-blur``, as an
extra row), FALIP, ReCLIP without its relation parser (ReCLIP's crop + box blur summed), the
ensembles E (logits summed, one row per blur: the box's and the ellipse's) and the "subtract" rows
(P: Q captions per sentence).

table2 (region classification, Table 2): ``--dogs`` (the entire Stanford Dogs, one region per
image: the first dog of each annotation), ``--cub`` (the entire CUB-200-2011), ``--waterbirds``
(its test split), ``--imagenet-s`` (validation; FALIP is given the mask's BOX unless
``--region mask``); rows CLIP, RedCircle (the ellipse alone), Blur (outside the ellipse), FALIP,
and the extras RedCircle+Blur (the executor's, one image), Blur box (ReCLIP's) and crop.

table3 (point clouds, Table 3): plain CLIP and FALIP with PointCLIP's V1 and V2 projections, on
``--modelnet40`` and every ScanObjectNN variant found under ``--scanobjectnn`` (OBJ_ONLY, OBJ_BG,
PB_T50_RS), test splits; view weights and prompts printed, PointCLIP's post-search as labelled rows.

table4 (REC, Table 4): RedCircle (R) and RedCircle+Blur (R + B), each plain and unleashed (U,
Eq. 6), on the gold boxes of the same split files (:data:`TABLE4_ROWS`).

Every cell is a resumable run under ``--out``; the tables go to ``table1.md`` / ``table2.md`` and
``.json``, each followed by the protocol it followed and every deliberate difference from the
authors' code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ._common import int_at_least
from ._eval import add_model_options, add_run_options, add_setting, make_scorer, run_task
from .compare import markdown_table, method_dir

__all__ = [
    "configure_parser",
    "run",
    "TABLE1_SPLITS",
    "TABLE1_ROWS",
    "TABLE1_P_ROWS",
    "TABLE2_ROWS",
    "TABLE3_ROWS",
    "TABLE4_ROWS",
]

TABLE1_SPLITS = (
    "refcoco_val",
    "refcoco_testa",
    "refcoco_testb",
    "refcoco+_val",
    "refcoco+_testa",
    "refcoco+_testb",
    "refcocog_val",
    "refcocog_test",
)
TABLE1_ROWS = (
    ("CPT (adapted to this CLIP)", "cpt"),
    ("RedCircle", "redcircle"),
    ("RedCircle+Blur (extra: the executor's circle as released)", "redcircle-blur"),
    ("FALIP", "falip"),
    ("ReCLIP (no relations)", "crop-reclip+blur-box"),
    ("RedCircle E (box blur)", "redcircle+blur-box"),
    ("RedCircle E (ellipse blur)", "redcircle+blur"),
    ("FALIP E (box blur)", "falip+redcircle+blur-box"),
    ("FALIP E (ellipse blur)", "falip+redcircle+blur"),
)
TABLE1_P_ROWS = (
    "CPT (adapted to this CLIP)",
    "RedCircle",
    "FALIP",
    "RedCircle E (box blur)",
    "RedCircle E (ellipse blur)",
    "FALIP E (box blur)",
    "FALIP E (ellipse blur)",
)
"""The rows also run with "subtract" (P)."""
TABLE2_ROWS = (
    ("CLIP", "none"),
    ("RedCircle", "redcircle"),
    ("Blur", "blur"),
    ("FALIP", "falip"),
    ("RedCircle+Blur (extra)", "redcircle-blur"),
    ("Blur box (extra)", "blur-box"),
    ("Crop (extra)", "crop"),
)
TABLE2_DATASETS = (  # (registered dataset, the split the paper evaluates or None); flag --<name>, title the registry's
    ("dogs", "all"),
    ("cub", "all"),
    ("imagenet-s", None),  # the validation set, its only split
    ("waterbirds", "test"),
)

REDCIRCLE_NOTE = (
    "RedCircle: the paper's, as the authors' executor draws it with blur = False: a red PIL ellipse outline "
    "int(max(W, H) / 200) px wide on the original image, nothing else (on an image under 200 px the width "
    "is 0 and nothing is drawn: the row is then plain CLIP). RedCircle+Blur: their `circle` branch as released "
    "(blur = True): the original inside the ellipse (its mask's 1-px ring at 76/255), Gaussian blur radius "
    "100 outside, the same red outline, in one image. falip's crisp 2-px circle at 224 (`input-circle`) is not used."
)
BLUR_NOTE = (
    "blurs: 'ellipse blur' = the whole image Gaussian-blurred (radius 100), the original kept inside the "
    "ellipse inscribed in the box (`blur`, the paper's Blur: outside the circle); 'box blur' = ReCLIP's "
    "`blur`, the original pasted back in the PIL rectangle of the box, edges included (`blur-box`)."
)
TABLE1_NOTES = (
    REDCIRCLE_NOTE,
    BLUR_NOTE,
    "CPT (adapted to this CLIP): ReCLIP's `shade` on the original image with the text "
    '`caption.lower() + " is in red color."` scored by this CLIP; not the paper\'s VinVL-based CPT numbers.',
    "ReCLIP (no relations): ReCLIP's crop (PIL image.crop of the clipped box, edges rounded half to even) + "
    "box blur, summed: ReCLIP's isolated-proposal baseline; ReCLIP's relation parser is not included (its "
    "parser model cannot be installed from the package registries).",
    "E: logits summed over the branches, each row naming its blur: RedCircle E = RedCircle + blur, FALIP E = "
    "FALIP + RedCircle + blur.",
)
TABLE1_DIFFERENCES = (
    "subtract draws each sentence's captions with a generator seeded by (seed, sentence id); FGVP "
    "draws from numpy's global state, so its captions differ run to run.",
    "FALIP's box-to-token mapping takes the patch cells a box covers with positive area; the authors' "
    "also take the cell before a left/top edge that lies exactly on a patch boundary.",
    "a candidate box of zero area or wholly outside its image is left out of the candidates (counted "
    "in the summary); the authors' code has no such case. A sentence whose gold box has zero area stays "
    "in n and counts as wrong, as in ReCLIP (summary key zero_area_gold).",
)


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``paper`` options to ``p``: the REC settings and the datasets' flags come from the registries."""
    from falip.data.registry import get_dataset
    from falip.tasks import get_task

    p.add_argument("table", choices=("table1", "table2", "table3", "table4"), help="which table")
    g = p.add_argument_group("table1, table4 (REC)")
    g.add_argument("--refcoco-dir", help="folder with the ReCLIP split files (refcoco_testa.jsonl, ...)")
    g.add_argument("--coco-images", help="COCO train2014 image folder")
    g.add_argument("--detector-file", help="detector proposals: fills the 'prop' columns as well as the 'gold' ones")
    rec = {s.name: s for s in get_task("rec").settings}
    add_setting(g, rec["subtract_q"], type=int_at_least(1), default=500, help="Q negative captions per sentence of "
                "the P rows (500)")  # fmt: skip
    add_setting(g, rec["seed"], default=rec["seed"].default, help="seed of the negative captions (and random ties)")
    add_setting(g, rec["ties"], default=rec["ties"].default, help=rec["ties"].help + " (default first)")
    h = p.add_argument_group("table2 (region classification)")
    for name, _ in TABLE2_DATASETS:
        spec = get_dataset(name)
        h.add_argument("--" + name, dest=name.replace("-", "_"), metavar="FOLDER", help=spec.description)
    own = {s.name: s for name, _ in TABLE2_DATASETS for s in get_dataset(name).settings}
    add_setting(h, own["classnames"], help="ImageNet-S class names file (used for ImageNet-S only)")
    add_setting(h, own["region"], default="box", help="ImageNet-S: FALIP is given the mask's box (default, as the "
                "paper) or the mask itself")  # fmt: skip
    dogs = dataclasses.replace(own["objects"], name="dogs_objects", flag="dogs-objects")
    add_setting(h, dogs, default="first", help="Stanford Dogs: the first dog of each image (default: the paper "
                "counts images) or every dog")  # fmt: skip
    add_table3_options(p)
    add_run_options(p)
    add_model_options(p)


def numerics_line(args: argparse.Namespace) -> str:
    """The protocol line saying which numerics ran (``--logits``; issue 20 item 7)."""
    if getattr(args, "logits", "fp32") == "fp16":
        return (
            f"numerics: the authors' (--logits fp16): features, their normalisation and the logits rounded to fp16 "
            f"as clip.load on CUDA computes them, so scores closer than fp16's step tie and go to the first box "
            f"(model run in {args.precision})"
        )
    return (
        f"numerics: logits in float32 (model run in {args.precision}); the authors' clip.load on CUDA ran fp16 "
        "features and fp16 logits, where near-ties merge and go to the first box (--logits fp16 runs that)"
    )


def _protocol(lines: list[str], differences: tuple[str, ...] | list[str]) -> str:
    text = "\nProtocol followed:\n" + "".join(f"- {line}\n" for line in lines)
    if differences:
        text += "\nDeliberate differences from the authors' code:\n" + "".join(f"- {d}\n" for d in differences)
    return text


def _write_table(
    out: Path,
    name: str,
    title: str,
    rows: dict[str, dict[str, str]],
    lines: list[str],
    differences: tuple[str, ...] | list[str],
    summaries: dict,
) -> str:
    """Write ``<name>.md`` (the title, the table, the protocol) and ``<name>.json`` (the summaries) under ``out``."""
    text = title + markdown_table(rows) + "\n" + _protocol(lines, differences)
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    (out / f"{name}.json").write_text(json.dumps(summaries, indent=2), encoding="utf-8")
    return text


def model_line(args: argparse.Namespace, model_info: dict) -> str:
    """The protocol's model line: model, weights, preprocessing and, when set, ``--enlarge``."""
    line = f"model {args.model} ({args.pretrained}), preprocessing {model_info['resize']}"
    if model_info.get("enlarge"):
        line += (
            f"; every box enlarged by {model_info['enlarge']:g} px per side and clipped to the image, for "
            "every row, FALIP's box included (--enlarge; the executors' enlarge_boxes, Table 14)"
        )
    return line


def _rec_task(args: argparse.Namespace, scorer, model_info: dict, splits: list[Path], method: str, **settings):
    """One REC cell's task (tables 1 and 4): ``method`` on every split file, ``--seed``/``--ties`` as given."""
    from falip.tasks import make_task

    return make_task(
        "rec",
        scorer,
        method=method,
        model_info=model_info,
        data=[str(x) for x in splits],
        images=args.coco_images,
        seed=args.seed,
        ties=args.ties,
        **settings,
    )


def _ties_line(args: argparse.Namespace) -> str:
    """The protocol's prediction line (tables 1 and 4)."""
    rule = (
        "the first box in annotation order (np.argmax)" if args.ties == "first" else f"seeded draw (seed {args.seed})"
    )
    return "prediction: argmax of the logits over the boxes; ties: " + rule


def _rec_splits(args: argparse.Namespace) -> list[Path]:
    """The ReCLIP split files of :data:`TABLE1_SPLITS` found in ``--refcoco-dir`` (tables 1 and 4)."""
    from falip.core.errors import FalipError

    if not args.refcoco_dir:
        raise FalipError(f"{args.table} needs --refcoco-dir (the folder of refcoco_testa.jsonl, ...)")
    folder = Path(args.refcoco_dir)
    splits = [folder / f"{name}.jsonl" for name in TABLE1_SPLITS if (folder / f"{name}.jsonl").is_file()]
    if not splits:
        raise FalipError(f"--refcoco-dir {folder} holds none of {', '.join(n + '.jsonl' for n in TABLE1_SPLITS)}")
    return splits


def _table1(args: argparse.Namespace, out: Path) -> str:
    from falip.core.errors import FalipError

    splits = _rec_splits(args)
    if args.detector_file and not Path(args.detector_file).is_file():
        raise FalipError(f"--detector-file {args.detector_file}: no such file")
    settings_of = {"gold": None, **({"prop": args.detector_file} if args.detector_file else {})}
    scorer, model_info = make_scorer(args)
    rows: dict[str, dict[str, str]] = {}
    summaries: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for boxes, detector in settings_of.items():
        for with_p in (False, True):
            for name, method in TABLE1_ROWS:
                if with_p and name not in TABLE1_P_ROWS:
                    continue
                q = args.subtract_q if with_p else 0
                label = f"{name} + P" if with_p else name
                task = _rec_task(args, scorer, model_info, splits, method, detector_file=detector, subtract_q=q)
                print(f"\n== {label} ({boxes})")
                cell = out / boxes / (method_dir(method) + (f"-P{q}" if q else ""))
                summary = run_task(task, args, cell)
                summaries[f"{boxes}/{label}"] = summary
                by = summary.get("by_split", {})
                row = rows.setdefault(label, {})
                for s in splits:
                    column = s.stem if len(settings_of) == 1 else f"{s.stem} {boxes}"
                    row[column] = f"{by[s.name]['accuracy']:.1f}" if s.name in by else "-"
                    counts.setdefault(s.name, by.get(s.name, {}).get("n", 0))
    n_text = ", ".join(f"{name} (n = {n} sentences)" for name, n in counts.items())
    lines = [
        f"splits: {n_text}; every sentence is one query, text 'a photo of {{expression lowercased}}'",
        "region type: boxes; 'gold' = each line's annotation boxes"
        + (
            f", 'prop' = the proposals of {args.detector_file} (an image without any: the whole image)"
            if args.detector_file
            else ""
        )  # fmt: skip
        + "; correct when IoU(predicted box, a gold box) > 0.5",
        _ties_line(args),
        f"P (subtract): for each sentence, Q = {args.subtract_q} captions drawn without replacement from the "
        "split's list of all sentences (duplicates kept; every sentence of every line of the file, also of lines "
        "left out as malformed, blank ones excepted, as FGVP's main.py builds its caption bank from the whole "
        "file before it reads "
        f"any image), seeded per sentence id with seed {args.seed}; each box's logit minus its mean logit over "
        "them (the captions stay 'a photo of ...', also for CPT)",
        model_line(args, model_info),
        numerics_line(args),
        *TABLE1_NOTES,
    ]
    title = "REC accuracy % (IoU > 0.5), model " + args.model + "\n\n"
    return _write_table(out, "table1", title, rows, lines, TABLE1_DIFFERENCES, summaries)


def _table2(args: argparse.Namespace, out: Path) -> str:
    from falip.core.errors import FalipError
    from falip.data.registry import get_dataset
    from falip.tasks import make_task

    table = [(name.replace("-", "_"), get_dataset(name).display_name, name, split) for name, split in TABLE2_DATASETS]
    given = [(key, title, name, split) for key, title, name, split in table if getattr(args, key)]
    if not given:
        raise FalipError("table2 needs at least one of --dogs, --cub, --imagenet-s, --waterbirds")
    if args.waterbirds and not args.cub:
        raise FalipError("--waterbirds needs --cub (the bird boxes come from CUB's bounding_boxes.txt)")
    for key, _, _, _ in given:
        if not Path(getattr(args, key)).is_dir():
            raise FalipError(f"--{key.replace('_', '-')} {getattr(args, key)}: no such folder")
    scorer, model_info = make_scorer(args)
    rows: dict[str, dict[str, str]] = {name: {} for name, _ in TABLE2_ROWS}
    summaries: dict[str, dict] = {}
    lines = []
    options = {  # each dataset's own reader settings
        "dogs": {"objects": args.dogs_objects},
        "imagenet_s": {"region": args.region, "classnames": args.classnames},  # ImageNet-S's names only
        "waterbirds": {"cub_root": args.cub},
    }
    for key, title, dataset, split in given:
        settings = {"dataset": dataset, "root": getattr(args, key), "split": split, **options.get(key, {})}
        n = 0
        for name, method in TABLE2_ROWS:
            print(f"\n== {title}: {name}")
            task = make_task("classify", scorer, method=method, model_info=model_info, top_k=5, **settings)
            summary = run_task(task, args, out / key / method_dir(method))
            summaries[f"{title}/{name}"] = summary
            n = summary.get("n", 0)
            cell = summary.get("worst_group_accuracy")  # a dataset with groups (Waterbirds) reports it
            worst = f" (worst {cell:.1f})" if cell is not None else ""
            rows[name][title] = f"{summary['accuracy']:.1f}{worst}"
        region = {
            "dogs": "the box of "
            + (
                "the first <object> of each annotation (one region per image)"
                if args.dogs_objects == "first"
                else "every dog"
            ),
            "cub": "the bird's box (bounding_boxes.txt)",
            "imagenet_s": "the box of the class mask"
            if args.region == "box"
            else "the class mask itself (--region mask)",
            "waterbirds": "the bird's box from CUB's bounding_boxes.txt",
        }[key]
        lines.append(f"{title}: split {split or 'validation'}, n = {n} regions, region: {region}")
    lines += [
        "text 'a photo of a {class}.'; prediction: argmax over the classes (ties: the lower class index)",
        REDCIRCLE_NOTE,
        BLUR_NOTE.replace("'ellipse blur'", "Blur").replace("'box blur'", "Blur box"),
        "CLIP: the whole image; rows marked (extra) are not in the paper's Table 2",
        model_line(args, model_info),
        numerics_line(args),
    ]
    differences = []
    if args.dogs and args.dogs_objects == "all":
        differences.append("Stanford Dogs counts every dog (--dogs-objects all); the paper counts images")
    if args.imagenet_s and args.region == "mask":
        differences.append("ImageNet-S: FALIP is given the mask (--region mask); the paper gives it the box")
    differences.append(
        "FALIP's box-to-token mapping takes the patch cells a box covers with positive area; the authors' "
        "also take the cell before a left/top edge that lies exactly on a patch boundary."
    )
    title = "Region classification top-1 accuracy %, model " + args.model + "\n\n"
    return _write_table(out, "table2", title, rows, lines, differences, summaries)


TABLE4_ROWS = (  # (R, B, U, method): Table 4's combinations of RedCircle, Blur and Unleash
    (True, False, False, "redcircle"),
    (True, False, True, "unleash:redcircle"),
    (True, True, False, "redcircle-blur"),
    (True, True, True, "unleash:redcircle-blur"),
)


def _table4(args: argparse.Namespace, out: Path) -> str:
    """Table 4 (REC): RedCircle (R), with Blur (B), each plain and unleashed (U, Eq. 6), gold boxes."""
    from falip.core.unleash import check_k

    splits = _rec_splits(args)
    if args.detector_file:
        from falip.core.errors import FalipError

        raise FalipError("table4 runs on the annotations' boxes (gold), as the paper's Table 4; drop --detector-file")
    scorer, model_info = make_scorer(args)
    k = check_k(scorer.params.unleash_k, scorer.fclip.depth)
    rows: dict[str, dict[str, str]] = {}
    summaries: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for r, b, u, method in TABLE4_ROWS:
        task = _rec_task(args, scorer, model_info, splits, method)
        print(f"\n== {method}")
        summary = run_task(task, args, out / "gold" / method_dir(method))
        summaries[method] = summary
        by = summary.get("by_split", {})
        row = rows.setdefault(method, {"R": "x" if r else "", "B": "x" if b else "", "U": "x" if u else ""})
        for x in splits:
            row[x.stem] = f"{by[x.name]['accuracy']:.1f}" if x.name in by else "-"
            counts.setdefault(x.name, by.get(x.name, {}).get("n", 0))
    n_text = ", ".join(f"{name} (n = {n} sentences)" for name, n in counts.items())
    lines = [
        f"splits: {n_text}; every sentence is one query, text 'a photo of {{expression lowercased}}'; gold boxes "
        "(each line's annotation boxes); correct when IoU(predicted box, a gold box) > 0.5",
        _ties_line(args),
        "R = RedCircle (`redcircle`: the red ellipse alone, the authors' executor with blur = False); R + B = "
        "RedCircle+Blur (`redcircle-blur`: their circle branch as released, blur outside the ellipse and the "
        "ellipse in one image)",
        f"U = unleashed (Eq. 6, `unleash:<prompt>`): the original and the prompted image both go through the ViT; "
        f"in the last {k} blocks the prompt's extra attention sum_h (G'_h - G_h) over the heads is added once more "
        "to the prompted image's [CLS] before ln_post and the projection (every head, no selection)",
        model_line(args, model_info),
        numerics_line(args),
        REDCIRCLE_NOTE,
    ]
    differences = [
        "the authors released no code for Table 4 (their executor has no unleash branch): U follows Sec. 4.4 "
        "as written, with every head of the last blocks.",
    ]
    title = "REC accuracy % (IoU > 0.5), Table 4 (R: RedCircle, B: Blur, U: Unleash), model " + args.model + "\n\n"
    return _write_table(out, "table4", title, rows, lines, differences, summaries)


# ------------------------------------------------------------------------------------------------ table 3
TABLE3_SCANOBJECTNN = (  # (variant setting, the name papers give it)
    ("main_split_nobg", "OBJ_ONLY"),
    ("main_split", "OBJ_BG"),
    ("main_split+augmentedrot_scale75", "PB_T50_RS"),
)
TABLE3_ROWS = (("CLIP", "none"), ("FALIP", "falip"))


def add_table3_options(p: argparse.ArgumentParser) -> None:
    """The ``table3`` (point clouds) options."""
    g = p.add_argument_group("table3 (point clouds)")
    g.add_argument("--modelnet40", help="ModelNet40 folder (PointNet's modelnet40_ply_hdf5_2048; its test split)")
    g.add_argument(
        "--scanobjectnn",
        help="ScanObjectNN folder (holding h5_files/): every variant found of OBJ_ONLY (main_split_nobg), OBJ_BG "
        "(main_split) and PB_T50_RS (main_split+augmentedrot_scale75), test split",
    )
    g.add_argument(
        "--projections",
        default="v1,v2",
        help="PointCLIP projections, comma-separated: v1 (6 views), v2 (10 views) (default v1,v2)",
    )
    g.add_argument(
        "--v2-prompts",
        metavar="FILE",
        help="V2 rows: PointCLIP V2's best_param.py (one test-searched sentence per class, the list of each "
        "dataset and the model's backbone) or a JSON {class: [sentence, ...]}; default: V1's template",
    )
    g.add_argument(
        "--post-search",
        action="store_true",
        help="also PointCLIP's post-search of the view weights on the reported split (labelled optimistic rows)",
    )


def _table3_columns(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """``(column title, dataset, variant)`` of the data given; FalipError when none or a folder is missing."""
    from falip.core.errors import FalipError

    if not args.modelnet40 and not args.scanobjectnn:
        raise FalipError("table3 needs --modelnet40 and/or --scanobjectnn")
    columns: list[tuple[str, str, str | None]] = []
    for option, value in (("--modelnet40", args.modelnet40), ("--scanobjectnn", args.scanobjectnn)):
        if value and not Path(value).is_dir():
            raise FalipError(f"{option} {value}: no such folder")
    if args.modelnet40:
        columns.append(("ModelNet40", "modelnet40", None))
    if args.scanobjectnn:
        root = Path(args.scanobjectnn)
        found = []
        for variant, name in TABLE3_SCANOBJECTNN:
            folder, _, perturbation = variant.partition("+")
            file = f"test_objectdataset{'_' + perturbation if perturbation else ''}.h5"
            if any((d / file).is_file() for d in (root / "h5_files" / folder, root / folder)):
                found.append((f"ScanObjectNN {name}", "scanobjectnn", variant))
        if not found:
            raise FalipError(
                f"--scanobjectnn {root}: none of the test files of "
                + ", ".join(f"{v} ({n})" for v, n in TABLE3_SCANOBJECTNN)
                + " under h5_files/"
            )
        columns += found
    return columns


def _table3(args: argparse.Namespace, out: Path) -> str:
    """Table 3 (point clouds): plain CLIP and FALIP with PointCLIP's V1 and V2 projections, each dataset a column.

    PointCLIP V1's zero-shot recipe (ZrrSkywalker/PointCLIP@8656f2c trainers/zeroshot.py:12-13 the
    template 'point cloud depth map of a {}.', :77-92 every view's cosine with equal weights;
    trainers/search_weights.py:60-75 its post-search on the test features). V2
    (yangyangyang127/PointCLIP_V2@0b5aee8 trainers/zeroshot.py:18-20 one test-searched sentence per
    class, :71 the view weights of best_param.py for the dataset and backbone).
    """
    import numpy as np

    from falip.core.errors import FalipError
    from falip.runner import read_results
    from falip.tasks import make_task
    from falip.tasks.pointcloud import POST_SEARCH_LABEL, VIEW_WEIGHT_PRESETS, post_search_view_weights, v2_backbone

    columns = _table3_columns(args)
    projections = [p.strip() for p in str(args.projections).split(",") if p.strip()]
    bad = [p for p in projections if p not in ("v1", "v2")]
    if bad or not projections or len(set(projections)) != len(projections):
        raise FalipError(f"--projections {args.projections}: give v1, v2 or v1,v2 (each once)")
    if args.v2_prompts and "v2" not in projections:
        raise FalipError("--v2-prompts is for the V2 rows: add v2 to --projections")
    if args.v2_prompts and not Path(args.v2_prompts).is_file():
        raise FalipError(f"--v2-prompts {args.v2_prompts}: no such file")
    scorer, model_info = make_scorer(args)
    backbone = v2_backbone(args.model)
    rows: dict[str, dict[str, str]] = {}
    summaries: dict[str, dict] = {}
    counts: dict[str, int] = {}
    weights_used: dict[str, str] = {}
    for projection in projections:
        for title, dataset, variant in columns:
            preset = f"v2-{dataset}-{backbone.replace('_', '-')}" if backbone else None
            weights = preset if projection == "v2" and preset in VIEW_WEIGHT_PRESETS else None
            weights_used[f"{projection}/{title}"] = (
                f"{weights} ({', '.join(f'{w:g}' for w in VIEW_WEIGHT_PRESETS[weights])})" if weights else "equal"
            )
            settings = {"dataset": dataset, "root": getattr(args, dataset)}  # --modelnet40, --scanobjectnn
            if variant:
                settings["variant"] = variant
            prompts = args.v2_prompts if projection == "v2" else None
            for name, method in TABLE3_ROWS:
                label = f"{name} ({projection.upper()})"
                print(f"\n== {label}: {title}")
                task = make_task(
                    "pointcloud",
                    scorer,
                    method=method,
                    model_info=model_info,
                    projection=projection,
                    view_weights=weights,
                    prompts=prompts,
                    split="test",
                    **settings,
                )
                cell = out / projection / (title.lower().replace(" ", "-")) / method
                summary = run_task(task, args, cell)
                summaries[f"{label}/{title}"] = summary
                counts[title] = int(summary.get("n", 0))
                rows.setdefault(label, {})[title] = f"{summary['accuracy']:.1f}"
                if args.post_search:
                    records, _ = read_results(cell)
                    cos = np.array([r["view_cosines"] for r in records])
                    labels = np.array([r["label"] for r in records])
                    best, acc = post_search_view_weights(cos, labels)
                    summaries[f"{label} post-searched/{title}"] = {"view_weights": list(best), "accuracy": acc}
                    rows.setdefault(f"{label}, post-searched (optimistic)", {})[title] = f"{acc:.1f}"
    n_text = ", ".join(f"{title} (n = {counts.get(title, 0)} clouds, test split)" for title, _, _ in columns)
    v2_text = "template" if not args.v2_prompts else f"prompts of {args.v2_prompts}"
    lines = [
        f"data: {n_text}; ScanObjectNN's clouds are centred and scaled into the unit sphere by the reader (its "
        "files are not), background points kept except in OBJ_ONLY",
        "V1 rows: PointCLIP V1's projection (6 views, the first 1024 points, depth maps at 128 px upsampled to "
        "the model's input), text 'point cloud depth map of a {class}.' (underscores as spaces), view weights "
        "equal",
        "V2 rows: PointCLIP V2's realistic projection (10 views, densified and smoothed depth, background 1), "
        + (
            f"text: {v2_text} (V2's own: one sentence per class searched on the test split)"
            if args.v2_prompts
            else "text 'point cloud depth map of a {class}.' (V2's test-searched sentences: --v2-prompts)"
        ),
        "view weights: "
        + (
            "equal in every row"
            if set(weights_used.values()) == {"equal"}
            else "; ".join(f"{key}: {value}" for key, value in weights_used.items())
        )
        + " (a V2 preset is PointCLIP V2's best_param.py for the dataset and backbone, searched by its authors "
        "on the test split; equal where the model has no V2 backbone)",
        "prediction: argmax over the classes of the weighted sum over views of the cosines; FALIP's region per "
        "view = the object's pixels (V1: depth > 0; V2: darker than the background)",
        (
            f"post-searched rows: {POST_SEARCH_LABEL}; the grid {{0.25, 0.5, 0.75, 1}} per view, the first best "
            "in grid order"
            if args.post_search
            else "no post-search (--post-search adds PointCLIP's, labelled optimistic)"
        ),
        f"model {args.model} ({args.pretrained}), preprocessing: the depth maps themselves (no mean/std)",
        numerics_line(args),
    ]
    differences = [
        "PointCLIP's zero-shot numbers use the weights its post-search found on the test split; here the plain "
        "rows use equal (V1) or V2's published weights, and a post-searched row is marked optimistic.",
    ]
    title = "Point-cloud classification top-1 accuracy % (Table 3), model " + args.model + "\n\n"
    return _write_table(out, "table3", title, rows, lines, differences, summaries)


def run(args: argparse.Namespace) -> int:
    """Build the table; returns the exit code."""
    from ._common import ensure_writable_dir

    out = ensure_writable_dir(args.out, "--out")
    text = {"table1": _table1, "table2": _table2, "table3": _table3, "table4": _table4}[args.table](args, out)
    print("\n" + text)
    print(f"wrote {out / (args.table + '.md')} and {out / (args.table + '.json')}")
    return 0
