"""The dataset registry: name -> reader, the settings it takes, its splits, what it yields (no torch).

Every dataset falip reads is one :class:`DatasetSpec` in :data:`DATASETS`; the tasks open their data
through :func:`open_dataset` (or :func:`rec_reader` for REC formats), and the command line makes
its ``--dataset`` choices, its reader options and their help from the specs. The readers are named
lazily (``"module:function"``), so listing the registry imports no reader.

Three kinds, by what the reader yields (the task family that reads it):

``regions`` (region classification)
    ``open(root, **settings) -> (items, classes, options)``: ``items`` re-iterable, each a
    :class:`~falip.data.classification.ClassificationItem`-like (``id``, ``image_path``, ``source``,
    ``label`` and/or ``label_index``, optional ``group``, ``regions(image_size)``) or a
    :class:`~falip.data.records.Skipped`; ``classes`` the class names; ``options`` the settings
    that define the run (written to ``run.json``).
``pointcloud``
    The same triple; items have ``id``, ``source``, ``label``, ``label_index``, ``load_points()``
    (``[N, 3]`` float32).
``rec`` (a REC format)
    ``read(path, image_root=None, errors="skip") -> iterator`` of one sample per sentence with ``id``
    (``"<file>:<line>#<k>"``), ``image_path``, ``image_id``, ``source``, ``sentence``, ``boxes``
    ``[K, 4]`` (xyxy, the line's candidates), ``gold_boxes`` ``[G, 4]``, ``dropped`` (notes on
    candidates left out), as :class:`~falip.data.reclip.RecSample`; or a ``Skipped``.

Adding a dataset: write its reader (one file in ``data/``), then one line here (or
:func:`register_dataset` from your own code)::

    register_dataset(DatasetSpec("mydata", "regions", "mypkg.mydata:open_mydata", "my regions (a folder)",
                                 settings=(Setting("split", default="test", help="split"),)))
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..core.errors import FalipError
from ..plugins import Registry

__all__ = [
    "KINDS",
    "Setting",
    "setting",
    "settings_of",
    "DatasetSpec",
    "DATASETS",
    "register_dataset",
    "get_dataset",
    "dataset_names",
    "open_dataset",
    "rec_reader",
    "resolve",
]

KINDS = ("regions", "pointcloud", "rec")

SettingType = Literal["str", "int", "float", "file", "folder", "files", "floats", "weights", "template"]

_META = "falip"  # the key of a setting in a dataclass field's metadata


@dataclass(frozen=True)
class Setting:
    """One setting of a dataset reader or a task, as data (the command line makes its option from it).

    ``name`` is the Python keyword (``cub_root``); the command line's flag is ``--`` + ``flag``
    (default: the name with ``-`` for ``_``). ``type``: ``str``, ``int``, ``float``, ``file``,
    ``folder`` (a path that must exist as such), ``files`` (several files, the flag repeated),
    ``floats`` (comma-separated numbers), ``weights`` (comma-separated numbers >= 0, or a preset
    name the task knows) or ``template`` (a text template; its field also takes ``templates``, a
    file of them). ``minimum`` bounds an ``int``. ``normalize``: a path is kept as ``str(Path(v))``.
    ``hidden``: a setting Python callers give but the command line does not offer.
    """

    name: str
    type: SettingType = "str"
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    flag: str | None = None
    normalize: bool = False
    hidden: bool = False

    @property
    def option(self) -> str:
        """The command-line flag, e.g. ``--cub-root``."""
        return "--" + (self.flag or self.name.replace("_", "-"))


TEMPLATES = Setting("templates", "file", help="a file of templates, one per line, averaged in feature space")
"""The file companion of every ``template`` setting (``--template`` or ``--templates FILE``)."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    type: SettingType | None = None,
    choices: tuple[str, ...] | None = None,
    minimum: int | None = None,
    flag: str | None = None,
    name: str | None = None,
    normalize: bool = False,
    hidden: bool = False,
) -> Any:
    """A dataclass field that is also a setting: its default, and its :class:`Setting` in the metadata.

    The one place a task's (or a reader's) setting is declared: the registry, the command line's
    option, ``run.json`` and the resume check all read it (:func:`settings_of`). ``name``: the
    setting's keyword where it differs from the field's (the field keeps its ``run.json`` key);
    ``type`` defaults to the default's (``int``, ``float``, else ``str``). No default: required.
    A ``template`` field whose default is a tuple of templates has the first as the setting's default.
    """
    if type is None:
        type = "int" if isinstance(default, int) and not isinstance(default, bool) else "str"
        type = "float" if isinstance(default, float) else type
    given = None if default is dataclasses.MISSING else default
    if type == "template" and isinstance(given, tuple):  # a field of templates: the setting is the one
        given = given[0]
    spec = Setting(name or "", type, given, help, choices, minimum, flag, normalize, hidden)
    return dataclasses.field(default=default, metadata={_META: spec})


