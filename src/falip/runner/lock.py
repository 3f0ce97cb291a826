"""One writer per run folder: ``out_dir/.falip.lock``, an OS file lock naming its holder (no torch)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..core.errors import FalipError

__all__ = ["LOCK_NAME", "FolderInUse", "FolderLock"]

log = logging.getLogger("falip.runner")  # one logger for the harness (its messages name the run folder)

LOCK_NAME = ".falip.lock"


class FolderInUse(FalipError):
    """Another process is writing a run in this folder (it holds the folder's lock)."""


def _lock_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


class FolderLock:
    """``out_dir/.falip.lock``: an OS lock (``flock``) on a file naming its holder (pid, host, start).

    The OS releases the lock when the holder dies, however it dies, so a stale file is taken over.
    Where ``flock`` is unavailable, a file naming a live process of this host counts as held.
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME
        self.fd: int | None = None

    def _refuse(self, holder: dict) -> FolderInUse:
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        if holder.get("started"):
            who += f", since {holder['started']}"
        return FolderInUse(
            f"{self.path.parent} is in use by another falip run ({who}); wait for it to end or choose "
            f"another output folder (if that run is gone, delete {self.path})"
        )

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            import fcntl
        except ImportError:  # not POSIX: the pid in the file is all there is
            fcntl = None  # type: ignore[assignment]
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise self._refuse(_lock_holder(self.path)) from None
                    try:  # the file may have been removed (released) between our open and our lock
                        if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                            os.close(fd)
                            continue
                    except FileNotFoundError:
                        os.close(fd)
                        continue
                holder = _lock_holder(self.path)
                if holder:
                    same_host = holder.get("host") == me["host"]
                    if fcntl is None and (not same_host or _pid_alive(holder.get("pid"))):
                        raise self._refuse(holder)
                    log.warning(
                        "%s: taking over the lock of a falip run that is gone (pid %s on %s)",
                        self.path.parent,
                        holder.get("pid", "?"),
                        holder.get("host", "?"),
                    )
                os.ftruncate(fd, 0)
                os.write(fd, (json.dumps(me) + "\n").encode())
                self.fd = fd
                return
            except BaseException:
                if self.fd is None:
                    os.close(fd)
                raise
        raise FolderInUse(f"{self.path.parent}: could not take its lock (another run keeps changing it)")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # first: a process that opened it before sees another inode and retries
        os.close(self.fd)
        self.fd = None
