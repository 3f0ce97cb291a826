"""Renamed Python names keep working and say so once per process (torch-free)."""

from __future__ import annotations

import warnings

__all__ = ["warn_renamed"]

_SAID: set[str] = set()


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """One :class:`FutureWarning` per process that ``old`` is now ``new`` (shown to users by default,
    unlike DeprecationWarning); later uses are silent."""
    if old in _SAID:
        return
    _SAID.add(old)
    warnings.warn(f"{old} is deprecated; use {new}", FutureWarning, stacklevel=stacklevel)
