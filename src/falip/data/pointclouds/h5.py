"""ModelNet40 (PointNet's ``modelnet40_ply_hdf5_2048``) and ScanObjectNN (its ``h5_files``), read lazily.

**ModelNet40**, as PointNet released it (``modelnet40_ply_hdf5_2048.zip``). Checked against PointNet's
code (github.com/charlesq34/pointnet at commit 5819bbe76a84): ``provider.py`` (``getDataFiles`` reads
the list files line by line, ``load_h5`` reads ``f['data']`` and ``f['label']``) and ``train.py``
(``TRAIN_FILES`` / ``TEST_FILES`` from ``data/modelnet40_ply_hdf5_2048/{train,test}_files.txt``);
PointCLIP's ``datasets/modelnet40.py`` and PointCLIP V2's ``zeroshot_cls/datasets/modelnet40.py``
(at the commits :mod:`falip.tasks.projection` cites; class names from ``shape_names.txt``, line i
= label i; prompts replace ``_`` by a space); and public loaders that list the keys ``data``,
``label``, ``normal``, ``faceId``:

* ``test_files.txt`` / ``train_files.txt``: one h5 file a line, as a path relative to PointNet's
  repository root (``data/modelnet40_ply_hdf5_2048/ply_data_test0.h5``); here an entry is found by
  its file name inside the dataset folder (or, failing that, as written, relative to the folder);
* ``ply_data_*.h5``: ``data`` ``[N, 2048, 3]`` float32 and ``label`` ``[N, 1]`` (a label ``[N]`` is
  accepted too), class indices from 0;
* ``shape_names.txt``: the 40 class names, one a line (``airplane`` ... ``xbox``, with underscores:
  ``flower_pot``, ``night_stand``, ...).

Order: files in the list's order, clouds in file order (PointNet's and PointCLIP's concatenation
order). Not verified on the real files (none can be downloaded here): the label dtype (``uint8`` in
PointNet's ``save_h5`` defaults; any integer type is read), the counts (2,468 test
and 9,843 train clouds in 2 + 5 files, as others report) and that the clouds are already centred and scaled into the
unit sphere (the PointNet paper says so), which is why ``normalize`` defaults to False here.

**ScanObjectNN**, as its authors released it (``h5_files.zip``). Checked against the dataset's
repository (github.com/hkust-vgd/scanobjectnn at commit fe60aeade9ce): the README (fields ``data``
"Nx3 point cloud", ``label``, ``mask`` "whether each point is part of the object instance or the
background"; 2048 points per object; the file names ``{training,test}_objectdataset{,_augmented25_norot,_augmented25rot,
_augmentedrot,_augmentedrot_scale75}.h5``; ``_nobg`` files had their background removed before
sampling), its FAQ (``training_data/README.md``: the labels are 0..14 in the order bag, bin, box,
cabinet, chair, desk, display, door, shelf, table, bed, pillow, sink, sofa, toilet, "Yes, that is
correct"; "-1 to denote background in the mask", "Yes"), ``mapping2.py`` (its ModelNet40 mapping agrees
with that order), ``data_utils.py`` (``load_withmask_h5`` reads ``data``, ``label``, ``mask``) and
Point-BERT-style trees (``main_split/``, ``main_split_nobg/``). Layout: ``<root>/h5_files/<variant>/
<prefix>_objectdataset[_<perturbation>].h5``, prefix ``test`` or ``training``.

The clouds are not in the unit sphere and, outside ``_nobg``, include background points. PointCLIP
never released its ScanObjectNN pipeline; its projection assumes unit-sphere clouds like ModelNet40's,
so ``normalize=True`` (the default) centres each cloud on its mean and scales it so its farthest point
is at distance 1 (:func:`normalize_unit_sphere`, after ``foreground_only`` when set). Not verified
on the real files: the dtypes, the shape of ``label`` (``[N]`` or ``[N, 1]`` are both read), whether
the ``_nobg`` files hold a ``mask``, and the counts of clouds.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ...core.errors import FalipError
from .._common import check_errors, reject, require, text_lines
from ..records import Skipped
from ._cloud import CloudItem, H5Cloud

__all__ = [
    "MODELNET40_SPLITS",
    "SCANOBJECTNN_CLASSES",
    "SCANOBJECTNN_PERTURBATIONS",
    "SCANOBJECTNN_SPLITS",
    "ModelNet40",
    "ScanObjectNN",
]

MODELNET40_SPLITS = ("test", "train")
MODELNET40_CLASS_COUNT = 40  # shape_names.txt of the published release
SCANOBJECTNN_SPLITS = ("test", "train")
SCANOBJECTNN_CLASSES = (
    "bag",
    "bin",
    "box",
    "cabinet",
    "chair",
    "desk",
    "display",
    "door",
    "shelf",
    "table",
    "bed",
    "pillow",
    "sink",
    "sofa",
    "toilet",
)
"""ScanObjectNN's 15 classes, index = label (the authors' FAQ; see the module docstring)."""
SCANOBJECTNN_PERTURBATIONS = (
    "augmented25_norot",  # PB_T25
    "augmented25rot",  # PB_T25_R
    "augmentedrot",  # PB_T50_R
    "augmentedrot_scale75",  # PB_T50_RS, the hardest variant and the one most papers report
)


def _h5_labels(path: Path, need_mask: bool) -> tuple[np.ndarray, int]:
    """The labels (int64 ``[N]``) of an h5 cloud file and its points per cloud, after checking its layout.

    Any problem with the file as a whole raises :class:`FalipError` naming it.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("data", "label", *(("mask",) if need_mask else ())) if k not in f]
            if missing:
                raise FalipError(f"{path}: no {' or '.join(repr(k) for k in missing)} dataset (it has {sorted(f)})")
            data, label = f["data"], f["label"]
            if data.ndim != 3 or data.shape[2] < 3:
                raise FalipError(f"{path}: 'data' must be [N, points, 3], got shape {data.shape}")
            n, n_points = data.shape[0], data.shape[1]
            if need_mask and f["mask"].shape != (n, n_points):
                raise FalipError(f"{path}: 'mask' has shape {f['mask'].shape}, 'data' {data.shape}")
            labels = np.asarray(label[()])
    except OSError as e:
        raise FalipError(f"{path}: not a readable HDF5 file ({e})") from None
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (n,):
        raise FalipError(f"{path}: 'label' has shape {labels.shape}; expected [{n}] or [{n}, 1] for {n} clouds")
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
            raise FalipError(f"{path}: 'label' must hold integer class indices, got {labels.dtype}")
    return labels.astype(np.int64), n_points


