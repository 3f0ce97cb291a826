"""The one exception type for mistakes in the caller's input."""

from __future__ import annotations

__all__ = ["FalipError"]


class FalipError(ValueError):
    """A problem with the caller's input (a region, an image, a file, an argument).

    The message names the problem in the caller's own terms (their file, their coordinates,
    their image size). It subclasses ``ValueError`` so ``except ValueError`` keeps working; the
    command line prints it as one line with exit status 2, and treats any other exception as an
    internal error.
    """