def setting_fields(cls: type) -> list[tuple[dataclasses.Field, Setting]]:
    """The fields of dataclass ``cls`` declared with :func:`setting`, each with its :class:`Setting` (named)."""
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_META)
        if spec is not None:
            out.append((f, spec if spec.name else dataclasses.replace(spec, name=f.name)))
    return out


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The settings a dataclass declares (:func:`setting`), in field order; a ``template`` brings ``templates``."""
    out: list[Setting] = []
    for _, spec in setting_fields(cls):
        out.append(spec)
        if spec.type == "template":
            out.append(TEMPLATES)
    return tuple(out)


def required_of(cls: type) -> tuple[str, ...]:
    """The settings of dataclass ``cls`` that have no default (must be given)."""
    return tuple(
        spec.name
        for f, spec in setting_fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset (module docstring): ``name``, ``kind``, its reader, and what it takes.

    ``reader``: ``"module:function"`` (or the function), the ``open``/``read`` of its kind.
    ``root``: what the ``root`` argument is, ``"folder"`` or ``"file"`` (REC formats read the
    split files given). ``settings``: the keyword arguments the reader takes beyond ``root``
    (Settings, or a dataclass declaring them with :func:`setting`); ``splits``: the split names it
    knows (empty: any / none); ``yields``: one line on its items. ``projected_points`` (point
    clouds): the first N points of each cloud are projected (PointCLIP: 1024 of the h5 releases'
    2048); None: every point the reader loads (a reader that samples its own, e.g. ``folder``).
    ``title``: its name in tables (``falip paper``), default ``name``.
    """

    name: str
    kind: Literal["regions", "pointcloud", "rec"]
    reader: str | Callable[..., Any]
    description: str
    root: Literal["folder", "file"] = "folder"
    settings: tuple[Setting, ...] = ()
    splits: tuple[str, ...] = ()
    yields: str = ""
    projected_points: int | None = 1024
    title: str = ""

    @property
    def display_name(self) -> str:
        """How tables name it (``title``, else ``name``), e.g. ``CUB-200-2011``."""
        return self.title or self.name

    def __post_init__(self) -> None:
        if isinstance(self.settings, type):  # a dataclass of setting() fields
            object.__setattr__(self, "settings", settings_of(self.settings))

    def load_reader(self) -> Callable[..., Any]:
        """The reader function (imported on first use)."""
        return resolve(self.reader)


DATASETS: dict[str, DatasetSpec] = Registry()  # loads the plugins (falip.plugins) when first read


