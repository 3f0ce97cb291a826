"""FALIP, the method: regions -> foveal attention bias -> biased ViT forward. Imports nothing else of falip.

Submodules: ``regions`` (the region type), ``mask`` (ROA and foveal profile), ``attention`` (the
kernels), ``plan`` (the block schedule), ``model`` (FovealCLIP), ``reference`` (the plain per-region
forward with hooks), ``preprocess`` (PIL image -> tensor), ``images`` (any PIL image -> RGB),
``errors``. This package file imports nothing heavy: ``falip.core.regions`` works without torch.
"""
