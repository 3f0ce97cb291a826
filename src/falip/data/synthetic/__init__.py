"""Seeded synthetic scenes of coloured shapes (the shipped model's world) and their dataset writers."""

from .scenes import *  # noqa: F403
from .scenes import __all__ as _scenes_all
from .writers import *  # noqa: F403
from .writers import __all__ as _writers_all

__all__ = [*_scenes_all, *_writers_all]