def _items(
    path: Path, prefix: str, classes: list[str], errors: str, foreground_only: bool, normalize: bool
) -> Iterator[CloudItem | Skipped]:
    labels, _ = _h5_labels(path, foreground_only)
    for i, label in enumerate(labels.tolist()):
        item_id, source = f"{prefix}#{i}", f"{path}#{i}"
        if not 0 <= label < len(classes):
            yield reject(errors, item_id, source, f"label {label} is not a class index (0..{len(classes) - 1})")
            continue
        yield CloudItem(item_id, source, classes[label], label, H5Cloud(path, i, foreground_only, normalize))


def _class_names(path: Path) -> list[str]:
    names = []
    for lineno, line in text_lines(path, "class names file"):
        if isinstance(line, FalipError):
            raise FalipError(f"{path}:{lineno}: {line}")
        names.append(line.strip())
    if not names:
        raise FalipError(f"{path}: no class names")
    return names


class ModelNet40:
    """PointNet's ``modelnet40_ply_hdf5_2048`` folder (``root``) as point-cloud items; see the module.

    ``split``: ``"test"`` or ``"train"`` (``<split>_files.txt``). :attr:`raw_classes` are the lines of
    ``shape_names.txt``; :attr:`classes` the same with underscores as spaces, for prompts. Iterating
    streams one :class:`CloudItem` per cloud (files in list order, clouds in file order): ``id``
    ``"modelnet40:<file>#<row>"``, ``source`` ``"<path>#<row>"``; the points are read by
    :meth:`~CloudItem.load_points` (``normalize`` centres and scales them into the unit sphere; the
    release's clouds are there already). A label outside the class list raises :class:`FalipError` or
    (``errors="skip"``) yields a :class:`Skipped`; a missing or malformed file always raises, naming it.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "test", errors: str = "raise", normalize: bool = False
    ) -> None:
        if split not in MODELNET40_SPLITS:
            raise FalipError(f"ModelNet40 split must be one of {MODELNET40_SPLITS}, got {split!r}")
        self.root, self.split, self.errors = Path(root), split, check_errors(errors)
        self.normalize = normalize
        folder = "the modelnet40_ply_hdf5_2048 folder"
        self.raw_classes: list[str] = _class_names(require(self.root, "shape_names.txt", folder))
        self.classes: list[str] = [c.replace("_", " ") for c in self.raw_classes]
        self.files: list[Path] = self._list(require(self.root, f"{split}_files.txt", folder))
        self._check_class_count()

    def _check_class_count(self) -> None:
        """FalipError when the split's files hold more distinct labels than ``shape_names.txt`` has names
        (a name is missing: every class after it would be named wrongly); a warning when it does not
        have the published 40. A stray label among fewer classes is the cloud's own problem (skipped)."""
        names = self.root / "shape_names.txt"
        found: set[int] = set()
        for path in self.files:
            found.update(np.unique(_h5_labels(path, False)[0]).tolist())
        if len(found) > len(self.raw_classes):
            raise FalipError(
                f"{names}: {len(self.raw_classes)} class names, but the labels of the {self.split} files take "
                f"{len(found)} distinct values ({min(found)}..{max(found)}); the published ModelNet40 has "
                f"{MODELNET40_CLASS_COUNT} classes, one name a line: is a name missing?"
            )
        if len(self.raw_classes) != MODELNET40_CLASS_COUNT:
            warnings.warn(
                f"{names}: {len(self.raw_classes)} class names; the published ModelNet40 has "
                f"{MODELNET40_CLASS_COUNT} (a subset of its classes?)",
                UserWarning,
                stacklevel=3,
            )

    def _list(self, list_file: Path) -> list[Path]:
        files = []
        for lineno, entry in text_lines(list_file, "list of h5 files"):
            if isinstance(entry, FalipError):
                raise FalipError(f"{list_file}:{lineno}: {entry}")
            entry = entry.strip()
            candidates = [self.root / Path(entry.replace("\\", "/")).name, self.root / entry]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                raise FalipError(f"{list_file}:{lineno}: {entry!r} is not in {self.root} (looked for {candidates[0]})")
            files.append(found)
        if not files:
            raise FalipError(f"{list_file}: lists no h5 files")
        return files

    def __iter__(self) -> Iterator[CloudItem | Skipped]:
        for path in self.files:
            yield from _items(path, f"modelnet40:{path.name}", self.classes, self.errors, False, self.normalize)