def resolve(target: str | Callable[..., Any]) -> Any:
    """``"module:attr"`` -> the attribute (imported now); a callable is returned as it is."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise FalipError(f"a lazy entry is 'module:attribute', got {target!r}")
    return getattr(importlib.import_module(module), attr)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) a dataset in :data:`DATASETS`."""
    if spec.kind not in KINDS:
        raise FalipError(f"dataset {spec.name!r}: kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
    if not spec.name or any(c.isspace() or c in ",:" for c in spec.name):
        raise FalipError(f"dataset names may not be empty or hold spaces, ',' or ':': {spec.name!r}")
    if spec.root not in ("folder", "file"):
        raise FalipError(f"dataset {spec.name!r}: root must be 'folder' or 'file', got {spec.root!r}")
    DATASETS[spec.name] = spec
    return spec


def dataset_names(kind: str | None = None) -> tuple[str, ...]:
    """The registered dataset names (of one ``kind``), in registration order."""
    return tuple(name for name, spec in DATASETS.items() if kind is None or spec.kind == kind)


def get_dataset(name: str, kind: str | None = None) -> DatasetSpec:
    """The spec of ``name``; FalipError naming the choices when unknown (or not of ``kind``)."""
    spec = DATASETS.get(name)
    if spec is None or (kind is not None and spec.kind != kind):
        names = dataset_names(kind)
        what = f"{kind} dataset" if kind else "dataset"
        also = f" ({name!r} is a {spec.kind} dataset)" if spec is not None else ""
        raise FalipError(f"unknown {what} {name!r}{also}; one of {', '.join(names) or 'none registered'}")
    return spec


def open_dataset(
    name: str, root: str | Path, kind: str | None = None, /, **settings: Any
) -> tuple[Iterable[Any], list[str], dict]:
    """Open a ``regions`` or ``pointcloud`` dataset: ``(items, classes, options)``; bad records are skipped.

    ``settings``: the reader's keyword arguments (:attr:`DatasetSpec.settings`); None values and
    settings the reader does not take are left out, so one call can carry every task option.
    """
    spec = get_dataset(name, kind)
    if spec.kind == "rec":
        raise FalipError(f"{name!r} is a REC format: read its split files with rec_reader({name!r})")
    taken = {s.name: s for s in spec.settings}
    kwargs = {k: v for k, v in settings.items() if k in taken and v is not None}
    for s in spec.settings:
        kwargs.setdefault(s.name, s.default)
    return spec.load_reader()(str(root), **kwargs)


def rec_reader(name: str = "reclip") -> Callable[..., Iterable[Any]]:
    """The per-file reader of a REC format: ``read(path, image_root=None, errors="skip")`` (module docstring)."""
    return get_dataset(name, "rec").load_reader()


# ---------------------------------------------------------------------------------- the readers
def _open_cub(root: str, split: str = "test") -> tuple[Any, list[str], dict]:
    from .cub import CUB

    ds = CUB(root, split=split, errors="skip")
    return ds, ds.classes, {"split": split}


def _open_dogs(root: str, split: str = "test", objects: str = "all") -> tuple[Any, list[str], dict]:
    from .dogs import StanfordDogs

    ds = StanfordDogs(root, split=split, errors="skip", objects=objects)
    return ds, ds.classes, {"split": split, "objects": objects}


def _open_waterbirds(
    root: str, split: str = "test", cub_root: str | None = None, classnames: str | None = None
) -> tuple[Any, list[str], dict]:
    from .waterbirds import Waterbirds

    if cub_root is None:
        raise FalipError(
            "Waterbirds needs the CUB-200-2011 folder ({cub_root}) for the bird boxes", terms={"cub_root": "cub_root"}
        )
    names = None
    if classnames is not None:  # e.g. the two class names of a Waterbirds-style synthetic set
        names = [line.strip() for line in Path(classnames).read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) != 2:
            raise FalipError(f"{classnames}: Waterbirds takes 2 class names (y = 0, 1), found {len(names)}")
    ds = Waterbirds(root, cub_root, split=split, errors="skip", **({"classes": names} if names else {}))
    return ds, ds.classes, {"split": split, "cub_root": str(cub_root), "classnames": classnames}


def _open_imagenet_s(root: str, region: str = "mask", classnames: str | None = None) -> tuple[Any, list[str], dict]:
    from .imagenet_s import ImageNetS

    ds = ImageNetS(root, region=region, classnames=classnames, errors="skip")
    return ds, ds.classes, {"region": region, "classnames": classnames}


def _open_file(fmt: str) -> Callable[..., tuple[Any, list[str], dict]]:
    def open_file(root: str) -> tuple[Any, list[str], dict]:
        from .classification import ClassificationFile

        ds = ClassificationFile(root, errors="skip", format=fmt)
        if not ds.classes:
            first = ds.first_skipped
            if first is not None:
                raise FalipError(
                    f"{root}: nothing to score: no item could be read from it; first reason: {first.source}: "
                    f"{first.reason}"
                )
            lines = [ln for ln in Path(root).read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            what = "it holds only a header, no rows" if fmt == "csv" and lines else "it holds no items"
            raise FalipError(f"{root}: nothing to score: {what}")
        return ds, ds.classes, {}

    return open_file


def _open_modelnet40(root: str, split: str = "test") -> tuple[Any, list[str], dict]:
    from .pointclouds import ModelNet40

    ds = ModelNet40(root, split=split, errors="skip")
    return ds, ds.classes, {"split": split}


def _open_scanobjectnn(root: str, split: str = "test", variant: str | None = None) -> tuple[Any, list[str], dict]:
    from .pointclouds import ScanObjectNN

    folder, _, perturbation = (variant or "main_split").partition("+")
    ds = ScanObjectNN(root, variant=folder, perturbation=perturbation or None, split=split, errors="skip")
    return ds, ds.classes, {"split": split, "variant": variant or "main_split"}


def _open_point_folder(root: str, n_points: int = 1024, seed: int = 0) -> tuple[Any, list[str], dict]:
    from .pointclouds import PointFolder

    ds = PointFolder(root, n_points=n_points, seed=seed, errors="skip")
    return ds, ds.classes, {"n_points": n_points, "seed": seed}


def _open_coco(root: str, images: str | None = None, region: str = "box") -> tuple[Any, list[str], dict]:
    from .coco import CocoInstances

    ds = CocoInstances(root, images, region=region, errors="skip")
    return ds, ds.classes, ds.options()


def _open_coco_panoptic(
    root: str, images: str | None = None, masks: str | None = None, region: str = "mask"
) -> tuple[Any, list[str], dict]:
    from .coco import CocoPanoptic

    ds = CocoPanoptic(root, images, masks=masks, region=region, errors="skip")
    return ds, ds.classes, ds.options()


_SPLIT = Setting("split", default="test", help="split (default test)")
_IMAGES = Setting("images", "folder", help="COCO: the image folder (e.g. val2017/; default: the JSON's folder)")
_CLASSNAMES = Setting("classnames", "file", help="a file of class names, one per line")
_REGIONS_ITEM = "one labelled region per item (box and/or mask), grouped by image"
_CLOUD_ITEM = "one labelled point cloud per item"

for _spec in (
    DatasetSpec(
        "cub", "regions", _open_cub, "CUB-200-2011: the bird's box of each image (CUB_200_2011/)",
        settings=(_SPLIT,), splits=("train", "test", "all"), title="CUB-200-2011", yields=_REGIONS_ITEM,
    ),
    DatasetSpec(
        "dogs", "regions", _open_dogs, "Stanford Dogs: the dogs of each annotation (its folder)",
        settings=(
            _SPLIT,
            Setting("objects", default="all", choices=("all", "first"),
                    help="Stanford Dogs: every annotated dog (default) or the first of each image"),
        ),
        splits=("train", "test", "all"), title="Stanford Dogs", yields=_REGIONS_ITEM,
    ),
    DatasetSpec(
        "waterbirds", "regions", _open_waterbirds, "Waterbirds: CUB birds on land/water backgrounds, 4 groups",
        settings=(
            _SPLIT,
            Setting("cub_root", "folder", help="Waterbirds: the CUB-200-2011 folder (for the bird boxes)"),
            _CLASSNAMES,
        ),
        splits=("train", "val", "test"), title="Waterbirds",
        yields=_REGIONS_ITEM + "; with a group (landbird/waterbird x land/water)",
    ),
    DatasetSpec(
        "imagenet-s", "regions", _open_imagenet_s, "ImageNet-S: the class mask of each validation image",
        settings=(
            Setting("region", default="mask", choices=("mask", "box"), help="ImageNet-S: the mask or its box"),
            _CLASSNAMES,
        ),
        title="ImageNet-S", yields=_REGIONS_ITEM,
    ),
    DatasetSpec("jsonl", "regions", _open_file("jsonl"), "your regions: a JSON-lines file (image, label, box/mask)",
                root="file", yields=_REGIONS_ITEM),
    DatasetSpec("csv", "regions", _open_file("csv"), "your regions: a CSV file (image,label,x0,y0,x1,y1 / mask)",
                root="file", yields=_REGIONS_ITEM),
    DatasetSpec(
        "coco", "regions", _open_coco, "COCO instances JSON: every non-crowd annotation's box or mask",
        root="file",
        settings=(
            _IMAGES,
            Setting("region", default="box", choices=("box", "mask"),
                    help="COCO: the annotation's box (default) or its mask (polygons, RLE)"),
        ),
        yields=_REGIONS_ITEM,
    ),
    DatasetSpec(
        "coco-panoptic", "regions", _open_coco_panoptic, "COCO panoptic JSON + PNGs: every thing and stuff segment",
        root="file",
        settings=(
            _IMAGES,
            Setting("masks", "folder", help="COCO panoptic: the PNG folder (default: the JSON's name without .json)"),
            Setting("region", default="mask", choices=("box", "mask"),
                    help="COCO panoptic: the segment's mask (default) or its box"),
        ),
        yields=_REGIONS_ITEM,
    ),
    DatasetSpec(
        "modelnet40", "pointcloud", _open_modelnet40, "ModelNet40 (PointNet's h5 release)",
        settings=(_SPLIT,), splits=("train", "test"), yields=_CLOUD_ITEM,
    ),
    DatasetSpec(
        "scanobjectnn", "pointcloud", _open_scanobjectnn, "ScanObjectNN (h5 files, its variants)",
        settings=(
            _SPLIT,
            Setting("variant", help="ScanObjectNN: main_split (default), main_split_nobg, ...+augmentedrot_scale75"),
        ),
        splits=("train", "test"), yields=_CLOUD_ITEM,
    ),
    DatasetSpec(
        "folder", "pointcloud", _open_point_folder, "your point files: one subfolder per class (.npy .txt .ply .off)",
        settings=(
            Setting("n_points", "int", 1024, "folder: points sampled per file (default 1024)", minimum=4,
                    flag="points"),
            Setting("seed", "int", 0, "seed of the sampling (>= 0)", minimum=0),
        ),
        yields=_CLOUD_ITEM, projected_points=None,
    ),
    DatasetSpec(
        "reclip", "rec", "falip.data.reclip:iter_reclip_jsonl", "ReCLIP's jsonl (RefCOCO/+/g splits)",
        root="file", yields="one sample per sentence: the line's candidate boxes and the gold box",
    ),
):  # fmt: skip
    register_dataset(_spec)
DATASETS.arm()  # falip's own are in: the first read from now on loads the plugins
