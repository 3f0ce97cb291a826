"""Parsing helpers shared by the readers.

Every reader reads a record, and a problem with it is a *reason* (a FalipError without location);
:func:`reject` puts the location in front (``"<file>:<line>: <reason>"``) and raises, or turns it into
a :class:`~falip.data.records.Skipped`, as the reader's ``errors`` argument says. Problems with a whole
file (missing, a directory, unreadable) always raise, naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..core.errors import FalipError
from ..core.regions import check_boxes
from .records import ERRORS, Skipped

__all__ = [
    "BadRecord",
    "check_errors",
    "csv_dicts",
    "json_lines",
    "numbers",
    "one_box",
    "open_binary",
    "reject",
    "require",
    "resolve",
    "text_lines",
    "words_table",
]


class BadRecord(Exception):
    """A record's problem, found at ``source`` when that is not the record's own line (else "")."""

    def __init__(self, reason: str, source: str = "") -> None:
        super().__init__(reason)
        self.reason, self.source = reason, source


def check_errors(errors: str) -> str:
    """``errors`` if it is ``"raise"`` or ``"skip"``; FalipError otherwise."""
    if errors not in ERRORS:
        raise FalipError(f"errors must be one of {ERRORS}, got {errors!r}")
    return errors


def reject(errors: str, id: str, source: str, reason: str | BaseException) -> Skipped:
    """The :class:`Skipped` record for ``id`` (``errors="skip"``), or raise ``"<source>: <reason>"``."""
    reason = str(reason)
    if errors == "raise":
        raise FalipError(f"{source}: {reason}" if source else reason)
    return Skipped(id, source, reason)


def open_binary(path: Path, what: str = "file") -> BinaryIO:
    """``path`` opened for reading bytes; FalipError naming it when missing, a directory or unreadable."""
    if path.is_dir():
        raise FalipError(f"{path}: is a directory, not a {what}")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FalipError(f"{path}: no such file") from None
    except OSError as e:
        raise FalipError(f"{path}: cannot be read ({e.strerror or e})") from None


def require(root: Path, name: str | None, folder: str) -> Path:
    """``root / name`` (``root`` if ``name`` is None) if it exists; FalipError saying which ``folder`` was expected."""
    if not root.is_dir():
        raise FalipError(f"{root}: no such directory (expected {folder})")
    if name is None:
        return root
    path = root / name
    if not path.exists():
        raise FalipError(f"{path}: no such file or directory (is {root} {folder}?)")
    return path


def csv_dicts(path: Path, check_header: Callable[[list[str]], str | None]) -> Iterator[tuple[int, dict | FalipError]]:
    """``(line number, {column: cell})`` for each non-blank row of a CSV file with a header, streamed.

    ``check_header`` returns what is wrong with the header (stripped names), or None; a bad header,
    bytes that are not UTF-8 or broken quoting raise for the file. A row with another number of
    fields than the header comes as ``(line number, FalipError)``. Line numbers are the file's (a
    quoted field spanning lines counts them all).
    """
    with open_binary(path, "CSV file") as fh:
        reader = csv.reader(io.TextIOWrapper(fh, encoding="utf-8-sig", newline=""))
        try:
            header = [h.strip() for h in next(reader, [])]
            problem = check_header(header)
            if problem:
                raise FalipError(f"{path}:1: {problem}, got {','.join(header)!r}")
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    yield reader.line_num, FalipError(f"{len(row)} fields, but the header has {len(header)}")
                    continue
                yield reader.line_num, dict(zip(header, row))
        except UnicodeDecodeError:
            raise FalipError(f"{path}: not UTF-8 text (after line {reader.line_num})") from None
        except csv.Error as e:
            raise FalipError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None


def text_lines(path: Path, what: str = "text file") -> Iterator[tuple[int, str | FalipError]]:
    """``(line number, text)`` for each non-blank line (numbers from 1), streamed.

    A line that is not UTF-8 comes as ``(line number, FalipError)`` so the caller can skip it. A
    byte-order mark and CRLF line ends are accepted; the text has no line end.
    """
    with open_binary(path, what) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                yield lineno, FalipError("not UTF-8 text")
                continue
            line = line.rstrip("\r\n")
            if line.strip():
                yield lineno, line


def json_lines(path: Path) -> Iterator[tuple[int, dict | FalipError]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file, streamed.

    A line that is not UTF-8, not JSON or not a JSON object comes as ``(line number, FalipError)``.
    """
    for lineno, line in text_lines(path, "JSON-lines file"):
        if isinstance(line, FalipError):
            yield lineno, line
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, FalipError(f"invalid JSON ({e.msg}, column {e.colno})")
            continue
        if not isinstance(obj, dict):
            yield lineno, FalipError(f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield lineno, obj


def words_table(path: Path, columns: int) -> Iterator[tuple[int, list[str] | FalipError]]:
    """Lines of a whitespace-separated table (CUB's ``*.txt``) as ``columns`` fields, streamed.

    The last field takes the rest of the line (so it may hold spaces). A line with fewer fields comes
    as ``(line number, FalipError)``.
    """
    for lineno, line in text_lines(path):
        if isinstance(line, FalipError):
            yield lineno, line
            continue
        fields = line.split(maxsplit=columns - 1)
        if len(fields) != columns:
            yield lineno, FalipError(f"expected {columns} fields separated by spaces, got {line.strip()!r}")
            continue
        yield lineno, fields


def numbers(value: Any, n: int, what: str) -> tuple[float, ...]:
    """``value`` as ``n`` floats; FalipError ``"<what> must be a list of n numbers, got ..."`` otherwise.

    Only the type and length are checked here; the values (NaN, inverted, empty, ...) are checked
    by :func:`falip.core.regions.check_boxes`.
    """
    bad = not isinstance(value, (list, tuple)) or len(value) != n
    if bad or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise FalipError(f"{what} must be a list of {n} numbers, got {value!r}")
    return tuple(float(v) for v in value)


def one_box(raw: Any, what: str, box_format: str = "xyxy") -> tuple[float, float, float, float]:
    """One box as written (``box_format``) -> xyxy floats, through :func:`check_boxes` (named ``what``)."""
    xyxy = check_boxes([raw], box_format=box_format, names=[what])[0]
    return tuple(float(v) for v in xyxy)  # type: ignore[return-value]


def resolve(root: Path, rel: str | os.PathLike) -> Path:
    """``rel`` against ``root``, unless ``rel`` is absolute."""
    p = Path(rel)
    return p if p.is_absolute() else root / p