class ScanObjectNN:
    """One ScanObjectNN h5 file as point-cloud items; see the module for the format and what was checked.

    ``variant``: the folder under ``h5_files/`` (``"main_split"``, ``"main_split_nobg"``; the
    supplementary ``split1`` ... ``split4`` and their ``_nobg`` are read the same way);
    ``perturbation``: None (the file ``<prefix>_objectdataset.h5``: OBJ_BG, or OBJ_ONLY under ``_nobg``)
    or one of :data:`SCANOBJECTNN_PERTURBATIONS` (``"augmentedrot_scale75"``: PB_T50_RS);
    ``split``: ``"test"`` or ``"train"`` (prefix ``training``). ``root`` is the folder holding
    ``h5_files/`` or ``h5_files/`` itself, or the variant folder itself. ``normalize`` (default True)
    centres and scales each cloud into the unit sphere; ``foreground_only`` drops the points whose
    ``mask`` is -1 (background) first. :attr:`classes` are :data:`SCANOBJECTNN_CLASSES`. Iterating
    streams one :class:`CloudItem` per cloud in file order: ``id``
    ``"scanobjectnn:<variant>/<file>#<row>"``, ``source`` ``"<path>#<row>"``. A label outside 0..14
    raises :class:`FalipError` or (``errors="skip"``) yields a :class:`Skipped`; a missing or malformed
    file always raises, naming it.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        variant: str = "main_split",
        split: str = "test",
        errors: str = "raise",
        perturbation: str | None = None,
        normalize: bool = True,
        foreground_only: bool = False,
    ) -> None:
        if split not in SCANOBJECTNN_SPLITS:
            raise FalipError(f"ScanObjectNN split must be one of {SCANOBJECTNN_SPLITS}, got {split!r}")
        if perturbation is not None and perturbation not in SCANOBJECTNN_PERTURBATIONS:
            raise FalipError(
                f"ScanObjectNN perturbation must be None or one of {SCANOBJECTNN_PERTURBATIONS}, got {perturbation!r}"
            )
        if not variant or Path(variant).name != variant or variant.startswith("."):
            raise FalipError(f"ScanObjectNN variant must be a folder name such as 'main_split', got {variant!r}")
        self.root, self.variant, self.split = Path(root), variant, split
        self.perturbation, self.errors = perturbation, check_errors(errors)
        self.normalize, self.foreground_only = normalize, foreground_only
        self.classes: list[str] = list(SCANOBJECTNN_CLASSES)
        self.raw_classes: list[str] = list(SCANOBJECTNN_CLASSES)
        prefix = "test" if split == "test" else "training"
        self.file_name = f"{prefix}_objectdataset{'_' + perturbation if perturbation else ''}.h5"
        self.path: Path = self._find()

    def _find(self) -> Path:
        if not self.root.is_dir():
            raise FalipError(f"{self.root}: no such directory (expected the ScanObjectNN folder holding h5_files/)")
        folders = [self.root / "h5_files" / self.variant, self.root / self.variant]
        if self.root.name == self.variant:
            folders.append(self.root)
        for folder in folders:
            if (folder / self.file_name).is_file():
                return folder / self.file_name
        raise FalipError(
            f"{folders[0] / self.file_name}: no such file (looked in {', '.join(str(f) for f in folders)}; "
            f"variant {self.variant!r}, perturbation {self.perturbation!r}, split {self.split!r})"
        )

    def __iter__(self) -> Iterator[CloudItem | Skipped]:
        prefix = f"scanobjectnn:{self.variant}/{self.file_name}"
        yield from _items(self.path, prefix, self.classes, self.errors, self.foreground_only, self.normalize)
