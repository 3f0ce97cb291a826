"""Reaching the Hugging Face hub: is a file already in the local cache, can the hub be reached now.

Loaders ask before transformers / open_clip do, so that a machine without a network fails at once
with one line saying what to put where, instead of after half a minute of retried requests.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from urllib.parse import urlparse

__all__ = ["cache_folder", "cached", "endpoint", "offline", "unreachable"]


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (the hub libraries then read only their cache)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def endpoint() -> str:
    """The hub's address (``HF_ENDPOINT``, else https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def cache_folder(cache_dir: str | None = None) -> str:
    """Where hub files are cached: ``cache_dir``, else the hub's own cache (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    if cache_dir:
        return str(cache_dir)
    try:
        from huggingface_hub import constants
    except ImportError:
        return os.path.expanduser("~/.cache/huggingface/hub")
    return str(constants.HF_HUB_CACHE)


def cached(repo_id: str, filenames: Sequence[str], cache_dir: str | None = None) -> bool:
    """Whether any of ``filenames`` of hub repo ``repo_id`` is in the local cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for name in filenames:
        try:
            if isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache_dir), str):
                return True
        except ValueError:  # not a valid repo id
            return False
    return False


def unreachable(url: str | None = None, timeout_s: float = 5.0) -> str | None:
    """Why ``url`` (default: the hub) cannot be reached now, or None when a connection opens."""
    if url is None and offline():
        return "HF_HUB_OFFLINE is set"
    parsed = urlparse(url or endpoint())
    if not parsed.hostname:
        return None
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout_s).close()
    except OSError as err:
        return f"cannot reach {parsed.hostname}: {err.strerror or type(err).__name__}"
    return None
