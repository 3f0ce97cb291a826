"""Point-cloud datasets and files (numpy, h5py, trimesh; no torch): items that load their points lazily.

* :class:`ModelNet40`: PointNet's ``modelnet40_ply_hdf5_2048`` (h5 files listed in ``*_files.txt``,
  class names in ``shape_names.txt``);
* :class:`ScanObjectNN`: the authors' ``h5_files/<variant>/`` (``main_split``, ``main_split_nobg``,
  perturbed files such as ``*_augmentedrot_scale75.h5``), its 15 classes in their published order,
  clouds normalised into the unit sphere by default;
* :class:`PointFolder`: ``root/<class>/<file>`` with ``.npy``, ``.txt``/``.xyz``, ``.ply``, ``.off``
  (meshes sampled with a seed), and :func:`read_point_file` for one such file.

Every dataset has :attr:`classes` (names for prompts, underscores as spaces) and streams
:class:`CloudItem` records in a fixed order, or :class:`~falip.data.records.Skipped` in place of a
record it could not read (``errors="skip"``). An item holds where its cloud is, not its points:
:meth:`CloudItem.load_points` reads that one cloud (one h5 row, or one file) and checks it, raising
:class:`~falip.core.errors.FalipError` naming its source for NaN or infinite coordinates, fewer than 4
points, or points that are all equal. Items pickle (for DataLoader workers); h5 files are opened when
a cloud is loaded. What was checked about each format, and against what, is in :mod:`.h5` and
:mod:`.files`.
"""

from ._cloud import MIN_POINTS, CloudItem, H5Cloud, check_points, normalize_unit_sphere, subsample
from .files import MESH_POINTS, POINT_SUFFIXES, PointFile, PointFolder, read_point_file
from .h5 import (
    MODELNET40_SPLITS,
    SCANOBJECTNN_CLASSES,
    SCANOBJECTNN_PERTURBATIONS,
    SCANOBJECTNN_SPLITS,
    ModelNet40,
    ScanObjectNN,
)

__all__ = [
    "MESH_POINTS",
    "MIN_POINTS",
    "MODELNET40_SPLITS",
    "POINT_SUFFIXES",
    "SCANOBJECTNN_CLASSES",
    "SCANOBJECTNN_PERTURBATIONS",
    "SCANOBJECTNN_SPLITS",
    "CloudItem",
    "H5Cloud",
    "ModelNet40",
    "PointFile",
    "PointFolder",
    "ScanObjectNN",
    "check_points",
    "normalize_unit_sphere",
    "read_point_file",
    "subsample",
]
