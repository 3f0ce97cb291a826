"""FALIP, the method: regions -> foveal attention bias -> biased ViT forward. Imports nothing else of falip.

Submodules: ``regions`` (the region type), ``mask`` (ROA and foveal profile), ``tower`` (the Tower
interface every library's model is seen through), ``attention`` (the kernels, reading a tower's
block records), ``plan`` (the block schedule), ``model`` (FovealCLIP), ``reference`` (the plain per-region
forward with hooks), ``preprocess`` (PIL image -> tensor), ``images`` (any PIL image -> RGB),
``errors``. This package file imports nothing heavy: ``falip.core.regions`` works without torch.
"""
