"""Seeded synthetic scenes of coloured shapes (the shipped model's world) and their dataset writers."""

from .scenes import *  # noqa: F403
from .scenes import __all__ as _scenes_all
from .writers import mask_to_rle, write_classification, write_reclip_rec

__all__ = [*_scenes_all, "mask_to_rle", "write_classification", "write_reclip_rec"]
