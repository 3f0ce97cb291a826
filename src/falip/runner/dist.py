"""Distributed plumbing of the harness: this process's rank and world under torchrun, the object
collectives (no-ops in one process) and the device of each rank."""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from ..core.errors import FalipError

__all__ = ["Dist", "device_for_rank", "distributed", "is_main_process"]

_T = TypeVar("_T")


def is_main_process() -> bool:
    """True in a single process and on rank 0 under torchrun (where the command line prints)."""
    return int(os.environ.get("RANK", "0")) == 0


def device_for_rank() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available (``LOCAL_RANK`` 0 outside torchrun), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


@dataclass
class Dist:
    """This process's rank and the world; collectives are no-ops with one process."""

    rank: int = 0
    world: int = 1
    group: Any = None  # a gloo group for the object collectives (None: the default group, gloo already)

    @property
    def on(self) -> bool:
        return self.world > 1

    @property
    def suffix(self) -> str:
        return f".rank{self.rank}" if self.on else ""

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.on:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj, group=self.group)
        return out

    def on_rank0(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` on rank 0, its value on every rank; its FalipError is raised on every rank."""
        if not self.on:
            return fn()
        box: list[Any] = [None]
        error: BaseException | None = None
        if self.rank == 0:
            try:
                box[0] = ("ok", fn())
            except FalipError as e:
                box[0] = ("user", str(e))
            except BaseException as e:  # a bug: rank 0 re-raises it, the others stop too
                error = e
                box[0] = ("bug", f"{type(e).__name__}: {e}")
        torch.distributed.broadcast_object_list(box, src=0, group=self.group)
        kind, value = box[0]
        if error is not None:
            raise error
        if kind == "user":
            raise FalipError(value)
        if kind == "bug":
            raise RuntimeError(f"rank 0 failed: {value}")
        return value


_GLOO_GROUP: list[Any] = []


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def distributed() -> Dist:
    """The process group: joined when torchrun set ``WORLD_SIZE`` > 1 (gloo on CPU, nccl with CUDA)."""
    dist = torch.distributed
    if not dist.is_available():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        return Dist()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return Dist()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
        atexit.register(_destroy_process_group)
    world = dist.get_world_size()
    if world == 1:
        return Dist()
    if dist.get_backend() == "gloo":
        group = None
    else:  # objects travel over gloo on the CPU: no device to pick, no pinned tensors
        if not _GLOO_GROUP:
            _GLOO_GROUP.append(dist.new_group(backend="gloo"))
        group = _GLOO_GROUP[0]
    return Dist(dist.get_rank(), world, group)
