"""The tasks FALIP serves, one module each, and the registry every command reads them from.

``rec`` (referring expression comprehension, :mod:`falip.tasks.rec`), ``classify`` (region
classification, :mod:`falip.tasks.region_cls`), ``pointcloud`` (zero-shot 3D classification,
:mod:`falip.tasks.pointcloud` with :mod:`falip.tasks.projection`); :mod:`falip.tasks.metrics`
holds what they share.

Each task is one :class:`TaskSpec` in :data:`TASKS`: its name, the datasets it reads (a kind of
:mod:`falip.data.registry`), its settings (as data: the command line makes its options from
them), its metrics (summary key, label, higher is better), how its summary prints as a table
row, the methods it takes, and lazily (``"module:function"``) how its harness task is built.
``falip compare``, ``sweep``, ``heads`` and ``paper`` and :func:`evaluate` take any registered
task, so a new one is one new file plus one line here::

    @dataclass(frozen=True)
    class CountSettings:
        dataset: str = setting(help="the region dataset")
        root: str = setting(help="dataset folder")
        top_k: int = setting(5, help="counts reported", minimum=1)

    register_task(TaskSpec("count", "counting", "falip_count.task:make_task", dataset_kind="regions",
                           settings=CountSettings))

where ``make_task(scorer, model_info, method, settings) -> task`` returns a task for
:func:`falip.runner.run` (``name``, ``config``, ``units``, ``load``, ``run``, ``summarize``, ``table``);
:func:`build_settings` turns ``settings`` into the dataclass. Each setting is declared once, as a
field (:func:`setting`: default, help, type, choices, flag): the registry's :class:`Setting` list,
every command's options, ``run.json`` (the dataclass's fields) and the resume check come from it.
Importing this package loads no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..core.deprecation import warn_renamed
from ..core.errors import FalipError
from ..data.registry import Setting, get_dataset, required_of, resolve, setting, setting_fields, settings_of
from ..plugins import Registry
from .settings import ClassifySettings, DetectSettings, PointCloudSettings, RecSettings

__all__ = [
    "Metric",
    "Setting",
    "setting",
    "settings_of",
    "build_settings",
    "TaskSpec",
    "TASKS",
    "register_task",
    "get_task",
    "task_names",
    "task_settings",
    "make_task",
    "evaluate",
    "summary_columns",
    "read_templates",
]


@dataclass(frozen=True)
class Metric:
    """One number a task's summary reports: its ``key`` in ``summary.json``, a ``label``, and its sense."""

    key: str
    label: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class TaskSpec:
    """One task (module docstring).

    ``build``: ``make_task(scorer, model_info, method, settings) -> task`` (or ``"module:function"``);
    ``settings`` is a dict holding every setting of the task and of its dataset, defaults filled
    (:func:`task_settings`). ``dataset_kind``: the kind of dataset it reads (``dataset`` then
    names one, ``default_dataset`` when not given); ``settings``: its own settings, a dataclass of
    :func:`setting` fields (kept as ``settings_type``; ``settings`` then lists its Settings) or a
    tuple of :class:`Setting`; ``required``: settings that must be given (default: the
    dataclass's fields without a default). ``metrics``: the first is the one sweeps plot.
    ``columns``: ``summary -> {column: cell}`` for a comparison row (default: the metrics).
    ``methods``: the methods it takes (None:
    any of :mod:`falip.prompts.registry`). ``samples``: ``(image_size=S, **settings) -> entries`` of
    images and regions for ``falip heads`` (:func:`falip.analysis.heads.load_samples`; ``S``: the
    model's input side, for samples made as model-input tensors); None: it has none.
    """

    name: str
    title: str
    build: str | Callable[..., Any]
    description: str = ""
    dataset_kind: Literal["regions", "pointcloud", "rec"] | None = None
    default_dataset: str | None = None
    settings: tuple[Setting, ...] = ()
    required: tuple[str, ...] = ()
    metrics: tuple[Metric, ...] = (Metric("accuracy", "top-1"),)
    columns: str | Callable[[Mapping[str, Any]], dict[str, str]] | None = None
    methods: tuple[str, ...] | None = None
    default_methods: str = "none,crop,input-circle,blur,falip,falip+blur+input-circle"
    samples: str | Callable[..., Any] | None = None
    settings_type: type | None = None

    def __post_init__(self) -> None:
        if isinstance(self.settings, type):  # the task's settings dataclass: the one declaration
            object.__setattr__(self, "settings_type", self.settings)
            object.__setattr__(self, "required", self.required or required_of(self.settings))
            object.__setattr__(self, "settings", settings_of(self.settings))

    def all_settings(self, dataset: str | None = None) -> tuple[Setting, ...]:
        """The task's settings, then those of ``dataset`` (a registered name; None: the task's own only)."""
        out = list(self.settings)
        if dataset is not None:
            names = {s.name for s in out}
            out += [s for s in get_dataset(dataset, self.dataset_kind).settings if s.name not in names]
        return tuple(out)


