"""Tower adapters: one file per library, the only place that knows a library's module names.

:func:`wrap` (``falip.wrap``) puts a library's model in its :class:`~falip.core.tower.Tower`, which
``falip.core`` takes; :class:`FovealCLIP` (``falip.FovealCLIP``) is core's FovealCLIP that wraps the
model it is given. No adapter module (and no library) is imported until a model of its library is
wrapped; importing this package changes nothing in core.
"""

from __future__ import annotations

from .model import FovealCLIP
from .registry import TOWERS, TowerEntry, adapter_class, tower_for, wrap

__all__ = ["TOWERS", "FovealCLIP", "TowerEntry", "adapter_class", "tower_for", "wrap"]
