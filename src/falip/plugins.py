"""Plugins: other installed packages add datasets, REC formats, tasks, scoring methods, tower adapters
and proposal sources to falip, from the shell as from Python.

A package declares an entry point in the group ``falip.plugins`` (pyproject.toml)::

    [project.entry-points."falip.plugins"]
    shapes = "falip_shapes"               # a module: importing it registers its entries
    # shapes = "falip_shapes:register"    # or a function, called once with no argument

and registers with falip's own functions (:func:`falip.data.registry.register_dataset`,
:func:`falip.prompts.registry.register_method`, :func:`falip.tasks.register_task`, ...). falip
imports (or calls) every plugin once, the first time one of its registries is read (the command
line reads them to build its choices and help), so the plugin's names appear in every command,
in ``--help`` and in Python. A plugin that fails is skipped with one warning line naming it and the
error (through :mod:`logging`, logger ``falip.plugins``); it never breaks a command.
``FALIP_PLUGINS=0`` turns plugins off.

This module imports nothing of falip (every registry, ``data/`` included, reads it) and nothing
heavy: discovery is :mod:`importlib.metadata`'s entry points.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["GROUP", "PluginInfo", "Registry", "load_plugins", "loaded_plugins"]

GROUP = "falip.plugins"
"""The entry-point group falip reads."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    """One plugin: its entry point's ``name`` and ``value`` (``"module"`` or ``"module:function"``), the
    distribution that declares it, and ``error`` (``"Type: message"``) when it failed to load."""

    name: str
    value: str
    distribution: str = ""
    error: str | None = None


_lock = threading.RLock()
_state = "idle"  # idle -> loading -> done
_plugins: list[PluginInfo] = []


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    seen, out = set(), []
    for ep in entry_points(group=GROUP):
        if (ep.name, ep.value) not in seen:  # one distribution found twice on the path loads once
            seen.add((ep.name, ep.value))
            out.append(ep)
    return out


def _first_line(err: BaseException) -> str:
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def load_plugins() -> list[PluginInfo]:
    """Import (or call) every ``falip.plugins`` entry point, once per process; later calls return
    what the first found. A plugin that raises is logged (one line) and skipped."""
    global _state
    with _lock:
        if _state != "idle":  # done, or a plugin being loaded reads a registry: nothing more to do
            return list(_plugins)
        _state = "loading"
        try:
            if os.environ.get("FALIP_PLUGINS", "1").strip().lower() in ("0", "false", "no", "off"):
                return []
            try:
                eps = _entry_points()
            except Exception as err:  # a broken installation's metadata must not break falip
                log.warning("falip: cannot list the installed plugins (%s); none loaded", _first_line(err))
                return []
            for ep in eps:
                dist = getattr(getattr(ep, "dist", None), "name", "") or ""
                try:
                    target = ep.load()
                    if ep.attr:  # "module:function": the function registers
                        target()
                except (Exception, SystemExit) as err:  # noqa: BLE001 (a plugin never breaks falip)
                    error = _first_line(err)
                    log.warning("falip: plugin %r (%s) failed and is skipped: %s", ep.name, ep.value, error)
                    _plugins.append(PluginInfo(ep.name, ep.value, dist, error))
                else:
                    _plugins.append(PluginInfo(ep.name, ep.value, dist))
            return list(_plugins)
        finally:
            _state = "done"


def loaded_plugins() -> list[PluginInfo]:
    """The plugins found (loading them first if no registry was read yet), failed ones included."""
    return load_plugins()


class Registry(dict):
    """A registry's dict (name -> spec) that loads the plugins the first time it is read.

    The module that owns it fills it with falip's own entries, then calls :meth:`arm`; reads before
    that (while falip registers its own) load nothing. Writes never load plugins.
    """

    _armed = False

    def arm(self) -> Registry:
        """From now on, the first read loads the plugins."""
        self._armed = True
        return self

    def _plugins(self) -> None:
        if self._armed and _state == "idle":
            load_plugins()

    def __getitem__(self, key: Any) -> Any:
        self._plugins()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._plugins()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[Any]:
        self._plugins()
        return super().__iter__()

    def __len__(self) -> int:
        self._plugins()
        return super().__len__()

    def __repr__(self) -> str:
        self._plugins()
        return super().__repr__()

    def get(self, key: Any, default: Any = None) -> Any:
        self._plugins()
        return super().get(key, default)

    def keys(self) -> Any:
        self._plugins()
        return super().keys()

    def values(self) -> Any:
        self._plugins()
        return super().values()

    def items(self) -> Any:
        self._plugins()
        return super().items()

    def copy(self) -> dict:
        self._plugins()
        return dict(super().items())
