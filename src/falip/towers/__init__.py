"""Tower adapters: one file per library, the only place that knows a library's module names.

Importing this package installs :func:`~falip.towers.registry.tower_for` as core's resolver
(:func:`falip.core.tower.set_tower_resolver`), so ``FovealCLIP(model)`` and the analysis tools take
a library's model as well as a :class:`~falip.core.tower.Tower`. No adapter module (and no
library) is imported until a model of its library is wrapped.
"""

from __future__ import annotations

from ..core.tower import set_tower_resolver
from .registry import TOWERS, TowerEntry, adapter_class, tower_for

__all__ = ["TOWERS", "TowerEntry", "adapter_class", "tower_for"]

set_tower_resolver(tower_for)
