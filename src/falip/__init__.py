"""falip: make any CLIP vision transformer look where you point it (FALIP, ECCV 2024).

>>> import falip
>>> fclip, preprocess, tokenizer = falip.load("falip-tiny")       # shipped, offline
>>> feats = fclip.encode_image(images, boxes=[boxes_of_image_0])    # one feature per box
"""

from .foveal_mask import FORMS, boxes_to_roa, clip_boxes, foveal_profile, full_mask, masks_to_roa
from .loading import load, register_with_open_clip
from .model import FovealCLIP
from .preprocess import Preprocess
from .presets import PRESETS, Preset, get_preset

__version__ = "0.1.0"

register_with_open_clip()

__all__ = [
    "FORMS",
    "FovealCLIP",
    "PRESETS",
    "Preprocess",
    "Preset",
    "boxes_to_roa",
    "clip_boxes",
    "foveal_profile",
    "full_mask",
    "get_preset",
    "load",
    "masks_to_roa",
    "register_with_open_clip",
]
