"""The evaluation harness shared by every task: units -> batches -> results files, resumable, sharded.

A :class:`Task` lists its units of work (``units()``: cheap metadata, deterministic order), loads
one unit in a DataLoader worker process (``load()``: decode images, build regions; no model) and
turns a batch of loaded units into records in the main process (``run()``: the model). :func:`run`
drives it and writes, in ``out_dir`` (``{r}`` below is ``.rank{r}`` under torchrun with more than
one process, empty otherwise):

- ``run.json``: ``{"task", "config", "falip_version"}``, written once; a resumed run must have the
  same task name and config.
- ``results{r}.jsonl``: one JSON line per record, the task's dict plus ``"unit"`` (the unit's id)
  and ``"unit_size"`` (how many records that unit has). The records of a batch go out in one
  ``write()`` and are flushed, so a ``kill -9`` loses at most the batch in flight (the file may then
  end in a partial line, which a resumed run drops).
- ``skipped{r}.jsonl``: one JSON line ``{"id", "source", "reason"}`` per unit that could not be
  run: a :class:`Skip` yielded by ``units()`` (written by rank 0), or a unit whose ``load()`` raised
  :class:`~falip.FalipError` or :class:`OSError`; and one per item that ``run()`` gave as a
  :class:`Skip` among a unit's records (one bad region of an image whose other regions were
  scored), with ``"unit"`` added. A skip that stands for several items (an image with 3 objects)
  has ``"items": 3``. Each is also logged as one warning line (logger ``falip.runner``).
- ``summary.json`` (rank 0): ``task.summarize(records, skipped)`` plus ``"n"`` (records) and
  ``"skipped"`` (items, the unit ``n`` counts: the sum of the entries' ``items``) where the task
  did not set them. A task with ``write_outputs(out_dir, records, summary)`` then writes its own
  files from all the run's records (``falip detect``'s ``detections.json``). The runner prints nothing; the command
  line prints ``task.table(summary)`` once (:func:`is_main_process`).
- ``timing.json`` (rank 0): this invocation's ``wait_s`` (main loop blocked on data), ``compute_s``
  (in ``task.run``), ``write_s``, ``total_s``, ``units``, ``wait_fraction``; under torchrun summed
  over ranks, with each rank's own figures in ``"ranks"``.

- ``.falip.lock``: held while a run writes (``{"pid", "host", "started"}``, an OS file lock);
  a second run on the same folder is refused (:class:`FolderInUse`) naming the holder. The OS
  drops the lock when its process dies, so the lock of a killed run is taken over (logged).

Resume (``resume=True``) reads every ``results*.jsonl`` and ``skipped*.jsonl`` in ``out_dir``
(whatever world size wrote them), keeps the units whose ``unit_size`` records are all present and
that have no skipped entry, rewrites files that held a partial line (or a last line torn by a kill
that happens to end in a newline), an incomplete unit or a skip without them, and runs the rest:
a skip is not a result, so skipped units (and units with a skipped item) are tried again, and
skipped again if they still fail.

``require_scored=True`` (the command line) makes a run that scored nothing (every item skipped,
or no items at all) a :class:`NothingScored` error, after its files are written.

``limit`` takes the first ``limit`` :class:`Unit` s of ``units()`` and the :class:`Skip` s yielded
before the last of them (iteration stops there); it applies before sharding and before dropping
finished units, so any number of processes sees the same units. The summary covers exactly
those units: records in ``out_dir`` of units outside them (an earlier run with a larger limit) stay
in the files but are left out.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import __version__
from .core.errors import FalipError

__all__ = [
    "FolderInUse",
    "NothingScored",
    "Skip",
    "Task",
    "Unit",
    "device_for_rank",
    "is_main_process",
    "read_results",
    "run",
]

log = logging.getLogger(__name__)

_RESERVED = ("unit", "unit_size")
LOCK_NAME = ".falip.lock"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Unit:
    """One unit of work (e.g. one image with all its REC sentences, or one image with its objects).

    ``id`` is stable and unique within the run; ``payload`` is picklable and is what the task's
    ``load()`` needs. ``source`` (optional, e.g. ``"refcoco_testa.jsonl:17"``) is where the unit
    came from: a unit that fails to load is reported there. ``items`` is how many records the
    unit stands for (its objects or sentences), so that a unit that fails counts as that many
    skipped items, the unit ``n`` counts.
    """

    id: str
    payload: Any
    source: str = ""
    items: int = 1


@dataclass(frozen=True)
class Skip:
    """Something that could not be turned into work, or failed to load.

    ``source`` is ``"file:line"`` or a path, so the user can find it; ``reason`` is one line (it
    need not repeat ``source``). ``items``: how many items it stands for. ``run()`` may give a Skip
    among a unit's records: that item is skipped, the unit's other records are kept.
    """

    id: str
    source: str
    reason: str
    items: int = 1


class FolderInUse(FalipError):
    """Another process is writing a run in this folder (it holds the folder's lock)."""


class NothingScored(FalipError):
    """A run in which not one item could be scored (``run(..., require_scored=True)``).

    ``summary`` is the run's summary (``n`` is 0), also written to ``summary.json``.
    """

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary


class Task(Protocol):
    """What :func:`run` drives; one implementation per task (REC, region classification, ...)."""

    name: str

    def config(self) -> dict:
        """JSON-able settings that define the run (model, method, data files, seed, ...)."""
        ...

    def units(self) -> Iterable[Unit | Skip]:
        """The work in a deterministic order; cheap metadata only (no images)."""
        ...

    def load(self, unit: Unit) -> Any:
        """Runs in DataLoader workers (no model); FalipError/OSError makes the unit a Skip."""
        ...

    def run(self, loaded: list[Any]) -> list[list[dict | Skip]]:
        """Main process, the model: for each loaded unit, its (non-empty) records, each with an "id".

        A :class:`Skip` among them is an item that could not be scored (the others are kept).
        """
        ...

    def summarize(self, records: list[dict], skipped: list[dict]) -> Any:
        """A deterministic function of all records and skipped entries -> the summary: a dict, or an
        object with ``to_dict()`` (:class:`falip.tasks.metrics.Summary`) that gives it."""
        ...

    def table(self, summary: dict) -> str:
        """The summary as a table, for the command line to print."""
        ...


def is_main_process() -> bool:
    """True in a single process and on rank 0 under torchrun (where the command line prints)."""
    return int(os.environ.get("RANK", "0")) == 0


def device_for_rank() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available (``LOCAL_RANK`` 0 outside torchrun), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# distributed plumbing


@dataclass
class _Dist:
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


def _distributed() -> _Dist:
    """The process group: joined when torchrun set ``WORLD_SIZE`` > 1 (gloo on CPU, nccl with CUDA)."""
    dist = torch.distributed
    if not dist.is_available():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        return _Dist()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return _Dist()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
        atexit.register(_destroy_process_group)
    world = dist.get_world_size()
    if world == 1:
        return _Dist()
    if dist.get_backend() == "gloo":
        group = None
    else:  # objects travel over gloo on the CPU: no device to pick, no pinned tensors
        if not _GLOO_GROUP:
            _GLOO_GROUP.append(dist.new_group(backend="gloo"))
        group = _GLOO_GROUP[0]
    return _Dist(dist.get_rank(), world, group)


# ---------------------------------------------------------------------------------------------
# reading what earlier runs wrote


def _read_lines(path: Path) -> tuple[list[tuple[bytes, dict]], bool]:
    """``(raw line, row)`` for each complete line of ``path``, and whether a torn last line was dropped.

    A last line without its newline, or a last line that is not a JSON object (a write torn by a
    kill that happens to end in a newline), is the tail of an interrupted write; any other line
    that is not a JSON object means the file was changed by something else: a FalipError naming it.
    """
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    torn = bool(tail)
    rows = []
    for i, raw in enumerate(lines, 1):
        try:
            row = json.loads(raw)
            problem = None if isinstance(row, dict) else "not a JSON object"
        except ValueError as e:
            problem = f"not a JSON line ({e})"
        if problem is not None:
            if i == len(lines) and not torn:
                torn = True  # the last line: torn by a kill, repaired like a partial line
                break
            raise FalipError(f"{path}:{i}: {problem}; this file was not written by falip's runner")
        rows.append((raw, row))
    return rows, torn


@dataclass
class _State:
    """What ``out_dir`` holds: complete units' records, skipped entries, and each file's good lines."""

    records: dict[str, list[dict]]  # unit id -> its records, in file order
    skipped: dict[tuple[str | None, str], dict]  # (unit or None, id) -> {"id", "source", "reason", ...}
    kept: dict[Path, list[tuple[str, bytes]]]  # file -> (owner unit id, raw line) of its good lines
    dirty: set[Path]  # files that held a partial line or incomplete/duplicate entries

    def owner(self, entry: dict) -> str:
        """The unit a skipped entry belongs to (its own id for a unit-level skip)."""
        return entry["unit"] if isinstance(entry.get("unit"), str) else entry["id"]


def _rank_files(out_dir: Path, stem: str) -> list[Path]:
    return sorted(p for p in out_dir.glob(f"{stem}*.jsonl") if p.is_file())


def _scan(out_dir: Path) -> _State:
    """Read every results/skipped file in ``out_dir`` (any world size), tolerating a torn last line."""
    state = _State({}, {}, {}, set())
    for path in _rank_files(out_dir, "results"):
        rows, dirty = _read_lines(path)
        groups: dict[str, list[tuple[bytes, dict]]] = {}
        for i, (raw, row) in enumerate(rows, 1):
            unit, size = row.get("unit"), row.get("unit_size")
            if not isinstance(unit, str) or not isinstance(size, int) or isinstance(size, bool):
                raise FalipError(f"{path}:{i}: a record without 'unit'/'unit_size'; not written by falip's runner")
            groups.setdefault(unit, []).append((raw, row))
        kept: list[tuple[str, bytes]] = []
        for unit, group in groups.items():
            complete = len(group) == group[0][1]["unit_size"] and all(r["unit_size"] == len(group) for _, r in group)
            if complete and unit not in state.records:
                state.records[unit] = [r for _, r in group]
                kept += [(unit, raw) for raw, _ in group]
            else:
                dirty = True
        state.kept[path] = kept
        if dirty:
            state.dirty.add(path)
    for path in _rank_files(out_dir, "skipped"):
        rows, dirty = _read_lines(path)
        kept = []
        for i, (raw, row) in enumerate(rows, 1):
            if not isinstance(row.get("id"), str):
                raise FalipError(f"{path}:{i}: a skipped entry without an 'id'; not written by falip's runner")
            key = (row["unit"] if isinstance(row.get("unit"), str) else None, row["id"])
            if key in state.skipped:
                dirty = True
                continue
            state.skipped[key] = row
            kept.append((state.owner(row), raw))
        state.kept[path] = kept
        if dirty:
            state.dirty.add(path)
    return state


def read_results(out_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """All complete units' records and all skipped entries in ``out_dir``, merged over rank files.

    Records are as written (the task's keys plus ``"unit"``, ``"unit_size"``), grouped by unit in
    file order; a partial last line and the records of incomplete units are left out.
    """
    state = _scan(Path(out_dir))
    return [r for recs in state.records.values() for r in recs], list(state.skipped.values())


def _rewrite(path: Path, lines: list[bytes]) -> None:
    """Replace ``path`` by ``lines`` (atomically: a kill leaves the old or the new file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# the run


def _holds_results(out_dir: Path) -> bool:
    if not out_dir.is_dir():
        return False
    names = ("run.json", "summary.json")
    return any((out_dir / n).exists() for n in names) or bool(
        _rank_files(out_dir, "results") or _rank_files(out_dir, "skipped")
    )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_out_dir(out_dir: Path, header: dict, resume: bool) -> None:
    """FalipError when ``out_dir`` cannot take this run: not a folder, results without resume, other settings."""
    if not _holds_results(out_dir):
        return
    if not resume:
        raise FalipError(
            f"{out_dir} already holds results of a run; pass {{resume}} to continue it, or choose another {{out}}",
            terms={"resume": "resume=True", "out": "out_dir"},
        )
    path = out_dir / "run.json"
    if not path.exists():
        raise FalipError(
            f"{out_dir} holds results but no run.json, so its settings are unknown; choose another {{out}}",
            terms={"out": "out_dir"},
        )
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        old_task, old_config = old["task"], old["config"]
    except (ValueError, KeyError, TypeError) as e:
        raise FalipError(f"{path}: unreadable ({e}); choose another {{out}}", terms={"out": "out_dir"}) from None
    if old_task != header["task"]:
        raise FalipError(
            f"{out_dir} holds a {old_task!r} run, not {header['task']!r}; choose another {{out}} to run this one",
            terms={"out": "out_dir"},
        )
    new_config = header["config"]
    keys = sorted(set(old_config) | set(new_config))
    differ = [k for k in keys if old_config.get(k, "<unset>") != new_config.get(k, "<unset>")]
    if differ:
        detail = ", ".join(
            f"{k} ({_short(old_config.get(k, '<unset>'))} there, {_short(new_config.get(k, '<unset>'))} here)"
            for k in differ
        )
        raise FalipError(
            f"{out_dir} holds a run with other settings: {detail}; resume with the same settings, "
            "or choose another {out}",
            terms={"out": "out_dir"},
        )
    if old.get("falip_version") != header["falip_version"]:
        log.warning(
            "%s was started with falip %s; continuing it with falip %s",
            out_dir,
            old.get("falip_version"),
            header["falip_version"],
        )


def _prepare(out_dir: Path, header: dict, resume: bool, planned: set[str]) -> list[str]:
    """Rank 0: tidy earlier files, write run.json; the ids of the units already done.

    A unit of ``planned`` (this run's units and skips) with a skipped entry is not done: its
    entries and records are dropped here and it runs again.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    if resume:
        state = _scan(out_dir)
        retry = {state.owner(e) for e in state.skipped.values()} & planned
        for path, kept in state.kept.items():
            lines = [raw for owner, raw in kept if owner not in retry]
            if path in state.dirty or len(lines) != len(kept):
                _rewrite(path, lines)
        done = [u for u in state.records if u not in retry]
    if not (out_dir / "run.json").exists():
        (out_dir / "run.json").write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    return done


# ---------------------------------------------------------------------------------------------
# one writer per folder


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


class _FolderLock:
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


def _plan(task: Task, limit: int | None) -> tuple[list[Unit], list[Skip], dict[str, int]]:
    """The units and skips of ``task.units()`` up to ``limit`` units, and each id's position."""
    units: list[Unit] = []
    skips: list[Skip] = []
    where: dict[str, str] = {}
    if limit == 0:
        return units, skips, {}
    for item in task.units():
        if not isinstance(item, (Unit, Skip)):
            raise TypeError(f"{task.name}.units() yielded {type(item).__name__}, not a Unit or a Skip")
        if not isinstance(item.id, str):
            raise TypeError(f"{task.name}.units() yielded an id of type {type(item.id).__name__}, not str")
        source = item.source or "?"
        if item.id in where:
            raise FalipError(f"two units have the id {item.id!r} ({where[item.id]} and {source}); ids must be unique")
        where[item.id] = source
        if isinstance(item, Skip):
            skips.append(item)
        else:
            units.append(item)
            if limit is not None and len(units) >= limit:
                break
    return units, skips, {k: i for i, k in enumerate(where)}


@dataclass(frozen=True)
class _Loaded:
    id: str
    value: Any = None
    skip: Skip | None = None


class _Units(Dataset):
    """Map-style dataset over the unit list; item ``i`` is ``task.load(units[i])`` or the Skip it became."""

    def __init__(self, task: Task, units: Sequence[Unit]) -> None:
        self.task = task
        self.units = units

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int) -> _Loaded:
        unit = self.units[i]
        try:
            return _Loaded(unit.id, self.task.load(unit))
        except FalipError as e:
            source = unit.source or unit.id
            reason = _without_source(_one_line(str(e) or type(e).__name__), source)
            return _Loaded(unit.id, skip=Skip(unit.id, source, reason, unit.items))
        except OSError as e:
            source = unit.source or (str(e.filename) if e.filename else unit.id)
            return _Loaded(unit.id, skip=Skip(unit.id, source, _one_line(f"{type(e).__name__}: {e}"), unit.items))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _without_source(reason: str, source: str) -> str:
    """``reason`` without a leading ``source: `` (the skip line names the source once)."""
    prefix = f"{source}: "
    return reason[len(prefix) :] if source and reason.startswith(prefix) and len(reason) > len(prefix) else reason


def _skip_line(skip: Skip, unit: str | None = None) -> str:
    reason = _without_source(_one_line(skip.reason), skip.source)
    log.warning("skipped %s (%s): %s", skip.id, skip.source, reason)
    entry: dict[str, Any] = {"id": skip.id, "source": skip.source, "reason": reason}
    if unit is not None and unit != skip.id:
        entry["unit"] = unit
    if skip.items != 1:
        entry["items"] = skip.items
    return json.dumps(entry, ensure_ascii=False) + "\n"


def _record_lines(task: Task, unit_id: str, records: Any) -> tuple[str, str]:
    """The JSON lines of one unit's records (with ``unit``, ``unit_size``) and of its skipped items.

    A TypeError on a malformed record (a bug of the task).
    """
    if not isinstance(records, (list, tuple)) or not records:
        raise TypeError(f"{task.name}.run() gave unit {unit_id!r} {records!r}, not a non-empty list of records")
    good = [rec for rec in records if not isinstance(rec, Skip)]
    lines = []
    for rec in good:
        if not isinstance(rec, dict) or "id" not in rec:
            raise TypeError(
                f"{task.name}.run() gave unit {unit_id!r} a record that is not a dict with an 'id': {rec!r}"
            )
        if any(k in rec for k in _RESERVED):
            raise TypeError(f"{task.name}.run(): records may not set {_RESERVED} (the runner does): {rec!r}")
        lines.append(json.dumps({**rec, "unit": unit_id, "unit_size": len(good)}, ensure_ascii=False) + "\n")
    skips = "".join(_skip_line(rec, unit_id) for rec in records if isinstance(rec, Skip))
    return "".join(lines), skips


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _worker_init(parent: int, _worker_id: int) -> None:
    """DataLoader worker start: end this worker when the run's process dies (even by ``kill -9``).

    On Linux the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a thread checks the parent once a second. Without this a killed run leaves its
    workers behind, each holding its memory.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="falip-parent-watch").start()


def _check_options(limit: int | None, workers: int, batch_units: int) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise FalipError(f"{{limit}} must be a whole number >= 0, not {limit!r}", terms={"limit": "limit"})
    if not isinstance(workers, int) or workers < 0:
        raise FalipError(f"{{workers}} must be a whole number >= 0, not {workers!r}", terms={"workers": "workers"})
    if not isinstance(batch_units, int) or batch_units < 1:
        raise FalipError(f"the batch size must be a whole number >= 1, not {batch_units!r}")


def _work(
    task: Task, units: list[Unit], skips: list[Skip], out_dir: Path, d: _Dist, workers: int, batch_units: int, bar: bool
) -> dict:
    """Run this rank's units, appending to its results/skipped files; this rank's timing."""
    wait = compute = write = 0.0
    start = time.perf_counter()
    results_path = out_dir / f"results{d.suffix}.jsonl"
    skipped_path = out_dir / f"skipped{d.suffix}.jsonl"
    with contextlib.ExitStack() as stack:
        results = stack.enter_context(open(results_path, "a", encoding="utf-8"))
        skipped = stack.enter_context(open(skipped_path, "a", encoding="utf-8"))
        if bar:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())
        if skips:
            skipped.write("".join(_skip_line(s) for s in skips))
            skipped.flush()
        progress = stack.enter_context(
            tqdm(total=len(units), desc=task.name, unit="unit", disable=not bar, file=sys.stderr, dynamic_ncols=True)
        )
        loader = DataLoader(
            _Units(task, units),
            batch_size=batch_units,
            num_workers=workers,
            collate_fn=list,
            worker_init_fn=functools.partial(_worker_init, os.getpid()) if workers else None,
        )
        t = time.perf_counter()
        batches = iter(loader)  # starts the workers: part of the wait
        while True:
            try:
                batch: list[_Loaded] = next(batches)
            except StopIteration:
                wait += time.perf_counter() - t
                break
            t1 = time.perf_counter()
            wait += t1 - t
            good = [b for b in batch if b.skip is None]
            outputs = task.run([b.value for b in good]) if good else []
            t2 = time.perf_counter()
            compute += t2 - t1
            if len(outputs) != len(good):
                raise TypeError(f"{task.name}.run() gave {len(outputs)} record lists for {len(good)} units")
            parts = [_record_lines(task, b.id, recs) for b, recs in zip(good, outputs)]
            # skips first: a kill between the two writes leaves a unit with a skip, which resume redoes
            lost = "".join(_skip_line(b.skip) for b in batch if b.skip is not None) + "".join(p[1] for p in parts)
            if lost:
                skipped.write(lost)
                skipped.flush()
            text = "".join(p[0] for p in parts)
            if text:  # one write per batch, then flushed: a kill loses at most this batch
                results.write(text)
                results.flush()
            progress.update(len(batch))
            t = time.perf_counter()
            write += t - t2
    total = time.perf_counter() - start
    return {"units": len(units), "wait_s": wait, "compute_s": compute, "write_s": write, "total_s": total}


def _finish(
    task: Task, out_dir: Path, order: dict[str, int], timings: list[dict], distributed: bool
) -> tuple[dict, dict | None]:
    """Rank 0: the summary of this run's units in ``out_dir`` (and its first skipped entry); writes
    summary.json and timing.json."""
    state = _scan(out_dir)
    units = sorted((u for u in state.records if u in order), key=order.__getitem__)
    records = [r for u in units for r in state.records[u]]
    mine = [e for e in state.skipped.values() if state.owner(e) in order]
    skipped = sorted(mine, key=lambda e: order[state.owner(e)])  # stable: file order within a unit
    outside = len(state.records) + len(state.skipped) - len(units) - len(skipped)
    if outside:
        log.info(
            "%s: %d finished units are not among this run's units (a smaller limit) and are left out", out_dir, outside
        )
    summary = task.summarize(records, skipped)
    summary = summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)  # a tasks.metrics.Summary
    summary.setdefault("n", len(records))
    summary.setdefault("skipped", _count(skipped))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_outputs = getattr(task, "write_outputs", None)
    if write_outputs is not None:  # a task's own files beside these (detect: detections.json), from all records
        write_outputs(out_dir, records, summary)
    timing = {k: sum(t[k] for t in timings) for k in ("units", "wait_s", "compute_s", "write_s", "total_s")}
    timing["wait_fraction"] = timing["wait_s"] / timing["total_s"] if timing["total_s"] > 0 else 0.0
    if distributed:
        timing["ranks"] = timings
    (out_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    return summary, (skipped[0] if skipped else None)


def _count(skipped: Sequence[dict]) -> int:
    """Skipped items: each entry counts its ``items`` (1 when absent)."""
    return sum(e["items"] if isinstance(e.get("items"), int) else 1 for e in skipped)


def _nothing_scored(summary: dict, first: dict | None, out_dir: Path) -> str:
    skipped = summary.get("skipped")
    if not isinstance(skipped, int):
        skipped = 0
    if first is None:
        return f"nothing to score: the data gave no items (an empty split or file?); see {out_dir}"
    return (
        f"0 of {skipped} items could be scored; first reason: {first.get('source', '?')}: "
        f"{first.get('reason', '?')} (all in {out_dir / 'skipped.jsonl'})"
    )


def run(
    task: Task,
    out_dir: str | Path,
    *,
    resume: bool = False,
    limit: int | None = None,
    workers: int = 0,
    batch_units: int = 8,
    progress: bool | None = None,
    require_scored: bool = False,
) -> dict:
    """Run ``task`` into ``out_dir`` (files: see the module docstring); the summary, on every rank.

    ``resume`` continues a run in ``out_dir`` (without it, a folder that holds one is a FalipError
    before any work); ``limit`` keeps the first ``limit`` units; ``workers`` DataLoader processes
    load ``batch_units`` units per batch; ``progress`` shows a tqdm bar on rank 0 (None: when stderr
    is a terminal); ``require_scored``: a run that scored no item raises :class:`NothingScored`
    (its files written). Under torchrun (``WORLD_SIZE`` > 1) the process group is joined if needed
    and rank r runs ``todo[r::world]`` of the units not yet done. While it runs, ``out_dir`` is
    locked: another run on it raises :class:`FolderInUse`.
    """
    _check_options(limit, workers, batch_units)
    out = Path(out_dir)
    d = _distributed()
    config = json.loads(json.dumps(task.config()))  # as it will read back from run.json
    header = {"task": task.name, "config": config, "falip_version": __version__}
    lock = _FolderLock(out)

    def start() -> None:
        if out.exists() and not out.is_dir():
            raise FalipError(f"{out} is not a folder; choose another output folder")
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        try:
            _check_out_dir(out, header, resume)
        except BaseException:
            lock.release()
            raise

    d.on_rank0(start)
    try:
        units, skips, order = _plan(task, limit)  # every rank: deterministic
        done = set(d.on_rank0(lambda: _prepare(out, header, resume, set(order))))
        todo = [u for u in units if u.id not in done][d.rank :: d.world]
        new_skips = [s for s in skips if s.id not in done] if d.rank == 0 else []
        if progress is None:
            progress = sys.stderr.isatty()
        timing = _work(task, todo, new_skips, out, d, workers, batch_units, bool(progress) and d.rank == 0)
        timings = d.all_gather(timing)  # also the barrier: every rank's files are complete
        summary, first = d.on_rank0(lambda: _finish(task, out, order, timings, d.on))
    finally:
        lock.release()
    if require_scored and summary.get("n") == 0:
        raise NothingScored(_nothing_scored(summary, first, out), summary)
    return summary
