"""Helpers the adapters share to fill BlockParts / PoolParts from a library's modules."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def optional_module(module: Any) -> Any:
    """The module, or None for a missing one or ``nn.Identity`` (an option the block does not use)."""
    return None if module is None or isinstance(module, nn.Identity) else module


def split_packed(tensor: torch.Tensor | None, width: int) -> tuple[torch.Tensor | None, ...]:
    """A packed in-projection ``[3C, ...]`` (weight or bias) as views ``(q, k, v)`` of ``[C, ...]``;
    three Nones for a missing bias."""
    if tensor is None:
        return None, None, None
    return tensor[:width], tensor[width : 2 * width], tensor[2 * width :]
