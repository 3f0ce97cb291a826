"""What a reader yields in place of a record it could not read (``errors="skip"``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ERRORS", "Skipped"]

ERRORS = ("raise", "skip")
"""The values of every reader's ``errors`` argument: raise a FalipError, or yield :class:`Skipped`."""


@dataclass(frozen=True)
class Skipped:
    """A record a reader could not read, yielded (with ``errors="skip"``) where the item would have been.

    ``id`` is the id the item would have had (or, when even that could not be read, the file and
    line); ``source`` is where it was read from (``"<file>:<line>"`` or a path); ``reason`` says what
    is wrong in the user's terms, without the source (``"box (5, 0, 1, 1) is inverted (x1 < x0)"``).
    With ``errors="raise"`` the same problem is a FalipError ``"<source>: <reason>"``. ``texts``:
    the texts the record held where they could still be read (a REC line's sentences), for what
    counts every text of a file whatever became of its record ("subtract"'s caption bank).
    """

    id: str
    source: str
    reason: str
    texts: tuple[str, ...] = ()
