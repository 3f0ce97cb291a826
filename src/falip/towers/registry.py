"""The registry of tower adapters: lazy ``"module:Class"`` entries, and :func:`tower_for`.

A new tower is one file in :mod:`falip.towers` and one line in :data:`TOWERS`. Each adapter class
has a classmethod ``accepts(model) -> bool`` ("this model is mine"); its constructor then refuses,
with the reason, what it cannot run (an open_clip ViT that pools with an attention pooler, a
cross-attention block, ...). :func:`tower_for` imports an adapter only when the model's own library
is the adapter's (``type(model).__module__``), so asking never imports open_clip, timm or
transformers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..core.errors import FalipError
from ..core.tower import Tower
from ..plugins import Registry

__all__ = ["TOWERS", "TowerEntry", "adapter_class", "tower_for", "wrap"]


@dataclass(frozen=True)
class TowerEntry:
    """One adapter: ``target`` ``"module:Class"`` and the top-level modules of the models it wraps."""

    target: str
    libraries: tuple[str, ...]
    description: str


TOWERS: dict[str, TowerEntry] = Registry(
    {
        "open_clip_vit": TowerEntry(
            "falip.towers.open_clip_vit:OpenClipViTTower",
            ("open_clip",),
            "open_clip CLIP with its own VisionTransformer",
        ),
        "open_clip_timm": TowerEntry(
            "falip.towers.open_clip_timm:OpenClipTimmTower", ("open_clip",), "open_clip CLIP with a timm image tower"
        ),
        "hf_clip": TowerEntry(
            "falip.towers.hf_clip:HFCLIPTower", ("transformers",), "Hugging Face CLIPModel / CLIPVisionModel"
        ),
        "hf_siglip": TowerEntry(
            "falip.towers.hf_siglip:HFSiglipTower", ("transformers",), "Hugging Face SiglipModel / SiglipVisionModel"
        ),
    }
).arm()  # loads the plugins (falip.plugins) when first read


def adapter_class(name: str) -> type[Tower] | None:
    """The adapter class of registry entry ``name``; None while its module is not written/installed."""
    module, _, attr = TOWERS[name].target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:  # the adapter itself is absent (not one of its imports)
            return None
        raise
    return getattr(mod, attr)


def _model_library(model: Any) -> str:
    return type(model).__module__.split(".")[0]


def tower_for(model: Any) -> Tower:
    """The :class:`Tower` of ``model`` (a Tower is returned as is); FalipError naming the model's type
    when no adapter fits, or the adapter's reason when it refuses the model."""
    if isinstance(model, Tower):
        return model
    if not isinstance(model, nn.Module):
        raise FalipError(f"FALIP wraps a PyTorch model, got a {type(model).__module__}.{type(model).__qualname__}")
    library = _model_library(model)
    for name, entry in TOWERS.items():
        if library not in entry.libraries:
            continue
        cls = adapter_class(name)
        if cls is not None and cls.accepts(model):
            return cls(model)
    known = "; ".join(f"{e.description}" for e in TOWERS.values())
    raise FalipError(
        f"no falip tower adapter fits a {type(model).__module__}.{type(model).__qualname__} (FALIP wraps: {known})"
    )


def wrap(model: Any) -> Tower:
    """``model`` as a :class:`Tower`: a Tower as is, a FovealCLIP's tower, or a library's model in its
    adapter (:func:`tower_for`). ``falip.wrap``; what the analyses call on the model they are given."""
    tower = getattr(model, "tower", None)
    if not isinstance(model, Tower) and isinstance(tower, Tower):
        return tower
    return tower_for(model)
