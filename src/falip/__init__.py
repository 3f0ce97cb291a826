"""falip: make any CLIP vision transformer look where you point it (FALIP, ECCV 2024).

>>> import falip
>>> fclip, preprocess, tokenizer = falip.load("falip-tiny")       # shipped, offline
>>> feats = fclip.encode_image(images, boxes=[boxes_of_image_0])    # one feature per box

Importing falip is light (no torch, no open_clip): the public names below are loaded on first
use. falip's shipped model configs are registered with open_clip when :mod:`falip.models.loading` is
first imported (by ``falip.load``, or ``falip.register_with_open_clip()``), or at ``import falip``
when open_clip is already imported; after that ``open_clip.create_model("falip-tiny",
pretrained="synthetic")`` works offline.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "FalipError": "falip.core.errors",
    "Regions": "falip.core.regions",
    "Resize": "falip.core.regions",
    "FORMS": "falip.core.mask",
    "foveal_profile": "falip.core.mask",
    "regions_to_roa": "falip.core.mask",
    "full_mask": "falip.core.mask",
    "FalipConfig": "falip.core.config",
    "FovealCLIP": "falip.towers.model",
    "ForwardPlan": "falip.core.plan",
    "Preprocess": "falip.core.preprocess",
    "to_rgb": "falip.core.images",
    "load_image": "falip.data.images",
    "load": "falip.models.loading",
    "register_with_open_clip": "falip.models.loading",
    "PRESETS": "falip.models.presets",
    "Preset": "falip.models.presets",
    "get_preset": "falip.models.presets",
    "RegionScorer": "falip.scoring",
    "wrap": "falip.towers.registry",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'falip' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if "open_clip" in sys.modules:  # already paid for: make the shipped configs known right away
    importlib.import_module("falip.models.loading")
