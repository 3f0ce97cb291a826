"""Readers and writers of dataset files; numpy and PIL only (no torch), usable without a model.

``images`` (:func:`~falip.data.images.load_image`: every image file falip opens), ``reclip``
(RefCOCO/+/g in the ReCLIP jsonl), ``classification`` (generic region-classification JSONL and
mask files), ``synthetic`` (the seeded scene generator and its writers). Errors in the user's files
are :class:`~falip.core.errors.FalipError` naming the file (and line).
"""
