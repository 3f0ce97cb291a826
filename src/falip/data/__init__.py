"""Readers and writers of dataset files; numpy and PIL only (no torch), usable without a model.

``images`` (:func:`~falip.data.images.load_image`: every image file falip opens), ``reclip``
(RefCOCO/+/g in the ReCLIP jsonl, detector files), ``classification`` (the region item every
classification reader yields; generic JSONL/CSV), ``cub``, ``dogs``, ``waterbirds``, ``imagenet_s``
(the published datasets as they are distributed), ``pointclouds`` (ModelNet40 and
ScanObjectNN h5 releases, folders of point files), ``synthetic`` (the seeded scene generator and its
writers). Readers stream their items; with ``errors="skip"`` a malformed record is yielded as a
:class:`Skipped` in its place. Errors in the user's files are :class:`~falip.core.errors.FalipError`
naming the file (and line).
"""

from .records import ERRORS, Skipped

__all__ = ["ERRORS", "Skipped"]
