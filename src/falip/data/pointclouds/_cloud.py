"""The point-cloud item, and the checks and transforms every cloud goes through when it is loaded.

A :class:`CloudItem` holds where its cloud is (a :class:`H5Cloud` row or a :class:`PointFile`), never
the points: :meth:`CloudItem.load_points` reads that one cloud, checks it (:func:`check_points`) and,
when asked, centres and scales it into the unit sphere (:func:`normalize_unit_sphere`). Items are
frozen dataclasses of paths and numbers, so they pickle to DataLoader worker processes; h5 files are
opened inside :meth:`H5Cloud.read`, once per cloud, never at construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ...core.errors import FalipError

__all__ = [
    "MIN_POINTS",
    "CloudItem",
    "CloudReader",
    "H5Cloud",
    "check_points",
    "normalize_unit_sphere",
    "subsample",
]

MIN_POINTS = 4
"""The fewest points a cloud may have: fewer cannot span a volume, and the projection needs a shape."""


def check_points(points: np.ndarray, source: str) -> np.ndarray:
    """``points`` ``[N, 3]`` as float32 if they make a cloud; FalipError ``"<source>: <reason>"`` if not.

    A cloud is rejected when a coordinate is NaN or infinite, when it has fewer than
    :data:`MIN_POINTS` points, or when all its points are equal (it has no extent).
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise FalipError(f"{source}: expected points [N, 3], got an array of shape {tuple(pts.shape)}")
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise FalipError(
            f"{source}: {int(bad.sum())} of its {len(pts)} points have NaN or infinite coordinates "
            f"(the first is point {first}: {pts[first].tolist()})"
        )
    if len(pts) < MIN_POINTS:
        raise FalipError(f"{source}: the cloud has {len(pts)} points; at least {MIN_POINTS} are needed")
    if not np.ptp(pts, axis=0).any():
        raise FalipError(f"{source}: all {len(pts)} points are equal ({pts[0].tolist()}); the cloud has no extent")
    return np.ascontiguousarray(pts, dtype=np.float32)


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """``points`` ``[N, 3]`` centred on their mean and scaled so the farthest point lies at distance 1.

    The convention of PointNet++'s ``pc_normalize`` (centroid, then the largest distance from it),
    as float32. PointCLIP's projection places the camera for clouds in the unit sphere, as PointNet's
    ModelNet40 h5 clouds are. Call it on checked clouds (:func:`check_points`): a cloud with no
    extent has no scale.
    """
    pts = np.asarray(points, dtype=np.float64)
    pts = pts - pts.mean(axis=0)
    scale = float(np.sqrt((pts**2).sum(axis=1)).max())
    if not scale > 0:
        raise FalipError("a cloud whose points are all equal cannot be scaled into the unit sphere")
    return (pts / scale).astype(np.float32)


def subsample(points: np.ndarray, n_points: int | None, seed: int) -> np.ndarray:
    """At most ``n_points`` of ``points``: all of them if there are no more, else a seeded subset.

    The subset is ``np.random.default_rng(seed).choice(N, n_points, replace=False)``, sorted, so the
    kept points stay in the file's order (PointCLIP projects the *first* points of a cloud). The same
    file, ``n_points`` and ``seed`` give the same points (for a given numpy: numpy does not promise
    its random streams across releases). ``None`` keeps every point.
    """
    if n_points is None or len(points) <= n_points:
        return points
    keep = np.sort(np.random.default_rng(seed).choice(len(points), n_points, replace=False))
    return points[keep]


class CloudReader(Protocol):
    """Where one cloud is; :meth:`read` returns its checked points ``[N, 3]`` float32."""

    def read(self, source: str) -> np.ndarray: ...


@dataclass(frozen=True)
class H5Cloud:
    """Row ``index`` of the ``data`` dataset of an h5 file (``[N, P, >=3]``; the first 3 columns are xyz).

    ``foreground_only`` keeps the points whose ``mask`` value (``[N, P]``) is not -1 (ScanObjectNN marks
    background points with -1); ``normalize`` applies :func:`normalize_unit_sphere` after the check.
    Only that row is read (h5py slicing), from a file opened here.
    """

    path: Path
    index: int
    foreground_only: bool = False
    normalize: bool = False

    def read(self, source: str) -> np.ndarray:
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                points = np.asarray(f["data"][self.index])
                mask = np.asarray(f["mask"][self.index]) if self.foreground_only else None
        except (OSError, KeyError, ValueError, IndexError) as e:
            raise FalipError(f"{source}: cannot be read ({e})") from None
        if points.ndim != 2 or points.shape[1] < 3:
            raise FalipError(f"{source}: expected points [P, >=3], got shape {tuple(points.shape)}")
        points = points[:, :3]
        if mask is not None:
            if mask.shape != (len(points),):
                raise FalipError(f"{source}: the mask has shape {tuple(mask.shape)}, the cloud {len(points)} points")
            points = points[mask != -1]
        points = check_points(points, source)
        return normalize_unit_sphere(points) if self.normalize else points


@dataclass(frozen=True)
class CloudItem:
    """One point cloud to classify, loaded only by :meth:`load_points`.

    ``id`` is stable across machines and unique in its dataset (``"modelnet40:ply_data_test0.h5#17"``,
    ``"scanobjectnn:main_split/test_objectdataset.h5#3"``, ``"folder:chair/chair_0001.off"``);
    ``source`` is where the cloud is (``"<h5 file>#<row>"`` or the file's path), and every error about
    the cloud starts with it; ``label`` is its class name for prompts (``dataset.classes[label_index]``);
    ``reader`` says how to read it.
    """

    id: str
    source: str
    label: str
    label_index: int
    reader: CloudReader

    def load_points(self) -> np.ndarray:
        """This cloud's points ``[N, 3]`` float32, read now and checked (:func:`check_points`).

        Raises :class:`FalipError` naming :attr:`source` when the cloud cannot be read, has NaN or
        infinite coordinates, fewer than 4 points, or no extent.
        """
        return self.reader.read(self.source)
