"""The one exception type for mistakes in the caller's input."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["FalipError"]


class FalipError(ValueError):
    """A problem with the caller's input (a region, an image, a file, an argument).

    The message names the problem in the caller's own terms (their file, their coordinates,
    their image size). It subclasses ``ValueError`` so ``except ValueError`` keeps working; the
    command line prints it as one line with exit status 2, and treats any other exception as an
    internal error.

    A message that names a setting writes it as a ``{placeholder}`` and gives the library's name
    for it in ``terms`` (e.g. ``FalipError("pass {resume} to continue", terms={"resume":
    "resume=True"})``): ``str(err)`` reads "pass resume=True to continue", and a front end
    renders it with its own names (:meth:`render`; the command line's ``--resume``).
    """

    def __init__(self, message: str = "", *, terms: Mapping[str, str] | None = None) -> None:
        self.template = str(message)
        self.terms = dict(terms or {})
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each setting called by ``names`` (where it has one), else by the library's name."""
        if not self.terms:
            return self.template
        chosen = {k: (names or {}).get(k, v) for k, v in self.terms.items()}
        return self.template.format_map(chosen)