TASKS: dict[str, TaskSpec] = Registry()  # loads the plugins (falip.plugins) when first read


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add (or replace) a task in :data:`TASKS`."""
    if not spec.name or any(c.isspace() or c in ",:/" for c in spec.name):
        raise FalipError(f"task names may not be empty or hold spaces, ',', ':' or '/': {spec.name!r}")
    if not spec.metrics:
        raise FalipError(f"task {spec.name!r} declares no metric")
    TASKS[spec.name] = spec
    return spec


def task_names() -> tuple[str, ...]:
    """Deprecated (warns once; nothing in falip uses it): ``tuple(TASKS)``, the registered task names."""
    warn_renamed("falip.tasks.task_names()", "tuple(falip.tasks.TASKS)")
    return tuple(TASKS)


def get_task(name: str | TaskSpec) -> TaskSpec:
    """The spec of task ``name``; FalipError naming the registered ones when unknown."""
    if isinstance(name, TaskSpec):
        return name
    spec = TASKS.get(name)
    if spec is None:
        raise FalipError(f"unknown task {name!r}; one of {', '.join(TASKS)}")
    return spec


def task_settings(task: str | TaskSpec, **given: Any) -> dict[str, Any]:
    """Every setting of ``task`` (and of its dataset) from ``given``, defaults filled, checked.

    None stands for "not given". A setting neither the task nor its dataset takes, a required one
    missing, a dataset of another kind or a value outside its choices is a FalipError.
    """
    spec = get_task(task)
    dataset = given.get("dataset") or spec.default_dataset
    if spec.dataset_kind is not None and dataset is not None:
        get_dataset(dataset, spec.dataset_kind)
    known = {s.name: s for s in spec.all_settings(dataset)}
    unknown = sorted(k for k, v in given.items() if v is not None and k not in known)
    if unknown:
        where = f"task {spec.name}" + (f" (dataset {dataset})" if dataset else "")
        raise FalipError(f"{where} takes no {', '.join(unknown)}; it takes {', '.join(known) or 'nothing'}")
    out: dict[str, Any] = {}
    for name, s in known.items():
        value = given.get(name)
        value = s.default if value is None else value
        if value is not None and s.choices is not None and value not in s.choices:
            raise FalipError(f"{name} must be one of {', '.join(s.choices)}, got {value!r}")
        out[name] = value
    if spec.dataset_kind is not None:
        out["dataset"] = dataset
    missing = [name for name in spec.required if out.get(name) in (None, (), [])]
    if missing:
        raise FalipError(f"task {spec.name} needs {' and '.join(missing)}")
    return out


T = TypeVar("T")


def build_settings(cls: type[T], values: Mapping[str, Any], **fixed: Any) -> T:
    """The settings dataclass ``cls`` from ``values`` (:func:`task_settings`); ``fixed``: its other fields.

    Each :func:`setting` field takes the value of its setting: paths as ``str`` (``normalize``:
    ``str(Path(v))``), ``files`` as a tuple, a ``template`` field the templates of ``template`` /
    ``templates`` (:func:`read_templates`; one, or a tuple of several, or always a tuple where
    the field's default is one). A field in ``fixed`` takes that value instead.
    """
    kwargs = dict(fixed)
    for f, s in setting_fields(cls):
        if f.name in kwargs:
            continue
        value = values.get(s.name, s.default)
        if s.type == "template":
            templates = read_templates(values, s.default)
            value = templates if isinstance(f.default, tuple) or len(templates) > 1 else templates[0]
        elif value is not None and s.type in ("files", "file", "folder") or (s.normalize and value is not None):
            path = (lambda v: str(Path(v))) if s.normalize else str
            value = tuple(path(v) for v in value) if s.type == "files" else path(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def make_task(
    task: str | TaskSpec,
    scorer: Any,
    *,
    method: str = "falip",
    model_info: Mapping[str, Any] | None = None,
    **settings: Any,
) -> Any:
    """The harness task of ``task`` (:func:`falip.runner.run`) with ``settings`` (:func:`task_settings`).

    ``scorer``: a :class:`falip.RegionScorer` (its model, FALIP options and edit parameters);
    ``model_info``: the model description written to ``run.json``.
    """
    spec = get_task(task)
    if spec.methods is not None and method not in spec.methods:
        raise FalipError(f"task {spec.name} takes the methods {', '.join(spec.methods)}, got {method!r}")
    return resolve(spec.build)(scorer, dict(model_info or {}), method, task_settings(spec, **settings))


def evaluate(
    task: str | TaskSpec,
    scorer: Any,
    out_dir: str | Path,
    *,
    method: str = "falip",
    model_info: Mapping[str, Any] | None = None,
    run_options: Mapping[str, Any] | None = None,
    **settings: Any,
) -> tuple[dict, list[dict]]:
    """Run any registered task into ``out_dir``: ``(summary, per-item records)``.

    E.g. ``evaluate("pointcloud", scorer, "runs/mn40", dataset="modelnet40", root="modelnet40_ply_hdf5_2048")``;
    ``run_options`` go to :func:`falip.runner.run` (``resume``, ``limit``, ``workers``, ``batch_units``).
    """
    from ..runner import read_results, run

    summary = run(
        make_task(task, scorer, method=method, model_info=model_info, **settings), out_dir, **dict(run_options or {})
    )
    records, _ = read_results(out_dir)
    return summary, records


def summary_columns(task: str | TaskSpec, summary: Mapping[str, Any]) -> dict[str, str]:
    """The cells of one row of a comparison table for ``summary`` (the task's ``columns``, else its metrics)."""
    spec = get_task(task)
    if spec.columns is not None:
        cells = dict(resolve(spec.columns)(summary))
    else:
        cells = {m.label: f"{summary[m.key]:.1f}" for m in spec.metrics if summary.get(m.key) is not None}
    cells["n"] = str(summary["n"])
    if summary.get("skipped"):
        cells["skipped"] = str(summary["skipped"])
    return cells


def read_templates(settings: Mapping[str, Any], default: str) -> tuple[str, ...]:
    """The templates of ``settings``: its ``templates`` file (one a line) if given, else ``template`` (one,
    or from Python a sequence of them) or ``default``."""
    path, template = settings.get("templates"), settings.get("template")
    if not path:
        if isinstance(template, (list, tuple)):
            if not template:
                raise FalipError("template: an empty list of templates")
            return tuple(str(t) for t in template)
        return (template or default,)
    path = Path(path)
    if not path.is_file():
        raise FalipError(f"templates file {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FalipError(f"templates file {path}: not UTF-8 text (one template a line)") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise FalipError(f"templates file {path} holds no template")
    return tuple(lines)


# ------------------------------------------------------------------------------ how summaries print
def _rec_columns(summary: Mapping[str, Any]) -> dict[str, str]:
    cells = {split: f"{row['accuracy']:.1f}" for split, row in summary.get("by_split", {}).items()}
    cells["all"] = f"{summary['accuracy']:.1f}"
    return cells


def _classify_columns(summary: Mapping[str, Any]) -> dict[str, str]:
    from .metrics import Summary  # torch-free

    values = Summary.from_dict(summary).columns()  # top-1, top-k, group mean, worst group, ...
    return {label: "-" if v is None else f"{v:.1f}" for label, v in values.items()}


# ------------------------------------------------------------------------------------ the tasks
_ACCURACY = Metric("accuracy", "top-1")

register_task(TaskSpec(
    "rec", "REC", "falip.tasks.rec:make_task",
    "referring expression comprehension: the box an expression names (ReCLIP-format splits)",
    dataset_kind="rec", default_dataset="reclip", settings=RecSettings,
    metrics=(Metric("accuracy", "all"),), columns=_rec_columns, samples="falip.tasks.rec:rec_samples",
))  # fmt: skip
register_task(TaskSpec(
    "classify", "region classification", "falip.tasks.region_cls:make_task",
    "name the object in each region among a list of classes",
    dataset_kind="regions", settings=ClassifySettings,
    metrics=(_ACCURACY, Metric("group_mean_accuracy", "group mean"), Metric("worst_group_accuracy", "worst group")),
    columns=_classify_columns, samples="falip.tasks.region_cls:classification_samples",
))  # fmt: skip
register_task(TaskSpec(
    "pointcloud", "point clouds", "falip.tasks.pointcloud:make_task",
    "zero-shot 3D classification of point clouds from depth views (PointCLIP), FALIP on each view's object",
    dataset_kind="pointcloud", settings=PointCloudSettings,
    metrics=(_ACCURACY, Metric("mean_per_class_accuracy", "mean per class")),
    methods=("none", "falip"), default_methods="none,falip",
    samples="falip.tasks.pointcloud:pointcloud_samples",
))  # fmt: skip


def _detect_columns(summary: Mapping[str, Any]) -> dict[str, str]:
    cells = {k: "-" if summary.get(k) is None else f"{summary[k]:.1f}" for k in ("AP", "AP50", "AP75")}
    if "segm" in summary:
        cells["mask AP"] = "-" if summary["segm"].get("AP") is None else f"{summary['segm']['AP']:.1f}"
    if summary.get("accuracy") is not None:
        cells["region top-1"] = f"{summary['accuracy']:.1f}"
    return cells


register_task(TaskSpec(
    "detect", "COCO detection", "falip.tasks.detect:make_task",
    "detection by region recognition: name every region (ground-truth boxes/masks or proposals), COCO AP",
    dataset_kind="regions", default_dataset="coco",
    settings=DetectSettings,
    metrics=(Metric("AP", "AP"), Metric("AP50", "AP50"), Metric("AP75", "AP75")),
    columns=_detect_columns,
))  # fmt: skip
TASKS.arm()  # falip's own are in: the first read from now on loads the plugins
