"""Each task's settings: one frozen dataclass per task, each setting declared once as a field.

A field made with :func:`~falip.data.registry.setting` carries its default, help, type, choices
and flag; from it come the registry's :class:`~falip.data.registry.Setting` list
(:class:`falip.tasks.TaskSpec`), every command's options (``falip rec``, ``classify``,
``pointcloud``, ``compare``, ``sweep``, ``heads``, ``paper``), ``run.json`` (the fields, under
their own names) and the resume check (a resumed run must have the same ``run.json``). Plain
fields (``method``, ``options``, ...) are filled by the task, not given as settings.

Torch-free: every command's ``--help`` is made from these classes without loading a model. The
task modules (:mod:`falip.tasks.rec`, ...) use and re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..data.registry import setting
from ..defaults import CLS_TEMPLATE, POINTCLOUD_TEMPLATE, PROJECTIONS, PROMPTS_HELP, REC_TEMPLATE, TIES

__all__ = ["RecSettings", "ClassifySettings", "PointCloudSettings", "DetectSettings", "run_config"]


@dataclass(frozen=True)
class RecSettings:
    """What defines a REC run (written to ``run.json``; a resumed run must match it).

    ``data``: ReCLIP-format split files; ``images``: the image root (default: each file's folder);
    ``detector_file``: proposals ("prop" setting) instead of the annotations' boxes ("gold");
    ``subtract_q``: Q negative captions per sentence for "subtract" (0: off), drawn from the
    split's list of all sentences, seeded per sentence id with ``seed``
    (:func:`falip.tasks.rec.sample_negatives`); ``ties``: ``"first"`` box (the authors'
    ``np.argmax``) or a ``"random"`` draw seeded by ``seed``; ``format``: the REC format of the
    split files (the ``dataset`` setting; :func:`falip.data.registry.rec_reader`).
    """

    data: tuple[str, ...] = setting(type="files", normalize=True, help="a REC split file (repeat for several)")
    images: str | None = setting(
        None, type="folder", help="image folder (e.g. COCO train2014/; default: each split file's folder)"
    )
    detector_file: str | None = setting(
        None, type="file", help="detector proposals (the 'prop' setting; default: gold boxes)"
    )
    method: str = "falip"
    template: str | tuple[str, ...] = setting(
        REC_TEMPLATE, type="template", help=f"text template (REC default {REC_TEMPLATE!r})"
    )
    subtract_q: int = setting(0, minimum=0, help="'subtract' with Q negative captions (default 0: off)")
    seed: int = setting(0, minimum=0, help="seed of the negative captions and random tie-breaks (>= 0)")
    iou_threshold: float = 0.5
    ties: str = setting(
        TIES[0], choices=TIES,
        help="exact ties between boxes: the first box (np.argmax, the authors' rule) or a seeded draw",
    )  # fmt: skip
    format: str = setting("reclip", name="dataset", help="the REC format of the split files (default reclip)")


@dataclass(frozen=True)
class ClassifySettings:
    """What defines a region-classification run (written to ``run.json``).

    ``dataset`` read from ``source`` (the ``root`` setting); ``templates``: one prompt, or several
    averaged in feature space (CLIP's prompt ensembling); ``top_k``: the second accuracy reported
    (top-5 by default); ``options``: what the dataset's reader says defines it (its split, ...).
    """

    dataset: str = setting(help="the region dataset")
    source: str = setting(name="root", normalize=True, help="dataset folder (jsonl/csv: the file)")
    method: str = "falip"
    templates: tuple[str, ...] = setting(
        (CLS_TEMPLATE,), name="template", type="template", help=f"text template (default {CLS_TEMPLATE!r})"
    )
    top_k: int = setting(5, minimum=1, help="the second accuracy reported (default top-5)")
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class PointCloudSettings:
    """What defines a point-cloud run (written to ``run.json``).

    ``dataset`` read from ``source`` (the ``root`` setting). ``view_weights``: one weight per view
    (None: equal; the command line also takes a PointCLIP V2 preset name); ``weights_from``
    records where they came from ("equal", "given", "preset ..." or "searched on <split> ...").
    ``projected_points``: the first N points of each cloud are projected (PointCLIP: 1024 of
    ModelNet40's 2048); None: every point loaded (a dataset whose reader subsamples, e.g. a
    folder of point files). ``prompts``: per class, the sentences whose normalised text features
    are averaged (a JSON file), or the one test-searched sentence of PointCLIP V2's
    ``best_param.py`` (:func:`falip.tasks.pointcloud.read_prompts`), brought by the user; None:
    ``template`` with the class name.
    """

    dataset: str = setting(help="the point-cloud dataset")
    source: str = setting(name="root", normalize=True, help="dataset folder")
    method: str = "falip"
    projection: str = setting(PROJECTIONS[0], choices=PROJECTIONS, help="PointCLIP V1 (6 views) or V2 (10 views)")
    template: str = setting(POINTCLOUD_TEMPLATE, help=f"text template (point clouds: {POINTCLOUD_TEMPLATE!r})")
    view_weights: tuple[float, ...] | None = setting(
        None, type="weights",
        help="one weight per view, e.g. 1,1,1,1,0.5,0.5 (default equal), or a PointCLIP V2 preset: "
        "v2-<modelnet40|scanobjectnn>-<rn50|rn101|vit-b16|vit-b32> (its own test-split search)",
    )  # fmt: skip
    weights_from: str = "equal"
    options: tuple[tuple[str, Any], ...] = ()
    projected_points: int | None = 1024
    prompts: tuple[tuple[str, tuple[str, ...]], ...] | None = setting(None, type="file", help=PROMPTS_HELP)


@dataclass(frozen=True)
class DetectSettings:
    """What defines a detection run (``run.json``): the data, the regions' source, the method, templates.

    ``source`` (the ``root`` setting): the COCO instances JSON; ``images`` and ``region``: as its
    reader resolved them; ``dataset``: the registered COCO dataset that read it.
    """

    source: str = setting(
        name="root", normalize=True, help="the COCO instances JSON (its annotations are the ground truth)"
    )
    images: str = ""
    region: str = "box"
    proposals: str | None = setting(
        None,
        help="the regions: a COCO results file of class-agnostic boxes (+ RLE masks, matched by image_id) or any "
        "proposal source of falip ground (auto, a segment-anything folder, hf:<model>); default: the annotation "
        "file's own regions",
    )
    method: str = "falip"
    templates: tuple[str, ...] = setting(
        (CLS_TEMPLATE,), name="template", type="template", help=f"text template (default {CLS_TEMPLATE!r})"
    )
    detections_per_region: int = setting(5, minimum=1, help="detections per region: its best classes (default 5)")
    dataset: str = setting("coco", help="a COCO instances dataset (default coco)")


def _json_value(value: Any) -> Any:
    """A settings value as run.json holds it: tuples as lists, a tuple of (name, values) pairs as a mapping."""
    if isinstance(value, tuple):
        pairs = value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value)
        if pairs and all(isinstance(v[1], tuple) for v in value):
            return {k: _json_value(v) for k, v in value}
        return [_json_value(v) for v in value]
    return value


def run_config(task: str, settings: Any, **extra: Any) -> dict[str, Any]:
    """``run.json``'s ``config`` of a task, from its settings dataclass: ``task``, then every field in
    order (``options``, what the dataset's reader resolved, flattened in its place), then ``extra``
    (e.g. the class count, the model description). A resumed run must give the same keys and values."""
    out: dict[str, Any] = {"task": task}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "options":
            out.update({k: _json_value(v) for k, v in value})
        else:
            out[f.name] = _json_value(value)
    out.update(extra)
    return out
