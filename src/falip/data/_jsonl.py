"""JSON-lines helpers shared by the readers: every error is a FalipError naming the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import FalipError

__all__ = ["lines", "numbers", "resolve"]


def lines(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file (numbers from 1).

    Raises FalipError for a missing or unreadable file, bytes that are not UTF-8, a line that is
    not JSON, or a line that is not a JSON object.
    """
    if path.is_dir():
        raise FalipError(f"{path}: is a directory, not a JSON-lines file")
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise FalipError(f"{path}: no such file") from None
    except OSError as e:
        raise FalipError(f"{path}: cannot be read ({e.strerror or e})") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                raise FalipError(f"{path}:{lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise FalipError(f"{path}:{lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(obj, dict):
                raise FalipError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def numbers(value: Any, n: int, where: str, what: str) -> tuple[float, ...]:
    """``value`` as ``n`` floats; FalipError ``"<where>: <what> must be a list of n numbers"`` otherwise.

    Only the type and length are checked here; the values (NaN, inverted, empty, ...) are checked
    by :func:`falip.core.regions.check_boxes`.
    """
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise FalipError(f"{where}: {what} must be a list of {n} numbers, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise FalipError(f"{where}: {what} must be a list of {n} numbers, got {value!r}")
    return tuple(float(v) for v in value)


def resolve(root: Path, rel: str) -> Path:
    """``rel`` against ``root``, unless ``rel`` is absolute."""
    p = Path(rel)
    return p if p.is_absolute() else root / p
