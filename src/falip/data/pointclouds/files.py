"""Plain point files (``.npy``, ``.txt``/``.xyz``, ``.ply``, ``.off``) and folders of them, one subfolder per class.

Formats (the suffix decides, in any case):

* ``.npy``: a numpy array ``[N, 3]`` or ``[N, >=3]`` (the first 3 columns are x y z; normals or
  colours after them are dropped), read with ``allow_pickle=False``;
* ``.txt`` / ``.xyz``: one point per line, numbers separated by spaces, tabs or commas, the first 3
  are x y z (so PointNet++'s ``modelnet40_normal_resampled`` lines ``x,y,z,nx,ny,nz`` read as they
  are); ``#`` starts a comment, blank lines are skipped; a line with fewer than 3 numbers is an error
  naming the file and line;
* ``.ply`` / ``.off``: a mesh is sampled on its surface (``n_points`` points, seeded, below); a PLY
  with vertices but no faces is a point cloud and gives its vertices. Both are read with trimesh, which
  also reads binary PLY, polygons of more than 3 sides (as triangle fans), and the OFF files of
  ModelNet40 whose first line runs the header into the counts (``OFF490 518 0``; checked here on a
  fixture).

Surface sampling is ours, not trimesh's, so that a seed gives the same points whatever trimesh's
version: ``rng = np.random.default_rng(seed)``; faces drawn with probability proportional to their area
(``rng.choice(F, n, p=area / area.sum())``), then a uniform point in each drawn triangle (``u, v =
rng.random((2, n))``, folded back when ``u + v > 1``; point ``a + u (b - a) + v (c - a)``). Point files
with more than ``n_points`` points keep a seeded subset in file order (:func:`subsample`); files with
fewer keep all their points. The result is checked (:func:`check_points`) and, with ``normalize``,
centred and scaled into the unit sphere (:func:`normalize_unit_sphere`): plain files come in any
units, and the projection expects unit-sphere clouds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import FalipError
from .._common import check_errors, reject
from ..records import Skipped
from ._cloud import CloudItem, check_points, normalize_unit_sphere, subsample

__all__ = ["MESH_POINTS", "POINT_SUFFIXES", "PointFile", "PointFolder", "read_point_file"]

POINT_SUFFIXES = (".npy", ".txt", ".xyz", ".ply", ".off")
MESH_POINTS = 1024
"""Points sampled on a mesh when no ``n_points`` is given (PointCLIP projects 1024 points)."""


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise FalipError(f"{path}: not a readable .npy array ({e})") from None
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise FalipError(f"{path}: expected an array [N, 3] or [N, >=3], got shape {tuple(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise FalipError(f"{path}: expected numbers, got an array of {arr.dtype}")
    return arr[:, :3].astype(np.float64)


def _read_text(path: Path) -> np.ndarray:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FalipError(f"{path}: cannot be read ({e.strerror or e})") from None
    rows: list[tuple[float, float, float]] = []
    for lineno, line in enumerate(raw.splitlines(), start=1):
        try:
            text = line.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError:
            raise FalipError(f"{path}:{lineno}: not UTF-8 text") from None
        fields = text.split("#", 1)[0].replace(",", " ").split()
        if not fields:
            continue
        try:
            if len(fields) < 3:
                raise ValueError
            rows.append((float(fields[0]), float(fields[1]), float(fields[2])))
        except ValueError:
            raise FalipError(f"{path}:{lineno}: expected at least 3 numbers (x y z), got {text.strip()!r}") from None
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int, path: Path) -> np.ndarray:
    tri = vertices[faces]  # [F, 3, 3]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = float(area.sum())
    if not (np.isfinite(total) and total > 0):
        raise FalipError(f"{path}: the mesh's {len(faces)} faces have no area to sample points on")
    rng = np.random.default_rng(seed)
    face = rng.choice(len(faces), n, p=area / total)
    u, v = rng.random((2, n))
    fold = u + v > 1
    u[fold], v[fold] = 1 - u[fold], 1 - v[fold]
    a, b, c = a[face], b[face], c[face]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def _read_mesh(path: Path, n_points: int | None, seed: int) -> np.ndarray:
    # trimesh (MIT, numpy its only requirement, actively maintained) reads ASCII and binary PLY and
    # OFF, including ModelNet40's run-together OFF headers; plyfile would need an OFF parser of our own.
    import trimesh

    try:
        loaded = trimesh.load(str(path), file_type=path.suffix.lower()[1:], process=False)
    except Exception as e:  # trimesh raises many types for a malformed file
        raise FalipError(f"{path}: not a readable {path.suffix.lower()} file ({type(e).__name__}: {e})") from None
    if isinstance(loaded, trimesh.Scene):
        geometries = list(loaded.geometry.values())
        if len(geometries) != 1:
            raise FalipError(f"{path}: holds {len(geometries)} geometries; expected one mesh or point cloud")
        loaded = geometries[0]
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = getattr(loaded, "faces", None)
    if faces is None or len(faces) == 0:  # a point cloud: its vertices
        return vertices
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= len(vertices):
        raise FalipError(f"{path}: the faces refer to vertices the file does not have ({len(vertices)} vertices)")
    check_points(vertices, str(path))
    return _sample_surface(vertices, faces, n_points or MESH_POINTS, seed, path)


def read_point_file(
    path: str | os.PathLike, n_points: int | None = None, seed: int = 0, normalize: bool = True
) -> np.ndarray:
    """The points ``[N, 3]`` float32 of one point file (the formats in the module's docstring).

    A mesh gives ``n_points`` points sampled on its surface (:data:`MESH_POINTS` when None); a point
    file with more than ``n_points`` points keeps a seeded subset in file order, one with fewer keeps
    them all (None keeps every point). ``normalize`` (default) centres and scales the cloud into the
    unit sphere; ``normalize=False`` returns the file's own coordinates. Raises :class:`FalipError`
    naming the file (and line) when it is missing, unreadable, of another format, or not a cloud
    (NaN or infinite coordinates, fewer than 4 points, all points equal).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in POINT_SUFFIXES:
        raise FalipError(f"{path}: not a point file; the formats are {', '.join(POINT_SUFFIXES)}")
    if n_points is not None and n_points < 1:
        raise FalipError(f"n_points must be a positive number of points, got {n_points}")
    if path.is_dir():
        raise FalipError(f"{path}: is a directory, not a point file")
    if not path.exists():
        raise FalipError(f"{path}: no such file")
    if suffix == ".npy":
        points = _read_npy(path)
    elif suffix in (".txt", ".xyz"):
        points = _read_text(path)
    else:
        points = _read_mesh(path, n_points, seed)
    points = check_points(points, str(path))  # before subsampling: a NaN anywhere means a broken file
    points = check_points(subsample(points, n_points, seed), str(path))
    return normalize_unit_sphere(points) if normalize else points


@dataclass(frozen=True)
class PointFile:
    """A point file read by :func:`read_point_file` with these settings (a :class:`CloudItem` reader)."""

    path: Path
    n_points: int | None = None
    seed: int = 0
    normalize: bool = True

    def read(self, source: str) -> np.ndarray:
        return read_point_file(self.path, self.n_points, self.seed, self.normalize)


class PointFolder:
    """A folder of point files with one subfolder per class: ``root/<class>/[...]/<file>``.

    The classes are the subfolders of ``root`` in sorted order (each one a class, even without files,
    so the class list does not depend on which files are there): :attr:`raw_classes` as named,
    :attr:`classes` with underscores as spaces, for prompts. Files may lie deeper in a class folder;
    ``split`` reads only ``root/<class>/<split>/`` (ModelNet40's OFF release is
    ``ModelNet40/<class>/{train,test}/<class>_<n>.off``). Iterating streams one :class:`CloudItem` per
    point file (classes in order, then files by sorted relative path): ``id`` ``"folder:<class>/<...>"``,
    ``source`` the file's path; :meth:`~CloudItem.load_points` reads the file with ``n_points``, ``seed``
    and ``normalize`` (:func:`read_point_file`). A file of another format inside a class folder, or a
    point file directly under ``root``, raises :class:`FalipError` or (``errors="skip"``) yields a
    :class:`Skipped`; hidden files (``.name``) are ignored. A folder without any point file raises.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        n_points: int | None = 1024,
        seed: int = 0,
        errors: str = "raise",
        normalize: bool = True,
        split: str | None = None,
    ) -> None:
        self.root, self.errors = Path(root), check_errors(errors)
        if n_points is not None and n_points < 1:
            raise FalipError(f"n_points must be a positive number of points, got {n_points}")
        self.n_points, self.seed, self.normalize, self.split = n_points, seed, normalize, split
        if not self.root.is_dir():
            raise FalipError(f"{self.root}: no such directory (expected a folder with one subfolder per class)")
        self.raw_classes: list[str] = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not self.raw_classes:
            raise FalipError(f"{self.root}: no class subfolders (expected {self.root}/<class>/<point file>)")
        self.classes: list[str] = [c.replace("_", " ") for c in self.raw_classes]
        if not any(p.suffix.lower() in POINT_SUFFIXES for _, p in self._files()):
            where = f"{self.root}/<class>/{split}/" if split else f"{self.root}/<class>/"
            raise FalipError(f"{self.root}: no point files ({', '.join(POINT_SUFFIXES)}) under {where}")

    def _files(self) -> Iterator[tuple[int, Path]]:
        """``(class index, path)`` of every visible file in the class folders, in the documented order."""
        for k, name in enumerate(self.raw_classes):
            folder = self.root / name if self.split is None else self.root / name / self.split
            if not folder.is_dir():
                continue
            found = (p for p in folder.rglob("*") if p.is_file())
            rels = sorted(p.relative_to(self.root).as_posix() for p in found)
            for rel in rels:
                if all(not part.startswith(".") for part in rel.split("/")):
                    yield k, self.root / rel

    def __iter__(self) -> Iterator[CloudItem | Skipped]:
        for path in sorted(p for p in self.root.iterdir() if p.is_file() and not p.name.startswith(".")):
            if path.suffix.lower() in POINT_SUFFIXES:
                item_id = f"folder:{path.name}"
                yield reject(self.errors, item_id, str(path), "a point file must be in a class folder (root/<class>/)")
        for k, path in self._files():
            rel = path.relative_to(self.root).as_posix()
            if path.suffix.lower() not in POINT_SUFFIXES:
                yield reject(
                    self.errors,
                    f"folder:{rel}",
                    str(path),
                    f"not a point file; the formats are {', '.join(POINT_SUFFIXES)}",
                )
                continue
            yield CloudItem(
                f"folder:{rel}",
                str(path),
                self.classes[k],
                k,
                PointFile(path, self.n_points, self.seed, self.normalize),
            )
