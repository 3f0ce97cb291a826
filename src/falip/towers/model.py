"""``falip.FovealCLIP``: core's :class:`~falip.core.model.FovealCLIP` that also takes a library's model.

Core takes a :class:`~falip.core.tower.Tower` only; this subclass wraps what it is given with
:func:`~falip.towers.registry.wrap` first (an open_clip CLIP, a timm tower through open_clip, a
Hugging Face CLIP or SigLIP; a Tower or a FovealCLIP's tower as is), so that
``falip.FovealCLIP(open_clip_model)`` works without any global state in core.
"""

from __future__ import annotations

from typing import Any

from ..core.model import FovealCLIP as _CoreFovealCLIP
from .registry import wrap

__all__ = ["FovealCLIP"]


class FovealCLIP(_CoreFovealCLIP):
    """:class:`falip.core.model.FovealCLIP` of ``model`` wrapped by :func:`falip.wrap` (same arguments)."""

    def __init__(self, model: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(wrap(model), *args, **kwargs)

    @classmethod
    def from_model(cls, model: Any, *args: Any, **kwargs: Any) -> FovealCLIP:
        """``FovealCLIP(falip.wrap(model), ...)``: a library's model (or a Tower) looking at regions."""
        return cls(model, *args, **kwargs)
